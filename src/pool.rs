//! A persistent pool of worker threads that run borrowed closures: the trainer's threads.
//!
//! `std::thread::scope` lends borrowed data to threads it spawns, one spawn per call; the
//! trainer needs two hand-overs per mini-batch (the passes, then the update), each worth a
//! fraction of a millisecond. [`Pool::run`] lends a closure to threads that live as long as
//! the pool: it publishes the closure, calls it itself for part 0, and returns only when
//! every worker has finished with it, so nothing the closure borrows is used after the call.
//! Erasing the closure's lifetime to hand it over is this module's audited `unsafe`.
//!
//! A waiting worker polls for a while before it sleeps: between two hand-overs it waits for
//! tens of microseconds, less than waking a sleeping thread costs on a virtual machine.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The closures a pool runs: called with the part number, from any of its threads.
type Job = dyn Fn(usize) + Sync;

/// How many times a waiting thread polls before it sleeps (about a millisecond).
const SPINS: u32 = 1 << 14;

/// A published closure, its lifetime erased (see [`Pool::run`]).
#[derive(Clone, Copy)]
struct JobPtr(*const Job);

// SAFETY: a `JobPtr` points to a `Sync` closure, which any thread may call through a shared
// reference; `Pool::run` keeps the closure alive until every worker is done with it.
unsafe impl Send for JobPtr {}

/// What the workers wait on, behind one lock.
struct Published {
    /// Counts the jobs published so far.
    generation: u64,
    job: Option<JobPtr>,
    stop: bool,
}

