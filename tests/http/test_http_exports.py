"""The public surface of flowcoro.http is frozen here (as tests/test_exports.py does
for flowcoro).  Parser, server (with ASGI) and client names."""
import inspect

import flowcoro.errors
import flowcoro.http
import flowcoro.http.parser

PARSER = {
    "DEFAULT_LIMITS", "EndOfMessage", "HttpError", "HttpParseError", "RequestHead",
    "RequestParser", "ResponseHead", "ResponseParser",
}
CLIENT = {
    "HttpClient", "Response", "Timeout", "Headers",
    "HttpClientError", "InvalidRequestError", "HttpTimeoutError", "ConnectTimeout",
    "ReadTimeout", "WriteTimeout", "PoolTimeout", "TotalTimeout", "HttpConnectionError",
    "ConnectError", "RemoteProtocolError", "TooManyRedirects", "HttpStatusError",
}
SERVER = {
    "HttpServer", "Request", "Response", "StreamingResponse", "FileResponse",
    "Headers", "Router", "HttpException", "HttpHeaderError", "reason_phrase",
}
# The client's Response and Headers are re-exported under other names (the
# server's keep the short ones: handlers use them).
EXPECTED = PARSER | SERVER | {"ASGIServer"} | {
    flowcoro.http.CLIENT_RENAMES.get(n, n) for n in CLIENT}


def test_all_is_frozen():
    assert len(flowcoro.http.__all__) == len(set(flowcoro.http.__all__))
    assert set(flowcoro.http.__all__) == EXPECTED
    assert set(flowcoro.http.parser.__all__) == PARSER


def test_star_import_gives_exactly_all():
    ns = {}
    exec("from flowcoro.http import *", ns)
    assert set(ns) - {"__builtins__"} == EXPECTED


def test_server_and_client_names_do_not_shadow_each_other():
    import flowcoro.http.client as client
    import flowcoro.http.server as server
    assert flowcoro.http.Response is server.Response
    assert flowcoro.http.Headers is server.Headers
    assert flowcoro.http.ClientResponse is client.Response
    assert flowcoro.http.ClientHeaders is client.Headers
    assert set(client.__all__) == CLIENT
    assert set(server.__all__) == SERVER


def test_errors_live_in_flowcoro_errors():
    assert flowcoro.http.HttpParseError is flowcoro.errors.HttpParseError
    assert {"HttpError", "HttpParseError"} <= set(flowcoro.errors.__all__)
    assert issubclass(flowcoro.errors.HttpParseError, flowcoro.errors.HttpError)
    assert issubclass(flowcoro.errors.HttpError, flowcoro.errors.FlowCoroError)


def test_public_classes_are_documented():
    for name in EXPECTED - {"DEFAULT_LIMITS"}:
        obj = getattr(flowcoro.http, name)
        assert (inspect.isclass(obj) or callable(obj)) and inspect.getdoc(obj), name
    for cls in (flowcoro.http.RequestParser, flowcoro.http.ResponseParser):
        for meth in ("feed", "feed_eof", "detach", "resume"):
            assert inspect.getdoc(getattr(cls, meth)), f"{cls.__name__}.{meth}"
