# The framing classes that wsconn (the per-message path) calls without going
# through Python: FrameParser.feed_c/feed_mem and FrameBuilder._build/_header.
cimport cython
from libc.stdint cimport uint8_t, uint64_t
from flowcoro._core._c_ws cimport fc_ws_parser_t


@cython.final
cdef class FrameParser:
    cdef fc_ws_parser_t p
    cdef readonly bint client
    cdef uint64_t max_message
    cdef object inflater
    cdef int wbits
    cdef bint reset_inflater
    cdef bint closed_
    # The bytes object a big binary message is being unmasked into (after a
    # RESERVE event), handed out as the message itself: no copy.  Private
    # and with one reference until then, so writing into it is sound.
    cdef bytes pending
    cdef bint ready
    cdef list feed_c(self, object data)
    cdef list feed_mem(self, const uint8_t *buf, size_t n)
    cdef int _feed(self, const uint8_t *buf, size_t n, list out) except -1
    cdef object _inflate(self, const uint8_t *data, size_t n, bint text, list events)


@cython.final
cdef class FrameBuilder:
    cdef readonly bint client
    cdef bytes keys
    cdef Py_ssize_t key_pos
    cdef const uint8_t *_next_key(self)
    cdef bytes _build(self, int opcode, const uint8_t *payload, size_t n, bint fin, bint rsv1)
    cdef bytes _header(self, int opcode, size_t n)
