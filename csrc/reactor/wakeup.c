/* reactor/wakeup.c — see wakeup.h for the protocol and its proof sketch. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif
#include "wakeup.h"
#include "../fc/status.h"

int fc_wakeup_init(fc_wakeup_t *w) {
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -errno;
    w->rfd = w->wfd = fd;
#else
    int p[2];
    if (pipe(p) < 0) return -errno;
    fcntl(p[0], F_SETFL, O_NONBLOCK); fcntl(p[1], F_SETFL, O_NONBLOCK);
    fcntl(p[0], F_SETFD, FD_CLOEXEC); fcntl(p[1], F_SETFD, FD_CLOEXEC);
    w->rfd = p[0]; w->wfd = p[1];
#endif
    atomic_init(&w->signaled, 0);
    atomic_init(&w->count, 0);
    w->items = NULL; w->len = w->cap = 0;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        close(w->rfd);
        if (w->wfd != w->rfd) close(w->wfd);
        return FC_ENOMEM_OWN;
    }
    return FC_OK;
}

void fc_wakeup_close(fc_wakeup_t *w) {
    if (w->rfd >= 0) close(w->rfd);
    if (w->wfd >= 0 && w->wfd != w->rfd) close(w->wfd);
    w->rfd = w->wfd = -1;
    pthread_mutex_destroy(&w->mu);
    free(w->items);
    w->items = NULL; w->len = w->cap = 0;
}

void fc_wakeup_signal(fc_wakeup_t *w) {
    if (fc_atomic_xchg_sc(&w->signaled, 1) == 0) {
        uint64_t one = 1;
        ssize_t rc;
        /* EAGAIN means the counter/pipe is already full: the loop will wake. */
        do { rc = write(w->wfd, &one, w->wfd == w->rfd ? sizeof(one) : 1); }
        while (rc < 0 && errno == EINTR);
    }
}

int fc_wakeup_push(fc_wakeup_t *w, void *item) {
    pthread_mutex_lock(&w->mu);
    if (w->len == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        void **nb = (void **)realloc(w->items, nc * sizeof(void *));
        if (!nb) { pthread_mutex_unlock(&w->mu); return FC_ENOMEM_OWN; }
        w->items = nb; w->cap = nc;
    }
    w->items[w->len++] = item;
    fc_atomic_store_rlx(&w->count, w->len);
    pthread_mutex_unlock(&w->mu);
    fc_wakeup_signal(w);
    return FC_OK;
}

size_t fc_wakeup_drain(fc_wakeup_t *w, void ***out) {
    char buf[64];
    size_t n;
    while (read(w->rfd, buf, sizeof(buf)) > 0) {}
    fc_atomic_store_sc(&w->signaled, 0);
    pthread_mutex_lock(&w->mu);
    n = w->len;
    *out = n ? w->items : NULL;
    if (n) { w->items = NULL; w->cap = 0; w->len = 0; }
    fc_atomic_store_rlx(&w->count, 0);
    pthread_mutex_unlock(&w->mu);
    return n;
}
