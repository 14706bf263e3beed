/* ws/frame.c — WebSocket frame parser, masking and frame headers; the
 * rules and the theory of operation are in frame.h. */
#include "ws/frame.h"

#include <stdlib.h>
#include <string.h>

#include "ws/utf8.h"

enum { S_HEAD = 0, S_PAYLOAD, S_CLOSED, S_ERROR };

/* Indexed by fc_ws_error_t. */
static const struct { const char *name; int close_code; const char *message; } errors[] = {
    [FC_WS_OK]                   = {"ok", 1000, "no error"},
    [FC_WS_E_RSV]                = {"rsv", 1002, "reserved bit set with no extension defining it"},
    [FC_WS_E_OPCODE]             = {"opcode", 1002, "reserved opcode"},
    [FC_WS_E_UNMASKED]           = {"unmasked", 1002, "client frame is not masked"},
    [FC_WS_E_MASKED]             = {"masked", 1002, "server frame is masked"},
    [FC_WS_E_CONTROL_FRAGMENTED] = {"control_fragmented", 1002, "fragmented control frame"},
    [FC_WS_E_CONTROL_TOO_LONG]   = {"control_too_long", 1002, "control frame payload over 125 bytes"},
    [FC_WS_E_LENGTH]             = {"length", 1002, "payload length has its most significant bit set"},
    [FC_WS_E_UNEXPECTED_CONT]    = {"unexpected_continuation", 1002, "continuation frame with no message started"},
    [FC_WS_E_EXPECTED_CONT]      = {"expected_continuation", 1002, "new data frame while a fragmented message is open"},
    [FC_WS_E_CLOSE_LENGTH]       = {"close_length", 1002, "close frame payload of one byte"},
    [FC_WS_E_CLOSE_CODE]         = {"close_code", 1002, "invalid close code"},
    [FC_WS_E_CLOSE_UTF8]         = {"close_utf8", 1007, "close reason is not valid UTF-8"},
    [FC_WS_E_TEXT_UTF8]          = {"text_utf8", 1007, "text message is not valid UTF-8"},
    [FC_WS_E_FRAME_TOO_BIG]      = {"frame_too_big", 1009, "frame payload over the limit"},
    [FC_WS_E_MESSAGE_TOO_BIG]    = {"message_too_big", 1009, "message over the limit"},
    [FC_WS_E_NOMEM]              = {"nomem", 1011, "out of memory"},
    [FC_WS_E_INFLATE]            = {"inflate", 1007, "compressed message does not inflate"},
    [FC_WS_E_INFLATED_TOO_BIG]   = {"inflated_too_big", 1009, "inflated message over the limit"},
};

const char *fc_ws_error_name(int err)
{
    return (err >= 0 && err < FC_WS_N_ERRORS) ? errors[err].name : "unknown";
}

const char *fc_ws_error_message(int err)
{
    return (err >= 0 && err < FC_WS_N_ERRORS) ? errors[err].message : "unknown error";
}

int fc_ws_error_close_code(int err)
{
    return (err >= 0 && err < FC_WS_N_ERRORS) ? errors[err].close_code : 1002;
}

