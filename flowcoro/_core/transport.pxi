# flowcoro/_core/transport.pxi — stream-socket transport (TCP and Unix), included by loop.pyx.
#
# Theory of operation
# -------------------
# Reads: when the fd is readable the loop runs ``_read_ready``, which calls
# recv(2) straight into the loop's shared read buffer (``CoreLoop.readbuf``;
# one loop runs one callback at a time, so one buffer per loop is enough),
# and hands ``bytes`` of exactly the received size to ``data_received``.  A
# BufferedProtocol gets recv(2) into the buffer it returns from get_buffer().
#
# Writes: ``write()`` first tries send(2) directly.  What the kernel does not
# take is queued as a list of immutable ``bytes`` chunks (bytearray and
# memoryview input is copied, since the caller may mutate it after write()
# returns), and the fd is watched for writability; ``_write_ready`` then
# flushes the queue with writev(2), many chunks per system call.
#
# Flow control follows asyncio.transports._FlowControlMixin: pause_writing()
# when the queued size goes above the high-water mark, resume_writing() when
# it drops to the low-water mark or below (defaults 64 KiB / 16 KiB).
#
# Invariants:
# * ``_wsize`` == sum(len(c) for c in _wbuf) - _woff.
# * the fd is watched for writing exactly while ``_wsize`` > 0 and
#   ``_conn_lost`` == 0.
# * ``_conn_lost`` > 0 once connection_lost() is scheduled; nothing is read
#   or written after that.
# Lifecycle and every user-visible behaviour mirror asyncio's
# _SelectorSocketTransport, which is the reference for the tests.

import socket as _socket
import warnings as _warnings
from asyncio import constants as _aio_constants
from asyncio import protocols as _aio_protocols
from asyncio import trsock as _aio_trsock
from asyncio import base_events as _aio_base_events
from asyncio import transports as aio_transports

cdef object aio_BufferedProtocol = _aio_protocols.BufferedProtocol
cdef object aio_TransportSocket = _aio_trsock.TransportSocket
cdef object aio_set_nodelay = _aio_base_events._set_nodelay
cdef object aio_set_result_unless_cancelled = aio_futures._set_result_unless_cancelled
cdef object SHUT_WR = _socket.SHUT_WR

# asyncio.Server keeps a set of its transports since 3.13 (close_clients()),
# so _attach/_detach take the transport there and nothing before.
import inspect as _inspect
cdef bint SERVER_TRACKS_TRANSPORTS = len(_inspect.signature(
    _aio_base_events.Server._attach).parameters) > 1

# Chunks per writev(2); far below IOV_MAX (1024 on Linux), and large enough
# that a burst of small writes leaves in one system call.
DEF IOV_BATCH = 64


cdef inline bint _would_block(int e) noexcept:
    return e == EAGAIN or e == EWOULDBLOCK or e == EINTR


