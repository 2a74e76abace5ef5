//! Parameter updates from accumulated gradients: plain SGD, SGD with momentum, Adam, and
//! learning-rate schedules. None of them allocate: their state is one or two more
//! network-shaped values ([`OptimizerState`]), built once.

use num_traits::Float;

use crate::layer::Layer;
use crate::scalar::Scalar;
use crate::simd;

/// Plain gradient descent: `w ← w − lr · ∂E/∂w`, the article's update rule.
///
/// ```
/// use constnet::{Layer, Linear, Sgd, zeroed_box};
/// let mut fc = zeroed_box::<Linear<f64, 1, 1>>();
/// let mut grads = zeroed_box::<Linear<f64, 1, 1>>();
/// grads.weight = [[2.0]];
/// Sgd { lr: 0.25 }.step(&mut *fc, &grads);
/// assert_eq!(fc.weight, [[-0.5]]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd<T> {
    /// Learning rate.
    pub lr: T,
}

impl<T: Scalar> Sgd<T> {
    /// Applies one update to every parameter of `net` from `grads` (same network type), then
    /// lets the layers with buffers fold in the batch statistics `grads` gathered
    /// ([`Layer::update_buffers`]).
    pub fn step<L: Layer<Scalar = T>>(&self, net: &mut L, grads: &L) {
        for i in 0..L::PARAM_TENSORS {
            for (w, &g) in net.param_mut(i).iter_mut().zip(grads.param(i)) {
                *w = *w - self.lr * g;
            }
        }
        net.update_buffers(grads);
    }
}

/// An update rule and its hyper-parameters (the learning rate is passed to each step, so a
/// [`Schedule`] can change it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD with momentum, as PyTorch's `SGD(momentum, weight_decay)`:
    /// `g ← ∂E/∂w + λw;  v ← μv + g;  w ← w − lr·v`.
    Sgd {
        /// Momentum μ (0 for plain SGD).
        momentum: f64,
        /// L2 weight decay λ.
        weight_decay: f64,
    },
    /// Adam (Kingma & Ba), as PyTorch's `Adam(betas, eps, weight_decay)`:
    /// `g ← ∂E/∂w + λw;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
    ///  w ← w − lr · m̂ / (√v̂ + ε)` with bias-corrected `m̂`, `v̂`.
    Adam {
        /// β₁, the decay of the first moment.
        beta1: f64,
        /// β₂, the decay of the second moment.
        beta2: f64,
        /// ε, added to the denominator.
        eps: f64,
        /// L2 weight decay λ.
        weight_decay: f64,
    },
}

impl Optimizer {
    /// SGD with momentum 0.9 and no weight decay.
    pub const SGD_MOMENTUM: Self = Self::Sgd {
        momentum: 0.9,
        weight_decay: 0.0,
    };
    /// Adam with PyTorch's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay).
    pub const ADAM: Self = Self::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
}

/// What an [`Optimizer`] remembers between steps: two network-shaped buffers (momentum, or
/// Adam's moments) and the step count. Build it zeroed (`zeroed_box::<OptimizerState<L>>()`).
#[derive(Debug)]
pub struct OptimizerState<L> {
    /// SGD's velocity, or Adam's first moment.
    pub first: L,
    /// Adam's second moment (unused by SGD).
    pub second: L,
    /// Number of steps taken.
    pub steps: u64,
}

impl<L: Layer> OptimizerState<L> {
    /// Updates `net` from the gradient sum `grads` of a mini-batch: the gradient used is
    /// `grads · scale` (pass `1 / batch size` to average), with learning rate `lr`. Then
    /// the layers with buffers fold in the batch statistics `grads` gathered
    /// ([`Layer::update_buffers`]).
    pub fn step(&mut self, opt: &Optimizer, lr: f64, scale: f64, net: &mut L, grads: &L) {
        let rule = self.begin_step(opt, lr, scale);
        for i in 0..L::PARAM_TENSORS {
            rule.apply(
                net.param_mut(i),
                self.first.param_mut(i),
                self.second.param_mut(i),
                grads.param(i),
            );
        }
        net.update_buffers(grads);
    }

    /// Counts a step and returns its update rule, which [`OptimizerState::step`] applies
    /// to every tensor; the trainer's threads apply it to ranges of them instead.
    pub(crate) fn begin_step(
        &mut self,
        opt: &Optimizer,
        lr: f64,
        scale: f64,
    ) -> StepRule<L::Scalar> {
        self.steps += 1;
        let s = L::Scalar::from_f64;
        let (lr, scale) = (s(lr), s(scale));
        match *opt {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => StepRule::Sgd([scale, s(weight_decay), s(momentum), lr]),
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = self.steps.min(i32::MAX as u64) as i32;
                let correction1 = s(1.0 - Float::powi(beta1, t));
                let correction2 = s(1.0 - Float::powi(beta2, t));
                let (b1, b2) = (s(beta1), s(beta2));
                let one = <L::Scalar as num_traits::One>::one();
                StepRule::Adam([
                    scale,
                    s(weight_decay),
                    b1,
                    one - b1,
                    b2,
                    one - b2,
                    correction1,
                    correction2,
                    lr,
                    s(eps),
                ])
            }
        }
    }
}

