//! Batch normalisation over the channels of feature maps (Ioffe & Szegedy 2015), as
//! PyTorch's `nn.BatchNorm2d`.

use core::marker::PhantomData;

use rand::Rng;

use crate::batchnorm_kernel as kernel;
use crate::fusion::{ChannelAffine, Epilogue, Fusion};
use crate::layer::{Layer, no_such_param, no_such_tensor};
use crate::mode::{Mode, Pass, Train};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};

/// Values of a sample (`C·H·W`) from which an evaluation pass splits its channels between two
/// threads inside [`crate::threads::within_layers`]: about 20 µs of one core's work.
#[cfg(feature = "std")]
pub(crate) const SPLIT_VALUES: usize = 1 << 16;

/// `y = (x − m) / √(v + eps) · weight + bias` per channel of `C` maps of `H`×`W`.
///
/// * **Training** ([`BatchLayer::forward_batch_in`](crate::BatchLayer::forward_batch_in) with a [`Pass<Train>`]): `m` and `v` are
///   the mean and the biased variance of the channel's `N·H·W` values in the batch, and the
///   gradient flows through them. This needs the whole batch, and a batch of at least 2: a
///   training pass over one sample does not compile.
/// * **Evaluation** ([`Layer::infer`], [`BatchLayer::infer_batch`](crate::BatchLayer::infer_batch), or any pass with a
///   [`Pass<Eval>`](crate::Pass::eval)): `m` and `v` are the running statistics, and the
///   layer is a per-channel affine map (which a backward pass may follow).
///
/// Parameters `weight`, `bias`; buffers `running_mean`, `running_var` and the counter
/// `num_batches_tracked`, named as PyTorch names them. `eps` and `momentum` are values, not
/// parameters. Build it with [`BatchNorm2d::new`] or [`Layer::init`]: a zeroed layer (before
/// `init`) has `eps` and running variance 0, and divides by zero in evaluation.
///
/// **Running statistics.** A training pass reads the network by shared reference (threads
/// share it), so it cannot move the running statistics itself. Instead the training backward
/// pass adds the batch's mean and unbiased variance to the buffer slots of the gradient
/// value, and counts the batch in its counter; the optimizer step then calls
/// [`Layer::update_buffers`], which moves the running statistics by `momentum` towards the
/// mean of the batches counted and adds 1 to `num_batches_tracked`. For one batch per step
/// this is PyTorch's update exactly: `running ← (1 − momentum)·running + momentum·batch`, with
/// the unbiased variance `v·n/(n − 1)`. When a step's batch is split over threads or micro-
/// batches, each part is normalised with its own statistics (as PyTorch's `DataParallel`
/// does) and the running statistics move towards their mean.
///
/// ```
/// use constnet::{BatchLayer, BatchNorm2d, Layer, Pass, Sgd, zeroed_box};
/// use rand::SeedableRng;
///
/// let mut bn = BatchNorm2d::<f64, 1, 1, 2>::new(1e-5, 0.1);
/// bn.init(&mut rand::rngs::StdRng::seed_from_u64(0)); // weight 1, bias 0, mean 0, var 1
/// let x = [[[[1.0, 3.0]]], [[[5.0, 7.0]]]]; // a batch of 2, one channel of 1×2
/// let mut y = [[[[0.0; 2]]]; 2];
/// let mut ws = zeroed_box::<<BatchNorm2d<f64, 1, 1, 2> as BatchLayer<2>>::BatchWorkspace>();
/// bn.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut ws);
/// // Mean 4, biased variance 5: y = (x − 4) / √5.
/// assert!((y[1][0][0][1] - 3.0 / 5f64.sqrt()).abs() < 1e-5);
///
/// let mut grads = zeroed_box::<BatchNorm2d<f64, 1, 1, 2>>();
/// bn.backward_batch(&x, &mut ws, &[[[[1.0, 0.0]]]; 2], None, &mut grads);
/// Sgd { lr: 0.0 }.step(&mut bn, &grads); // moves the running statistics
/// assert!((bn.running_mean[0] - 0.4).abs() < 1e-12); // 0.9·0 + 0.1·4
/// assert!((bn.running_var[0] - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-12); // unbiased: 20/3
/// assert_eq!(bn.num_batches_tracked, 1);
/// ```
///
/// **Checked at compile time.** A training pass over a batch of one sample does not build
/// (`cargo build`, `cargo test`: the check is evaluated where the pass is instantiated):
/// ```compile_fail
/// use constnet::{BatchLayer, BatchNorm2d, Pass, zeroed_box};
/// let bn = BatchNorm2d::<f32, 4, 2, 2>::new(1e-5, 0.1);
/// let x = [[[[0.5f32; 2]; 2]; 4]; 1];
/// let mut y = x;
/// bn.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut zeroed_box());
/// ```
/// ```
/// use constnet::{BatchLayer, BatchNorm2d, Pass, zeroed_box};
/// let bn = BatchNorm2d::<f32, 4, 2, 2>::new(1e-5, 0.1);
/// let x = [[[[0.5f32; 2]; 2]; 4]; 2];
/// let mut y = x;
/// bn.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut zeroed_box());
/// ```
/// The build says `BatchNorm2d: a training pass needs a batch of N ≥ 2 samples …`. Nor does a
/// single-sample training pass ([`Layer::forward`]) of a network with batch normalisation;
/// its evaluation pass does:
/// ```compile_fail
/// use constnet::{BatchNorm2d, Layer, Pass};
/// let bn = BatchNorm2d::<f64, 1, 1, 2>::new(1e-5, 0.1);
/// let mut y = [[[0.0; 2]]];
/// bn.forward_in(&Pass::train(0, 0), &[[[1.0, 2.0]]], &mut y, &mut ());
/// ```
/// ```
/// use constnet::{BatchNorm2d, Layer, Pass};
/// let bn = BatchNorm2d::<f64, 1, 1, 2>::new(1e-5, 0.1);
/// let mut y = [[[0.0; 2]]];
/// bn.forward_in(&Pass::eval(), &[[[1.0, 2.0]]], &mut y, &mut ());
/// ```
/// Its channels must be those of the layer before it:
/// ```compile_fail
/// use constnet::{sequential, BatchNorm2d, Conv2d, Layer};
/// type Net = sequential![Conv2d<f32, 3, 8, 3, 1, 1, 6, 6, 6, 6>, BatchNorm2d<f32, 6, 6, 6>];
/// const _: () = <Net as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{sequential, BatchNorm2d, Conv2d, Layer};
/// type Net = sequential![Conv2d<f32, 3, 8, 3, 1, 1, 6, 6, 6, 6>, BatchNorm2d<f32, 8, 6, 6>];
/// const _: () = <Net as Layer>::CHECK;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d<T, const C: usize, const H: usize, const W: usize, E = Eps1e5> {
    /// Scale γ per channel (PyTorch `weight`).
    pub weight: [T; C],
    /// Shift β per channel (PyTorch `bias`).
    pub bias: [T; C],
    /// Running mean per channel (a buffer).
    pub running_mean: [T; C],
    /// Running unbiased variance per channel (a buffer).
    pub running_var: [T; C],
    /// How many training steps moved the running statistics (a counter, `i64` in PyTorch).
    pub num_batches_tracked: u64,
    /// Added to the variance before its square root (PyTorch's default 1e-5; GoogLeNet's
    /// BasicConv2d uses 1e-3).
    pub eps: T,
    /// How far one step moves the running statistics (PyTorch's default 0.1).
    pub momentum: T,
    maps: PhantomData<([[T; W]; H], E)>,
}

