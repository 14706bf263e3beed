/* timer/heap.h — binary min-heap of timers ordered by (when, seq).
 *
 * `seq` is a per-heap insertion counter, so timers due at the same instant
 * fire in the order they were scheduled (asyncio's heapq of TimerHandles
 * gives no such promise; we do, and the tests rely on it).
 * The heap owns nothing: `data` is an opaque pointer (the Cython side keeps
 * one reference per entry).  Cancelled timers are removed lazily: the loop
 * skips them when they reach the top and calls fc_heap_filter() when more
 * than half the heap is cancelled, as asyncio does.
 * One thread: the loop's.
 */
#ifndef FC_TIMER_HEAP_H
#define FC_TIMER_HEAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double when;
    uint64_t seq;
    void *data;
} fc_timer_t;

typedef struct {
    fc_timer_t *a;
    size_t len, cap;
    uint64_t next_seq;
} fc_heap_t;

void fc_heap_init(fc_heap_t *h);
void fc_heap_free(fc_heap_t *h);
int  fc_heap_push(fc_heap_t *h, double when, void *data);
/* Caller checks len > 0. */
static inline const fc_timer_t *fc_heap_top(const fc_heap_t *h) { return &h->a[0]; }
void *fc_heap_pop(fc_heap_t *h);
/* Data of the i-th entry in heap order (i < len); for GC traversal. */
static inline void *fc_heap_at(const fc_heap_t *h, size_t i) { return h->a[i].data; }
/* Keep only entries for which keep(data, ctx) != 0; for every dropped entry
 * drop(data, ctx) is called once.  O(n). */
void fc_heap_filter(fc_heap_t *h, int (*keep)(void *, void *), void (*drop)(void *, void *), void *ctx);

#endif