/// One step of an [`Optimizer`], its constants computed: applied elementwise, so any range
/// of a tensor can be updated on its own, with the same result.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StepRule<T> {
    /// [scale, weight decay, momentum, lr].
    Sgd([T; 4]),
    /// [scale, weight decay, β₁, 1 − β₁, β₂, 1 − β₂, the two bias corrections, lr, ε].
    Adam([T; 10]),
}

impl<T: Scalar> StepRule<T> {
    /// Updates the weights `w` and the optimizer's state `first` (SGD's velocity, Adam's
    /// first moment) and `second` (Adam's second moment) from the gradient sum `g`; all
    /// four of one length, or of one range of the same tensor.
    pub(crate) fn apply(&self, w: &mut [T], first: &mut [T], second: &mut [T], g: &[T]) {
        match self {
            StepRule::Sgd(k) => {
                if let (Some(w), Some(v), Some(g), Some(k)) = (
                    T::as_f32_mut(&mut *w),
                    T::as_f32_mut(&mut *first),
                    T::as_f32(g),
                    T::as_f32(k),
                ) {
                    let k = k.try_into().expect("four constants");
                    return simd::dispatch(fast::Sgd { w, v, g, k });
                }
                let [scale, wd, mu, lr] = *k;
                for ((w, v), &g) in w.iter_mut().zip(first).zip(g) {
                    let g = g * scale + wd * *w;
                    *v = mu * *v + g;
                    *w = *w - lr * *v;
                }
            }
            StepRule::Adam(k) => {
                if let (Some(w), Some(m), Some(v), Some(g), Some(k)) = (
                    T::as_f32_mut(&mut *w),
                    T::as_f32_mut(&mut *first),
                    T::as_f32_mut(&mut *second),
                    T::as_f32(g),
                    T::as_f32(k),
                ) {
                    let k = k.try_into().expect("ten constants");
                    return simd::dispatch(fast::Adam { w, m, v, g, k });
                }
                let [
                    scale,
                    wd,
                    b1,
                    ob1,
                    b2,
                    ob2,
                    correction1,
                    correction2,
                    lr,
                    eps,
                ] = *k;
                for (((w, m), v), &g) in w.iter_mut().zip(first).zip(second).zip(g) {
                    let g = g * scale + wd * *w;
                    *m = b1 * *m + ob1 * g;
                    *v = b2 * *v + ob2 * g * g;
                    let m_hat = *m / correction1;
                    let v_hat = *v / correction2;
                    *w = *w - lr * m_hat / (v_hat.sqrt() + eps);
                }
            }
        }
    }
}

/// The `f32` updates with the instruction set's vectors: the same operations in the same
/// order as the generic loops in [`OptimizerState::step`] (no fused multiply-add), so the
/// weights are the same bit for bit on every instruction set. Adam's divisions and square
/// root made its scalar loop ~6% of a training run.
mod fast {
    use crate::simd::{Kernel, Scalar, Simd};

    /// SGD with momentum on one tensor; `k` = [scale, weight decay, momentum, lr].
    pub(super) struct Sgd<'a> {
        pub w: &'a mut [f32],
        pub v: &'a mut [f32],
        pub g: &'a [f32],
        pub k: [f32; 4],
    }

    #[inline(always)]
    fn sgd<S: Simd>(s: S, (w, v, g): (S::F, S::F, S::F), k: &[S::F; 4]) -> (S::F, S::F) {
        let [scale, wd, mu, lr] = *k;
        let g = s.add(s.mul(g, scale), s.mul(wd, w));
        let v = s.add(s.mul(mu, v), g);
        (s.sub(w, s.mul(lr, v)), v)
    }

    impl Kernel for Sgd<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let full = self.w.len() / S::LANES * S::LANES;
            let mut k = [s.splat(0.0); 4];
            for (k, &c) in k.iter_mut().zip(&self.k) {
                *k = s.splat(c);
            }
            for at in (0..full).step_by(S::LANES) {
                let x = (s.load(self.w, at), s.load(self.v, at), s.load(self.g, at));
                let (w, v) = sgd(s, x, &k);
                s.store(self.w, at, w);
                s.store(self.v, at, v);
            }
            for i in full..self.w.len() {
                (self.w[i], self.v[i]) = sgd(Scalar, (self.w[i], self.v[i], self.g[i]), &self.k);
            }
        }
    }

    /// Adam on one tensor; `k` = [scale, weight decay, β₁, 1 − β₁, β₂, 1 − β₂, the two bias
    /// corrections, lr, ε].
    pub(super) struct Adam<'a> {
        pub w: &'a mut [f32],
        pub m: &'a mut [f32],
        pub v: &'a mut [f32],
        pub g: &'a [f32],
        pub k: [f32; 10],
    }

    #[inline(always)]
    fn adam<S: Simd>(
        s: S,
        (w, m, v, g): (S::F, S::F, S::F, S::F),
        k: &[S::F; 10],
    ) -> (S::F, S::F, S::F) {
        let [scale, wd, b1, ob1, b2, ob2, c1, c2, lr, eps] = *k;
        let g = s.add(s.mul(g, scale), s.mul(wd, w));
        let m = s.add(s.mul(b1, m), s.mul(ob1, g));
        let v = s.add(s.mul(b2, v), s.mul(s.mul(ob2, g), g));
        let (m_hat, v_hat) = (s.div(m, c1), s.div(v, c2));
        let w = s.sub(w, s.div(s.mul(lr, m_hat), s.add(s.sqrt(v_hat), eps)));
        (w, m, v)
    }

    impl Kernel for Adam<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let full = self.w.len() / S::LANES * S::LANES;
            let mut k = [s.splat(0.0); 10];
            for (k, &c) in k.iter_mut().zip(&self.k) {
                *k = s.splat(c);
            }
            for at in (0..full).step_by(S::LANES) {
                let x = (
                    s.load(self.w, at),
                    s.load(self.m, at),
                    s.load(self.v, at),
                    s.load(self.g, at),
                );
                let (w, m, v) = adam(s, x, &k);
                s.store(self.w, at, w);
                s.store(self.m, at, m);
                s.store(self.v, at, v);
            }
            for i in full..self.w.len() {
                let x = (self.w[i], self.m[i], self.v[i], self.g[i]);
                (self.w[i], self.m[i], self.v[i]) = adam(Scalar, x, &self.k);
            }
        }
    }
}