/// The `eps` a [`BatchNorm2d`] starts with ([`Layer::init`]), as a type, so that a network's
/// type says it: torchvision's GoogLeNet builds every batch norm with 1e-3 ([`Eps1e3`]), the
/// others with PyTorch's default 1e-5 ([`Eps1e5`]). Implement it for your own marker type for
/// another value; the `eps` field can still be set after `init`.
pub trait BatchNormEps: Send + Sync + 'static {
    /// The value.
    const EPS: f64;
}

/// PyTorch's default `eps`, 1e-5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eps1e5;

impl BatchNormEps for Eps1e5 {
    const EPS: f64 = 1e-5;
}

/// `eps` = 1e-3, as torchvision's GoogLeNet (`BasicConv2d`) and Inception v3 have it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eps1e3;

impl BatchNormEps for Eps1e3 {
    const EPS: f64 = 1e-3;
}

/// What a batched pass keeps for its backward pass: the mode it ran in and each channel's
/// mean, `1/√(v + eps)` and biased variance.
#[derive(Debug)]
pub struct BatchNormWorkspace<T, const C: usize> {
    /// Whether the latest forward pass was a training pass.
    pub train: bool,
    /// The mean it normalised with.
    pub mean: [T; C],
    /// `1 / √(v + eps)` it normalised with.
    pub inv_std: [T; C],
    /// The batch's biased variance (training passes only).
    pub var: [T; C],
}

