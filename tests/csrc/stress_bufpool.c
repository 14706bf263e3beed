/* tests/csrc/stress_bufpool.c — size-class buffer pool.
 *
 * Checks: class rounding and alignment; steady state allocates nothing
 * (misses stop growing once the caches are warm); no two holders ever share
 * a buffer (each writes its own pattern and verifies it before release);
 * buffers released by another thread than the acquirer (handed over through
 * an MPMC queue); destroy with buffers still out (the pool lives on until
 * the last release).
 */
#include <sched.h>
#include "stress.h"
#include "lockfree/mpmc.h"
#include "pool/bufpool.h"

typedef struct { fc_bufpool_t *p; fc_mpmc_t *handoff; uint32_t n; uint32_t id; } arg_t;

static void fill(unsigned char *b, size_t n, uint32_t tag) {
    size_t i;
    for (i = 0; i < n; i += 61) b[i] = (unsigned char)(tag + i);
    b[n - 1] = (unsigned char)(tag + (n - 1));
}

static void verify(const unsigned char *b, size_t n, uint32_t tag) {
    size_t i;
    for (i = 0; i < n; i += 61) CHECK(b[i] == (unsigned char)(tag + i));
    CHECK(b[n - 1] == (unsigned char)(tag + (n - 1)));
}

typedef struct { unsigned char *buf; size_t n; uint32_t tag; } held_t;

static void *worker(void *a) {
    arg_t *arg = (arg_t *)a;
    uint64_t seed = 0xABCDEFull + arg->id;
    uint32_t i;
    for (i = 0; i < arg->n; i++) {
        size_t n = (size_t)(rnd(&seed) % 70000) + 1;
        unsigned char *b = (unsigned char *)fc_bufpool_acquire(arg->p, n, NULL);
        uint32_t tag = arg->id * 1000003u + i;
        held_t *h;
        void *other;
        CHECK(b != NULL && ((uintptr_t)b & 63) == 0 && fc_bufpool_capacity(b) >= n);
        fill(b, n, tag);
        sched_yield();
        verify(b, n, tag);
        if (i & 1) {                 /* hand it to another thread to release */
            h = (held_t *)malloc(sizeof(*h));
            CHECK(h != NULL);
            h->buf = b; h->n = n; h->tag = tag;
            while (!fc_mpmc_push(arg->handoff, h)) sched_yield();
        } else {
            CHECK(fc_bufpool_release(b) == 0);
        }
        if (fc_mpmc_pop(arg->handoff, &other)) {
            h = (held_t *)other;
            verify(h->buf, h->n, h->tag);
            CHECK(fc_bufpool_release(h->buf) == 0);
            free(h);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    long k = stress_scale(argc, argv);
    fc_bufpool_t *p;
    fc_mpmc_t handoff;
    fc_bufpool_stats_t st;
    size_t cap;
    void *b, *held[8], *other;
    pthread_t t[4];
    arg_t a[4];
    int i;
    double t0 = now_s();

    CHECK(fc_bufpool_create(&p, 0) == 0);
    b = fc_bufpool_acquire(p, 0, &cap);
    CHECK(b && cap == 256);
    CHECK(fc_bufpool_release(b) == 0);
    b = fc_bufpool_acquire(p, 257, &cap);
    CHECK(b && cap == 512);
    CHECK(fc_bufpool_release(b) == 0);
    b = fc_bufpool_acquire(p, 65536, &cap);
    CHECK(b && cap == 65536);
    CHECK(fc_bufpool_release(b) == 0);
    b = fc_bufpool_acquire(p, (1 << 20) + 1, &cap);       /* oversize: not pooled */
    CHECK(b && cap == (1 << 20) + 1);
    CHECK(fc_bufpool_release(b) == 0);
    /* Steady state: the same read size again and again costs no malloc. */
    fc_bufpool_stats(p, &st);
    {
        uint64_t misses = st.misses;
        for (i = 0; i < 1000; i++) {
            b = fc_bufpool_acquire(p, 65536, NULL);
            CHECK(fc_bufpool_release(b) == 0);
        }
        fc_bufpool_stats(p, &st);
        CHECK(st.misses == misses && st.outstanding == 0);
    }

    /* Threads, cross-thread release through one shared hand-off queue. */
    CHECK(fc_mpmc_init(&handoff, 64) == 0);
    for (i = 0; i < 4; i++) {
        a[i].p = p; a[i].handoff = &handoff; a[i].n = (uint32_t)(3000 * k); a[i].id = (uint32_t)i;
        spawn(&t[i], worker, &a[i]);
    }
    for (i = 0; i < 4; i++) pthread_join(t[i], NULL);
    while (fc_mpmc_pop(&handoff, &other)) {
        held_t *h = (held_t *)other;
        verify(h->buf, h->n, h->tag);
        CHECK(fc_bufpool_release(h->buf) == 0);
        free(h);
    }
    fc_bufpool_stats(p, &st);
    printf("bufpool: hits %llu, misses %llu, frees %llu, cached %llu (%llu KiB)\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.frees, (unsigned long long)st.cached,
           (unsigned long long)(st.cached_bytes >> 10));
    CHECK(st.outstanding == 0);
    fc_mpmc_destroy(&handoff);

    /* Destroy with buffers out: they stay usable and release frees them. */
    for (i = 0; i < 8; i++) held[i] = fc_bufpool_acquire(p, (size_t)100 << i, NULL);
    fc_bufpool_destroy(p);
    for (i = 0; i < 8; i++) {
        fill((unsigned char *)held[i], (size_t)100 << i, 7);
        CHECK(fc_bufpool_release(held[i]) == 0);
    }
    printf("bufpool: ok (%.2fs)\n", now_s() - t0);
    return 0;
}
