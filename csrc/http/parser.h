/* http/parser.h — sans-IO, incremental HTTP/1.1 parser (RFC 9110, RFC 9112).
 *
 * Rules
 *  - No I/O, no Python, no callbacks.  The caller owns the parser struct
 *    (embed it, put it on the stack) and feeds bytes; the parser hands back
 *    one event per call to fc_http_parser_execute().
 *  - Incremental: any split of the input, down to one byte per call, gives
 *    the same sequence of events, except that body bytes may come in more,
 *    smaller BODY events.  Every state is resumable at any byte.
 *  - Strict by default (RFC 9112 "MUST reject" everywhere, and "MAY reject"
 *    wherever the other choice has enabled request smuggling).  Each
 *    rejection has its own fc_http_error_t and an HTTP status hint.
 *    Leniencies are opt-in flags and never touch message framing.
 *  - Memory: one scratch buffer per parser holds the current head (method,
 *    target, reason, field names and values, copied as they are parsed, so
 *    a head may span any number of feeds) and one array of field spans.
 *    Both grow geometrically and are kept between messages, so after the
 *    first few messages the hot path does not allocate.  They are bounded by
 *    the limits: buffer <= max_start_line + 2 * max_head (head + trailers),
 *    spans <= 2 * max_fields.
 *  - One thread at a time per parser; parsers share nothing (the character
 *    tables are const).
 *
 * Theory of operation
 *  A message is start-line, field lines, empty line, body.  The parser is a
 *  byte-resumable state machine (`state`), with tight loops over runs of
 *  valid bytes (token, target, field value) that copy each run into the
 *  scratch buffer with one memcpy.  A field line is finished at its LF
 *  (with FC_HTTP_LENIENT_OBS_FOLD: at the first byte of the next line, where
 *  a fold shows); then it is appended to `fields` and the framing fields
 *  (Content-Length, Transfer-Encoding, Connection, Upgrade, Expect, Host)
 *  are interpreted, so a bad one is rejected at the end of its own line.
 *  At the empty line the framing is decided once (RFC 9112 section 6.3) and
 *  a HEAD event is returned; body bytes are returned as BODY events that
 *  point into the caller's input (no copy); END closes the message.  After
 *  END the parser resets itself for the next message (keep-alive,
 *  pipelining), refuses further data when the connection must close, or
 *  stops for good (PAUSED) after a protocol switch (Upgrade, CONNECT, 101):
 *  the remaining bytes belong to the new protocol, and the caller takes
 *  them; fc_http_parser_resume() continues with HTTP when the switch was
 *  declined.
 *
 *  Bare LF: RFC 9112 section 2.2 lets a recipient accept a lone LF as the
 *  end of a start line or field line.  We reject it by default (a proxy in
 *  front that disagrees is how requests get smuggled);
 *  FC_HTTP_LENIENT_BARE_LF accepts it there, and only there: chunk-size
 *  lines and the CRLF after chunk data always need CRLF.  A bare CR is
 *  never accepted.
 */
#ifndef FC_HTTP_PARSER_H
#define FC_HTTP_PARSER_H
#include <stddef.h>
#include <stdint.h>

#include "fc/status.h"

/* fc_http_parser_execute/finish returned this; p->error says why.  In
 * FlowCoro's own status range (below -4096, see fc/status.h). */
#define FC_HTTP_EPARSE (-4200)

typedef enum { FC_HTTP_REQUEST = 0, FC_HTTP_RESPONSE = 1 } fc_http_kind_t;

/* Parser options (the `flags` of fc_http_parser_init). */
#define FC_HTTP_REQUIRE_HOST      (1u << 0)  /* 400 for an HTTP/1.1 request without Host (RFC 9112 3.2) */
#define FC_HTTP_LOWERCASE_NAMES   (1u << 1)  /* field names are stored lowercased (ASGI wants that) */
#define FC_HTTP_LENIENT_BARE_LF   (1u << 2)  /* accept LF alone to end a start line or field line */
#define FC_HTTP_LENIENT_OBS_FOLD  (1u << 3)  /* replace obs-fold by SP instead of rejecting (RFC 9112 5.2) */
#define FC_HTTP_DEFAULT_FLAGS     (FC_HTTP_REQUIRE_HOST | FC_HTTP_LOWERCASE_NAMES)