cdef class SocketTransport:
    """asyncio transport for a connected stream socket (TCP or Unix).

    Same API and behaviour as the stdlib's selector socket transport
    (write buffering, flow control, half-close, abort, BufferedProtocol,
    sendfile and start_tls support), with reads and writes done in C.
    """

    cdef CoreLoop _core
    cdef public object _loop
    cdef public object _sock
    cdef public int _sock_fd
    cdef public object _protocol
    cdef public bint _protocol_connected
    cdef public dict _extra
    cdef public object _server
    cdef public int _conn_lost
    cdef public bint _closing
    cdef public bint _paused
    cdef public bint _eof
    cdef public bint _protocol_paused
    cdef public Py_ssize_t _high_water
    cdef public Py_ssize_t _low_water
    cdef public object _empty_waiter
    cdef bint _buffered
    # The protocol's bound methods, looked up once per set_protocol():
    # data_received, or get_buffer and buffer_updated for a BufferedProtocol.
    cdef object _data_received
    cdef object _get_buffer
    cdef object _buffer_updated
    cdef object _read_ready_m
    cdef object _write_ready_m
    cdef list _wbuf
    cdef Py_ssize_t _woff
    cdef Py_ssize_t _wsize
    cdef object __weakref__

    _start_tls_compatible = True
    _sendfile_compatible = _aio_constants._SendfileMode.TRY_NATIVE
    max_size = READ_BUF_SIZE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        """Wrap connected, non-blocking ``sock``; the loop calls this."""
        self._core = <CoreLoop?>loop
        self._core.stat_transports += 1
        self._loop = loop
        self._extra = {} if extra is None else dict(extra)
        self._extra['socket'] = aio_TransportSocket(sock)
        try:
            self._extra['sockname'] = sock.getsockname()
        except OSError:
            self._extra['sockname'] = None
        if 'peername' not in self._extra:
            try:
                self._extra['peername'] = sock.getpeername()
            except OSError:
                self._extra['peername'] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._wbuf = []
        self._set_write_buffer_limits(None, None)
        self._read_ready_m = self._read_ready
        self._write_ready_m = self._write_ready
        self.set_protocol(protocol)
        self._server = server
        if server is not None:
            if SERVER_TRACKS_TRANSPORTS:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self
        aio_set_nodelay(sock)
        loop.call_soon(protocol.connection_made, self)
        # Start reading only once connection_made() has run.
        loop.call_soon(self._add_reader_if_reading)
        if waiter is not None:
            loop.call_soon(aio_set_result_unless_cancelled, waiter, None)

    @property
    def __class__(self):
        # isinstance(t, asyncio.Transport) must hold (asyncio's sendfile
        # fallback and user code check it), but an extension type cannot
        # derive from asyncio's slotted Python classes.  isinstance()
        # consults __class__ when type() does not match (as unittest.mock
        # relies on), so we answer with a Python subclass of them.
        return _TransportClass

    def __repr__(self):
        info = ['SocketTransport']
        if self._sock is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._sock_fd}')
        if self._loop is not None and not self._loop.is_closed():
            st = self._core._fd_interest(self._sock_fd)
            reading = st is not None and st[0] is not None
            writing = st is not None and st[1] is not None
            info.append('read=polling' if reading else 'read=idle')
            info.append(f"write=<{'polling' if writing else 'idle'}, bufsize={self._wsize}>")
        return '<{}>'.format(' '.join(info))

    def __del__(self):
        if self._sock is not None:
            _warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # -- BaseTransport --------------------------------------------------------

    def get_extra_info(self, name, default=None):
        """Return 'socket', 'sockname', 'peername' (and for TLS, more) or ``default``."""
        return self._extra.get(name, default)

    def is_closing(self):
        """Return True once close() or abort() was called."""
        return self._closing

    def close(self):
        """Close after the write buffer is flushed; connection_lost(None) follows."""
        if self._closing:
            return
        self._closing = True
        self._core._remove_io(self._sock_fd, False)
        if not self._wsize:
            self._conn_lost += 1
            self._core._remove_io(self._sock_fd, True)
            self._loop.call_soon(self._call_connection_lost, None)

    def set_protocol(self, protocol):
        """Switch the protocol that receives data and events."""
        self._protocol = protocol
        self._buffered = isinstance(protocol, aio_BufferedProtocol)
        if self._buffered:
            self._data_received = None
            self._get_buffer = protocol.get_buffer
            self._buffer_updated = protocol.buffer_updated
        else:
            self._data_received = protocol.data_received
            self._get_buffer = self._buffer_updated = None
        self._protocol_connected = True

    def get_protocol(self):
        """Return the current protocol."""
        return self._protocol

    # -- ReadTransport --------------------------------------------------------

    def is_reading(self):
        """Return True while the transport receives data."""
        return not self._closing and not self._paused

    def pause_reading(self):
        """Stop calling data_received() until resume_reading()."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._core._remove_io(self._sock_fd, False)

    def resume_reading(self):
        """Resume calling data_received()."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._add_reader_if_reading()

    def _add_reader_if_reading(self):
        if self._closing or self._paused:
            return
        self._core._add_io(self._sock_fd, self._read_ready_m, (), False)

    def _read_ready(self):
        cdef ssize_t n
        cdef int e
        if self._conn_lost:
            return
        if self._buffered:
            self._read_ready_buffered()
            return
        n = c_recv(self._sock_fd, self._core.readbuf, READ_BUF_SIZE, 0)
        if n < 0:
            e = errno
            if not _would_block(e):
                self._fatal_error(OSError(e, os.strerror(e)), 'Fatal read error on socket transport')
            return
        if n == 0:
            self._on_eof()
            return
        self._core.stat_bytes_read += <uint64_t>n
        data = PyBytes_FromStringAndSize(self._core.readbuf, n)
        try:
            self._data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal error: protocol.data_received() call failed.')

    cdef _read_ready_buffered(self):
        cdef Py_buffer view
        cdef ssize_t n
        cdef int e
        try:
            buf = self._get_buffer(-1)
            PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal error: protocol.get_buffer() call failed.')
            return
        try:
            if view.len == 0:
                self._fatal_error(RuntimeError('get_buffer() returned an empty buffer'),
                                  'Fatal error: protocol.get_buffer() call failed.')
                return
            n = c_recv(self._sock_fd, view.buf, <size_t>view.len, 0)
            e = errno
        finally:
            PyBuffer_Release(&view)
        if n < 0:
            if not _would_block(e):
                self._fatal_error(OSError(e, os.strerror(e)), 'Fatal read error on socket transport')
            return
        if n == 0:
            self._on_eof()
            return
        self._core.stat_bytes_read += <uint64_t>n
        try:
            self._buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal error: protocol.buffer_updated() call failed.')

    cdef _on_eof(self):
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal error: protocol.eof_received() call failed.')
            return
        if keep_open:
            # The protocol may still write; we just cannot read any more.
            self._core._remove_io(self._sock_fd, False)
        else:
            self.close()

    # -- WriteTransport -------------------------------------------------------

    def get_write_buffer_size(self):
        """Bytes queued and not yet accepted by the kernel."""
        return self._wsize

    def get_write_buffer_limits(self):
        """Return (low, high) water marks of the write buffer."""
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high=None, low=None):
        """Set the flow-control marks (default high 64 KiB, low high/4)."""
        self._set_write_buffer_limits(high, low)
        self._maybe_pause_protocol()

    cdef _set_write_buffer_limits(self, high, low):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self._high_water = high
        self._low_water = low

    cdef _maybe_pause_protocol(self):
        if self._wsize <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                'message': 'protocol.pause_writing() failed',
                'exception': exc, 'transport': self, 'protocol': self._protocol})

    cdef _maybe_resume_protocol(self):
        if self._protocol_paused and self._wsize <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({
                    'message': 'protocol.resume_writing() failed',
                    'exception': exc, 'transport': self, 'protocol': self._protocol})

    cdef int _check_write(self, data) except -1:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        if self._eof:
            raise RuntimeError('Cannot call write() after write_eof()')
        if self._empty_waiter is not None:
            raise RuntimeError('unable to write; sendfile is in progress')
        return 0

    cdef _count_lost_write(self):
        if self._conn_lost >= _aio_constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            logger.warning('socket.send() raised exception.')
        self._conn_lost += 1

    def write(self, data):
        """Queue ``data`` (bytes-like) for sending; never blocks.

        Tries send(2) at once when nothing is queued; the rest is buffered
        and flushed with writev(2) when the socket turns writable.
        """
        cdef Py_buffer view
        cdef ssize_t n
        cdef int e
        cdef bytes rest
        self._check_write(data)
        if not data:
            return
        if self._conn_lost:
            self._count_lost_write()
            return
        if self._wsize:
            self._queue(data, 0)
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            n = c_send(self._sock_fd, view.buf, <size_t>view.len, MSG_NOSIGNAL)
            e = errno
            if n > 0:
                self._core.stat_bytes_written += <uint64_t>n
            if n == view.len:
                return
            if n < 0:
                if not _would_block(e):
                    self._fatal_error(OSError(e, os.strerror(e)), 'Fatal write error on socket transport')
                    return
                n = 0
            rest = PyBytes_FromStringAndSize(<char *>view.buf + n, view.len - n)
        finally:
            PyBuffer_Release(&view)
        self._queue(rest, 0)

    cdef _queue(self, data, Py_ssize_t skip):
        """Append ``data[skip:]`` to the write queue (copied unless bytes)."""
        if type(data) is not bytes:
            data = bytes(data)
        if skip:
            data = data[skip:]
        if not data:
            return
        if not self._wsize:
            self._core._add_io(self._sock_fd, self._write_ready_m, (), True)
        self._wbuf.append(data)
        self._wsize += PyBytes_GET_SIZE(data)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data):
        """Write an iterable of bytes-like objects, sent with as few system calls as possible."""
        if self._eof:
            raise RuntimeError('Cannot call writelines() after write_eof()')
        if self._empty_waiter is not None:
            raise RuntimeError('unable to writelines; sendfile is in progress')
        chunks = list_of_data if type(list_of_data) is tuple else list(list_of_data)
        for d in chunks:
            if not isinstance(d, (bytes, bytearray, memoryview)):
                raise TypeError(f'data argument must be a bytes-like object, '
                                f'not {type(d).__name__!r}')
        if self._conn_lost:
            self._count_lost_write()
            return
        if self._wsize == 0 and self._send_now(chunks):
            return
        was_empty = self._wsize == 0
        for d in chunks:
            if len(d):
                if type(d) is not bytes:
                    d = bytes(d)
                self._wbuf.append(d)
                self._wsize += PyBytes_GET_SIZE(d)
        if not self._wsize:
            return
        if was_empty:
            # Try to send it all now, as write() does.
            if self._flush() < 0:
                return
            if self._wsize:
                self._core._add_io(self._sock_fd, self._write_ready_m, (), True)
        self._maybe_pause_protocol()

    cdef bint _send_now(self, chunks) except -1:
        """writev(2) a few ``bytes`` chunks at once while nothing is queued
        (a header and a payload, say: no joined copy).  True when they all
        left or the connection failed; False leaves them all to the queue."""
        cdef iovec iov[IOV_BATCH]
        cdef Py_ssize_t i, cnt = len(chunks), total = 0, left
        cdef ssize_t n
        cdef int e
        if cnt > IOV_BATCH:
            return False
        for i in range(cnt):
            d = chunks[i]
            if type(d) is not bytes:
                return False
            iov[i].iov_base = PyBytes_AS_STRING(d)
            iov[i].iov_len = <size_t>PyBytes_GET_SIZE(d)
            total += PyBytes_GET_SIZE(d)
        n = writev(self._sock_fd, iov, <int>cnt)
        if n < 0:
            e = errno
            if not _would_block(e):
                self._fatal_error(OSError(e, os.strerror(e)), 'Fatal write error on socket transport')
                return True
            return False
        self._core.stat_bytes_written += <uint64_t>n
        if n == total:
            return True
        # Partial: queue what the kernel did not take, in order.  The queue
        # was empty (so _woff is 0): the first chunk's sent part is skipped
        # through _woff, not sliced off (no copy).
        for i in range(cnt):
            d = chunks[i]
            left = PyBytes_GET_SIZE(d)
            if n >= left:
                n -= left
                continue
            if not self._wbuf:
                self._woff = n
            self._wbuf.append(d)
            self._wsize += left - n
            n = 0
        self._core._add_io(self._sock_fd, self._write_ready_m, (), True)
        self._maybe_pause_protocol()
        return True

    cdef int _flush(self) except -2:
        """writev(2) the queue until empty or EAGAIN.  -1: fatal error reported."""
        cdef iovec iov[IOV_BATCH]
        cdef Py_ssize_t i, cnt, nchunks, off
        cdef ssize_t n
        cdef int e
        cdef bytes c
        while self._wsize:
            nchunks = len(self._wbuf)
            cnt = nchunks if nchunks < IOV_BATCH else IOV_BATCH
            off = self._woff
            for i in range(cnt):
                c = <bytes>self._wbuf[i]
                iov[i].iov_base = PyBytes_AS_STRING(c) + off
                iov[i].iov_len = <size_t>(PyBytes_GET_SIZE(c) - off)
                off = 0
            n = writev(self._sock_fd, iov, <int>cnt)
            if n < 0:
                e = errno
                if _would_block(e):
                    return 0
                exc = OSError(e, os.strerror(e))
                self._core._remove_io(self._sock_fd, True)
                self._wbuf.clear()
                self._woff = 0
                self._wsize = 0
                self._fatal_error(exc, 'Fatal write error on socket transport')
                if self._empty_waiter is not None:
                    self._empty_waiter.set_exception(exc)
                return -1
            self._consume(n)
            if n == 0:
                return 0
        return 0

    cdef _consume(self, Py_ssize_t n):
        cdef Py_ssize_t left, i = 0, nchunks = len(self._wbuf)
        self._core.stat_bytes_written += <uint64_t>n
        self._wsize -= n
        while n and i < nchunks:
            left = PyBytes_GET_SIZE(<bytes>self._wbuf[i]) - self._woff
            if n >= left:
                n -= left
                self._woff = 0
                i += 1
            else:
                self._woff += n
                n = 0
        if i:
            del self._wbuf[:i]

    def _write_ready(self):
        if self._conn_lost:
            return
        if self._flush() < 0:
            return
        self._maybe_resume_protocol()   # may queue more
        if not self._wsize:
            self._core._remove_io(self._sock_fd, True)
            if self._empty_waiter is not None:
                self._empty_waiter.set_result(None)
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._sock.shutdown(SHUT_WR)

    def write_eof(self):
        """Half-close: shut down the sending side once the buffer is flushed."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._wsize:
            self._sock.shutdown(SHUT_WR)

    def can_write_eof(self):
        """Stream sockets support half-close: always True."""
        return True

    def abort(self):
        """Close now, dropping buffered data; connection_lost(None) follows."""
        self._force_close(None)

    # -- teardown -------------------------------------------------------------

    def _fatal_error(self, exc, message='Fatal error on transport'):
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                'message': message, 'exception': exc,
                'transport': self, 'protocol': self._protocol})
        self._force_close(exc)

    def _force_close(self, exc):
        if self._conn_lost:
            return
        if self._wsize:
            self._wbuf.clear()
            self._woff = 0
            self._wsize = 0
            self._core._remove_io(self._sock_fd, True)
        if not self._closing:
            self._closing = True
            self._core._remove_io(self._sock_fd, False)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
        # From here on the fd number may belong to another socket: every
        # read/write path checks _conn_lost first, so make sure it is set
        # (close() with a full buffer reaches here from _write_ready).
        if not self._conn_lost:
            self._conn_lost = 1
        self._core.stat_transports_closed += 1     # called once per transport
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            self._protocol = None
            self._data_received = self._get_buffer = self._buffer_updated = None
            self._loop = None
            server = self._server
            if server is not None:
                if SERVER_TRACKS_TRANSPORTS:
                    server._detach(self)
                else:
                    server._detach()
                self._server = None
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(
                    ConnectionError("Connection is closed by peer"))

    # -- sendfile support (asyncio's _sendfile_native uses these) -------------

    def _make_empty_waiter(self):
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._wsize:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self):
        self._empty_waiter = None


# The class SocketTransport objects claim to be (see SocketTransport.__class__).
_TransportClass = type("SocketTransport", (aio_transports._FlowControlMixin,), {
    "__slots__": (),
    "__doc__": "What isinstance() sees of flowcoro's C SocketTransport.",
    "__module__": __name__,
})
