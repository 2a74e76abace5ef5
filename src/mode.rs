//! Training and evaluation: the pass says which.
//!
//! A few layers behave differently while a network learns and when it is used: batch
//! normalisation ([`BatchNorm2d`](crate::BatchNorm2d)) normalises with the batch's own
//! statistics in training and with its running statistics in evaluation; dropout
//! ([`Dropout`](crate::Dropout)) zeroes activations in training only. PyTorch keeps that
//! mode in each module (`net.train()`, `net.eval()`); constnet passes it with each forward
//! pass, as a type, so that
//!
//! * the same network value can run a training batch on one thread and evaluate on another;
//! * a mode's rules are checked at compile time (batch normalisation in training needs a
//!   batch of at least 2: `forward_batch_in::<Train>` of a one-sample batch does not build);
//! * a layer that does not care pays nothing: the mode is gone after monomorphisation.
//!
//! [`Layer::forward`](crate::Layer::forward) and
//! [`BatchLayer::forward_batch`](crate::BatchLayer::forward_batch) are training passes
//! ([`Pass::train`] with seed 0); [`Layer::infer`](crate::Layer::infer) and
//! [`BatchLayer::infer_batch`](crate::BatchLayer::infer_batch) are evaluation passes that
//! keep nothing for a backward pass. [`Layer::forward_in`](crate::Layer::forward_in) and
//! [`BatchLayer::forward_batch_in`](crate::BatchLayer::forward_batch_in) take the pass
//! explicitly: an evaluation pass that is followed by a backward pass (fine-tuning with frozen
//! batch statistics, saliency maps), or a training pass with a seed for dropout.
//!
//! ```
//! use constnet::{Dropout, Layer, Pass};
//! let drop = Dropout::<[f64; 8]>::new(0.5);
//! let x = [1.0; 8];
//! let (mut y, mut ws) = ([0.0; 8], constnet::zeroed_box());
//! drop.forward_in(&Pass::eval(), &x, &mut y, &mut ws);
//! assert_eq!(y, x); // evaluation: the identity
//! drop.forward_in(&Pass::train(7, 0), &x, &mut y, &mut ws);
//! assert!(y.iter().all(|&v| v == 0.0 || v == 2.0)); // training: dropped or scaled by 1/(1 − p)
//! ```

use core::marker::PhantomData;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Train {}
    impl Sealed for super::Eval {}
}

/// A pass's mode, as a type: [`Train`] or [`Eval`].
pub trait Mode: sealed::Sealed + Copy + Send + Sync + 'static {
    /// Whether this is the training mode.
    const TRAIN: bool;
}

/// Training mode: batch statistics, dropout on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Train;

/// Evaluation mode: running statistics, dropout off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eval;

impl Mode for Train {
    const TRAIN: bool = true;
}
impl Mode for Eval {
    const TRAIN: bool = false;
}

/// What a forward pass needs to know besides its input: the mode, and for training the
/// numbers that make random layers reproducible.
///
/// Dropout draws its mask from `(seed, step, sample, element)` through a counter-based hash,
/// not from a generator carried along, so the mask of a sample depends on neither the
/// thread that runs it nor the order of the samples: the same seed gives bit-identical
/// training whatever the split of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass<M: Mode> {
    /// The run's seed.
    pub seed: u64,
    /// The optimizer step (mini-batch number) this pass belongs to.
    pub step: u64,
    /// The index, within the step, of the pass's first sample (sample `n` of a batch pass
    /// is `first_sample + n`).
    pub first_sample: u64,
    mode: PhantomData<M>,
}

impl Pass<Train> {
    /// A training pass of step `step` in the run seeded with `seed`.
    pub const fn train(seed: u64, step: u64) -> Self {
        Self {
            seed,
            step,
            first_sample: 0,
            mode: PhantomData,
        }
    }
}

impl Pass<Eval> {
    /// An evaluation pass.
    pub const fn eval() -> Self {
        Self {
            seed: 0,
            step: 0,
            first_sample: 0,
            mode: PhantomData,
        }
    }
}

impl<M: Mode> Pass<M> {
    /// The default pass of a mode: training with seed 0 at step 0, or evaluation.
    pub const DEFAULT: Self = Self {
        seed: 0,
        step: 0,
        first_sample: 0,
        mode: PhantomData,
    };

    /// Whether this is a training pass.
    pub const fn is_training(&self) -> bool {
        M::TRAIN
    }

    /// The same pass starting `n` samples later (sample `n` of a batch, or the first
    /// sample of a later part of the batch).
    #[must_use]
    pub const fn offset(&self, n: usize) -> Self {
        Self {
            first_sample: self.first_sample.wrapping_add(n as u64),
            ..*self
        }
    }

    /// A 64-bit key for this pass's first sample: a hash of seed, step and sample.
    pub const fn sample_key(&self) -> u64 {
        splitmix64(
            splitmix64(splitmix64(self.seed ^ 0x243F_6A88_85A3_08D3).wrapping_add(self.step))
                .wrapping_add(self.first_sample),
        )
    }
}

/// SplitMix64's output function (Steele, Lea and Flood 2014): a bijection of `u64` whose
/// outputs for consecutive inputs look independent.
pub const fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut state = 0u64;
        let mut next = || {
            let out = splitmix64(state);
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            out
        };
        assert_eq!(next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn keys_differ_by_seed_step_and_sample_and_offsets_add() {
        let p = Pass::train(1, 2);
        let keys = [
            p.sample_key(),
            Pass::train(2, 2).sample_key(),
            Pass::train(1, 3).sample_key(),
            p.offset(1).sample_key(),
        ];
        for i in 0..keys.len() {
            for j in 0..i {
                assert_ne!(keys[i], keys[j]);
            }
        }
        assert_eq!(p.offset(1).offset(2), p.offset(3));
        assert!(p.is_training() && !Pass::eval().is_training());
    }
}