/* Every rejection.  Keep fc_http_error_name/_status/_message in parser.c in
 * the same order. */
typedef enum {
    FC_HTTP_OK = 0,
    FC_HTTP_E_INVALID_METHOD,          /* 400 method is not a token */
    FC_HTTP_E_INVALID_TARGET,          /* 400 bad byte, or form not allowed for the method */
    FC_HTTP_E_INVALID_VERSION,         /* 400 not "HTTP/" DIGIT "." DIGIT, or missing */
    FC_HTTP_E_UNSUPPORTED_VERSION,     /* 505 not HTTP/1.x */
    FC_HTTP_E_H2_PREFACE,              /* 505 "PRI * ..." (HTTP/2 with prior knowledge) */
    FC_HTTP_E_INVALID_STATUS,          /* 400 status code not 3 digits in 100..599 */
    FC_HTTP_E_INVALID_REASON,          /* 400 control byte in reason phrase */
    FC_HTTP_E_BARE_CR,                 /* 400 CR not followed by LF */
    FC_HTTP_E_BARE_LF,                 /* 400 LF without CR (strict) */
    FC_HTTP_E_WHITESPACE_AFTER_START_LINE, /* 400 first field line starts with SP/HTAB */
    FC_HTTP_E_OBS_FOLD,                /* 400 line folding (field line starting with SP/HTAB) */
    FC_HTTP_E_INVALID_HEADER_NAME,     /* 400 empty name, non-token byte, no colon */
    FC_HTTP_E_WHITESPACE_BEFORE_COLON, /* 400 "Name : value" */
    FC_HTTP_E_INVALID_HEADER_VALUE,    /* 400 NUL or other CTL (not HTAB) in a value */
    FC_HTTP_E_AMBIGUOUS_HEADER_NAME,   /* 400 Content_Length / Transfer_Encoding */
    FC_HTTP_E_INVALID_CONTENT_LENGTH,  /* 400 empty, sign, list, non-digit */
    FC_HTTP_E_CONTENT_LENGTH_OVERFLOW, /* 400 more than 2^63 - 1 */
    FC_HTTP_E_DUPLICATE_CONTENT_LENGTH,/* 400 two Content-Length with different values */
    FC_HTTP_E_CONTENT_LENGTH_WITH_TE,  /* 400 Content-Length and Transfer-Encoding */
    FC_HTTP_E_INVALID_TRANSFER_ENCODING, /* 400 empty value or element, bad token, params on chunked */
    FC_HTTP_E_TE_CHUNKED_NOT_FINAL,    /* 400 a coding after chunked, or chunked missing */
    FC_HTTP_E_TE_CHUNKED_TWICE,        /* 400 chunked applied more than once */
    FC_HTTP_E_TE_UNSUPPORTED,          /* 501 a coding other than chunked (we decode none) */
    FC_HTTP_E_TE_IN_HTTP10,            /* 400 Transfer-Encoding in an HTTP/1.0 message */
    FC_HTTP_E_MISSING_HOST,            /* 400 HTTP/1.1 request without Host */
    FC_HTTP_E_DUPLICATE_HOST,          /* 400 more than one Host */
    FC_HTTP_E_INVALID_CHUNK_SIZE,      /* 400 no hex digit, bad byte after the size */
    FC_HTTP_E_CHUNK_SIZE_OVERFLOW,     /* 400 chunk size of 2^60 or more */
    FC_HTTP_E_INVALID_CHUNK_EXTENSION, /* 400 chunk-ext grammar */
    FC_HTTP_E_CHUNK_DATA_NO_CRLF,      /* 400 chunk data not followed by CRLF */
    FC_HTTP_E_DATA_AFTER_CLOSE,        /* 400 bytes after a message that closes the connection */
    FC_HTTP_E_INCOMPLETE_MESSAGE,      /* 400 EOF inside a message */
    FC_HTTP_E_START_LINE_TOO_LONG,     /* 414 request line (or status line) over max_start_line */
    FC_HTTP_E_HEADER_FIELD_TOO_LARGE,  /* 431 one field line over max_field */
    FC_HTTP_E_TOO_MANY_HEADERS,        /* 431 more than max_fields field lines */
    FC_HTTP_E_HEADER_BLOCK_TOO_LARGE,  /* 431 header (or trailer) section over max_head */
    FC_HTTP_E_CHUNK_LINE_TOO_LONG,     /* 400 chunk-size line with extensions over max_chunk_line */
    FC_HTTP_E_BODY_TOO_LARGE,          /* 413 body over max_body */
    FC_HTTP_E_COUNT
} fc_http_error_t;

