//! The data-parallel trainer's update: the workers' gradients added in worker order, then
//! the optimizer's step, with both shared out among the pool's threads by ranges of every
//! tensor ([`Split`]). Each element gets the same operations in the same order as on one
//! thread, so the weights do not depend on the number of threads that did the work.

use std::sync::{RwLock, RwLockReadGuard};

use crate::layer::{Layer, add_buffers_and_counters};
use crate::optim::{OptimizerState, StepRule};
use crate::pool::Pool;
use crate::tensor_parts::{Places, Split};

/// A worker's buffers, locked for reading (the update reads every worker's gradients from
/// every thread; a panic elsewhere leaves them valid).
pub(crate) fn read<W>(w: &RwLock<W>) -> RwLockReadGuard<'_, W> {
    w.read().unwrap_or_else(|e| e.into_inner())
}

/// A worker's gradient sums.
pub(crate) trait Grads<N>: Send + Sync {
    fn grads(&self) -> &N;
    fn grads_mut(&mut self) -> &mut N;
}

impl<N: Layer> Grads<N> for Box<N> {
    fn grads(&self) -> &N {
        self
    }
    fn grads_mut(&mut self) -> &mut N {
        self
    }
}

/// Adds every worker's gradients to the first's, in worker order; applies the step `rule`
/// to `net` and `state`; and folds the batch statistics into `net`'s buffers.
pub(crate) fn update<N: Layer, W: Grads<N>>(
    pool: &mut Pool,
    places: &mut Places,
    rule: StepRule<N::Scalar>,
    net: &mut N,
    state: &mut OptimizerState<N>,
    workers: &mut [RwLock<W>],
) {
    let (first, others) = workers.split_first_mut().expect("at least one worker");
    let sums = first
        .get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .grads_mut();
    let others = &*others;
    let tensors = N::PARAM_TENSORS;
    let OptimizerState {
        first: m,
        second: v,
        ..
    } = state;
    let values = [&mut *net, &mut *m, &mut *v, &mut *sums];
    if let Some(split) = Split::new(values, places, pool.threads()) {
        pool.run(&|_| {
            while let Some(mut part) = split.next_part() {
                for w in others {
                    let w = read(w);
                    let g = w.grads();
                    for i in 0..tensors {
                        let others = &g.param(i)[part.range(i)];
                        let [.., sums] = part.tensors(i);
                        for (s, &o) in sums.iter_mut().zip(others) {
                            *s = *s + o;
                        }
                    }
                }
                for i in 0..tensors {
                    let [w, m, v, g] = part.tensors(i);
                    rule.apply(w, m, v, g);
                }
            }
        });
        for w in others {
            add_buffers_and_counters(sums, read(w).grads());
        }
    } else {
        // A layer keeps its parameters outside its value: one thread.
        for w in others {
            sums.add_grads(read(w).grads());
        }
        for i in 0..tensors {
            rule.apply(
                net.param_mut(i),
                m.param_mut(i),
                v.param_mut(i),
                sums.param(i),
            );
        }
    }
    net.update_buffers(sums);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Optimizer;
    use crate::scalar::Scalar;
    use crate::zeroed::zeroed_box;

    /// Fills every tensor and counter of `v` with values drawn from `seed` (buffers
    /// positive, as variances are).
    fn fill<L: Layer>(v: &mut L, seed: u64) {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        for i in 0..L::PARAM_TENSORS {
            v.param_mut(i)
                .iter_mut()
                .for_each(|p| *p = L::Scalar::from_f64(next()));
        }
        for i in 0..L::BUFFER_TENSORS {
            v.buffer_mut(i)
                .iter_mut()
                .for_each(|p| *p = L::Scalar::from_f64(next().abs()));
        }
        for i in 0..L::COUNTERS {
            *v.counter_mut(i) = seed;
        }
    }

    /// Every parameter and buffer of `a` and `b`, bit for bit.
    fn assert_same<L: Layer>(a: &L, b: &L, what: &str) {
        let bits = |t: &[L::Scalar]| t.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        for i in 0..L::PARAM_TENSORS {
            assert!(bits(a.param(i)) == bits(b.param(i)), "{what}: tensor {i}");
        }
        for i in 0..L::BUFFER_TENSORS {
            assert!(bits(a.buffer(i)) == bits(b.buffer(i)), "{what}: buffer {i}");
        }
        for i in 0..L::COUNTERS {
            assert_eq!(a.counter(i), b.counter(i), "{what}: counter {i}");
        }
    }

    /// [`update`] with 1–3 workers and as many threads against one thread's sums in worker
    /// order and [`OptimizerState::step`] (which folds the statistics in too): two steps of SGD with weight decay and of Adam.
    fn update_is_the_one_thread_step<N: Layer<Scalar = f32>>() {
        let optimizers = [
            Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            Optimizer::ADAM,
        ];
        for threads in 1..=3 {
            for opt in optimizers {
                let (mut net, mut reference) = (zeroed_box::<N>(), zeroed_box::<N>());
                fill(&mut *net, 1);
                fill(&mut *reference, 1);
                let mut state = zeroed_box::<OptimizerState<N>>();
                let mut ref_state = zeroed_box::<OptimizerState<N>>();
                let mut workers: Vec<RwLock<Box<N>>> =
                    (0..threads).map(|_| RwLock::new(zeroed_box())).collect();
                let mut pool = Pool::new(threads);
                let mut places = Places::default();
                for step in 0..2u64 {
                    let seed = |k: usize| 10 + 7 * step + k as u64;
                    let mut sums = zeroed_box::<N>();
                    for (k, w) in workers.iter_mut().enumerate() {
                        let w = w.get_mut().unwrap();
                        fill(&mut **w, seed(k));
                        if k == 0 {
                            fill(&mut *sums, seed(k));
                        } else {
                            sums.add_grads(w);
                        }
                    }
                    ref_state.step(&opt, 0.05, 1.0 / 64.0, &mut reference, &sums);
                    let rule = state.begin_step(&opt, 0.05, 1.0 / 64.0);
                    update(
                        &mut pool,
                        &mut places,
                        rule,
                        &mut *net,
                        &mut state,
                        &mut workers,
                    );
                    let what = format!("{threads} threads, {opt:?}, step {step}");
                    assert_same(&*net, &*reference, &what);
                    assert_same(workers[0].get_mut().unwrap().grads(), &*sums, &what);
                    assert_same(&state.first, &ref_state.first, &what);
                    assert_same(&state.second, &ref_state.second, &what);
                }
            }
        }
    }

    #[test]
    fn the_threads_update_lenet5_as_one_thread_does() {
        update_is_the_one_thread_step::<crate::LeNet5<f32>>();
    }

    #[test]
    fn the_threads_update_resnet20_and_its_buffers_as_one_thread_does() {
        update_is_the_one_thread_step::<crate::ResNet20<f32, 1, 10>>();
    }
}
