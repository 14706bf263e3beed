"""flowcoro.http — HTTP/1.1 for FlowCoro.

* :mod:`flowcoro.http.parser`: the sans-IO HTTP/1.1 parsers and their errors;
* :mod:`flowcoro.http.server`: :class:`HttpServer` (routing, middleware,
  keep-alive, pipelining) and what handlers use (:class:`Request`,
  :class:`Response`, :class:`StreamingResponse`, :class:`FileResponse`);
* :mod:`flowcoro.http.asgi`: :class:`ASGIServer` (``flowcoro serve``);
* :mod:`flowcoro.http.client`: :class:`HttpClient`.

The server's and the client's response types share a name in their own
modules; here the client's are ``ClientResponse`` and ``ClientHeaders``
(``Response`` and ``Headers`` are the server's, as handlers use them).
"""
from flowcoro.http import client, parser, server
from flowcoro.http.asgi import ASGIServer
from flowcoro.http.client import Headers as ClientHeaders
from flowcoro.http.client import Response as ClientResponse
from flowcoro.http.client import *  # noqa: F401,F403 -- client.__all__ (two renamed below)
from flowcoro.http.parser import *  # noqa: F401,F403 -- the names listed in parser.__all__
from flowcoro.http.server import *  # noqa: F401,F403 -- the names listed in server.__all__

#: Client names re-exported under another name (the server's own win).
CLIENT_RENAMES = {"Response": "ClientResponse", "Headers": "ClientHeaders"}

__all__ = sorted(
    set(parser.__all__) | set(server.__all__) | {"ASGIServer"}
    | {CLIENT_RENAMES.get(n, n) for n in client.__all__})
