/* fc/atomic.h — the only place atomics appear.
 *
 * Every atomic operation in csrc/ goes through these macros, so a checker
 * (TSan, a model checker) can be swapped in here.  C11 <stdatomic.h> only.
 */
#ifndef FC_ATOMIC_H
#define FC_ATOMIC_H
#include <stdatomic.h>

#define fc_atomic_load_acq(p)       atomic_load_explicit((p), memory_order_acquire)
#define fc_atomic_load_rlx(p)       atomic_load_explicit((p), memory_order_relaxed)
#define fc_atomic_store_rel(p, v)   atomic_store_explicit((p), (v), memory_order_release)
#define fc_atomic_store_rlx(p, v)   atomic_store_explicit((p), (v), memory_order_relaxed)
#define fc_atomic_xchg_sc(p, v)     atomic_exchange_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_store_sc(p, v)    atomic_store_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_fetch_add_rlx(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)


/* ---- Lock-free containers (csrc/lockfree/, csrc/pool/; issue 3) ----------
 *
 * Naming: fc_atomic_<op>_<order>, where the order is the one used on
 * success; CAS macros say their failure order separately (the failure order
 * is never stronger than the success order, per C11 7.17.7.4).
 */
#define fc_atomic_init(p, v)          atomic_init((p), (v))
#define fc_atomic_load_sc(p)          atomic_load_explicit((p), memory_order_seq_cst)
#define fc_atomic_xchg_acq(p, v)      atomic_exchange_explicit((p), (v), memory_order_acquire)
#define fc_atomic_fetch_add_sc(p, v)  atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_fetch_sub_sc(p, v)  atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define fc_atomic_fetch_sub_acqrel(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define fc_atomic_fetch_sub_rlx(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
/* CAS: *expp is updated with the current value on failure. */
#define fc_atomic_cas_weak_rlx(p, expp, v) \
    atomic_compare_exchange_weak_explicit((p), (expp), (v), memory_order_relaxed, memory_order_relaxed)
#define fc_atomic_cas_weak_acqrel_acq(p, expp, v) \
    atomic_compare_exchange_weak_explicit((p), (expp), (v), memory_order_acq_rel, memory_order_acquire)
#define fc_atomic_cas_strong_acqrel_acq(p, expp, v) \
    atomic_compare_exchange_strong_explicit((p), (expp), (v), memory_order_acq_rel, memory_order_acquire)
#define fc_atomic_cas_strong_sc_rlx(p, expp, v) \
    atomic_compare_exchange_strong_explicit((p), (expp), (v), memory_order_seq_cst, memory_order_relaxed)
#define fc_atomic_fence_sc()          atomic_thread_fence(memory_order_seq_cst)

/* ThreadSanitizer does not model atomic_thread_fence (gcc warns -Wtsan):
 * a "fence(release); store(relaxed)" pair gives no happens-before edge in
 * its eyes, so it would report the payload handed over behind the fence as
 * a race.  Code that publishes through a fence uses fc_atomic_store_fenced_rel,
 * which is exactly "fence(release); store(relaxed)" normally and a plain
 * store(release) (equal or stronger) under TSan. */
#if defined(__SANITIZE_THREAD__)
#  define FC_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define FC_TSAN 1
#  endif
#endif
#ifndef FC_TSAN
#  define FC_TSAN 0
#endif
#if FC_TSAN
#  define fc_atomic_store_fenced_rel(p, v) atomic_store_explicit((p), (v), memory_order_release)
#else
#  define fc_atomic_store_fenced_rel(p, v) \
    (atomic_thread_fence(memory_order_release), atomic_store_explicit((p), (v), memory_order_relaxed))
#endif

/* Spin-wait hint: lets the sibling hyperthread run and saves power. */
#if defined(__x86_64__) || defined(__i386__)
#  define fc_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#  define fc_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#  define fc_cpu_relax() ((void)0)
#endif

/* Size of a cache line, for padding fields written by different threads
 * apart (false sharing).  128 on aarch64 Apple/Neoverse parts that prefetch
 * line pairs; 64 on x86_64 — but Intel's adjacent-line prefetcher also pulls
 * pairs, so we pad to 128 everywhere (crossbeam's CachePadded does the same). */
#define FC_CACHELINE 128

#endif
