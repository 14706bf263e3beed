/* tests/csrc/stress_spsc.c — SPSC item ring and byte ring, one producer and
 * one consumer thread.
 *
 * Checks: items arrive exactly once and in order (capacities 1, 3, 64); the
 * byte ring delivers an unbroken byte sequence when writes and reads use
 * random lengths that straddle the wrap point.
 */
#include <sched.h>
#include "stress.h"
#include "lockfree/spsc.h"

typedef struct { fc_spsc_t r; uint32_t n; ledger_t ledger; } ictx_t;

static void *iprod(void *a) {
    ictx_t *c = (ictx_t *)a;
    uint32_t s;
    for (s = 0; s < c->n; s++) {
        item_t *it = item_new(0, s);
        while (!fc_spsc_push(&c->r, it)) sched_yield();
    }
    return NULL;
}

static void *icons(void *a) {
    ictx_t *c = (ictx_t *)a;
    uint32_t s;
    for (s = 0; s < c->n; s++) {
        void *p;
        while (!fc_spsc_pop(&c->r, &p)) sched_yield();
        CHECK(((item_t *)p)->seq == s);          /* exact FIFO */
        ledger_take(&c->ledger, (item_t *)p);
    }
    return NULL;
}

static void run_items(size_t cap, uint32_t n) {
    ictx_t c;
    pthread_t a, b;
    double t0 = now_s();
    CHECK(fc_spsc_init(&c.r, cap) == 0);
    c.n = n;
    ledger_init(&c.ledger, 1, n);
    spawn(&a, iprod, &c); spawn(&b, icons, &c);
    pthread_join(a, NULL); pthread_join(b, NULL);
    ledger_verify(&c.ledger, "spsc");
    CHECK(fc_spsc_size(&c.r) == 0);
    fc_spsc_destroy(&c.r);
    printf("spsc cap=%zu x %u: ok (%.2fs)\n", cap, n, now_s() - t0);
}

typedef struct { fc_bring_t r; uint64_t total; } bctx_t;

static void *bprod(void *a) {
    bctx_t *c = (bctx_t *)a;
    uint64_t sent = 0, seed = 88172645463325252ull;
    unsigned char chunk[300];
    while (sent < c->total) {
        size_t n = (size_t)(rnd(&seed) % sizeof(chunk)) + 1, i, w;
        if (n > c->total - sent) n = (size_t)(c->total - sent);
        for (i = 0; i < n; i++) chunk[i] = (unsigned char)((sent + i) * 131u >> 3);
        for (i = 0; i < n; i += w) {
            w = fc_bring_write(&c->r, chunk + i, n - i);
            if (!w) sched_yield();
        }
        sent += n;
    }
    return NULL;
}

static void *bcons(void *a) {
    bctx_t *c = (bctx_t *)a;
    uint64_t got = 0, seed = 0x2545F4914F6CDD1Dull;
    unsigned char chunk[500];
    while (got < c->total) {
        size_t want = (size_t)(rnd(&seed) % sizeof(chunk)) + 1, n, i;
        n = fc_bring_read(&c->r, chunk, want);
        if (!n) { sched_yield(); continue; }
        for (i = 0; i < n; i++) CHECK(chunk[i] == (unsigned char)((got + i) * 131u >> 3));
        got += n;
    }
    return NULL;
}

static void run_bytes(size_t cap, uint64_t total) {
    bctx_t c;
    pthread_t a, b;
    double t0 = now_s();
    CHECK(fc_bring_init(&c.r, cap) == 0);
    c.total = total;
    spawn(&a, bprod, &c); spawn(&b, bcons, &c);
    pthread_join(a, NULL); pthread_join(b, NULL);
    CHECK(fc_bring_size(&c.r) == 0);
    fc_bring_destroy(&c.r);
    printf("bytes cap=%zu x %llu: ok (%.2fs)\n", cap, (unsigned long long)total, now_s() - t0);
}

int main(int argc, char **argv) {
    long k = stress_scale(argc, argv);
    fc_spsc_t r;
    fc_bring_t br;
    void *out;
    unsigned char buf[8];
    CHECK(fc_spsc_init(&r, 0) != 0);
    CHECK(fc_spsc_init(&r, 3) == 0);
    CHECK(fc_spsc_push(&r, (void *)1) && fc_spsc_push(&r, (void *)2) && fc_spsc_push(&r, (void *)3));
    CHECK(!fc_spsc_push(&r, (void *)4));                 /* bound is 3, storage is 4 */
    CHECK(fc_spsc_pop(&r, &out) && out == (void *)1);
    fc_spsc_destroy(&r);
    CHECK(fc_bring_init(&br, 5) == 0);
    CHECK(fc_bring_write(&br, "abcdefg", 7) == 5);
    CHECK(fc_bring_read(&br, buf, 3) == 3 && memcmp(buf, "abc", 3) == 0);
    CHECK(fc_bring_write(&br, "xyz", 3) == 3);
    CHECK(fc_bring_read(&br, buf, 8) == 5 && memcmp(buf, "dexyz", 5) == 0);
    fc_bring_destroy(&br);

    run_items(1, (uint32_t)(5000 * k));
    run_items(3, (uint32_t)(10000 * k));
    run_items(64, (uint32_t)(20000 * k));
    run_bytes(7, (uint64_t)20000 * k);
    run_bytes(4096, (uint64_t)400000 * k);
    return 0;
}