struct Shared {
    published: Mutex<Published>,
    /// `published.generation`, readable without the lock (for polling).
    generation: AtomicU64,
    wake: Condvar,
    /// Workers not yet done with the current job.
    pending: AtomicUsize,
    done: Mutex<()>,
    all_done: Condvar,
    /// The first panic of a worker's part, re-raised by `run`.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Locks `m`, ignoring poisoning: every value behind these locks stays valid whatever
/// panicked (the panics of parts are caught before they cross a lock).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fixed set of threads that run [`Pool::run`]'s closures. `Pool::new(1)` spawns none.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `threads` (at least 1): the calling thread of [`Pool::run`] and
    /// `threads − 1` workers, started now.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub(crate) fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            published: Mutex::new(Published {
                generation: 0,
                job: None,
                stop: false,
            }),
            generation: AtomicU64::new(0),
            wake: Condvar::new(),
            pending: AtomicUsize::new(0),
            done: Mutex::new(()),
            all_done: Condvar::new(),
            panic: Mutex::new(None),
        });
        let workers = (1..threads.max(1))
            .map(|k| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("constnet-worker-{k}"))
                    .spawn(move || work(&shared, k))
                    .expect("could not start a worker thread")
            })
            .collect();
        Self { shared, workers }
    }

    /// The number of parts each [`Pool::run`] calls: the calling thread and the workers.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(k)` once for each `k` in `0..threads()`, each on its own thread (`f(0)` on
    /// this one), and returns when all have returned. A panic in any part is re-raised here
    /// once every part has finished.
    pub(crate) fn run(&mut self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            return f(0);
        }
        let shared = &*self.shared;
        let ptr: *const (dyn Fn(usize) + Sync + '_) = f;
        // SAFETY: only the lifetime changes (same pointee type, same fat pointer layout).
        // The workers call the closure only between the publication below and their
        // decrement of `pending`, and this function returns (or unwinds) only after
        // `pending` has reached 0: `f(0)`'s panic is caught, and nothing between the
        // publication and the wait can panic (locks ignore poisoning). `&mut self` keeps two
        // calls from overlapping.
        let ptr: *const Job = unsafe { core::mem::transmute(ptr) };
        shared.pending.store(self.workers.len(), Ordering::Relaxed);
        {
            let mut p = lock(&shared.published);
            p.generation += 1;
            p.job = Some(JobPtr(ptr));
            shared.generation.store(p.generation, Ordering::Release);
        }
        shared.wake.notify_all();
        let own = catch_unwind(AssertUnwindSafe(|| f(0)));
        // Wait for the workers: poll, then sleep.
        let mut spins = 0;
        while shared.pending.load(Ordering::Acquire) != 0 && spins < SPINS {
            core::hint::spin_loop();
            spins += 1;
        }
        if shared.pending.load(Ordering::Acquire) != 0 {
            let mut guard = lock(&shared.done);
            while shared.pending.load(Ordering::Acquire) != 0 {
                guard = shared
                    .all_done
                    .wait(guard)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        lock(&shared.published).job = None;
        if let Err(panic) = own {
            resume_unwind(panic);
        }
        if let Some(panic) = lock(&shared.panic).take() {
            resume_unwind(panic);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut p = lock(&self.shared.published);
            p.stop = true;
            p.generation += 1;
            self.shared
                .generation
                .store(p.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            // A worker's own panics are caught; joining cannot fail otherwise.
            let _ = worker.join();
        }
    }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .finish()
    }
}

/// Worker `k`'s loop: wait for a new job, run its part `k`, report, until the pool stops.
fn work(shared: &Shared, k: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        while shared.generation.load(Ordering::Acquire) == seen && spins < SPINS {
            core::hint::spin_loop();
            spins += 1;
        }
        let job = {
            let mut p = lock(&shared.published);
            while p.generation == seen {
                p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.stop {
                return;
            }
            seen = p.generation;
            p.job.expect("each generation publishes a job")
        };
        // SAFETY: `Pool::run` published this pointer for this generation and does not
        // return before this worker decrements `pending` below (see there), so the
        // closure is alive; it is `Sync`, so calling it through `&` from here is allowed.
        let f = unsafe { &*job.0 };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(k))) {
            lock(&shared.panic).get_or_insert(panic);
        }
        if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = lock(&shared.done);
            shared.all_done.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn each_part_runs_once_per_call_on_its_own_thread() {
        for threads in 1..=4 {
            let mut pool = Pool::new(threads);
            assert_eq!(pool.threads(), threads);
            for round in 0..200 {
                let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                let ids = Mutex::new(Vec::new());
                pool.run(&|k| {
                    hits[k].fetch_add(round + 1, Ordering::Relaxed);
                    lock(&ids).push(std::thread::current().id());
                });
                let counts: Vec<usize> = hits.iter().map(|h| h.load(Ordering::Relaxed)).collect();
                assert_eq!(counts, vec![round + 1; threads]);
                let mut ids = ids.into_inner().unwrap();
                ids.sort_by_key(|id| format!("{id:?}"));
                ids.dedup();
                assert_eq!(ids.len(), threads, "one thread per part");
            }
        }
    }

    #[test]
    fn parts_write_borrowed_data_seen_after_the_call() {
        let mut pool = Pool::new(3);
        let mut data = vec![0u64; 3 * 1000];
        for round in 1..=50u64 {
            let chunks: Vec<Mutex<&mut [u64]>> = data.chunks_mut(1000).map(Mutex::new).collect();
            pool.run(&|k| {
                for x in lock(&chunks[k]).iter_mut() {
                    *x += round * (k as u64 + 1);
                }
            });
            drop(chunks);
            let total: u64 = (1..=round).sum();
            assert!(data[..1000].iter().all(|&x| x == total));
            assert!(data[2000..].iter().all(|&x| x == 3 * total));
        }
    }

    #[test]
    fn a_panicking_part_is_raised_after_all_parts_end_and_the_pool_goes_on() {
        let mut pool = Pool::new(2);
        let finished = AtomicUsize::new(0);
        for panicking in [0, 1] {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                pool.run(&|k| {
                    if k == panicking {
                        panic!("part {k} fails");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    finished.fetch_add(1, Ordering::Relaxed);
                })
            }));
            let message = *outcome.unwrap_err().downcast::<String>().unwrap();
            assert_eq!(message, format!("part {panicking} fails"));
        }
        assert_eq!(
            finished.load(Ordering::Relaxed),
            2,
            "the other part ran to its end"
        );
        let sum = AtomicUsize::new(0);
        pool.run(&|k| {
            sum.fetch_add(k + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn sleeping_workers_wake_for_the_next_job() {
        let mut pool = Pool::new(2);
        let sum = AtomicUsize::new(0);
        for _ in 0..3 {
            // Long enough for the worker to stop polling and sleep.
            std::thread::sleep(std::time::Duration::from_millis(30));
            pool.run(&|k| {
                sum.fetch_add(k + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(sum.load(Ordering::Relaxed), 9);
    }
}
