# flowcoro/_core/_c_ws.pxd — csrc/ws/frame.h and csrc/ws/utf8.h declared to
# Cython (cdef extern only).  The rules and the theory of operation are in
# the headers.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "ws/utf8.h" nogil:
    uint32_t FC_UTF8_ACCEPT
    uint32_t FC_UTF8_REJECT
    uint32_t fc_utf8_validate(uint32_t *state, const uint8_t *s, size_t len, size_t *bad_at)
    int fc_utf8_valid(const uint8_t *s, size_t len)

cdef extern from "ws/frame.h" nogil:
    int FC_WS_EPARSE
    int FC_WS_OP_CONT, FC_WS_OP_TEXT, FC_WS_OP_BINARY, FC_WS_OP_CLOSE, FC_WS_OP_PING, FC_WS_OP_PONG
    uint32_t FC_WS_CLIENT
    uint32_t FC_WS_ALLOW_RSV1
    uint32_t FC_WS_CALLER_BUFFERS

    const char *fc_ws_error_name(int err)
    const char *fc_ws_error_message(int err)
    int fc_ws_error_close_code(int err)

    enum:
        FC_WS_EV_NONE
        FC_WS_EV_TEXT
        FC_WS_EV_BINARY
        FC_WS_EV_PING
        FC_WS_EV_PONG
        FC_WS_EV_CLOSE
        FC_WS_EV_RESERVE

    ctypedef struct fc_ws_event_t:
        int type
        const uint8_t *data
        size_t len
        int compressed
        unsigned close_code
        size_t consumed

    ctypedef struct fc_ws_parser_t:
        uint32_t flags
        uint64_t max_frame
        uint64_t max_message
        int error
        uint64_t offset
        uint64_t error_offset
        uint8_t msg_type

    void fc_ws_parser_init(fc_ws_parser_t *p, uint32_t flags, uint64_t max_frame, uint64_t max_message)
    void fc_ws_parser_free(fc_ws_parser_t *p)
    int FC_WS_E_INFLATE
    int FC_WS_E_INFLATED_TOO_BIG
    int FC_WS_E_TEXT_UTF8
    void fc_ws_parser_set_dest(fc_ws_parser_t *p, uint8_t *dest)
    int fc_ws_parser_set_error(fc_ws_parser_t *p, int err)
    int fc_ws_parser_execute(fc_ws_parser_t *p, const uint8_t *data, size_t len, fc_ws_event_t *ev)
    void fc_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key, uint64_t pos)
    size_t fc_ws_header_size(uint64_t len, int masked)
    size_t fc_ws_write_header(uint8_t *out, int fin, int rsv1, int opcode, uint64_t len, const uint8_t *mask)
    int fc_ws_close_code_valid(unsigned code)
