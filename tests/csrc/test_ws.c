/* tests/csrc/test_ws.c — C unit test of csrc/ws (frame parser, masking,
 * UTF-8 validator), meant to run under AddressSanitizer + UBSan:
 *
 *   gcc -std=gnu11 -Wall -Wextra -O1 -g -fsanitize=address,undefined -Icsrc \
 *       tests/csrc/test_ws.c csrc/ws/frame.c csrc/ws/utf8.c -o build/csrc/test_ws
 *   build/csrc/test_ws [ROUNDS]
 *
 * What it checks, on random inputs from a fixed seed:
 *  - fc_ws_mask equals a byte loop for every length 0..300 and every 13th
 *    up to 1400, key phase 0..3 and destination alignment 0..7, in place
 *    and copying;
 *  - fc_utf8_validate agrees with a plain reference decoder (written from
 *    RFC 3629's table) on random bytes and mutated valid text, whole and
 *    split at random points;
 *  - the parser gives the same events (type, payload, close code) and the
 *    same error for a random frame stream fed whole, byte by byte and in
 *    random pieces, and every event's payload lies inside the parser's
 *    buffers or the input (ASan checks the reads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/frame.h"
#include "ws/utf8.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

/* ---- masking ---- */
static void test_mask(void)
{
    /* Every length up to 300, then every 13th up to 1400: the AVX2 loop
     * (x86-64 CPUs that have it) takes 512 bytes and more, 128 at a time. */
    uint8_t src[1408], dst[1408 + 8], ref[1408], key[4];
    for (int n = 0; n <= 1400; n += n < 300 ? 1 : 13) {
        for (int phase = 0; phase < 4; phase++) {
            for (int align = 0; align < 8; align++) {
                for (int i = 0; i < n; i++) src[i] = (uint8_t)rnd();
                for (int i = 0; i < 4; i++) key[i] = (uint8_t)rnd();
                for (int i = 0; i < n; i++) ref[i] = src[i] ^ key[(phase + i) & 3];
                fc_ws_mask(dst + align, src, (size_t)n, key, (uint64_t)phase);
                CHECK(memcmp(dst + align, ref, (size_t)n) == 0);
                memcpy(dst + align, src, (size_t)n);
                fc_ws_mask(dst + align, dst + align, (size_t)n, key, (uint64_t)phase);
                CHECK(memcmp(dst + align, ref, (size_t)n) == 0);
            }
        }
    }
}

/* ---- UTF-8 reference: decode one character at a time ---- */
static int ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp; size_t len;
        if (b < 0x80) { i++; continue; }
        else if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
            return 0;       /* overlong */
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static size_t put_cp(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) { o[0] = (uint8_t)(0xE0 | (cp >> 12)); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                        o[2] = (uint8_t)(0x80 | (cp & 0x3F)); return 3; }
    o[0] = (uint8_t)(0xF0 | (cp >> 18)); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_utf8(int rounds)
{
    uint8_t buf[256];
    for (int r = 0; r < rounds * 200; r++) {
        size_t n = 0;
        if (r & 1) {
            n = rnd() % 64;
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        } else {
            /* valid text with the odd mutation */
            while (n < 200) {
                uint32_t cp, k = rnd() % 4;
                cp = k == 0 ? rnd() % 0x80 : k == 1 ? 0x80 + rnd() % 0x780
                   : k == 2 ? 0x800 + rnd() % 0xF800 : 0x10000 + rnd() % 0x100000;
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'a';
                n += put_cp(buf + n, cp);
            }
            if (rnd() % 2) buf[rnd() % n] = (uint8_t)rnd();
            if (rnd() % 4 == 0) n -= rnd() % 4;
        }
        int want = ref_utf8(buf, n);
        CHECK(fc_utf8_valid(buf, n) == want);
        /* split at two random points */
        size_t a = n ? rnd() % (n + 1) : 0, b = n ? rnd() % (n + 1) : 0;
        if (a > b) { size_t t = a; a = b; b = t; }
        uint32_t st = FC_UTF8_ACCEPT;
        fc_utf8_validate(&st, buf, a, NULL);
        fc_utf8_validate(&st, buf + a, b - a, NULL);
        fc_utf8_validate(&st, buf + b, n - b, NULL);
        CHECK((st == FC_UTF8_ACCEPT) == want);
    }
}

/* ---- parser ---- */
#define MAXS 200000
static uint8_t stream[MAXS];