/* Short stable name ("bare_lf"), one-line message, HTTP status hint. */
const char *fc_http_error_name(int err);
const char *fc_http_error_message(int err);
int fc_http_error_status(int err);

typedef struct {
    uint32_t max_start_line;  /* request/status line, CRLF excluded (8 KiB) */
    uint32_t max_field;       /* one field line, CRLF excluded (8 KiB) */
    uint32_t max_fields;      /* field lines in the header section, and in the trailer section (100) */
    uint32_t max_head;        /* header section bytes after the start line (64 KiB); trailers alike */
    uint32_t max_chunk_line;  /* chunk-size line with extensions, CRLF excluded (4 KiB) */
    uint64_t max_body;        /* body bytes (1 MiB); UINT64_MAX: no limit */
} fc_http_limits_t;

void fc_http_limits_default(fc_http_limits_t *lim);

typedef enum {
    FC_HTTP_EV_NONE = 0,  /* all input consumed; feed more */
    FC_HTTP_EV_HEAD,      /* a head is complete: see the fc_http_parser_t fields below */
    FC_HTTP_EV_BODY,      /* ev.data/ev.len: body bytes, pointing into the input */
    FC_HTTP_EV_TRAILERS,  /* fields[trailer_first .. nfields) are the trailers */
    FC_HTTP_EV_END,       /* the message is complete */
    FC_HTTP_EV_PAUSED     /* protocol switch: consumed nothing; the rest is not HTTP */
} fc_http_event_type_t;

typedef struct {
    int type;             /* fc_http_event_type_t */
    const char *data;     /* BODY only */
    size_t len;           /* BODY only */
    size_t consumed;      /* bytes of the input used by this call (also on error) */
} fc_http_event_t;

/* A field: offsets into p->buf.  Names and values are exact bytes (names
 * lowercased with FC_HTTP_LOWERCASE_NAMES); values have their leading and
 * trailing OWS removed (RFC 9110 5.5). */
typedef struct {
    uint32_t name_off, name_len, value_off, value_len;
} fc_http_field_t;

/* Target forms (RFC 9112 3.2). */
enum { FC_HTTP_ORIGIN_FORM = 1, FC_HTTP_ABSOLUTE_FORM, FC_HTTP_AUTHORITY_FORM, FC_HTTP_ASTERISK_FORM };

/* Message flags (p->mflags), valid from HEAD to the next message. */
#define FC_HTTP_M_KEEP_ALIVE      (1u << 0)  /* the connection persists after this message */
#define FC_HTTP_M_CHUNKED         (1u << 1)  /* body is chunked */
#define FC_HTTP_M_CONTENT_LENGTH  (1u << 2)  /* p->content_length is valid */
#define FC_HTTP_M_UPGRADE         (1u << 3)  /* request: Upgrade + Connection: upgrade; response: 101 */
#define FC_HTTP_M_CONNECT         (1u << 4)  /* CONNECT request, or 2xx response to one */
#define FC_HTTP_M_EXPECT_CONTINUE (1u << 5)  /* HTTP/1.1 request with Expect: 100-continue */
#define FC_HTTP_M_BODY_UNTIL_EOF  (1u << 6)  /* response body delimited by connection close */
#define FC_HTTP_M_NO_BODY         (1u << 7)  /* no body at all (length 0, HEAD, 1xx/204/304, CONNECT) */
/* internal (while the head is parsed) */
#define FC_HTTP_M_HAS_TE          (1u << 8)
#define FC_HTTP_M_TE_LAST_CHUNKED (1u << 9)
#define FC_HTTP_M_TE_CHUNKED_SEEN (1u << 10)
#define FC_HTTP_M_TE_OTHER        (1u << 11)
#define FC_HTTP_M_CONN_CLOSE      (1u << 12)
#define FC_HTTP_M_CONN_KEEP_ALIVE (1u << 13)
#define FC_HTTP_M_CONN_UPGRADE    (1u << 14)
#define FC_HTTP_M_HAS_UPGRADE     (1u << 15)
#define FC_HTTP_M_HAS_HOST        (1u << 16)

