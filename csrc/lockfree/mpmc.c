/* lockfree/mpmc.c — Vyukov's bounded MPMC queue; see mpmc.h for the rules,
 * the theory of operation and the ordering of every atomic field. */
#include <errno.h>
#include <stdlib.h>
#include "mpmc.h"
#include "../fc/status.h"

static inline fc_mpmc_cell_t *cell_at(fc_mpmc_t *q, uint64_t pos) {
    return &q->cells[q->mask ? (pos & q->mask) : (pos % q->cap)];
}

int fc_mpmc_init(fc_mpmc_t *q, size_t cap) {
    uint64_t i;
    if (cap == 0) return -EINVAL;
    q->bound = cap;
    if (cap == 1) cap = 2;              /* see mpmc.h: the scheme needs two cells */
    q->cells = (fc_mpmc_cell_t *)calloc(cap, sizeof(fc_mpmc_cell_t));
    if (!q->cells) return FC_ENOMEM_OWN;
    q->cap = cap;
    q->mask = (cap & (cap - 1)) == 0 ? cap - 1 : 0;
    for (i = 0; i < cap; i++) fc_atomic_init(&q->cells[i].seq, i);
    fc_atomic_init(&q->enq, 0);
    fc_atomic_init(&q->deq, 0);
    return FC_OK;
}

void fc_mpmc_destroy(fc_mpmc_t *q) {
    free(q->cells);
    q->cells = NULL;
    q->cap = 0;
}

bool fc_mpmc_push(fc_mpmc_t *q, void *item) {
    /* relaxed: a stale enq only costs a retry; the cell's seq decides. */
    uint64_t pos = fc_atomic_load_rlx(&q->enq);
    for (;;) {
        fc_mpmc_cell_t *c = cell_at(q, pos);
        /* acquire: pairs with the consumer's release store(seq, p + cap)
         * in fc_mpmc_pop, so its read of c->data happens before our write. */
        uint64_t seq = fc_atomic_load_acq(&c->seq);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            /* Bound 1 on two cells: also full while one item is in.  Relaxed:
             * a stale deq only makes us report "full" early; a blocking
             * caller rechecks after fc_park_prepare's fence. */
            if (q->bound != q->cap && pos - fc_atomic_load_rlx(&q->deq) >= q->bound) {
                uint64_t now = fc_atomic_load_rlx(&q->enq);
                if (now == pos) return false;
                pos = now;
                continue;
            }
            /* relaxed CAS: claims the position only; ordering is c->seq's job. */
            if (fc_atomic_cas_weak_rlx(&q->enq, &pos, pos + 1)) {
                c->data = item;
                /* release: pairs with the consumer's acquire load of c->seq. */
                fc_atomic_store_rel(&c->seq, pos + 1);
                return true;
            }
            /* the failed CAS reloaded pos */
        } else if (dif < 0) {
            /* The cell still holds the item of pos - cap: full.  Recheck enq
             * so a stale pos (another producer moved on and a consumer freed
             * the cell) is not mistaken for "full". */
            uint64_t now = fc_atomic_load_rlx(&q->enq);
            if (now == pos) return false;
            pos = now;
        } else {
            pos = fc_atomic_load_rlx(&q->enq);
        }
    }
}

bool fc_mpmc_pop(fc_mpmc_t *q, void **out) {
    uint64_t pos = fc_atomic_load_rlx(&q->deq);
    for (;;) {
        fc_mpmc_cell_t *c = cell_at(q, pos);
        /* acquire: pairs with the producer's release store(seq, p + 1), so
         * the payload it wrote is visible below. */
        uint64_t seq = fc_atomic_load_acq(&c->seq);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (fc_atomic_cas_weak_rlx(&q->deq, &pos, pos + 1)) {
                *out = c->data;
                /* release: pairs with the acquire load of the producer of
                 * pos + cap; our read of c->data happens before its write. */
                fc_atomic_store_rel(&c->seq, pos + q->cap);
                return true;
            }
        } else if (dif < 0) {
            uint64_t now = fc_atomic_load_rlx(&q->deq);
            if (now == pos) return false;   /* empty */
            pos = now;
        } else {
            pos = fc_atomic_load_rlx(&q->deq);
        }
    }
}

size_t fc_mpmc_size(fc_mpmc_t *q) {
    /* Relaxed loads of two counters that move independently: a hint.  Read
     * deq first so that (on a quiet queue) the result is never negative;
     * clamp for the racy case. */
    uint64_t d = fc_atomic_load_rlx(&q->deq);
    uint64_t e = fc_atomic_load_rlx(&q->enq);
    if (e < d) return 0;
    if (e - d > q->bound) return (size_t)q->bound;
    return (size_t)(e - d);
}
