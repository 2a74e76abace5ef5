//! Threads inside one layer: the large convolutions of a batch-1 pass split between two
//! threads.
//!
//! A batch of one image has no samples to share among threads, so the work of one layer is
//! split instead: inside [`within_layers`], [`crate::conv_gemm::forward`] gives each of two
//! threads half of a layer's pixels (a map of 256 pixels or more: each thread packs only its
//! own pixels' inputs) or half of its output channels (a smaller map of one group) when the
//! layer has at least [`crate::conv_gemm::SPLIT_MACS`] multiply-adds, and a fully connected
//! layer's one-sample forward pass (from 2²⁰ multiply-adds: AlexNet's and VGG-16's) half of
//! its outputs, a batch norm's evaluation pass over a large sample half of its channels,
//! and a concatenation (GoogLeNet's Inception modules, DenseNet's steps) runs its branches
//! at once, each writing its own channels. A batch's inference (`BatchLayer::infer_batch`)
//! runs layer by layer there, each convolution on half the samples per thread; a batch in
//! lanes ([`crate::Lanes`]) gives each thread half its blocks of 16 samples. Every output
//! is computed by one thread in the order one thread would use, so results are the same,
//! bit for bit, with one thread or two.
//!
//! The threads are rayon's, with the `threads` feature: the pool the caller runs in
//! (`rayon::ThreadPool::install`), else rayon's global pool. Its workers persist, so a split
//! costs a wake-up, not a thread's creation (with a thread created per call, ResNet-18 gained
//! 1.12× on two cores; with the pool, 1.38×: `BENCHMARKS.md`). Without the feature the two
//! halves run one after the other on the caller's thread: nothing is spawned.
//!
//! The setting belongs to the calling thread and to the closure given to [`within_layers`]:
//! the threads of constnet's trainer already share the work by sample, and stay at one. A
//! concatenation's branch, run on another of the pool's threads, takes its caller's setting
//! for as long as it runs, so give constnet a pool of its own (`ThreadPool::install`, as the
//! `nets` bench does) if other jobs share rayon's: a job of yours that a constnet thread
//! steals while it waits would see the setting too. Inside `install`, rayon hands work to
//! the other thread through the caller's own queue; from a thread outside the pool, through
//! a shared queue that allocates a block every 63 hand-overs, so the passes are free of
//! allocation only inside the pool.
//!
//! ```
//! use constnet::{conv_gemm, conv_kernel::ConvGeometry, threads};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 64, c_out: 64, groups: 1, k: 3, stride: 1, pad: 1, h: 56, w: 56, oh: 56, ow: 56,
//! }
//! .checked();
//! let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 7) as f32 - 3.0).collect();
//! let w: Vec<f32> = (0..GEO.weight_len()).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect();
//! let (mut one, mut two) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
//! conv_gemm::forward(&GEO, &x, &w, &[0.5; 64], &mut one);
//! threads::within_layers(2, || conv_gemm::forward(&GEO, &x, &w, &[0.5; 64], &mut two));
//! assert_eq!(one, two);
//! assert_eq!(threads::layer_threads(), 1); // back to one outside the closure
//! ```

use core::cell::Cell;

use crate::simd::{self, Kernel};

std::thread_local! {
    static WITHIN: Cell<usize> = const { Cell::new(1) };
}

/// How many threads a layer called on this thread may use: 1 unless inside
/// [`within_layers`].
pub fn layer_threads() -> usize {
    WITHIN.with(Cell::get)
}

/// Runs `f` with the layers it calls on this thread using up to `threads` threads each (at
/// least 1; a layer splits its own work in two at most, but a concatenation's branches run
/// at once and each may split its layers, so a pool of more threads may run more than two),
/// then restores the setting, also if `f` panics.
pub fn within_layers<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            WITHIN.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WITHIN.with(|w| w.replace(threads.max(1))));
    f()
}

/// Runs the two halves of a split layer, `a` and `b`, each with the instruction set this
/// thread uses ([`simd::current`], which a test may have forced): at once on rayon's threads
/// with the `threads` feature, else one after the other here.
pub(crate) fn dispatch_both<K: Kernel<Output = ()> + Send>(a: K, b: K) {
    let isa = simd::current();
    let run = |k: K| simd::with_isa(isa, || simd::dispatch(k));
    #[cfg(feature = "threads")]
    rayon::join(|| run(a), || run(b));
    #[cfg(not(feature = "threads"))]
    {
        run(a);
        run(b);
    }
}