int fc_ws_close_code_valid(unsigned code)
{
    /* 1004 reserved, 1005/1006/1015 must never be sent (7.4.1); 1016-2999
     * are unassigned or for future extensions (7.4.2); 3000-4999 belong to
     * libraries and applications. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014)
        || (code >= 3000 && code <= 4999);
}

/* ---- masking -------------------------------------------------------------- */

#if defined(__GNUC__)
/* XOR with the key word, four W-byte vectors per round (GCC/clang vector
 * extension), as the body of a function (dst, src, len, key8) that returns
 * how many bytes it did (a multiple of 4 * W).  dst is 8-byte aligned and
 * key8 is the key word at dst's phase.  memcpy keeps the possibly unaligned
 * source loads defined behaviour (it compiles to unaligned vector loads).
 * A macro, not a shared inline function: a vector type wider than the
 * target's registers is lowered through the stack, so each width needs its
 * own type in its own function. */
#define FC_WS_MASK_ROUNDS(VT, W)                                            \
    VT kv;                                                                  \
    for (int j = 0; j < (W) / 8; j++) kv[j] = key8;                         \
    size_t i = 0;                                                           \
    for (; len - i >= 4 * (W); i += 4 * (W)) {                              \
        VT a, b, c, d;                                                      \
        memcpy(&a, src + i, W);                                             \
        memcpy(&b, src + i + (W), W);                                       \
        memcpy(&c, src + i + 2 * (W), W);                                   \
        memcpy(&d, src + i + 3 * (W), W);                                   \
        a ^= kv; b ^= kv; c ^= kv; d ^= kv;                                 \
        memcpy(dst + i, &a, W);                                             \
        memcpy(dst + i + (W), &b, W);                                       \
        memcpy(dst + i + 2 * (W), &c, W);                                   \
        memcpy(dst + i + 3 * (W), &d, W);                                   \
    }                                                                       \
    return i;

/* 16-byte vectors: SSE2 on x86-64, NEON on arm64, plain words elsewhere.
 * gcc -O2 does not vectorise fc_ws_mask's word loop by itself; this
 * doubles its throughput on large payloads. */
static inline size_t mask_v16(uint8_t *dst, const uint8_t *src, size_t len, uint64_t key8)
{
    typedef uint64_t v2u64 __attribute__((vector_size(16)));
    FC_WS_MASK_ROUNDS(v2u64, 16)
}

#if defined(__x86_64__)
/* 32-byte vectors on CPUs with AVX2, chosen at run time from 512 bytes
 * (wheels are built for baseline x86-64): ~1.7x the SSE2 rate where the
 * data is in cache. */
__attribute__((target("avx2")))
static size_t mask_avx2(uint8_t *dst, const uint8_t *src, size_t len, uint64_t key8)
{
    typedef uint64_t v4u64 __attribute__((vector_size(32)));
    FC_WS_MASK_ROUNDS(v4u64, 32)
}
#define FC_WS_AVX2_MIN 512
#endif
#endif

void fc_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4], uint64_t pos)
{
    size_t i = 0;
    /* Byte steps until dst is 8-byte aligned (stores then never straddle a
     * cache line), at most 7. */
    while (i < len && ((uintptr_t)(dst + i) & 7u)) {
        dst[i] = src[i] ^ key[(pos + i) & 3u];
        i++;
    }
    if (len - i >= 8) {
        /* The key repeats every 4 bytes, so one 8-byte key word that starts
         * at the right phase serves every later 8-byte step. */
        uint8_t kb[8];
        uint64_t k;
        for (int j = 0; j < 8; j++) kb[j] = key[(pos + i + (size_t)j) & 3u];
        memcpy(&k, kb, 8);
#if defined(FC_WS_AVX2_MIN)
        /* __builtin_cpu_supports reads what libgcc's constructor found:
         * a load and a bit test, no race. */
        if (len - i >= FC_WS_AVX2_MIN && __builtin_cpu_supports("avx2"))
            i += mask_avx2(dst + i, src + i, len - i, k);
#endif
#if defined(__GNUC__)
        i += mask_v16(dst + i, src + i, len - i, k);
#endif
        /* 8 bytes per step: the portable path, and the tail of the above. */
        for (; len - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, src + i, 8);
            w ^= k;
            memcpy(dst + i, &w, 8);
        }
    }
    for (; i < len; i++) dst[i] = src[i] ^ key[(pos + i) & 3u];
}

/* ---- frame headers --------------------------------------------------------- */

size_t fc_ws_header_size(uint64_t len, int masked)
{
    size_t n = len < 126 ? 2 : (len <= 0xFFFF ? 4 : 10);
    return n + (masked ? 4 : 0);
}

size_t fc_ws_write_header(uint8_t *out, int fin, int rsv1, int opcode, uint64_t len,
                          const uint8_t *mask)
{
    size_t n;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = m | (uint8_t)len;
        n = 2;
    } else if (len <= 0xFFFF) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* ---- parser ---------------------------------------------------------------- */

void fc_ws_parser_init(fc_ws_parser_t *p, uint32_t flags, uint64_t max_frame, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->flags = flags;
    p->max_frame = max_frame ? max_frame : UINT64_MAX;
    p->max_message = max_message ? max_message : UINT64_MAX;
    p->state = S_HEAD;
    p->utf8 = FC_UTF8_ACCEPT;
}

