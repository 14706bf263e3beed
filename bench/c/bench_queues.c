/* bench/c/bench_queues.c — items/s through a queue, one producer thread and
 * one consumer thread: Vyukov MPMC, SPSC ring, and a mutex + condition
 * variable ring (the baseline a lock-free queue has to beat).
 *
 *   make c-bench                    # or:
 *   build/csrc/bench_queues [items] [capacity]
 *
 * Each run moves `items` pointers (default 20,000,000) and reports the best
 * of 3 runs.  A full/empty queue makes the lock-free sides spin with a pause
 * hint (they never sleep here: the point is the container's own cost); the
 * mutex side waits on its condition variables as such a queue normally does.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "lockfree/mpmc.h"
#include "lockfree/spsc.h"

static uint64_t N = 20000000;
static size_t CAP = 1024;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- mutex ring ---- */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **buf;
    size_t cap, head, len;
} mq_t;

static void mq_push(mq_t *q, void *x) {
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap) pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[(q->head + q->len) % q->cap] = x;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static void *mq_pop(mq_t *q) {
    void *x;
    pthread_mutex_lock(&q->mu);
    while (q->len == 0) pthread_cond_wait(&q->not_empty, &q->mu);
    x = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return x;
}

/* ---- drivers ---- */
enum { MPMC, SPSC, MUTEX };
typedef struct { int kind; fc_mpmc_t m; fc_spsc_t s; mq_t q; uint64_t sum; } ctx_t;

static void *producer(void *a) {
    ctx_t *c = (ctx_t *)a;
    uint64_t i;
    for (i = 1; i <= N; i++) {
        void *x = (void *)(uintptr_t)i;
        switch (c->kind) {
        case MPMC: while (!fc_mpmc_push(&c->m, x)) fc_cpu_relax(); break;
        case SPSC: while (!fc_spsc_push(&c->s, x)) fc_cpu_relax(); break;
        default: mq_push(&c->q, x);
        }
    }
    return NULL;
}

static void *consumer(void *a) {
    ctx_t *c = (ctx_t *)a;
    uint64_t i, sum = 0;
    void *x;
    for (i = 0; i < N; i++) {
        switch (c->kind) {
        case MPMC: while (!fc_mpmc_pop(&c->m, &x)) fc_cpu_relax(); break;
        case SPSC: while (!fc_spsc_pop(&c->s, &x)) fc_cpu_relax(); break;
        default: x = mq_pop(&c->q);
        }
        sum += (uintptr_t)x;
    }
    c->sum = sum;
    return NULL;
}

static double run(int kind) {
    ctx_t *c = (ctx_t *)aligned_alloc(FC_CACHELINE, (sizeof(ctx_t) + FC_CACHELINE - 1) & ~(size_t)(FC_CACHELINE - 1));
    pthread_t p, q;
    double t0, dt;
    c->kind = kind;
    fc_mpmc_init(&c->m, CAP);
    fc_spsc_init(&c->s, CAP);
    pthread_mutex_init(&c->q.mu, NULL);
    pthread_cond_init(&c->q.not_empty, NULL);
    pthread_cond_init(&c->q.not_full, NULL);
    c->q.buf = (void **)malloc(CAP * sizeof(void *));
    c->q.cap = CAP; c->q.head = c->q.len = 0;
    t0 = now_s();
    pthread_create(&q, NULL, consumer, c);
    pthread_create(&p, NULL, producer, c);
    pthread_join(p, NULL);
    pthread_join(q, NULL);
    dt = now_s() - t0;
    if (c->sum != N * (N + 1) / 2) { fprintf(stderr, "checksum mismatch\n"); exit(1); }
    fc_mpmc_destroy(&c->m);
    fc_spsc_destroy(&c->s);
    free(c->q.buf);
    free(c);
    return N / dt;
}

int main(int argc, char **argv) {
    const char *names[] = {"mpmc (Vyukov)", "spsc ring", "mutex+condvar"};
    int k, r;
    if (argc > 1) N = strtoull(argv[1], NULL, 10);
    if (argc > 2) CAP = strtoull(argv[2], NULL, 10);
    printf("1 producer + 1 consumer thread, %llu items, capacity %zu, best of 3\n",
           (unsigned long long)N, CAP);
    for (k = 0; k < 3; k++) {
        double best = 0;
        for (r = 0; r < 3; r++) { double v = run(k); if (v > best) best = v; }
        printf("  %-16s %8.1f M items/s\n", names[k], best / 1e6);
    }
    return 0;
}
