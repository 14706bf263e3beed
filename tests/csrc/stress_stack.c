/* tests/csrc/stress_stack.c — tagged-index Treiber stack.
 *
 * Checks: LIFO order alone; growth across node chunks; with every thread
 * both pushing and popping (the pattern that produces ABA: a node popped,
 * recycled and pushed back while another thread sits between its load and
 * its CAS) every item is consumed exactly once; a tiny bound (maxsize 2, 8)
 * keeps the free list hot and exercises FC_STACK_FULL.
 */
#include <sched.h>
#include "stress.h"
#include "lockfree/stack.h"
#include "fc/status.h"

typedef struct { fc_stack_t s; uint32_t per; ledger_t ledger; } ctx_t;
typedef struct { ctx_t *c; uint32_t id; } arg_t;

static void *worker(void *a) {
    arg_t *arg = (arg_t *)a;
    ctx_t *c = arg->c;
    uint64_t seed = 0x9E3779B97F4A7C15ull * (arg->id + 1);
    uint32_t s;
    for (s = 0; s < c->per; s++) {
        item_t *it = item_new(arg->id, s);
        int rc;
        while ((rc = fc_stack_push(&c->s, it)) == FC_STACK_FULL) {
            void *p;
            if (fc_stack_pop(&c->s, &p)) ledger_take(&c->ledger, (item_t *)p);
            else sched_yield();
        }
        CHECK(rc == FC_OK);
        if (rnd(&seed) & 1) {
            void *p;
            if (fc_stack_pop(&c->s, &p)) ledger_take(&c->ledger, (item_t *)p);
        }
    }
    return NULL;
}

static void run(size_t maxsize, uint32_t nt, uint32_t per) {
    ctx_t c;
    pthread_t t[16];
    arg_t a[16];
    uint32_t i;
    void *p;
    double t0 = now_s();
    CHECK(fc_stack_init(&c.s, maxsize) == 0);
    c.per = per;
    ledger_init(&c.ledger, nt, per);
    for (i = 0; i < nt; i++) { a[i].c = &c; a[i].id = i; spawn(&t[i], worker, &a[i]); }
    for (i = 0; i < nt; i++) pthread_join(t[i], NULL);
    while (fc_stack_pop(&c.s, &p)) ledger_take(&c.ledger, (item_t *)p);
    CHECK(fc_stack_size(&c.s) == 0);
    ledger_verify(&c.ledger, "stack");
    fc_stack_destroy(&c.s);
    printf("stack maxsize=%zu %u threads x %u: ok (%.2fs)\n", maxsize, nt, per, now_s() - t0);
}

int main(int argc, char **argv) {
    long k = stress_scale(argc, argv);
    uint32_t per = (uint32_t)(5000 * k);
    fc_stack_t s;
    void *out;
    uintptr_t i;
    CHECK(fc_stack_init(&s, (size_t)FC_STACK_MAX + 1) != 0);
    CHECK(fc_stack_init(&s, 0) == 0);
    CHECK(!fc_stack_pop(&s, &out));
    for (i = 1; i <= 10000; i++) CHECK(fc_stack_push(&s, (void *)i) == FC_OK);  /* 8 chunks */
    CHECK(fc_stack_size(&s) == 10000);
    for (i = 10000; i >= 1; i--) CHECK(fc_stack_pop(&s, &out) && out == (void *)i);
    CHECK(!fc_stack_pop(&s, &out));
    fc_stack_destroy(&s);
    CHECK(fc_stack_init(&s, 2) == 0);
    CHECK(fc_stack_push(&s, (void *)1) == FC_OK && fc_stack_push(&s, (void *)2) == FC_OK);
    CHECK(fc_stack_push(&s, (void *)3) == FC_STACK_FULL);
    CHECK(fc_stack_pop(&s, &out) && out == (void *)2);
    CHECK(fc_stack_push(&s, (void *)3) == FC_OK);
    fc_stack_destroy(&s);

    run(2, 4, per);
    run(8, 4, per);
    run(0, 4, per * 2);
    return 0;
}
