/* ws/frame.h — sans-IO WebSocket framing (RFC 6455 section 5), plain C.
 *
 * Rules
 *  - No I/O, no Python, no callbacks.  The caller owns the parser struct,
 *    feeds bytes with fc_ws_parser_execute() and gets back at most one event
 *    per call: a complete message (text or binary, reassembled from its
 *    fragments), a ping, a pong or a close.
 *  - Incremental: any split of the input, down to one byte per call, gives
 *    the same events and the same error (tests/websocket check every split).
 *  - Strict (RFC 6455 "MUST" everywhere): reserved opcodes, RSV bits that no
 *    negotiated extension defines, masking the wrong way for the role,
 *    fragmented or over-long (> 125 bytes) control frames, a continuation
 *    with no message open or a new message while one is open, a 64-bit
 *    length with its high bit set, invalid close codes (section 7.4) and
 *    invalid UTF-8 in text messages or close reasons are all errors.  Each
 *    has its own fc_ws_error_t and the close code to answer with (1002,
 *    1007, 1009).  Non-minimal length encodings are accepted (the MUST is
 *    the sender's; refusing them would buy nothing).
 *  - Text is validated as it arrives (incrementally across frames and
 *    partial frames), so invalid UTF-8 fails the connection at its first bad
 *    byte, not at the end of the message.  Compressed messages
 *    (FC_WS_ALLOW_RSV1, RSV1 set) are validated by the caller after
 *    inflating, since only the inflated text is UTF-8.
 *  - Limits: max_frame bounds one frame's payload, max_message the sum of a
 *    message's frame payloads (for a compressed message, the compressed
 *    size; the caller bounds the inflated size).  Both are checked at the
 *    frame header, before any payload byte is buffered: 1009.
 *  - Memory: control payloads go to a 125-byte array in the struct; data
 *    payloads are unmasked into one growable message buffer, bounded by
 *    max_message, kept between messages (freed when it grew beyond
 *    FC_WS_KEEP_BUFFER).  A single-frame unmasked message that arrived whole
 *    in one input is returned in place (no copy).
 *  - One thread at a time per parser; parsers share nothing.
 *
 * Theory of operation
 *  Two states: HEAD collects the 2..14 header bytes (straight from the input
 *  when they are all there, else through hdr[]), checks them and computes
 *  the payload length; PAYLOAD moves payload bytes, unmasking word at a time
 *  (fc_ws_mask) into the control array or the message buffer.  When a frame
 *  is complete the parser returns its event (control frames at once, even
 *  between the fragments of a message; a data message at its FIN frame) and
 *  goes back to HEAD.  After a close frame it stops: every later byte is
 *  consumed and ignored (section 5.5.1: nothing may follow a close frame).
 *  An error is sticky: every later call returns FC_WS_EPARSE.
 *
 *  Events point into the parser (or, for the in-place case, into the input)
 *  and stay valid until the next call.
 */
#ifndef FC_WS_FRAME_H
#define FC_WS_FRAME_H
#include <stddef.h>
#include <stdint.h>

#include "fc/status.h"

/* fc_ws_parser_execute returned this; p->error says why.  In FlowCoro's own
 * status range (below -4096, see fc/status.h). */
#define FC_WS_EPARSE (-4300)

/* Opcodes (section 5.2). */
#define FC_WS_OP_CONT   0x0
#define FC_WS_OP_TEXT   0x1
#define FC_WS_OP_BINARY 0x2
#define FC_WS_OP_CLOSE  0x8
#define FC_WS_OP_PING   0x9
#define FC_WS_OP_PONG   0xA

/* Parser options (the `flags` of fc_ws_parser_init). */
#define FC_WS_CLIENT     (1u << 0)  /* we are the client: frames must come unmasked */
#define FC_WS_ALLOW_RSV1 (1u << 1)  /* permessage-deflate: RSV1 on a message's first frame */
#define FC_WS_CALLER_BUFFERS (1u << 2)  /* offer big single-frame binary messages a caller buffer */

/* With FC_WS_CALLER_BUFFERS, a single-frame uncompressed binary message of
 * at least this many bytes is announced by FC_WS_EV_RESERVE, and the caller
 * may hand over the final object's storage (fc_ws_parser_set_dest): the
 * payload is then unmasked straight into it, saving the copy out of the
 * message buffer.  Below it the copy costs less than the round trip. */
#define FC_WS_RESERVE_MIN 1024u

/* The message buffer is freed after a message when it grew past this:
 * an occasional big message must not pin its memory for the connection's
 * life, while ordinary traffic reuses the buffer without allocating. */
#define FC_WS_KEEP_BUFFER (256u * 1024u)

/* Every rejection.  Keep the tables in frame.c in the same order. */
typedef enum {
    FC_WS_OK = 0,
    FC_WS_E_RSV,                   /* 1002 RSV bit set that no extension defines */
    FC_WS_E_OPCODE,                /* 1002 reserved opcode */
    FC_WS_E_UNMASKED,              /* 1002 client-to-server frame not masked */
    FC_WS_E_MASKED,                /* 1002 server-to-client frame masked */
    FC_WS_E_CONTROL_FRAGMENTED,    /* 1002 control frame without FIN */
    FC_WS_E_CONTROL_TOO_LONG,      /* 1002 control payload > 125 bytes */
    FC_WS_E_LENGTH,                /* 1002 64-bit length with the high bit set */
    FC_WS_E_UNEXPECTED_CONT,       /* 1002 continuation frame with no message open */
    FC_WS_E_EXPECTED_CONT,         /* 1002 new data message while one is open */
    FC_WS_E_CLOSE_LENGTH,          /* 1002 close payload of one byte */
    FC_WS_E_CLOSE_CODE,            /* 1002 close code not allowed on the wire */
    FC_WS_E_CLOSE_UTF8,            /* 1007 close reason not UTF-8 */
    FC_WS_E_TEXT_UTF8,             /* 1007 text message not UTF-8 */
    FC_WS_E_FRAME_TOO_BIG,         /* 1009 frame payload > max_frame */
    FC_WS_E_MESSAGE_TOO_BIG,       /* 1009 message > max_message */
    FC_WS_E_NOMEM,                 /* 1011 out of memory */
    FC_WS_E_INFLATE,               /* 1007 compressed message does not inflate (set by the caller) */
    FC_WS_E_INFLATED_TOO_BIG,      /* 1009 inflated message > max_message (set by the caller) */
    FC_WS_N_ERRORS
} fc_ws_error_t;