/// Evaluated when a training pass over `N` samples is compiled: batch statistics need
/// `N ≥ 2`.
pub(crate) struct TrainingBatch<L, M, const N: usize>(PhantomData<(L, M)>);

impl<L, M: Mode, const N: usize> TrainingBatch<L, M, N> {
    pub(crate) const OK: () = assert!(
        !M::TRAIN || N >= 2,
        "BatchNorm2d: a training pass needs a batch of N ≥ 2 samples (the statistics of one sample are the sample itself); evaluate single samples with `infer` or `Pass::eval()`"
    );
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, E: BatchNormEps>
    BatchNorm2d<T, C, H, W, E>
{
    /// A layer with PyTorch's initial values (weight 1, bias 0, running mean 0, running
    /// variance 1) and the given `eps` and `momentum`.
    pub fn new(eps: f64, momentum: f64) -> Self {
        let mut bn = <Self as crate::zeroed::Zeroable>::zeroed();
        (bn.eps, bn.momentum) = (T::from_f64(eps), T::from_f64(momentum));
        bn.reset();
        bn
    }

    /// PyTorch's `reset_parameters`: weight 1, bias 0, running mean 0, running variance 1,
    /// count 0. `eps` and `momentum` are kept.
    pub fn reset(&mut self) {
        self.weight = [T::one(); C];
        self.bias = [T::zero(); C];
        self.running_mean = [T::zero(); C];
        self.running_var = [T::one(); C];
        self.num_batches_tracked = 0;
    }

    /// The evaluation-mode affine map of channel `c`: `y = x·scale + shift`.
    pub(crate) fn eval_affine(&self, c: usize) -> (T, T, T) {
        let inv_std = T::one() / (self.running_var[c] + self.eps).sqrt();
        (self.running_mean[c], inv_std, self.weight[c] * inv_std)
    }

    /// Channel `c` of one sample, normalised with `mean` and `inv_std`, then `e`.
    pub(crate) fn affine(
        &self,
        c: usize,
        (mean, inv_std): (T, T),
        (x, y): (&[[T; W]; H], &mut [[T; W]; H]),
        e: Epilogue,
    ) {
        let scale = self.weight[c] * inv_std;
        kernel::affine(
            x.as_flattened(),
            y.as_flattened_mut(),
            (mean, scale, self.bias[c]),
            e,
        );
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, E: BatchNormEps> Layer
    for BatchNorm2d<T, C, H, W, E>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, H, W>;
    type Workspace = ();
    const CHECK: () = ();
    const PARAM_TENSORS: usize = 2;
    const BUFFER_TENSORS: usize = 2;
    const COUNTERS: usize = 1;
    const APPLIES_EPILOGUES: bool = true;

    /// A training pass over one sample, which does not compile (see the type's docs).
    fn forward(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut ()) {
        self.forward_in(&Pass::<Train>::DEFAULT, input, output, ws);
    }

    /// Evaluation only: a training pass over one sample does not compile.
    fn forward_in<M: Mode>(
        &self,
        _pass: &Pass<M>,
        x: &Self::Input,
        y: &mut Self::Output,
        _: &mut (),
    ) {
        let () = TrainingBatch::<Self, M, 1>::OK;
        self.infer(x, y, &mut ());
    }

    fn infer(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut ()) {
        self.infer_fused(input, output, ws, Fusion::NONE);
    }

    /// The normalisation and an epilogue (a ReLU after it) in one pass over the maps; an
    /// affine map after it runs as a pass of its own.
    fn infer_fused(
        &self,
        input: &Self::Input,
        output: &mut Self::Output,
        _: &mut (),
        f: Fusion<'_, T>,
    ) {
        let e = if f.affine.is_some() {
            Epilogue::Identity
        } else {
            f.epilogue
        };
        let channels = |range: core::ops::Range<usize>, y: &mut [[[T; W]; H]]| {
            for (c, y) in range.zip(y) {
                let (mean, inv_std, _) = self.eval_affine(c);
                self.affine(c, (mean, inv_std), (&input[c], y), e);
            }
        };
        #[cfg(feature = "std")]
        if C >= 2 && C * H * W >= SPLIT_VALUES && crate::threads::layer_threads() > 1 {
            // Inside `threads::within_layers(2, ..)`: half the channels each (DenseNet's
            // batch norm over the growing input before each layer, a pass over megabytes).
            let (y0, y1) = output.split_at_mut(C / 2);
            let (mut a, mut b) = (|| channels(0..C / 2, y0), || channels(C / 2..C, y1));
            crate::threads::run_all(&mut [&mut a, &mut b]);
        } else {
            channels(0..C, output);
        }
        #[cfg(not(feature = "std"))]
        channels(0..C, output);
        if f.affine.is_some() {
            f.apply(output.flat_mut());
        }
    }

    /// `(x − running_mean)·weight/√(running_var + eps) + bias` per channel, with the
    /// constants [`Layer::infer`] uses.
    fn channel_affine<R>(&self, f: impl FnOnce(ChannelAffine<'_, T>) -> R) -> Option<R> {
        let (mut mean, mut scale, mut shift) = ([T::zero(); C], [T::zero(); C], [T::zero(); C]);
        for c in 0..C {
            (mean[c], _, scale[c]) = self.eval_affine(c);
            shift[c] = self.bias[c];
        }
        Some(f(ChannelAffine {
            mean: &mean,
            scale: &scale,
            shift: &shift,
        }))
    }

    /// The backward pass of an evaluation pass (the only per-sample forward pass there is).
    fn backward(
        &self,
        input: &Self::Input,
        _ws: &mut (),
        grad_output: &Self::Output,
        mut grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        for c in 0..C {
            let (mean, inv_std, _) = self.eval_affine(c);
            let stats = (mean, inv_std);
            let (x, g) = (input[c].as_flattened(), grad_output[c].as_flattened());
            let (sum_g, sum_gx) = kernel::grad_sums(x, g, stats);
            grads.bias[c] = grads.bias[c] + sum_g;
            grads.weight[c] = grads.weight[c] + sum_gx;
            if let Some(gi) = grad_input.as_deref_mut() {
                let maps = (x, g, gi[c].as_flattened_mut());
                kernel::input_grad(maps, (mean, inv_std, self.weight[c] * inv_std), None);
            }
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => &self.weight,
            1 => &self.bias,
            _ => no_such_param("BatchNorm2d", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => &mut self.weight,
            1 => &mut self.bias,
            _ => no_such_param("BatchNorm2d", i),
        }
    }

    fn buffer(&self, i: usize) -> &[T] {
        match i {
            0 => &self.running_mean,
            1 => &self.running_var,
            _ => no_such_tensor("buffer", i),
        }
    }

    fn buffer_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => &mut self.running_mean,
            1 => &mut self.running_var,
            _ => no_such_tensor("buffer", i),
        }
    }

    fn counter(&self, i: usize) -> u64 {
        match i {
            0 => self.num_batches_tracked,
            _ => no_such_tensor("counter", i),
        }
    }

    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        match i {
            0 => &mut self.num_batches_tracked,
            _ => no_such_tensor("counter", i),
        }
    }

    fn update_buffers(&mut self, stats: &Self) {
        let batches = stats.num_batches_tracked;
        if batches == 0 {
            return;
        }
        let k = T::from_f64(batches as f64);
        let m = self.momentum;
        for c in 0..C {
            let (mean, var) = (stats.running_mean[c] / k, stats.running_var[c] / k);
            self.running_mean[c] = (T::one() - m) * self.running_mean[c] + m * mean;
            self.running_var[c] = (T::one() - m) * self.running_var[c] + m * var;
        }
        self.num_batches_tracked += 1;
    }

    /// PyTorch's initial values ([`BatchNorm2d::reset`]; nothing is random). A zeroed
    /// layer's `eps` of 0 becomes the type's default `E::EPS` ([`Eps1e5`], PyTorch's, unless
    /// the type says otherwise) and its `momentum` of 0 becomes PyTorch's 0.1; values set
    /// before are kept.
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {
        if self.eps == T::zero() {
            self.eps = T::from_f64(E::EPS);
        }
        if self.momentum == T::zero() {
            self.momentum = T::from_f64(0.1);
        }
        self.reset();
    }
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, E: BatchNormEps]
    for BatchNorm2d [T, C, H, W, E] { weight, bias, running_mean, running_var, num_batches_tracked, eps, momentum, maps });
