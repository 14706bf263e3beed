/* tests/csrc/stress.h — shared scaffolding of the C stress drivers.
 *
 * Every driver checks "every item produced is consumed exactly once": items
 * are heap records {producer, seq, check} written before the hand-off and
 * read after it, so a missing happens-before edge shows up as a data race
 * under ThreadSanitizer (make tsan-test) and a lost or doubled item as a
 * failed count.  Sizes scale with the first argument (a multiplier; `make
 * stress` passes a large one) and FC_STRESS_SCALE in the environment.
 *
 * The drivers use plain C11 atomics for their own bookkeeping (seen-counts):
 * that is test scaffolding, not csrc/, so fc/atomic.h's rule does not apply.
 */
#ifndef FC_TESTS_STRESS_H
#define FC_TESTS_STRESS_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    exit(1); } } while (0)

typedef struct {
    uint32_t producer;
    uint32_t seq;
    uint64_t check;         /* a function of (producer, seq): torn/unsynchronized reads fail it */
} item_t;

static inline uint64_t item_check(uint32_t p, uint32_t s) {
    uint64_t x = ((uint64_t)p << 32 | s) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

static inline item_t *item_new(uint32_t p, uint32_t s) {
    item_t *it = (item_t *)malloc(sizeof(*it));
    CHECK(it != NULL);
    it->producer = p; it->seq = s; it->check = item_check(p, s);
    return it;
}

/* seen[p * per + s] counts how often item (p, s) was consumed. */
typedef struct {
    _Atomic uint32_t *seen;
    uint32_t producers, per;
} ledger_t;

static inline void ledger_init(ledger_t *l, uint32_t producers, uint32_t per) {
    l->seen = (_Atomic uint32_t *)calloc((size_t)producers * per, sizeof(uint32_t));
    CHECK(l->seen != NULL);
    l->producers = producers; l->per = per;
}

/* Verifies and frees the item; records it. */
static inline void ledger_take(ledger_t *l, item_t *it) {
    CHECK(it->producer < l->producers && it->seq < l->per);
    CHECK(it->check == item_check(it->producer, it->seq));
    atomic_fetch_add_explicit(&l->seen[(size_t)it->producer * l->per + it->seq], 1,
                              memory_order_relaxed);
    free(it);
}

static inline void ledger_verify(ledger_t *l, const char *what) {
    size_t i, n = (size_t)l->producers * l->per, lost = 0, dup = 0;
    for (i = 0; i < n; i++) {
        uint32_t c = atomic_load(&l->seen[i]);
        if (c == 0) lost++;
        else if (c > 1) dup++;
    }
    if (lost || dup) {
        fprintf(stderr, "%s: %zu lost, %zu duplicated of %zu\n", what, lost, dup, n);
        exit(1);
    }
    free(l->seen);
}

static inline long stress_scale(int argc, char **argv) {
    long s = 1;
    const char *e = getenv("FC_STRESS_SCALE");
    setvbuf(stdout, NULL, _IOLBF, 0);      /* progress lines even if killed */
    if (argc > 1) s = atol(argv[1]);
    else if (e) s = atol(e);
    return s > 0 ? s : 1;
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void spawn(pthread_t *t, void *(*fn)(void *), void *arg) {
    CHECK(pthread_create(t, NULL, fn, arg) == 0);
}

/* xorshift64: cheap per-thread randomness for sizes and choices. */
static inline uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

#endif