/// How the learning rate changes over training.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply the rate by `gamma` after every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor applied at each decay.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to zero over the whole run, updated every batch.
    Cosine,
}

impl Schedule {
    /// Learning rate for batch `batch` of `batches_per_epoch` in epoch `epoch` (from 0) of
    /// `epochs`, starting from `base`.
    ///
    /// ```
    /// use constnet::Schedule;
    /// assert_eq!(Schedule::Step { every: 2, gamma: 0.1 }.rate(1.0, 3, 0, 5, 10), 0.1);
    /// assert_eq!(Schedule::Cosine.rate(1.0, 0, 0, 10, 10), 1.0);
    /// assert!((Schedule::Cosine.rate(1.0, 5, 0, 10, 10) - 0.5).abs() < 1e-12);
    /// ```
    pub fn rate(
        &self,
        base: f64,
        epoch: usize,
        batch: usize,
        batches_per_epoch: usize,
        epochs: usize,
    ) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                base * Float::powi(gamma, (epoch / every.max(1)) as i32)
            }
            Schedule::Cosine => {
                let total = (epochs * batches_per_epoch).max(1) as f64;
                let done = ((epoch * batches_per_epoch + batch) as f64).min(total);
                let cos = Float::cos(core::f64::consts::PI * done / total);
                base * 0.5 * (1.0 + cos)
            }
        }
    }
}

crate::zeroable!(impl [L: crate::zeroed::Zeroable] for OptimizerState [L] { first, second, steps });

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::{Linear, zeroed_box};

    type One = Linear<f64, 1, 1>;

    #[test]
    fn sgd_momentum_follows_pytorch_recurrence() {
        let mut net = zeroed_box::<One>();
        net.weight = [[1.0]];
        let mut grads = zeroed_box::<One>();
        grads.weight = [[4.0]]; // a batch of 2 summing to 4: mean 2
        let mut st = zeroed_box::<OptimizerState<One>>();
        let opt = Optimizer::Sgd {
            momentum: 0.5,
            weight_decay: 0.1,
        };
        st.step(&opt, 0.1, 0.5, &mut net, &grads);
        // g = 2 + 0.1·1 = 2.1; v = 2.1; w = 1 − 0.21 = 0.79
        assert!((net.weight[0][0] - 0.79).abs() < 1e-15);
        st.step(&opt, 0.1, 0.5, &mut net, &grads);
        // g = 2 + 0.079 = 2.079; v = 1.05 + 2.079 = 3.129; w = 0.79 − 0.3129
        assert!((net.weight[0][0] - (0.79 - 0.3129)).abs() < 1e-15);
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        // With bias correction, Adam's first step is lr · g / (|g| + ε) ≈ lr · sign(g).
        let mut net = zeroed_box::<Linear<f64, 2, 1>>();
        let mut grads = zeroed_box::<Linear<f64, 2, 1>>();
        grads.weight = [[3.0, -0.001]];
        let mut st = zeroed_box::<OptimizerState<Linear<f64, 2, 1>>>();
        st.step(&Optimizer::ADAM, 0.01, 1.0, &mut net, &grads);
        assert!((net.weight[0][0] + 0.01).abs() < 1e-9);
        assert!((net.weight[0][1] - 0.01).abs() < 1e-7);
        assert_eq!(net.bias, [0.0]); // zero gradient, zero step
        assert_eq!(st.steps, 1);
    }
}
