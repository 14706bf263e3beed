/* timer/heap.c — see heap.h. */
#include <stdlib.h>
#include "heap.h"
#include "../fc/status.h"

static inline int less(const fc_timer_t *x, const fc_timer_t *y) {
    return x->when < y->when || (x->when == y->when && x->seq < y->seq);
}

static void sift_up(fc_timer_t *a, size_t i) {
    fc_timer_t t = a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!less(&t, &a[p])) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = t;
}

static void sift_down(fc_timer_t *a, size_t n, size_t i) {
    fc_timer_t t = a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && less(&a[c + 1], &a[c])) c++;
        if (!less(&a[c], &t)) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = t;
}

void fc_heap_init(fc_heap_t *h) { h->a = NULL; h->len = h->cap = 0; h->next_seq = 0; }

void fc_heap_free(fc_heap_t *h) { free(h->a); fc_heap_init(h); }

int fc_heap_push(fc_heap_t *h, double when, void *data) {
    if (h->len == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        fc_timer_t *na = (fc_timer_t *)realloc(h->a, nc * sizeof(*na));
        if (!na) return FC_ENOMEM_OWN;
        h->a = na; h->cap = nc;
    }
    h->a[h->len].when = when;
    h->a[h->len].seq = h->next_seq++;
    h->a[h->len].data = data;
    sift_up(h->a, h->len);
    h->len++;
    return FC_OK;
}

void *fc_heap_pop(fc_heap_t *h) {
    void *d = h->a[0].data;
    h->len--;
    if (h->len) {
        h->a[0] = h->a[h->len];
        sift_down(h->a, h->len, 0);
    }
    return d;
}

void fc_heap_filter(fc_heap_t *h, int (*keep)(void *, void *), void (*drop)(void *, void *), void *ctx) {
    size_t i, k = 0;
    for (i = 0; i < h->len; i++) {
        if (keep(h->a[i].data, ctx)) h->a[k++] = h->a[i];
        else drop(h->a[i].data, ctx);
    }
    h->len = k;
    /* Floyd's heapify: O(n). */
    if (k > 1) {
        size_t j = k / 2;
        while (j-- > 0) sift_down(h->a, k, j);
    }
}
