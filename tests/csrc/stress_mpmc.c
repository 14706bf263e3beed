/* tests/csrc/stress_mpmc.c — Vyukov MPMC queue (+ the park event count)
 * under several producers and consumers.
 *
 * Checks: every item consumed exactly once; each consumer sees any one
 * producer's items in increasing order (FIFO per producer); capacities 1, 3
 * (not a power of two: the modulo path), 4 and 1024; consumers that spin and
 * consumers that sleep on fc_park (no lost wake-up: the run would hang).
 */
#include <sched.h>
#include "stress.h"
#include "lockfree/mpmc.h"
#include "lockfree/park.h"

#define SENTINEL ((void *)1)

typedef struct {
    fc_mpmc_t q;
    fc_park_t not_empty, not_full;
    int blocking;
    uint32_t per, producers;
    ledger_t ledger;
} ctx_t;

typedef struct { ctx_t *c; uint32_t id; } arg_t;

static void push(ctx_t *c, void *it) {
    while (!fc_mpmc_push(&c->q, it)) {
        if (c->blocking) {
            uint32_t key = fc_park_prepare(&c->not_full);
            if (fc_mpmc_push(&c->q, it)) { fc_park_done(&c->not_full); break; }
            fc_park_wait(&c->not_full, key, -1, 0);
            fc_park_done(&c->not_full);
        } else {
            sched_yield();
        }
    }
    if (c->blocking) fc_park_notify(&c->not_empty, 1);
}

static void *pop(ctx_t *c) {
    void *it;
    while (!fc_mpmc_pop(&c->q, &it)) {
        if (c->blocking) {
            uint32_t key = fc_park_prepare(&c->not_empty);
            if (fc_mpmc_pop(&c->q, &it)) { fc_park_done(&c->not_empty); goto got; }
            fc_park_wait(&c->not_empty, key, -1, 0);
            fc_park_done(&c->not_empty);
        } else {
            sched_yield();
        }
    }
got:
    if (c->blocking) fc_park_notify(&c->not_full, 1);
    return it;
}

static void *producer(void *a) {
    arg_t *arg = (arg_t *)a;
    uint32_t s;
    for (s = 0; s < arg->c->per; s++) push(arg->c, item_new(arg->id, s));
    return NULL;
}

static void *consumer(void *a) {
    arg_t *arg = (arg_t *)a;
    ctx_t *c = arg->c;
    int64_t *last = (int64_t *)malloc(c->producers * sizeof(int64_t));
    uint32_t i;
    CHECK(last != NULL);
    for (i = 0; i < c->producers; i++) last[i] = -1;
    for (;;) {
        item_t *it = (item_t *)pop(c);
        if ((void *)it == SENTINEL) break;
        CHECK((int64_t)it->seq > last[it->producer]);    /* FIFO per producer */
        last[it->producer] = it->seq;
        ledger_take(&c->ledger, it);
    }
    free(last);
    return NULL;
}

static void run(size_t cap, uint32_t np, uint32_t nc, uint32_t per, int blocking) {
    ctx_t c;
    pthread_t tp[16], tc[16];
    arg_t ap[16], ac[16];
    uint32_t i;
    double t0 = now_s();
    CHECK(fc_mpmc_init(&c.q, cap) == 0);
    CHECK(fc_mpmc_capacity(&c.q) == cap);
    fc_park_init(&c.not_empty);
    fc_park_init(&c.not_full);
    c.blocking = blocking; c.per = per; c.producers = np;
    ledger_init(&c.ledger, np, per);
    for (i = 0; i < nc; i++) { ac[i].c = &c; ac[i].id = i; spawn(&tc[i], consumer, &ac[i]); }
    for (i = 0; i < np; i++) { ap[i].c = &c; ap[i].id = i; spawn(&tp[i], producer, &ap[i]); }
    for (i = 0; i < np; i++) pthread_join(tp[i], NULL);
    for (i = 0; i < nc; i++) push(&c, SENTINEL);
    for (i = 0; i < nc; i++) pthread_join(tc[i], NULL);
    ledger_verify(&c.ledger, "mpmc");
    CHECK(fc_mpmc_size(&c.q) == 0);
    fc_mpmc_destroy(&c.q);
    fc_park_fini(&c.not_empty);
    fc_park_fini(&c.not_full);
    printf("mpmc cap=%zu %uP/%uC x %u %s: ok (%.2fs)\n", cap, np, nc, per,
           blocking ? "parking" : "spinning", now_s() - t0);
}

int main(int argc, char **argv) {
    long k = stress_scale(argc, argv);
    uint32_t per = (uint32_t)(2000 * k);
    fc_mpmc_t q;
    void *out;
    /* Single-threaded edge cases first. */
    CHECK(fc_mpmc_init(&q, 0) != 0);
    CHECK(fc_mpmc_init(&q, 3) == 0);
    CHECK(!fc_mpmc_pop(&q, &out));
    CHECK(fc_mpmc_push(&q, (void *)10) && fc_mpmc_push(&q, (void *)11) && fc_mpmc_push(&q, (void *)12));
    CHECK(!fc_mpmc_push(&q, (void *)13));
    CHECK(fc_mpmc_size(&q) == 3);
    CHECK(fc_mpmc_pop(&q, &out) && out == (void *)10);
    CHECK(fc_mpmc_push(&q, (void *)13));
    CHECK(fc_mpmc_pop(&q, &out) && out == (void *)11);
    CHECK(fc_mpmc_pop(&q, &out) && out == (void *)12);
    CHECK(fc_mpmc_pop(&q, &out) && out == (void *)13);
    CHECK(!fc_mpmc_pop(&q, &out));
    fc_mpmc_destroy(&q);

    run(1, 2, 2, per, 0);
    run(3, 4, 4, per, 0);
    run(4, 4, 2, per, 1);
    run(1024, 4, 4, per * 4, 0);
    run(2, 3, 3, per, 1);
    run(1024, 1, 1, per * 4, 1);
    return 0;
}