void fc_ws_parser_free(fc_ws_parser_t *p)
{
    free(p->buf);
    p->buf = NULL;
    p->buf_len = p->buf_cap = 0;
}

static int fail(fc_ws_parser_t *p, int err, uint64_t at)
{
    p->error = err;
    p->error_offset = at;
    p->state = S_ERROR;
    return FC_WS_EPARSE;
}

void fc_ws_parser_set_dest(fc_ws_parser_t *p, uint8_t *dest)
{
    if (p->state == S_PAYLOAD && p->frame_done == 0 && p->opcode == FC_WS_OP_BINARY)
        p->dest = dest;
}

int fc_ws_parser_set_error(fc_ws_parser_t *p, int err)
{
    return fail(p, err, p->offset);
}

/* Header length (2, 4 or 10, plus 4 when masked) from its second byte. */
static size_t header_len(uint8_t b1)
{
    size_t n = 2;
    uint8_t l7 = b1 & 0x7F;
    if (l7 == 126) n += 2;
    else if (l7 == 127) n += 8;
    if (b1 & 0x80) n += 4;
    return n;
}

/* Make room for `more` bytes after buf_len.  The caller checked
 * buf_len + more <= max_message, so growth is bounded by the limit. */
static int reserve(fc_ws_parser_t *p, uint64_t more)
{
    uint64_t need = (uint64_t)p->buf_len + more;
    if (need <= p->buf_cap) return 0;
    if (need > SIZE_MAX / 2) return -1;
    size_t cap = p->buf_cap ? p->buf_cap : 256;
    while (cap < need) cap *= 2;
    if (cap > p->max_message && need <= p->max_message) cap = (size_t)p->max_message;
    uint8_t *nb = realloc(p->buf, cap);
    if (!nb) return -1;
    p->buf = nb;
    p->buf_cap = cap;
    return 0;
}

/* Check a complete header (h points at its `len` bytes) and set up the
 * frame.  `at` is the stream offset of the header's first byte. */
static int on_header(fc_ws_parser_t *p, const uint8_t *h, uint64_t at)
{
    uint8_t b0 = h[0], b1 = h[1];
    unsigned op = b0 & 0x0F;
    unsigned rsv = (b0 >> 4) & 7u;
    uint64_t len = b1 & 0x7F;
    size_t n = 2;
    int control = op >= 8;

    if (op != FC_WS_OP_CONT && op != FC_WS_OP_TEXT && op != FC_WS_OP_BINARY &&
        op != FC_WS_OP_CLOSE && op != FC_WS_OP_PING && op != FC_WS_OP_PONG)
        return fail(p, FC_WS_E_OPCODE, at);
    /* RSV2/RSV3: no extension we know defines them.  RSV1: permessage-deflate
     * only, and only on the first frame of a data message (RFC 7692 6.1). */
    if ((rsv & 3u) ||
        ((rsv & 4u) && (!(p->flags & FC_WS_ALLOW_RSV1) || control || op == FC_WS_OP_CONT)))
        return fail(p, FC_WS_E_RSV, at);
    if (p->flags & FC_WS_CLIENT) {
        if (b1 & 0x80) return fail(p, FC_WS_E_MASKED, at + 1);
    } else if (!(b1 & 0x80)) {
        return fail(p, FC_WS_E_UNMASKED, at + 1);
    }
    if (control) {
        if (!(b0 & 0x80)) return fail(p, FC_WS_E_CONTROL_FRAGMENTED, at);
        if (len > 125) return fail(p, FC_WS_E_CONTROL_TOO_LONG, at + 1);
    } else if (op == FC_WS_OP_CONT) {
        if (!p->msg_type) return fail(p, FC_WS_E_UNEXPECTED_CONT, at);
    } else if (p->msg_type) {
        return fail(p, FC_WS_E_EXPECTED_CONT, at);
    }
    if (len == 126) {
        len = ((uint64_t)h[2] << 8) | h[3];
        n = 4;
    } else if (len == 127) {
        if (h[2] & 0x80) return fail(p, FC_WS_E_LENGTH, at + 2);
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
        n = 10;
    }
    if (!control) {
        if (len > p->max_frame) return fail(p, FC_WS_E_FRAME_TOO_BIG, at);
        if (len > p->max_message - p->buf_len) return fail(p, FC_WS_E_MESSAGE_TOO_BIG, at);
    }
    p->opcode = (uint8_t)op;
    p->fin = (b0 & 0x80) != 0;
    p->rsv1 = (rsv & 4u) != 0;
    p->masked = (b1 & 0x80) != 0;
    if (p->masked) memcpy(p->mask, h + n, 4);
    p->frame_len = len;
    p->frame_done = 0;
    if (op == FC_WS_OP_TEXT || op == FC_WS_OP_BINARY) {
        p->msg_type = (uint8_t)op;
        p->msg_compressed = p->rsv1;
        p->utf8 = FC_UTF8_ACCEPT;
    }
    return 0;
}

