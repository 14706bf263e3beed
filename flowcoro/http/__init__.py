"""flowcoro.http — HTTP/1.1 for FlowCoro.

For now this package holds the sans-IO HTTP/1.1 parsers
(:mod:`flowcoro.http.parser`) and their errors; the server, the client and
the ASGI server are built on them.
"""
from flowcoro.http import parser
from flowcoro.http.parser import *  # noqa: F401,F403 -- the names listed in parser.__all__
from flowcoro.http import server
from flowcoro.http.server import *  # noqa: F401,F403 -- the names listed in server.__all__
from flowcoro.http import client
from flowcoro.http.client import *  # noqa: F401,F403 -- the names listed in client.__all__

# One list: the package re-exports exactly what the parser module exports.
__all__ = list(parser.__all__)
__all__ += server.__all__
__all__ += client.__all__