/// Runs every job, each with the instruction set and the [`layer_threads`] this thread uses
/// (so that a job's layers split as its caller's would: the other thread takes their halves
/// when it is free): with the `threads` feature on rayon's threads (the list cut in halves,
/// recursively, for `rayon::join`), else one after the other here. A concatenation's
/// branches run this way ([`within_layers`]).
pub(crate) fn run_all(jobs: &mut [&mut (dyn FnMut() + Send)]) {
    run_all_on((simd::current(), layer_threads()), jobs);
}

fn run_all_on(at: (simd::Isa, usize), jobs: &mut [&mut (dyn FnMut() + Send)]) {
    let isa = at.0;
    match jobs {
        [] => {}
        [job] => within_layers(at.1, || simd::with_isa(isa, job)),
        #[cfg(feature = "threads")]
        _ => {
            let (a, b) = jobs.split_at_mut(jobs.len() / 2);
            rayon::join(|| run_all_on(at, a), || run_all_on(at, b));
        }
        #[cfg(not(feature = "threads"))]
        _ => {
            for job in jobs {
                simd::with_isa(isa, job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv_gemm::{self, ConvGeometry, SPLIT_MACS, Split, split_at};
    use crate::simd::{Isa, with_isa};

    const fn geometry(
        c_in: usize,
        c_out: usize,
        groups: usize,
        h: usize,
        w: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            c_in,
            c_out,
            groups,
            k: 3,
            stride: 1,
            pad: 1,
            h,
            w,
            oh: h,
            ow: w,
        }
        .checked()
    }

    /// Layers `forward` splits: by pixels on a large map (60×61: 1,824 + 1,836 pixels, not
    /// whole panels), also with groups; by rows of tiles by Winograd's algorithm (the second
    /// side's last row of tiles half off the map); by channels on a small one (48 channels:
    /// 16 + 32, not in halves, and not on a 4-row block of one side).
    const SPLIT: [(ConvGeometry, Split); 4] = [
        // By F(4×4, 3×3) (61 columns, 16 tiles to a row), by rows of tiles: 7 + 8 rows.
        (geometry(40, 48, 1, 60, 61), Split::Pixels(28 * 61)),
        // By F(2×2, 3×3) (59 × 40: 30 rows of 20 tiles), 15 + 15 rows.
        (geometry(40, 48, 1, 59, 40), Split::Pixels(30 * 40)),
        (geometry(48, 64, 2, 60, 61), Split::Pixels(1824)),
        (geometry(800, 48, 1, 7, 7), Split::Channels(16)),
    ];

    /// Asserts that `pass` writes the same bits with one thread and inside
    /// `within_layers(2, ..)`, on every instruction set this machine has.
    fn same_on_one_thread_and_two(len: usize, pass: impl Fn(&mut [f32])) {
        for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
            with_isa(isa, || {
                let (mut one, mut two) = (vec![0.0; len], vec![1.0; len]);
                pass(&mut one);
                within_layers(2, || pass(&mut two));
                let same = one
                    .iter()
                    .zip(&two)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa:?}: two threads changed the result");
            });
        }
    }

    /// Inputs of `samples` samples, weights and biases of `geo`: fixed values of both signs.
    fn values(geo: &ConvGeometry, samples: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..samples * geo.input_len())
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)
            .collect();
        let w = (0..geo.weight_len())
            .map(|i| (i * 104_729 % 997) as f32 / 997.0 - 0.5)
            .collect();
        let b = (0..geo.c_out).map(|o| o as f32 * 0.01).collect();
        (x, w, b)
    }

    #[test]
    fn a_split_layer_gives_the_one_thread_result_bit_for_bit_on_every_instruction_set() {
        for (geo, split) in SPLIT {
            let macs = geo.c_out * geo.in_per_group() * 9 * geo.oh * geo.ow;
            assert!(macs >= SPLIT_MACS, "{geo:?} would not be split");
            let tile = if crate::conv_winograd4::pays(&geo) {
                Some(4)
            } else {
                crate::conv_winograd::pays(&geo).then_some(2)
            };
            assert_eq!(split_at(&geo, tile), Some(split), "{geo:?}");
            let (x, w, b) = values(&geo, 1);
            same_on_one_thread_and_two(geo.output_len(), |y| {
                conv_gemm::forward(&geo, &x, &w, &b, y)
            });
        }
    }

    /// Three samples in one call, split between the threads by samples (one and two) on the
    /// paths that run one sample per call: the product on `X̂` (a stride-2 layer) and
    /// F(4×4, 3×3); and on F(2×2, 3×3), whose samples share blocks of products.
    #[test]
    fn samples_split_between_the_threads_give_the_one_thread_result_bit_for_bit() {
        let stride2 = ConvGeometry {
            stride: 2,
            oh: 8,
            ow: 8,
            ..geometry(16, 32, 1, 16, 16)
        }
        .checked();
        for geo in [stride2, SPLIT[0].0, geometry(16, 16, 1, 16, 16)] {
            const SAMPLES: usize = 3;
            let (x, w, b) = values(&geo, SAMPLES);
            same_on_one_thread_and_two(SAMPLES * geo.output_len(), |y| {
                conv_gemm::forward(&geo, &x, &w, &b, y)
            });
        }
    }

    #[test]
    fn a_split_fully_connected_layer_gives_the_one_thread_result_bit_for_bit() {
        const IN: usize = 1030;
        const OUT: usize = 1021; // split 504 + 517: both blockings' tails on the second thread
        let x: Vec<f32> = (0..IN)
            .map(|i| (i * 7919 % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..IN * OUT)
            .map(|i| (i * 104_729 % 997) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..OUT).map(|o| o as f32 * 0.01).collect();
        same_on_one_thread_and_two(OUT, |y| {
            crate::linear_kernel::forward::<IN, OUT>(&x, (&w, &b), y)
        });
    }

    #[test]
    fn the_setting_is_the_closures_and_comes_back_after_a_panic() {
        assert_eq!(layer_threads(), 1);
        assert_eq!(within_layers(2, layer_threads), 2);
        assert_eq!(within_layers(0, layer_threads), 1);
        let panicked = std::panic::catch_unwind(|| within_layers(2, || panic!("inside")));
        assert!(panicked.is_err());
        assert_eq!(layer_threads(), 1);
        // Another thread has its own setting.
        within_layers(2, || {
            assert_eq!(std::thread::spawn(layer_threads).join().unwrap(), 1);
        });
    }

    /// An Inception module's four branches run at once on two threads (with the `threads`
    /// feature; one after the other without it), each with the caller's instruction set:
    /// the output is the one-thread output, bit for bit, on every instruction set.
    #[test]
    fn an_inception_modules_branches_on_two_threads_give_the_one_thread_output() {
        use crate::googlenet::Inception;
        use crate::layer::Layer;
        use crate::tensor::Tensor;
        use crate::zeroed::zeroed_box;
        use rand::SeedableRng;
        type Module = Inception<f32, 4, 2, 2, 3, 2, 2, 2, 9, 5>;
        type Out = <Module as Layer>::Output;
        let mut module = zeroed_box::<Module>();
        module.init(&mut rand::rngs::StdRng::seed_from_u64(5));
        let mut x = zeroed_box::<<Module as Layer>::Input>();
        for (i, v) in x.flat_mut().iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        same_on_one_thread_and_two(Out::LEN, |y| {
            let y = Out::from_flat_mut(y).unwrap();
            module.infer(&x, y, &mut zeroed_box());
            assert!(y.flat().iter().any(|&v| v != 0.0));
        });
    }

    /// A DenseNet step on two threads: the identity's copy and the new layer at once, the
    /// layer's batch norm split by channels and its convolutions split inside the job that
    /// runs it; the output is the one-thread output, bit for bit.
    #[test]
    fn a_dense_step_on_two_threads_gives_the_one_thread_output() {
        use crate::densenet::{DenseLayer, DenseStep};
        use crate::layer::Layer;
        use crate::tensor::Tensor;
        use crate::zeroed::zeroed_box;
        use rand::{RngExt, SeedableRng};
        type Step = DenseStep<f32, DenseLayer<f32, 64, 32>, 64, 96, 32>;
        type Out = <Step as Layer>::Output;
        // The first batch norm is split (64 × 32 × 32 values), as are both convolutions.
        const { assert!(64 * 32 * 32 >= crate::batchnorm2d::SPLIT_VALUES) };
        const { assert!(128 * 64 * 32 * 32 >= SPLIT_MACS && 32 * 128 * 9 * 32 * 32 >= SPLIT_MACS) };
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let mut step = zeroed_box::<Step>();
        step.init(&mut rng);
        // Batch norm's running statistics (means, then variances) and affine parameters
        // away from 0 and 1.
        for i in 0..Step::BUFFER_TENSORS {
            let range = if i % 2 == 0 { -0.2..0.2 } else { 0.5..1.5 };
            for v in step.buffer_mut(i) {
                *v = rng.random_range(range.clone());
            }
        }
        for i in 0..Step::PARAM_TENSORS {
            for v in step.param_mut(i) {
                *v += rng.random_range(-0.1..0.1);
            }
        }
        let mut x = zeroed_box::<<Step as Layer>::Input>();
        for (i, v) in x.flat_mut().iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        same_on_one_thread_and_two(Out::LEN, |y| {
            let y = Out::from_flat_mut(y).unwrap();
            step.infer(&x, y, &mut zeroed_box());
            assert!(y.flat()[64 * 32 * 32..].iter().any(|&v| v != 0.0));
        });
    }

    /// A batch in lanes (LeNet-5's way) on two threads, half the blocks each in a workspace
    /// of its own: the one-thread output, bit for bit, for an even and an odd number of
    /// blocks.
    #[test]
    fn a_batch_in_lanes_on_two_threads_gives_the_one_thread_output() {
        use crate::batch::BatchLayer;
        use crate::layer::Layer;
        use crate::tensor::Tensor;
        use crate::zeroed::zeroed_box;
        use crate::{Conv2d, Flatten, Lanes, Linear, MaxPool2d, Relu, sequential};
        use rand::SeedableRng;
        type Stack = Lanes<
            sequential![
                Conv2d<f32, 1, 4, 3, 1, 0, 10, 10, 8, 8>,
                Relu<[[[f32; 8]; 8]; 4]>,
                MaxPool2d<f32, 4, 8, 8, 2, 2, 4, 4>,
                Flatten<f32, 4, 4, 4, 64>,
                Linear<f32, 64, 10>,
            ],
        >;
        fn check<const N: usize>(stack: &Stack)
        where
            Stack: BatchLayer<N>,
        {
            let mut x = zeroed_box::<[<Stack as Layer>::Input; N]>();
            let flat = <<Stack as Layer>::Input as Tensor>::flat_slice_mut(&mut x[..]);
            for (i, v) in flat.iter_mut().enumerate() {
                *v = (i as f32 * 0.37).sin();
            }
            same_on_one_thread_and_two(N * 10, |y| {
                let y: &mut [[f32; 10]; N] = y.as_chunks_mut().0.try_into().unwrap();
                stack.infer_batch(&x, y, &mut zeroed_box());
                assert!(y[N - 1].iter().any(|&v| v != 0.0));
            });
        }
        let mut stack = zeroed_box::<Stack>();
        stack.init(&mut rand::rngs::StdRng::seed_from_u64(7));
        check::<64>(&stack);
        check::<48>(&stack);
    }

    /// A job of [`run_all`] may use as many threads inside its layers as its caller.
    #[test]
    fn run_all_gives_its_jobs_the_callers_setting() {
        let seen = [0, 1, 2].map(|_| std::sync::atomic::AtomicUsize::new(0));
        let [a, b, c] = seen
            .each_ref()
            .map(|s| move || s.store(layer_threads(), std::sync::atomic::Ordering::Relaxed));
        let (mut a, mut b, mut c) = (a, b, c);
        within_layers(2, || run_all(&mut [&mut a, &mut b, &mut c]));
        assert!(
            seen.iter()
                .all(|s| s.load(std::sync::atomic::Ordering::Relaxed) == 2)
        );
        run_all(&mut [&mut a, &mut b, &mut c]);
        assert!(
            seen.iter()
                .all(|s| s.load(std::sync::atomic::Ordering::Relaxed) == 1)
        );
    }
}