/* The current frame is complete: fill ev when it ends something. */
static int on_frame_end(fc_ws_parser_t *p, fc_ws_event_t *ev, uint64_t at)
{
    switch (p->opcode) {
    case FC_WS_OP_PING:
    case FC_WS_OP_PONG:
        ev->type = p->opcode == FC_WS_OP_PING ? FC_WS_EV_PING : FC_WS_EV_PONG;
        ev->data = p->ctl;
        ev->len = (size_t)p->frame_len;
        return 0;
    case FC_WS_OP_CLOSE: {
        size_t n = (size_t)p->frame_len;
        if (n == 1) return fail(p, FC_WS_E_CLOSE_LENGTH, at);
        ev->type = FC_WS_EV_CLOSE;
        ev->close_code = 0;
        ev->data = p->ctl;
        ev->len = 0;
        if (n >= 2) {
            unsigned code = ((unsigned)p->ctl[0] << 8) | p->ctl[1];
            if (!fc_ws_close_code_valid(code)) return fail(p, FC_WS_E_CLOSE_CODE, at);
            if (!fc_utf8_valid(p->ctl + 2, n - 2)) return fail(p, FC_WS_E_CLOSE_UTF8, at);
            ev->close_code = code;
            ev->data = p->ctl + 2;
            ev->len = n - 2;
        }
        p->state = S_CLOSED;
        return 0;
    }
    default:  /* data frame */
        if (!p->fin) return 0;
        if (p->msg_type == FC_WS_OP_TEXT && !p->msg_compressed && p->utf8 != FC_UTF8_ACCEPT)
            return fail(p, FC_WS_E_TEXT_UTF8, at);
        if (p->dest) {
            /* the caller's storage holds the whole (single-frame) message */
            ev->type = FC_WS_EV_BINARY;
            ev->data = p->dest;
            ev->len = (size_t)p->frame_len;
            p->dest = NULL;
            p->msg_type = 0;
            return 0;
        }
        ev->type = p->msg_type == FC_WS_OP_TEXT ? FC_WS_EV_TEXT : FC_WS_EV_BINARY;
        ev->data = p->buf;
        ev->len = p->buf_len;
        ev->compressed = p->msg_compressed;
        p->msg_type = 0;
        p->msg_returned = 1;
        return 0;
    }
}

