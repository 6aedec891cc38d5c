/* A spinning barrier for the kernels' per-step synchronisation (C and C++).
 *
 * Why not `#pragma omp barrier`: inside a Python process libgomp often
 * runs its barriers "throttled" (it counts more managed threads than
 * CPUs, e.g. once another library's OpenMP team exists), and then a
 * waiting thread sleeps in the kernel after ~1,000 spins. A batch-1
 * sampling step is ~20 us of work between barriers, so each futex wake-up
 * cost about as much as the step: 2 threads ran 2.2x slower than 1 on a
 * 2-core AMD EPYC (docs/benchmarks.md). This barrier spins (with the CPU's
 * pause hint) for a bounded time, then yields the core, so that an
 * oversubscribed machine still makes progress.
 *
 * Use: one rnnlab_barrier shared by the team, rnnlab_barrier_init by one
 * thread before any wait (e.g. in `omp single`), then rnnlab_barrier_wait
 * by every thread of the team. Memory written before a wait is visible to
 * all threads after it.
 */
#ifndef RNNLAB_NATIVE_BARRIER_H_
#define RNNLAB_NATIVE_BARRIER_H_

#include <sched.h>

typedef struct {
  int waiting;    /* threads still to arrive in this round */
  int round;      /* rounds completed */
  int size;       /* threads in the team */
} rnnlab_barrier;

/* Spins before yielding: about 50-200 us, longer than a step's imbalance
 * on a quiet machine, short enough not to starve a co-scheduled thread. */
enum { RNNLAB_BARRIER_SPINS = 1 << 14 };

static inline void rnnlab_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline void rnnlab_barrier_init(rnnlab_barrier* b, int size) {
  b->waiting = size;
  b->round = 0;
  b->size = size;
}

static inline void rnnlab_barrier_wait(rnnlab_barrier* b) {
  const int round = __atomic_load_n(&b->round, __ATOMIC_ACQUIRE);
  if (__atomic_sub_fetch(&b->waiting, 1, __ATOMIC_ACQ_REL) == 0) {
    /* The last to arrive re-arms the barrier, then releases the others
     * (they cannot reach the next round before this store). */
    __atomic_store_n(&b->waiting, b->size, __ATOMIC_RELAXED);
    __atomic_store_n(&b->round, round + 1, __ATOMIC_RELEASE);
    return;
  }
  for (long spins = 0; __atomic_load_n(&b->round, __ATOMIC_ACQUIRE) == round;
       ++spins) {
    if (spins < RNNLAB_BARRIER_SPINS) {
      rnnlab_pause();
    } else {
      sched_yield();
    }
  }
}

#endif /* RNNLAB_NATIVE_BARRIER_H_ */