static size_t put_frame(uint8_t *o, int fin, int rsv, int op, const uint8_t *p, size_t n, int masked)
{
    uint8_t key[4] = {(uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd(), (uint8_t)rnd()};
    size_t h = fc_ws_write_header(o, fin, 0, op, n, masked ? key : NULL);
    o[0] |= (uint8_t)(rsv << 4);
    if (masked) fc_ws_mask(o + h, p, n, key, 0);
    else memcpy(o + h, p, n);
    return h + n;
}

/* A digest of the events: type, close code, length and payload hash. */
typedef struct { uint64_t h; int n; int err; } digest_t;

static digest_t run(fc_ws_parser_t *p, const uint8_t *s, size_t n, int mode)
{
    digest_t d = {1469598103934665603ULL, 0, 0};
    size_t i = 0;
    uint8_t *dest = NULL;     /* caller storage after a RESERVE event (exact size: ASan) */
    while (i < n || n == 0) {
        size_t piece = mode == 0 ? n - i : mode == 1 ? 1 : 1 + rnd() % 97;
        if (piece > n - i) piece = n - i;
        /* copy into an exact-size heap block so ASan sees overreads */
        uint8_t *blk = malloc(piece ? piece : 1);
        memcpy(blk, s + i, piece);
        size_t off = 0;
        for (;;) {
            fc_ws_event_t ev;
            int rc = fc_ws_parser_execute(p, blk + off, piece - off, &ev);
            if (rc < 0) { d.err = p->error; free(blk); free(dest); return d; }
            off += ev.consumed;
            if (ev.type == FC_WS_EV_NONE) break;
            if (ev.type == FC_WS_EV_RESERVE) {
                CHECK(dest == NULL && ev.len >= FC_WS_RESERVE_MIN);
                /* every other time, decline: the parser's buffer must serve */
                if (rnd() % 2) {
                    dest = malloc(ev.len);
                    fc_ws_parser_set_dest(p, dest);
                }
                continue;
            }
            d.n++;
            d.h = (d.h ^ (uint64_t)ev.type) * 1099511628211ULL;
            d.h = (d.h ^ ev.close_code) * 1099511628211ULL;
            d.h = (d.h ^ ev.len) * 1099511628211ULL;
            for (size_t k = 0; k < ev.len; k++) d.h = (d.h ^ ev.data[k]) * 1099511628211ULL;
            if (dest && ev.type == FC_WS_EV_BINARY) {
                CHECK(ev.data == dest);
                free(dest);
                dest = NULL;
            }
        }
        CHECK(off == piece);
        free(blk);
        i += piece;
        if (n == 0) break;
    }
    free(dest);
    return d;
}

static void test_parser(int rounds)
{
    uint8_t payload[70000];
    for (int r = 0; r < rounds; r++) {
        int client = r & 1;           /* parse as client: frames unmasked */
        size_t n = 0;
        int nframes = 1 + rnd() % 12;
        for (int f = 0; f < nframes && n < MAXS - 70100; f++) {
            int op, fin = 1, rsv = 0;
            uint32_t k = rnd() % 20;
            size_t len = rnd() % 40;
            if (k == 0) len = 126 + rnd() % 400;
            if (k == 1) len = 65536 + rnd() % 3000;
            static const int ops[] = {0, 1, 2, 8, 9, 10, 1, 2, 0, 0, 3};
            op = ops[rnd() % 11];
            if (op == 8 && len == 1) len = 2;
            if (op >= 8 && len > 125) len = 125;
            if (op < 8) fin = rnd() % 3 != 0;
            if (rnd() % 50 == 0) rsv = (int)(rnd() % 8);
            for (size_t i = 0; i < len; i++)
                payload[i] = (rnd() % 4) ? (uint8_t)('a' + rnd() % 26) : (uint8_t)rnd();
            if (op == 8 && len >= 2) {
                static const unsigned codes[] = {1000, 1001, 1002, 1005, 1011, 3000, 4999, 999};
                unsigned c = codes[rnd() % 8];
                payload[0] = (uint8_t)(c >> 8); payload[1] = (uint8_t)c;
            }
            int masked = client ? (rnd() % 40 == 0) : (rnd() % 40 != 0);
            n += put_frame(stream + n, fin, rsv, op, payload, len, masked);
        }
        uint32_t flags = (client ? FC_WS_CLIENT : 0) | ((r & 2) ? FC_WS_ALLOW_RSV1 : 0);
        uint64_t maxm = (r & 4) ? 300 : 0;
        digest_t d[3];
        for (int mode = 0; mode < 3; mode++) {
            fc_ws_parser_t p;
            /* caller buffers on for some modes only: the events must not change */
            fc_ws_parser_init(&p, flags | (((r >> 3) + mode) % 2 ? FC_WS_CALLER_BUFFERS : 0), 0, maxm);
            d[mode] = run(&p, stream, n, mode);
            fc_ws_parser_free(&p);
        }
        if (!(d[0].h == d[1].h && d[0].n == d[1].n && d[0].err == d[1].err)) fprintf(stderr, "r=%d client=%d flags=%u n=%zu: whole n=%d err=%d, bytes n=%d err=%d\n", r, client, flags, n, d[0].n, d[0].err, d[1].n, d[1].err);
        CHECK(d[0].h == d[1].h && d[0].n == d[1].n && d[0].err == d[1].err);
        CHECK(d[0].h == d[2].h && d[0].n == d[2].n && d[0].err == d[2].err);
    }
}

static void test_headers(void)
{
    uint8_t o[14];
    static const uint64_t lens[] = {0, 125, 126, 65535, 65536, 1ULL << 40};
    for (int i = 0; i < 6; i++) {
        for (int m = 0; m < 2; m++) {
            uint8_t key[4] = {1, 2, 3, 4};
            size_t h = fc_ws_write_header(o, 1, 1, 2, lens[i], m ? key : NULL);
            CHECK(h == fc_ws_header_size(lens[i], m));
            CHECK(o[0] == 0xC2);
        }
    }
    CHECK(strcmp(fc_ws_error_name(FC_WS_E_TEXT_UTF8), "text_utf8") == 0);
    CHECK(fc_ws_error_close_code(FC_WS_E_MESSAGE_TOO_BIG) == 1009);
    CHECK(strcmp(fc_ws_error_name(-1), "unknown") == 0);
    CHECK(fc_ws_error_close_code(999) == 1002);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    test_headers();
    test_mask();
    test_utf8(rounds);
    test_parser(rounds);
    printf("test_ws: ok (%d rounds)\n", rounds);
    return 0;
}
