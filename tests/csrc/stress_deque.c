/* tests/csrc/stress_deque.c — Chase-Lev deque: one owner, several thieves.
 *
 * Checks: LIFO take and FIFO steal alone; growth from 16 slots while thieves
 * read the old array; every item consumed exactly once when the owner
 * pushes, takes (often the last item, which races the thieves' CAS on top)
 * and the thieves steal; thieves see each owner's items in increasing order
 * (steal is FIFO).
 */
#include <sched.h>
#include "stress.h"
#include "lockfree/deque.h"
#include "fc/status.h"

typedef struct {
    fc_deque_t q;
    uint32_t per;
    _Atomic int done;
    ledger_t ledger;
    _Atomic uint64_t stolen, aborts;
} ctx_t;

static void *owner(void *a) {
    ctx_t *c = (ctx_t *)a;
    uint64_t seed = 0x1234567ull;
    uint32_t s = 0;
    void *p;
    while (s < c->per) {
        /* bursts of pushes, then a few takes: the deque often holds 0-2
         * items, which is where take and steal collide. */
        uint32_t burst = (uint32_t)(rnd(&seed) % 5), i;
        for (i = 0; i < burst && s < c->per; i++, s++)
            CHECK(fc_deque_push(&c->q, item_new(0, s)) == FC_OK);
        for (i = (uint32_t)(rnd(&seed) % 4); i > 0; i--) {
            volatile unsigned spin;
            if (fc_deque_take(&c->q, &p) == FC_OK) ledger_take(&c->ledger, (item_t *)p);
            for (spin = 0; spin < 300; spin++) {}   /* "work", so thieves get a turn */
        }
        if ((rnd(&seed) & 1023) == 0)                    /* a deep pile: forces growth */
            for (i = 0; i < 200 && s < c->per; i++, s++)
                CHECK(fc_deque_push(&c->q, item_new(0, s)) == FC_OK);
    }
    while (fc_deque_take(&c->q, &p) == FC_OK) ledger_take(&c->ledger, (item_t *)p);
    atomic_store(&c->done, 1);
    return NULL;
}

static void *thief(void *a) {
    ctx_t *c = (ctx_t *)a;
    int64_t last = -1;
    for (;;) {
        void *p;
        int rc = fc_deque_steal(&c->q, &p);
        if (rc == FC_OK) {
            item_t *it = (item_t *)p;
            CHECK((int64_t)it->seq > last);     /* steals are FIFO */
            last = it->seq;
            ledger_take(&c->ledger, it);
            atomic_fetch_add_explicit(&c->stolen, 1, memory_order_relaxed);
        } else if (rc == FC_DEQUE_ABORT) {
            atomic_fetch_add_explicit(&c->aborts, 1, memory_order_relaxed);
        } else if (atomic_load(&c->done)) {
            if (fc_deque_steal(&c->q, &p) == FC_DEQUE_EMPTY) break;
            if (rc == FC_OK) continue;
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static void run(uint32_t thieves, uint32_t per) {
    ctx_t c;
    pthread_t o, t[16];
    uint32_t i;
    void *p;
    double t0 = now_s();
    CHECK(fc_deque_init(&c.q, 16) == 0);
    c.per = per;
    atomic_init(&c.done, 0);
    atomic_init(&c.stolen, 0);
    atomic_init(&c.aborts, 0);
    ledger_init(&c.ledger, 1, per);
    for (i = 0; i < thieves; i++) spawn(&t[i], thief, &c);
    spawn(&o, owner, &c);
    pthread_join(o, NULL);
    for (i = 0; i < thieves; i++) pthread_join(t[i], NULL);
    while (fc_deque_steal(&c.q, &p) == FC_OK) ledger_take(&c.ledger, (item_t *)p);
    ledger_verify(&c.ledger, "deque");
    fc_deque_destroy(&c.q);
    printf("deque 1 owner + %u thieves x %u: ok (stolen %llu, aborts %llu, %.2fs)\n",
           thieves, per, (unsigned long long)atomic_load(&c.stolen),
           (unsigned long long)atomic_load(&c.aborts), now_s() - t0);
}

int main(int argc, char **argv) {
    long k = stress_scale(argc, argv);
    fc_deque_t q;
    void *out;
    uintptr_t i;
    CHECK(fc_deque_init(&q, 1) == 0);
    CHECK(fc_deque_take(&q, &out) == FC_DEQUE_EMPTY);
    CHECK(fc_deque_steal(&q, &out) == FC_DEQUE_EMPTY);
    for (i = 1; i <= 100; i++) CHECK(fc_deque_push(&q, (void *)i) == FC_OK);   /* grows 16 -> 128 */
    CHECK(fc_deque_size(&q) == 100);
    CHECK(fc_deque_steal(&q, &out) == FC_OK && out == (void *)1);
    CHECK(fc_deque_take(&q, &out) == FC_OK && out == (void *)100);
    CHECK(fc_deque_steal(&q, &out) == FC_OK && out == (void *)2);
    while (fc_deque_take(&q, &out) == FC_OK) {}
    CHECK(fc_deque_size(&q) == 0);
    fc_deque_destroy(&q);

    run(1, (uint32_t)(20000 * k));
    run(3, (uint32_t)(20000 * k));
    return 0;
}
