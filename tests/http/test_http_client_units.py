"""The client's pieces without a network: Headers, Timeout, URLs, request
encoding (what goes on the wire, byte for byte) and argument checks."""
import pickle

import pytest

import flowcoro
from flowcoro.errors import (
    HttpStatusError,
    InvalidArgumentError,
    InvalidRequestError,
    InvalidStateError,
    TooManyRedirects,
)
from flowcoro.http import HttpClient, Timeout
from flowcoro.http.client import Headers
from flowcoro.http.client import _Target


def test_headers_multidict():
    h = Headers({"Content-Type": "text/html", "X-A": b"1"})
    h.add("Set-Cookie", "a=1")
    h.add("set-cookie", "b=2")
    assert h["content-type"] == "text/html" and h["X-A"] == "1"
    assert h.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert "set-cookie" in h and "nope" not in h and 3 not in h
    assert list(h) == ["content-type", "x-a", "set-cookie"] == h.keys()
    assert len(h) == 4 and h.values() == ["text/html", "1", "a=1", "b=2"]
    assert h.raw[1] == (b"X-A", b"1")
    with pytest.raises(KeyError):
        h["missing"]
    assert h.get("missing", "d") == "d"
    h["set-cookie"] = "c=3"
    assert h.get_all("Set-Cookie") == ["c=3"] and len(h) == 3
    h["New"] = 5
    assert h["new"] == "5"
    del h["new"]
    with pytest.raises(KeyError):
        del h["new"]
    assert h.pop("x-a") == "1" and h.pop("x-a", "gone") == "gone"
    assert h.setdefault("content-type", "x") == "text/html"
    assert h.setdefault("accept", b"*/*") == "*/*"
    c = h.copy()
    c.add("x", "y")
    assert "x" not in h
    assert Headers([("A", "1")]) == {"a": "1"} and Headers([("A", "1")]) != {"a": "2"}
    assert Headers([("A", "1")]) != 5
    assert "Headers([" in repr(h)
    h2 = Headers([("Connection", "keep-alive, Upgrade"), ("connection", " close ")])
    assert h2.get_list("connection") == ["keep-alive", "Upgrade", "close"]
    assert Headers(h2).items() == h2.items()
    with pytest.raises(TypeError):
        Headers({"a": None})


def test_timeout():
    t = Timeout(1, 2, 3, write=4, pool=5)
    assert (t.connect, t.read, t.total, t.write, t.pool) == (1, 2, 3, 4, 5)
    assert Timeout() == Timeout(10.0, 30.0, None)
    assert Timeout() != Timeout(1)
    assert Timeout().__eq__(5) is NotImplemented
    assert "connect=10.0" in repr(Timeout())
    assert Timeout.none() == Timeout(None, None, None, write=None, pool=None)
    with pytest.raises(InvalidArgumentError):
        Timeout(-1)
    with pytest.raises(InvalidArgumentError):
        Timeout(read="x")
    with pytest.raises(TypeError):
        Timeout(bogus=1)
    assert HttpClient(timeout=5).timeout == Timeout(total=5)
    assert HttpClient(timeout=None).timeout == Timeout.none()
    with pytest.raises(InvalidArgumentError):
        HttpClient(timeout="5")


def test_targets():
    t = _Target("http://Example.COM/a b/ü?q=1 2&r=/x#frag")
    assert t.key == ("http", "example.com", 80)
    assert t.target == "/a%20b/%C3%BC?q=1%202&r=/x"
    assert t.host_header == "example.com"
    t = _Target("https://h:8443")
    assert (t.target, t.host_header, t.key) == ("/", "h:8443", ("https", "h", 8443))
    t = _Target("http://[::1]:8080/p%20q")
    assert (t.host, t.host_header, t.target) == ("::1", "[::1]:8080", "/p%20q")
    t = _Target("http://bücher.example/")
    assert t.host == "xn--bcher-kva.example"
    t = _Target("http://us%20er:p%40ss@h/")
    assert t.auth == "Basic dXMgZXI6cEBzcw==" and t.url == "http://h/"
    for bad in ("/relative", "ftp://h/", "http:///nohost", "http://h:99999/", "http://h\r\n/",
                "http://h/\x00"):
        with pytest.raises(InvalidRequestError):
            _Target(bad)


