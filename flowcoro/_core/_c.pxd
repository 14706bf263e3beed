# flowcoro/_core/_c.pxd — the only place csrc/ is declared to Cython.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "fc/status.h":
    int FC_OK
    int FC_ENOMEM_OWN

cdef extern from "fc/ring.h":
    ctypedef struct fc_ring_t:
        size_t len
    int fc_ring_init(fc_ring_t *r, size_t cap) nogil
    void fc_ring_free(fc_ring_t *r) nogil
    int fc_ring_push(fc_ring_t *r, void *p) nogil
    void *fc_ring_pop(fc_ring_t *r) nogil
    size_t fc_ring_len(const fc_ring_t *r) nogil
    void fc_ring_shrink(fc_ring_t *r, size_t keep) nogil
    void *fc_ring_at(const fc_ring_t *r, size_t i) nogil

cdef extern from "reactor/reactor.h":
    uint32_t FC_EV_READ
    uint32_t FC_EV_WRITE
    ctypedef struct fc_reactor_t:
        pass
    ctypedef struct fc_event_t:
        int fd
        uint32_t events
    ctypedef struct fc_reactor_ops_t:
        const char *name
        int  (*create)(fc_reactor_t **out) nogil
        void (*destroy)(fc_reactor_t *r) nogil
        int  (*set)(fc_reactor_t *r, int fd, uint32_t old_ev, uint32_t new_ev) nogil
        int  (*wait)(fc_reactor_t *r, fc_event_t *out, int max, int timeout_ms) nogil
    const fc_reactor_ops_t *fc_reactor_find(const char *name) nogil
    const char *fc_reactor_available() nogil

cdef extern from "reactor/wakeup.h":
    ctypedef struct fc_wakeup_t:
        int rfd
        int wfd
    int  fc_wakeup_init(fc_wakeup_t *w) nogil
    void fc_wakeup_close(fc_wakeup_t *w) nogil
    int  fc_wakeup_push(fc_wakeup_t *w, void *item) nogil
    void fc_wakeup_signal(fc_wakeup_t *w) nogil
    size_t fc_wakeup_drain(fc_wakeup_t *w, void ***out) nogil
    size_t fc_wakeup_pending(fc_wakeup_t *w) nogil

cdef extern from "timer/heap.h":
    ctypedef struct fc_timer_t:
        double when
        uint64_t seq
        void *data
    ctypedef struct fc_heap_t:
        size_t len
    void fc_heap_init(fc_heap_t *h) nogil
    void fc_heap_free(fc_heap_t *h) nogil
    int  fc_heap_push(fc_heap_t *h, double when, void *data) nogil
    const fc_timer_t *fc_heap_top(const fc_heap_t *h) nogil
    void *fc_heap_pop(fc_heap_t *h) nogil
    void *fc_heap_at(const fc_heap_t *h, size_t i) nogil
    void fc_heap_filter(fc_heap_t *h, int (*keep)(void *, void *) noexcept, void (*drop)(void *, void *) noexcept, void *ctx)