const char *fc_ws_error_name(int err);     /* short stable name, e.g. "text_utf8" */
const char *fc_ws_error_message(int err);  /* one line for humans */
int fc_ws_error_close_code(int err);       /* the close code to send */

/* Event types. */
enum {
    FC_WS_EV_NONE = 0,   /* all input consumed, no event yet */
    FC_WS_EV_TEXT,       /* a complete text message (validated unless compressed) */
    FC_WS_EV_BINARY,     /* a complete binary message */
    FC_WS_EV_PING,
    FC_WS_EV_PONG,
    FC_WS_EV_CLOSE,      /* close frame; code 0 = no status code (1005 to the app) */
    FC_WS_EV_RESERVE     /* a single-frame binary message of ev->len bytes starts (see
                            FC_WS_CALLER_BUFFERS); the BINARY event follows */
};

typedef struct {
    int type;
    const uint8_t *data;   /* payload (message, ping/pong data, close reason) */
    size_t len;
    int compressed;        /* TEXT/BINARY: RSV1 was set (permessage-deflate) */
    unsigned close_code;   /* CLOSE: the status code, 0 when none was sent */
    size_t consumed;       /* input bytes used by this call */
} fc_ws_event_t;

typedef struct {
    /* options (set by init, constant afterwards) */
    uint32_t flags;
    uint64_t max_frame;
    uint64_t max_message;
    /* current frame.  Invariant: in PAYLOAD, frame_done < frame_len. */
    uint8_t state;
    uint8_t hdr_have;          /* header bytes collected in hdr[] */
    uint8_t hdr[14];
    uint8_t opcode, fin, rsv1, masked;
    uint8_t mask[4];
    uint64_t frame_len, frame_done;
    /* current data message.  Invariant: msg_type is 0 between messages. */
    uint8_t msg_type;          /* 0, FC_WS_OP_TEXT or FC_WS_OP_BINARY */
    uint8_t msg_compressed;
    uint8_t msg_returned;      /* the last event pointed into buf: reset it on the next call */
    uint32_t utf8;             /* fc_utf8 state of the text so far */
    uint8_t *buf;              /* message payload; buf_len <= max_message */
    size_t buf_len, buf_cap;
    uint8_t ctl[125];          /* control payload of the current frame */
    uint8_t *dest;             /* caller's storage for the current frame (after RESERVE), or NULL */
    /* error */
    int error;                 /* fc_ws_error_t, sticky */
    uint64_t offset;           /* input bytes consumed since init */
    uint64_t error_offset;     /* stream offset of the byte that was rejected */
} fc_ws_parser_t;

/* max_frame / max_message: 0 means no limit. */
void fc_ws_parser_init(fc_ws_parser_t *p, uint32_t flags, uint64_t max_frame, uint64_t max_message);
void fc_ws_parser_free(fc_ws_parser_t *p);   /* frees the buffer; the struct may be re-inited */

/* Make the parser fail with `err` (sticky), for errors the caller finds
 * after an event (inflating a compressed message).  Returns FC_WS_EPARSE. */
int fc_ws_parser_set_error(fc_ws_parser_t *p, int err);

/* Right after FC_WS_EV_RESERVE: unmask the announced message into `dest`
 * (room for ev->len bytes, owned by the caller and kept alive until the
 * BINARY event, whose data then is `dest`).  Not calling it is fine: the
 * parser's own buffer is used.  Ignored at any other time. */
void fc_ws_parser_set_dest(fc_ws_parser_t *p, uint8_t *dest);

/* Consume input until one event is complete or the input is used up.
 * Returns 0 (ev->type says what came, ev->consumed how much input was
 * used: call again with the rest) or FC_WS_EPARSE (p->error). */
int fc_ws_parser_execute(fc_ws_parser_t *p, const uint8_t *data, size_t len, fc_ws_event_t *ev);

/* XOR `len` bytes of src with the masking key into dst (dst == src is
 * allowed), as if the first byte were at payload offset `pos`.  Word at a
 * time: byte steps only up to dst's 8-byte alignment and for the tail. */
void fc_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4], uint64_t pos);

/* Frame building.  fc_ws_header_size gives the header length (2..14) for a
 * payload length; fc_ws_write_header writes it to out (which has room for
 * 14 bytes) and returns that length.  mask == NULL: unmasked. */
size_t fc_ws_header_size(uint64_t len, int masked);
size_t fc_ws_write_header(uint8_t *out, int fin, int rsv1, int opcode, uint64_t len,
                          const uint8_t *mask);

/* 1 if `code` may be sent in a close frame (section 7.4: 1000-1003,
 * 1007-1014 as registered with IANA, 3000-4999), else 0. */
int fc_ws_close_code_valid(unsigned code);

#endif
