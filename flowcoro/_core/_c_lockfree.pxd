# flowcoro/_core/_c_lockfree.pxd — csrc/lockfree/ and csrc/pool/ declared to
# Cython (cdef extern only; the companion of _c.pxd for the containers of
# issue 3, kept apart so the two can change without touching each other).
# The rules, theory of operation and memory orderings are in the headers.
from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef extern from "lockfree/mpmc.h" nogil:
    ctypedef struct fc_mpmc_t:
        pass
    int  fc_mpmc_init(fc_mpmc_t *q, size_t cap)
    void fc_mpmc_destroy(fc_mpmc_t *q)
    bint fc_mpmc_push(fc_mpmc_t *q, void *item)
    bint fc_mpmc_pop(fc_mpmc_t *q, void **out)
    size_t fc_mpmc_size(fc_mpmc_t *q)
    size_t fc_mpmc_capacity(const fc_mpmc_t *q)

cdef extern from "lockfree/spsc.h" nogil:
    ctypedef struct fc_guard_t:
        pass
    void fc_guard_init(fc_guard_t *g)
    bint fc_guard_enter(fc_guard_t *g)
    void fc_guard_leave(fc_guard_t *g)
    ctypedef struct fc_spsc_t:
        fc_guard_t pguard
        fc_guard_t cguard
    int  fc_spsc_init(fc_spsc_t *r, size_t cap)
    void fc_spsc_destroy(fc_spsc_t *r)
    bint fc_spsc_push(fc_spsc_t *r, void *item)
    bint fc_spsc_pop(fc_spsc_t *r, void **out)
    size_t fc_spsc_size(fc_spsc_t *r)
    ctypedef struct fc_bring_t:
        fc_guard_t pguard
        fc_guard_t cguard
    int  fc_bring_init(fc_bring_t *r, size_t cap)
    void fc_bring_destroy(fc_bring_t *r)
    size_t fc_bring_write(fc_bring_t *r, const void *src, size_t n)
    size_t fc_bring_read(fc_bring_t *r, void *dst, size_t n)
    size_t fc_bring_size(fc_bring_t *r)

cdef extern from "lockfree/stack.h" nogil:
    int FC_STACK_FULL
    unsigned int FC_STACK_MAX
    ctypedef struct fc_stack_t:
        pass
    int  fc_stack_init(fc_stack_t *s, size_t maxsize)
    void fc_stack_destroy(fc_stack_t *s)
    int  fc_stack_push(fc_stack_t *s, void *item)
    bint fc_stack_pop(fc_stack_t *s, void **out)
    size_t fc_stack_size(fc_stack_t *s)

cdef extern from "lockfree/deque.h" nogil:
    int FC_DEQUE_EMPTY
    int FC_DEQUE_ABORT
    ctypedef struct fc_deque_t:
        pass
    int  fc_deque_init(fc_deque_t *q, size_t cap)
    void fc_deque_destroy(fc_deque_t *q)
    int  fc_deque_push(fc_deque_t *q, void *item)
    int  fc_deque_take(fc_deque_t *q, void **out)
    int  fc_deque_steal(fc_deque_t *q, void **out)
    size_t fc_deque_size(fc_deque_t *q)

cdef extern from "lockfree/park.h" nogil:
    int FC_PARK_WOKEN
    int FC_PARK_TIMEOUT
    int FC_PARK_INTR
    ctypedef struct fc_park_t:
        pass
    void fc_park_init(fc_park_t *p)
    void fc_park_fini(fc_park_t *p)
    uint32_t fc_park_prepare(fc_park_t *p)
    void fc_park_done(fc_park_t *p)
    int  fc_park_wait(fc_park_t *p, uint32_t key, int64_t timeout_ns, int64_t spin_ns)
    uint32_t fc_park_notify(fc_park_t *p, int n)
    void fc_park_async_add(fc_park_t *p)
    void fc_park_async_done(fc_park_t *p)
    int64_t fc_park_now_ns()

cdef extern from "pool/bufpool.h" nogil:
    ctypedef struct fc_bufpool_t:
        pass
    ctypedef struct fc_bufpool_stats_t:
        uint64_t hits
        uint64_t misses
        uint64_t frees
        uint64_t outstanding
        uint64_t cached
        uint64_t cached_bytes
    int   fc_bufpool_create(fc_bufpool_t **out, size_t max_cached_bytes)
    void  fc_bufpool_destroy(fc_bufpool_t *p)
    void *fc_bufpool_acquire(fc_bufpool_t *p, size_t size, size_t *cap)
    int   fc_bufpool_release(void *buf)
    size_t fc_bufpool_capacity(const void *buf)
    void  fc_bufpool_stats(fc_bufpool_t *p, fc_bufpool_stats_t *out)