typedef struct fc_http_parser {
    /* settings (read-only after init) */
    uint8_t kind;                 /* fc_http_kind_t */
    uint32_t flags;               /* FC_HTTP_* options */
    fc_http_limits_t lim;

    /* Response context, set by the caller before the response's head is
     * complete; read at that point for a final (non-1xx) response and
     * cleared after its END: the request was HEAD (no body whatever the
     * fields say) / CONNECT (a 2xx switches to a tunnel). */
    uint8_t req_was_head, req_was_connect;

    /* position */
    uint8_t state;
    uint8_t sub;                  /* state-local counter (version bytes, status digits, ...) */
    uint8_t in_trailers;
    uint8_t field_pending;        /* a field line ended; finished at the next line's first byte */
    uint64_t stream_off;          /* bytes consumed since init; error offsets count from here */

    /* scratch (see Rules) */
    char *buf;
    uint32_t buf_len, buf_cap;
    fc_http_field_t *fields;
    uint32_t nfields, fields_cap;

    /* where the current line and section began (stream offsets): lengths
     * for the limits are differences of offsets */
    uint64_t line_start;
    uint64_t section_start;
    uint32_t section_fields;      /* field lines in the current section */

    /* the field line being parsed */
    uint32_t cur_name_off, cur_name_len, cur_value_off, cur_value_end;

    /* the message (valid from HEAD until the next message starts) */
    uint32_t method_off, method_len;
    uint32_t target_off, target_len;
    uint32_t reason_off, reason_len;
    uint32_t upgrade_off, upgrade_len;    /* value of Upgrade, if FC_HTTP_M_HAS_UPGRADE */
    uint32_t trailer_first;               /* TRAILERS: index of the first trailer in fields */
    uint8_t http_major, http_minor;
    uint8_t target_form;                  /* FC_HTTP_*_FORM (requests) */
    uint16_t status;                      /* responses */
    uint32_t mflags;                      /* FC_HTTP_M_* */
    uint64_t content_length;              /* if FC_HTTP_M_CONTENT_LENGTH */

    /* body */
    uint64_t remaining;                   /* of the Content-Length body, or of the current chunk */
    uint64_t body_total;                  /* body bytes so far (max_body) */

    /* error (after FC_HTTP_EPARSE) */
    int error;                            /* fc_http_error_t */
    uint64_t error_offset;                /* stream offset of the offending byte */
} fc_http_parser_t;

/* Set up *p (caller-allocated).  lim NULL: the defaults.  0 or
 * FC_ENOMEM_OWN.  Every successful init needs one fc_http_parser_free. */
int fc_http_parser_init(fc_http_parser_t *p, fc_http_kind_t kind, const fc_http_limits_t *lim,
                        uint32_t flags);
void fc_http_parser_free(fc_http_parser_t *p);

/* Consume bytes from data[0..len) until one event is ready or the input is
 * used up (then EV_NONE).  ev->consumed says how far it got; call again
 * with the rest.  Returns 0, FC_HTTP_EPARSE (p->error, p->error_offset;
 * every later call fails the same way) or FC_ENOMEM_OWN.  A HEAD event's
 * spans stay valid until the call after its message's END. */
int fc_http_parser_execute(fc_http_parser_t *p, const char *data, size_t len, fc_http_event_t *ev);

/* The peer closed the connection.  ev: END (a response body delimited by
 * close, then call again: NONE), or NONE when between messages; an error
 * (INCOMPLETE_MESSAGE) when inside one. */
int fc_http_parser_finish(fc_http_parser_t *p, fc_http_event_t *ev);

/* After EV_PAUSED: the switch was declined (the server answered without
 * 101, or the CONNECT failed); parse what follows as HTTP again. */
void fc_http_parser_resume(fc_http_parser_t *p);

/* 1 after EV_PAUSED (until fc_http_parser_resume). */
int fc_http_parser_paused(const fc_http_parser_t *p);

/* 1 when the parser sits between messages (nothing of a new one seen). */
int fc_http_parser_idle(const fc_http_parser_t *p);

#endif