def test_client_arguments():
    for kw in (dict(max_connections_per_host=0), dict(keepalive_expiry=-1),
               dict(max_redirects=-1), dict(response_limits={"bogus": 1})):
        with pytest.raises(InvalidArgumentError):
            HttpClient(**kw)
    with pytest.raises(InvalidRequestError):
        HttpClient("ftp://x")
    with pytest.raises(InvalidRequestError):
        HttpClient(headers={"X": "a\r\nb"})
    c = HttpClient("http://h/api/", headers={"User-Agent": "me"})
    assert c.base_url == "http://h/api" and c.headers["user-agent"] == "me"
    assert c.idle_connections() == 0
    assert c._target("/users").url == "http://h/api/users"
    assert c._target("users?x=1").target == "/api/users?x=1"
    assert c._target("", params={"a": "b"}).target == "/api?a=b"
    assert c._target("/u?x=1", params=[("a", "1"), ("a", "2")]).target == "/api/u?x=1&a=1&a=2"
    assert c._target("http://other/").key == ("http", "other", 80)
    with pytest.raises(InvalidRequestError):
        c._target(b"/bytes")


def wire(client, method, url, **kw):
    """The request head bytes the client would write."""
    data = kw.pop("data", None)
    json_value = kw.pop("json", flowcoro.http.client._MISSING)
    t = client._target(url, kw.pop("params", None))
    return client._build(method, t, kw.pop("headers", None), data, json_value).head


def test_request_encoding():
    c = HttpClient("http://h:8080", headers={"Accept": "text/plain"})
    head = wire(c, "GET", "/x?y=1")
    assert head == (b"GET /x?y=1 HTTP/1.1\r\nHost: h:8080\r\n"
                    b"User-Agent: " + flowcoro.http.client.USER_AGENT.encode() + b"\r\n"
                    b"Accept: text/plain\r\nAccept-Encoding: gzip, deflate\r\n\r\n")
    head = wire(c, "POST", "/", json={"a": "é"})
    assert b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n" in head
    # Framing fields given by the caller are replaced by the real ones.
    head = wire(c, "PUT", "/", data=b"abc",
                headers={"Content-Length": "99", "Transfer-Encoding": "chunked", "Host": "evil"})
    assert b"Content-Length: 3\r\n" in head and b"99" not in head
    assert b"Transfer-Encoding" not in head
    # A Host field replaces the URL's authority (virtual hosts by address).
    assert head.startswith(b"PUT / HTTP/1.1\r\nHost: evil\r\n") and head.count(b"Host") == 1
    # Repeated fields in one request are all sent.
    head = wire(c, "GET", "/", headers=[("X-M", "1"), ("X-M", "2")])
    assert b"X-M: 1\r\nX-M: 2\r\n" in head
    head = wire(c, "GET", "/", headers=Headers({"X-H": "v"}))
    assert b"X-H: v\r\n" in head
    head = wire(c, "GET", "http://u:p@h2/")
    assert b"Authorization: Basic dTpw\r\n" in head and b"Host: h2\r\n" in head


def test_errors_pickle_and_status_error():
    e = pickle.loads(pickle.dumps(TooManyRedirects("m")))
    assert str(e) == "m" and e.response is None
    e = pickle.loads(pickle.dumps(HttpStatusError("m", None, 418)))
    assert e.status == 418


def test_response_before_body_read():
    from flowcoro.http.client import Response
    from flowcoro.http.parser import ResponseParser
    p = ResponseParser()
    p.request_sent("GET")
    head = p.feed(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n"
                  b"Content-Type: text/plain; charset=\"latin-1\"\r\nContent-Length: 0\r\n\r\n")[0]
    r = Response(head, "http://h/", "GET", None, None, None, True)
    assert r.is_redirect and r.ok and r.encoding == "latin-1"
    assert "302 Found" in repr(r)
    with pytest.raises(InvalidStateError):
        r.text()
    r._content = b"\xe9"
    assert r.text() == "é" and r.text(encoding="no-such-codec") == "\ufffd"


def test_client_bound_to_one_loop():
    c = HttpClient()

    async def use():
        async with c:
            pass

    flowcoro.run(use())
    with pytest.raises(InvalidStateError):
        flowcoro.run(use())
    c2 = HttpClient()
    flowcoro.run(c2.__aenter__())
    with pytest.raises(InvalidStateError, match="loop"):
        flowcoro.run(c2.get("http://127.0.0.1:9/"))