crate::zeroable!(impl [T: Scalar, const C: usize] for BatchNormWorkspace [T, C] { train, mean, inv_std, var });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchLayer;
    use crate::mode::Eval;
    use crate::zeroed_box;

    type Bn = BatchNorm2d<f64, 2, 2, 3>;

    fn batch() -> [Maps<f64, 2, 2, 3>; 3] {
        core::array::from_fn(|s| {
            core::array::from_fn(|c| {
                core::array::from_fn(|i| {
                    core::array::from_fn(|j| ((s * 7 + c * 5 + i * 3 + j) % 11) as f64 - 4.0)
                })
            })
        })
    }

    #[test]
    fn training_normalises_each_channel_to_mean_zero_variance_one() {
        let bn = Bn::new(0.0, 0.1);
        let x = batch();
        let mut y = [[[[0.0; 3]; 2]; 2]; 3];
        let mut ws = zeroed_box::<BatchNormWorkspace<f64, 2>>();
        bn.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut ws);
        for c in 0..2 {
            let v: Vec<f64> = y
                .iter()
                .flat_map(|y| y[c].as_flattened().to_vec())
                .collect();
            let mean = v.iter().sum::<f64>() / 18.0;
            let var = v.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 18.0;
            assert!(
                mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn evaluation_uses_the_running_statistics_per_sample_and_in_batches() {
        let mut bn = Bn::new(1e-5, 0.1);
        (bn.running_mean, bn.running_var, bn.weight, bn.bias) =
            ([1.0, -2.0], [4.0, 0.25], [2.0, 3.0], [0.5, 0.0]);
        let x = batch();
        let (mut y, mut yb) = ([[[0.0; 3]; 2]; 2], [[[[0.0; 3]; 2]; 2]; 3]);
        bn.forward_in(&Pass::eval(), &x[1], &mut y, &mut ());
        let expected = |c: usize, v: f64| {
            (v - bn.running_mean[c]) / (bn.running_var[c] + 1e-5).sqrt() * bn.weight[c] + bn.bias[c]
        };
        assert_eq!(y[1][1][2], expected(1, x[1][1][1][2]));
        bn.forward_batch_in(&Pass::<Eval>::DEFAULT, &x, &mut yb, &mut zeroed_box());
        assert_eq!(yb[1], y);
        bn.infer_batch(&x, &mut yb, &mut zeroed_box());
        assert_eq!(yb[1], y);
    }

    #[test]
    fn the_optimizer_step_moves_running_statistics_once_per_step() {
        let mut bn = Bn::new(1e-5, 0.1);
        let x = batch();
        let mut y = [[[[0.0; 3]; 2]; 2]; 3];
        let mut ws = zeroed_box::<BatchNormWorkspace<f64, 2>>();
        let mut grads = zeroed_box::<Bn>();
        // Two micro-batches in one step: the running statistics move towards their mean.
        for _ in 0..2 {
            bn.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut ws);
            bn.backward_batch(&x, &mut ws, &y, None, &mut grads);
        }
        assert_eq!(grads.num_batches_tracked, 2);
        let v: Vec<f64> = x
            .iter()
            .flat_map(|x| x[0].as_flattened().to_vec())
            .collect();
        let mean = v.iter().sum::<f64>() / 18.0;
        let unbiased = v.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 17.0;
        crate::optim::Sgd { lr: 0.0 }.step(&mut bn, &grads);
        assert!((bn.running_mean[0] - 0.1 * mean).abs() < 1e-12);
        assert!((bn.running_var[0] - (0.9 + 0.1 * unbiased)).abs() < 1e-12);
        assert_eq!(bn.num_batches_tracked, 1);
        // A step with no training pass leaves them alone.
        let before = bn.clone();
        grads.zero_params();
        crate::optim::Sgd { lr: 0.0 }.step(&mut bn, &grads);
        assert_eq!(bn, before);
    }

    #[test]
    fn init_keeps_set_hyper_parameters_and_fills_in_zero_ones() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let mut bn = zeroed_box::<BatchNorm2d<f32, 3, 1, 1>>();
        bn.init(&mut rng);
        assert_eq!(
            (bn.eps, bn.momentum, bn.weight, bn.running_var),
            (1e-5, 0.1, [1.0; 3], [1.0; 3])
        );
        bn.eps = 1e-3;
        bn.running_mean = [5.0; 3];
        bn.init(&mut rng);
        assert_eq!((bn.eps, bn.running_mean), (1e-3, [0.0; 3]));
    }
}
