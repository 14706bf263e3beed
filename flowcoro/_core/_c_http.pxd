# flowcoro/_core/_c_http.pxd — csrc/http/parser.h declared to Cython (cdef
# extern only).  The rules and the theory of operation are in the header.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "http/parser.h" nogil:
    int FC_HTTP_EPARSE
    int FC_ENOMEM_OWN

    ctypedef enum fc_http_kind_t:
        FC_HTTP_REQUEST
        FC_HTTP_RESPONSE

    uint32_t FC_HTTP_REQUIRE_HOST
    uint32_t FC_HTTP_LOWERCASE_NAMES
    uint32_t FC_HTTP_LENIENT_BARE_LF
    uint32_t FC_HTTP_LENIENT_OBS_FOLD

    const char *fc_http_error_name(int err)
    const char *fc_http_error_message(int err)
    int fc_http_error_status(int err)

    ctypedef struct fc_http_limits_t:
        uint32_t max_start_line
        uint32_t max_field
        uint32_t max_fields
        uint32_t max_head
        uint32_t max_chunk_line
        uint64_t max_body
    void fc_http_limits_default(fc_http_limits_t *lim)

    enum:
        FC_HTTP_EV_NONE
        FC_HTTP_EV_HEAD
        FC_HTTP_EV_BODY
        FC_HTTP_EV_TRAILERS
        FC_HTTP_EV_END
        FC_HTTP_EV_PAUSED

    ctypedef struct fc_http_event_t:
        int type
        const char *data
        size_t len
        size_t consumed

    ctypedef struct fc_http_field_t:
        uint32_t name_off, name_len, value_off, value_len

    enum:
        FC_HTTP_ORIGIN_FORM
        FC_HTTP_ABSOLUTE_FORM
        FC_HTTP_AUTHORITY_FORM
        FC_HTTP_ASTERISK_FORM

    uint32_t FC_HTTP_M_KEEP_ALIVE
    uint32_t FC_HTTP_M_CHUNKED
    uint32_t FC_HTTP_M_CONTENT_LENGTH
    uint32_t FC_HTTP_M_UPGRADE
    uint32_t FC_HTTP_M_CONNECT
    uint32_t FC_HTTP_M_EXPECT_CONTINUE
    uint32_t FC_HTTP_M_BODY_UNTIL_EOF
    uint32_t FC_HTTP_M_NO_BODY

    ctypedef struct fc_http_parser_t:
        uint8_t kind
        uint32_t flags
        fc_http_limits_t lim
        uint8_t req_was_head, req_was_connect
        uint64_t stream_off
        char *buf
        fc_http_field_t *fields
        uint32_t nfields
        uint32_t method_off, method_len
        uint32_t target_off, target_len
        uint32_t reason_off, reason_len
        uint32_t upgrade_off, upgrade_len
        uint32_t trailer_first
        uint8_t http_major, http_minor
        uint8_t target_form
        uint16_t status
        uint32_t mflags
        uint64_t content_length
        int error
        uint64_t error_offset

    int fc_http_parser_init(fc_http_parser_t *p, fc_http_kind_t kind, const fc_http_limits_t *lim,
                            uint32_t flags)
    void fc_http_parser_free(fc_http_parser_t *p)
    int fc_http_parser_execute(fc_http_parser_t *p, const char *data, size_t len, fc_http_event_t *ev)
    int fc_http_parser_finish(fc_http_parser_t *p, fc_http_event_t *ev)
    void fc_http_parser_resume(fc_http_parser_t *p)
    int fc_http_parser_paused(const fc_http_parser_t *p)
    int fc_http_parser_idle(const fc_http_parser_t *p)
