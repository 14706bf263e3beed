"""The per-message path of a WebSocket connection (Cython); see wsconn.pyx."""
import asyncio
from typing import Any, Final

from typing_extensions import disjoint_base

OPEN: Final[str]
CLOSING: Final[str]
CLOSED: Final[str]

@disjoint_base
class WebSocketCore:
    _loop: asyncio.AbstractEventLoop
    _parser: Any
    _builder: Any
    _transport: Any
    _compressor: Any
    _on_message: Any
    _messages: Any
    _recv_waiter: Any
    _parker: Any
    _state: Any
    _close_rcvd: Any
    _error: Any
    _pending_fail: Any
    _fail_timer: Any
    _reading_paused: bool
    _write_paused: bool
    _max_queue: int
    max_send_buffer: Any
    async def receive(self) -> str | bytes: ...
    def __aiter__(self) -> WebSocketCore: ...
    async def __anext__(self) -> str | bytes: ...
    def _wake_receiver(self) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def _handle(self, events: list[Any]) -> None: ...
    async def send(self, message: str | bytes | bytearray | memoryview) -> None: ...
    def send_nowait(self, message: str | bytes | bytearray | memoryview) -> bool: ...
    def send_frame_nowait(self, frame: bytes) -> bool: ...