int fc_ws_parser_execute(fc_ws_parser_t *p, const uint8_t *data, size_t len, fc_ws_event_t *ev)
{
    size_t i = 0;
    ev->type = FC_WS_EV_NONE;
    ev->data = NULL;
    ev->len = 0;
    ev->compressed = 0;
    ev->close_code = 0;
    ev->consumed = 0;
    if (p->state == S_ERROR) return FC_WS_EPARSE;
    if (p->msg_returned) {
        /* The caller is done with the last message (events live until the
         * next call): reuse the buffer, or drop it if it grew big. */
        p->msg_returned = 0;
        p->buf_len = 0;
        if (p->buf_cap > FC_WS_KEEP_BUFFER) fc_ws_parser_free(p);
    }
    if (p->state == S_CLOSED) {
        p->offset += len;
        ev->consumed = len;
        return 0;
    }
    while (i < len) {
        if (p->state == S_HEAD) {
            const uint8_t *h;
            size_t need;
            uint64_t at = p->offset + i - p->hdr_have;
            if (p->hdr_have == 0 && len - i >= 2 && len - i >= header_len(data[i + 1])) {
                /* Whole header in the input: read it in place. */
                h = data + i;
                need = header_len(data[i + 1]);
                i += need;
            } else {
                if (p->hdr_have < 2) {
                    p->hdr[p->hdr_have++] = data[i++];
                    /* Two bytes may be the whole header (unmasked, short
                     * length): go on, or a 0-length frame at the end of
                     * the input would wait for the next one. */
                    if (p->hdr_have < 2) continue;
                }
                need = header_len(p->hdr[1]);
                size_t take = need - p->hdr_have;
                if (take > len - i) take = len - i;
                memcpy(p->hdr + p->hdr_have, data + i, take);
                p->hdr_have += (uint8_t)take;
                i += take;
                if (p->hdr_have < need) break;
                h = p->hdr;
                p->hdr_have = 0;
            }
            if (on_header(p, h, at) < 0) {
                p->offset += i;
                ev->consumed = i;
                return FC_WS_EPARSE;
            }
            if (p->frame_len == 0) {
                if (on_frame_end(p, ev, p->offset + i) < 0) goto error;
                if (ev->type != FC_WS_EV_NONE) goto done;
                continue;
            }
            /* In place: an unmasked single-frame message that is all here. */
            if (!p->masked && p->opcode != FC_WS_OP_CONT && p->opcode < 8 && p->fin &&
                p->frame_len <= len - i) {
                size_t n = (size_t)p->frame_len;
                if (p->opcode == FC_WS_OP_TEXT && !p->msg_compressed) {
                    size_t bad = 0;
                    if (fc_utf8_validate(&p->utf8, data + i, n, &bad) != FC_UTF8_ACCEPT) {
                        uint64_t at_bad = p->offset + i + (p->utf8 == FC_UTF8_REJECT ? bad : n);
                        i += n;
                        p->offset += i;
                        ev->consumed = i;
                        return fail(p, FC_WS_E_TEXT_UTF8, at_bad);
                    }
                }
                ev->type = p->opcode == FC_WS_OP_TEXT ? FC_WS_EV_TEXT : FC_WS_EV_BINARY;
                ev->data = data + i;
                ev->len = n;
                ev->compressed = p->msg_compressed;
                p->msg_type = 0;
                i += n;
                goto done;
            }
            p->state = S_PAYLOAD;
            p->dest = NULL;
            if ((p->flags & FC_WS_CALLER_BUFFERS) && p->opcode == FC_WS_OP_BINARY && p->fin &&
                !p->msg_compressed && p->frame_len >= FC_WS_RESERVE_MIN) {
                ev->type = FC_WS_EV_RESERVE;
                ev->len = (size_t)p->frame_len;
                goto done;
            }
            continue;
        }
        /* S_PAYLOAD */
        uint64_t left = p->frame_len - p->frame_done;
        size_t n = left < (uint64_t)(len - i) ? (size_t)left : len - i;
        uint8_t *dst;
        if (p->opcode >= 8) {
            dst = p->ctl + p->frame_done;
        } else if (p->dest) {
            dst = p->dest + p->frame_done;
        } else {
            if (p->frame_done == 0 && reserve(p, p->frame_len) < 0) {
                p->offset += i;
                ev->consumed = i;
                return fail(p, FC_WS_E_NOMEM, p->offset);
            }
            dst = p->buf + p->buf_len;
        }
        if (p->masked) fc_ws_mask(dst, data + i, n, p->mask, p->frame_done);
        else memcpy(dst, data + i, n);
        if (p->opcode < 8) {
            if (p->msg_type == FC_WS_OP_TEXT && !p->msg_compressed) {
                size_t bad = 0;
                if (fc_utf8_validate(&p->utf8, dst, n, &bad) == FC_UTF8_REJECT) {
                    uint64_t at_bad = p->offset + i + bad;
                    i += n;
                    p->offset += i;
                    ev->consumed = i;
                    return fail(p, FC_WS_E_TEXT_UTF8, at_bad);
                }
            }
            if (!p->dest) p->buf_len += n;
        }
        p->frame_done += n;
        i += n;
        if (p->frame_done == p->frame_len) {
            p->state = S_HEAD;
            if (on_frame_end(p, ev, p->offset + i) < 0) goto error;
            if (ev->type != FC_WS_EV_NONE) goto done;
        }
    }
done:
    p->offset += i;
    ev->consumed = i;
    return 0;
error:
    p->offset += i;
    ev->consumed = i;
    return FC_WS_EPARSE;
}
