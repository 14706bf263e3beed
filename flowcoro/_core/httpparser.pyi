"""Type stubs for flowcoro._core.httpparser (Cython); see httpparser.pyx for the
theory of operation and csrc/http/parser.h for the parser's rules."""
from typing_extensions import Buffer, disjoint_base
from typing import Final, Generic, TypeVar, Union, final

DEFAULT_LIMITS: Final[dict[str, int]]

@final
class RequestHead:
    """A request's start line and header section."""

    @property
    def method(self) -> bytes: ...
    @property
    def target(self) -> bytes: ...
    @property
    def target_form(self) -> str: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def expect_continue(self) -> bool: ...
    @property
    def upgrade(self) -> bytes | None: ...

@final
class ResponseHead:
    """A response's status line and header section."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> bytes: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def until_eof(self) -> bool: ...

@final
class EndOfMessage:
    """The end of a message's body, with the chunked body's trailers."""

    def __init__(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None: ...
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]: ...

_E = TypeVar("_E")

_RequestEvent = Union[RequestHead, bytes, EndOfMessage]
_ResponseEvent = Union[ResponseHead, bytes, EndOfMessage]

@disjoint_base
class _Parser(Generic[_E]):
    def feed(self, data: Buffer) -> list[_E]: ...
    def feed_eof(self) -> list[EndOfMessage]: ...
    @property
    def paused(self) -> bool: ...
    @property
    def trailing_data(self) -> bytes: ...
    def detach(self) -> bytes: ...
    def resume(self) -> list[_E]: ...
    @property
    def offset(self) -> int: ...
    @property
    def idle(self) -> bool: ...

@final
class RequestParser(_Parser[_RequestEvent]):
    """Incremental, strict HTTP/1.1 request parser."""

    def __init__(
        self,
        *,
        max_request_line: int = ...,
        max_header_field: int = ...,
        max_headers: int = ...,
        max_header_block: int = ...,
        max_chunk_line: int = ...,
        max_body: int | None = ...,
        require_host: bool = True,
        lowercase_names: bool = True,
        lenient_bare_lf: bool = False,
        lenient_obs_fold: bool = False,
    ) -> None: ...

@final
class ResponseParser(_Parser[_ResponseEvent]):
    """Incremental, strict HTTP/1.1 response parser."""

    def __init__(
        self,
        *,
        max_status_line: int = ...,
        max_header_field: int = ...,
        max_headers: int = ...,
        max_header_block: int = ...,
        max_chunk_line: int = ...,
        max_body: int | None = None,
        lowercase_names: bool = True,
        lenient_bare_lf: bool = False,
        lenient_obs_fold: bool = False,
    ) -> None: ...
    def request_sent(self, method: bytes | str) -> None: ...
