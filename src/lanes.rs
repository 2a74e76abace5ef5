//! Batches in the vector lanes: 16 samples side by side in every element.
//!
//! A convolution over one sample vectorises over its pixels, and pays for it at the edges: a
//! 5×5 kernel over a 10-pixel row reaches 14 pixels, and the vector work of the in-between
//! shapes is wasted. With 16 samples of a batch stored element by element (`[element][16]`),
//! every multiply-add of every layer is one full 16-lane vector times one broadcast weight,
//! whatever the map sizes: no edge waste, no horizontal sums, no transposes inside the layers,
//! and max pooling becomes a vector `max`.
//!
//! [`LaneLayer`] is that batched pass; [`Lanes`] wraps a stack of layers (LeNet-5's
//! layers before the softmax) so that its [`BatchLayer`] passes run in lanes when the batch
//! is a multiple of [`LANES`], in `f32`, with AVX-512 ([`Lanes::runs_in_lanes`]), converting
//! the batch in and out once at its ends.
//!
//! ```
//! use constnet::{BatchLayer, Conv2d, Lanes, Layer, Relu, sequential, zeroed_box};
//! use rand::SeedableRng;
//!
//! type Stack = Lanes<sequential![Conv2d<f32, 1, 4, 3, 1, 0, 8, 8, 6, 6>, Relu<[[[f32; 6]; 6]; 4]>]>;
//! let mut stack = zeroed_box::<Stack>();
//! stack.init(&mut rand::rngs::StdRng::seed_from_u64(1));
//! let mut images = zeroed_box::<[[[[f32; 8]; 8]; 1]; 16]>();
//! images[3][0][2][2] = 1.0;
//! let mut maps = zeroed_box::<[[[[f32; 6]; 6]; 4]; 16]>();
//! let mut ws = zeroed_box::<<Stack as BatchLayer<16>>::BatchWorkspace>();
//! stack.forward_batch(&images, &mut maps, &mut ws); // 16 samples, one per lane
//! let mut one = [[[0.0f32; 6]; 6]; 4];
//! stack.forward(&images[3], &mut one, &mut zeroed_box());
//! assert_eq!(maps[3], one);
//! ```
//!
//! The parts live apart: the layout and its conversions (`lane_layout`, with the kernels), the
//! [`LaneLayer`] interface and the place of a block in lanes, through which a
//! [`Chain`](crate::Chain)'s lane passes are its generic passes (`lane_layer`), each layer's
//! lane kernels beside its other kernels, and here the [`Lanes`] wrapper; this module names
//! them all.

use core::fmt;

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::lane_layout::{block_from_lanes_to, block_to_lanes};
use crate::layer::{Activation, Layer, Shape, TensorKind};
use crate::mode::{Mode, Pass, Train};
use crate::scalar::Scalar;
use crate::simd;
use crate::zeroed::Zeroable;

pub use crate::lane_layer::{LaneChainWorkspace, LaneLayer};
pub(crate) use crate::lane_layer::{backward_slots, forward_slots};
pub use crate::lane_layout::{BlockOrder, CacheLines, LANES, from_lanes, to_lanes};
pub(crate) use crate::lane_layout::{
    block_from_lanes, block_of, block_of_mut, check_lanes, lane_get, lane_put, relu_mask,
    transpose_blocks,
};

/// Runs `Net`'s batches in lanes ([`LaneLayer`]) when the batch is a multiple of [`LANES`]
/// and the `f32` kernels have 16-lane vectors ([`Lanes::runs_in_lanes`]), and sample by
/// sample otherwise; a single sample runs as `Net` does.
///
/// It is `Net` in every other respect (parameters, workspace, initialisation), so wrapping a
/// stack of layers changes no result beyond the order of `f32` sums. Its batch workspace
/// holds both ways of running and the batch's input and output in lanes (LeNet-5's
/// layers in `f32`: ≈ 300 KiB per sample, ≈ 4.7 MiB at the trainer's 16).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lanes<Net>(pub Net);

impl<Net: Layer> Layer for Lanes<Net> {
    type Scalar = Net::Scalar;
    type Input = Net::Input;
    type Output = Net::Output;
    type Workspace = Net::Workspace;
    const CHECK: () = Net::CHECK;
    const PARAM_TENSORS: usize = Net::PARAM_TENSORS;

    fn forward(&self, input: &Net::Input, output: &mut Net::Output, ws: &mut Net::Workspace) {
        self.0.forward(input, output, ws);
    }

    fn infer(&self, input: &Net::Input, output: &mut Net::Output, ws: &mut Net::Workspace) {
        self.0.infer(input, output, ws);
    }

    fn backward(
        &self,
        input: &Net::Input,
        ws: &mut Net::Workspace,
        grad_output: &Net::Output,
        grad_input: Option<&mut Net::Input>,
        grads: &mut Self,
    ) {
        self.0
            .backward(input, ws, grad_output, grad_input, &mut grads.0);
    }

    fn param(&self, i: usize) -> &[Net::Scalar] {
        self.0.param(i)
    }

    fn param_mut(&mut self, i: usize) -> &mut [Net::Scalar] {
        self.0.param_mut(i)
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &Net::Input,
        output: &mut Net::Output,
        ws: &mut Net::Workspace,
    ) {
        self.0.forward_in(pass, input, output, ws);
    }

    const BUFFER_TENSORS: usize = Net::BUFFER_TENSORS;

    fn buffer(&self, i: usize) -> &[Net::Scalar] {
        self.0.buffer(i)
    }

    fn buffer_mut(&mut self, i: usize) -> &mut [Net::Scalar] {
        self.0.buffer_mut(i)
    }

    const COUNTERS: usize = Net::COUNTERS;

    fn counter(&self, i: usize) -> u64 {
        self.0.counter(i)
    }

    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        self.0.counter_mut(i)
    }

    fn update_buffers(&mut self, stats: &Self) {
        self.0.update_buffers(&stats.0);
    }

    const CHILDREN: usize = Net::CHILDREN;
    const NAMED: bool = Net::NAMED;

    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        Net::tensor_name(kind, i, out)
    }

    fn tensor_name_at(
        kind: TensorKind,
        i: usize,
        position: usize,
        out: &mut dyn fmt::Write,
    ) -> fmt::Result {
        Net::tensor_name_at(kind, i, position, out)
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        self.0.tensor_shape(kind, i)
    }

    fn activation<'a>(ws: &'a Net::Workspace, name: &str) -> Option<Activation<'a, Net::Scalar>> {
        Net::activation(ws, name)
    }

    fn ends_with(name: &str) -> bool {
        Net::ends_with(name)
    }

    fn activation_at<'a>(
        ws: &'a Net::Workspace,
        name: &str,
        position: usize,
    ) -> Option<Activation<'a, Net::Scalar>> {
        Net::activation_at(ws, name, position)
    }

    fn ends_with_at(name: &str, position: usize) -> bool {
        Net::ends_with_at(name, position)
    }

    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.0.init(rng);
    }

    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.0.visit_layers_mut(visit);
    }
}

impl<Net: SgdLayer> SgdLayer for Lanes<Net> {
    fn backward_sgd(
        &mut self,
        input: &Net::Input,
        ws: &mut Net::Workspace,
        grad_output: &Net::Output,
        grad_input: Option<&mut Net::Input>,
        lr: Net::Scalar,
    ) {
        self.0.backward_sgd(input, ws, grad_output, grad_input, lr);
    }
}

/// The batch workspace of [`Lanes`]: both ways of running, and the batch in lanes.
pub struct LanesWorkspace<Net: BatchLayer<N> + LaneLayer<N>, const N: usize> {
    /// For batches that are not a multiple of [`LANES`], and for per-sample calls.
    pub samples: Net::BatchWorkspace,
    /// For batches in lanes.
    pub lanes: Net::LaneWorkspace,
    /// The latest batch's input, in lanes.
    pub input: CacheLines<[Net::Input; N]>,
    /// The latest batch's output, in lanes.
    pub output: CacheLines<[Net::Output; N]>,
    /// The output's gradient, in lanes.
    pub grad_output: CacheLines<[Net::Output; N]>,
    /// The input gradient, in lanes.
    pub grad_input: CacheLines<[Net::Input; N]>,
    /// Whether the latest forward pass ran in lanes (its backward pass follows it).
    pub in_lanes: bool,
    /// The second thread's half of an inference in lanes (the `threads` feature).
    #[cfg(feature = "threads")]
    pub second: LanesHalf<Net, N>,
}

/// What the second of two threads uses to infer its half of a batch in lanes
/// ([`BatchLayer::infer_batch`] of [`Lanes`] inside
/// [`within_layers`](crate::threads::within_layers)`(2, ..)`): a lane workspace and the
/// input and output in lanes of its own, so that neither thread writes what the other reads.
#[cfg(feature = "threads")]
pub struct LanesHalf<Net: LaneLayer<N>, const N: usize> {
    /// The layers' lane workspace.
    pub lanes: Net::LaneWorkspace,
    /// The half's input, in lanes.
    pub input: CacheLines<[Net::Input; N]>,
    /// The half's output, in lanes.
    pub output: CacheLines<[Net::Output; N]>,
}

impl<Net: Layer> Lanes<Net> {
    /// Whether a batch of `N` runs in lanes: `N` a multiple of [`LANES`], `f32`, and 16-lane
    /// vectors (AVX-512). With AVX2's 8 lanes the lane kernels' smaller register blocks made
    /// LeNet-5's training step 10–14% slower than sample by sample (measured when only its
    /// convolutions ran in lanes), and `f64` has no lane kernels, so those run sample by
    /// sample. So does aarch64: NEON's 4 lanes would split each block of 16 samples over
    /// four registers, narrower still than AVX2's two, and with no aarch64 machine to time
    /// it on (qemu's timings mean nothing) nothing says it would pay.
    pub fn runs_in_lanes<const N: usize>() -> bool {
        N.is_multiple_of(LANES)
            && Net::Scalar::as_f32(&[]).is_some()
            && simd::current() == simd::Isa::Avx512
    }
}

/// `net`'s inference of `blocks` in lanes, in the workspace and lane buffers given; their
/// samples' outputs to `out`, which holds the samples from the first block's on.
#[allow(clippy::type_complexity)]
fn infer_blocks<Net: LaneLayer<N>, const N: usize>(
    net: &Net,
    input: &[Net::Input; N],
    blocks: core::ops::Range<usize>,
    (lanes, x, y): (
        &mut Net::LaneWorkspace,
        &mut [Net::Input; N],
        &mut [Net::Output; N],
    ),
    out: &mut [Net::Output],
) {
    let first = blocks.start;
    for b in blocks {
        block_to_lanes(input, x, b);
        net.infer_lanes(b, x, y, lanes);
        block_from_lanes_to(y, b, &mut out[(b - first) * LANES..][..LANES]);
    }
}

impl<Net: BatchLayer<N> + LaneLayer<N>, const N: usize> BatchLayer<N> for Lanes<Net> {
    type BatchWorkspace = LanesWorkspace<Net, N>;

    /// In lanes the whole batch goes through at once (and otherwise `Net` decides inside).
    const WHOLE_BATCH: bool = N.is_multiple_of(LANES);

    fn forward_batch(
        &self,
        input: &[Net::Input; N],
        output: &mut [Net::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch_in(&Pass::<Train>::DEFAULT, input, output, ws);
    }

    /// The layers that run in lanes behave the same in both modes, so the lanes ignore the
    /// pass; outside the lanes `Net` gets it.
    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &[Net::Input; N],
        output: &mut [Net::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        ws.in_lanes = Self::runs_in_lanes::<N>();
        if ws.in_lanes {
            for b in 0..N / LANES {
                block_to_lanes(input, &mut ws.input.0, b);
                self.0
                    .forward_lanes(b, &ws.input.0, &mut ws.output.0, &mut ws.lanes);
                block_from_lanes(&ws.output.0, output, b);
            }
        } else {
            self.0
                .forward_batch_in(pass, input, output, &mut ws.samples);
        }
    }

    /// Block by block. Inside [`within_layers`](crate::threads::within_layers)`(2, ..)` (the
    /// `threads` feature) two threads take half the blocks each, with a workspace each: a
    /// block's inference reads nothing of another's, so the results are one thread's, bit
    /// for bit.
    fn infer_batch(
        &self,
        input: &[Net::Input; N],
        output: &mut [Net::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        if !Self::runs_in_lanes::<N>() {
            return self.0.infer_batch(input, output, &mut ws.samples);
        }
        let blocks = N / LANES;
        #[cfg(feature = "threads")]
        if blocks >= 2 && crate::threads::layer_threads() > 1 {
            let half = blocks / 2;
            let (first, second) = output.split_at_mut(half * LANES);
            let (lanes, x, y) = (&mut ws.lanes, &mut ws.input.0, &mut ws.output.0);
            let mut a = || infer_blocks(&self.0, input, 0..half, (lanes, x, y), first);
            let LanesHalf {
                lanes,
                input: x,
                output: y,
            } = &mut ws.second;
            let (x, y) = (&mut x.0, &mut y.0);
            let mut b = || infer_blocks(&self.0, input, half..blocks, (lanes, x, y), second);
            return crate::threads::run_all(&mut [&mut a, &mut b]);
        }
        let (lanes, x, y) = (&mut ws.lanes, &mut ws.input.0, &mut ws.output.0);
        infer_blocks(&self.0, input, 0..blocks, (lanes, x, y), output);
    }

    fn backward_batch(
        &self,
        input: &[Net::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[Net::Output; N],
        grad_input: Option<&mut [Net::Input; N]>,
        grads: &mut Self,
    ) {
        if !ws.in_lanes {
            return self.0.backward_batch(
                input,
                &mut ws.samples,
                grad_output,
                grad_input,
                &mut grads.0,
            );
        }
        let LanesWorkspace {
            lanes,
            input: CacheLines(x),
            output: CacheLines(y),
            grad_output: CacheLines(g),
            grad_input: CacheLines(gx),
            ..
        } = ws;
        let mut grad_input = grad_input;
        for b in 0..N / LANES {
            block_to_lanes(grad_output, g, b);
            match grad_input.as_deref_mut() {
                Some(gi) => {
                    self.0
                        .backward_lanes(b, x, y, lanes, g, Some(gx), &mut grads.0);
                    block_from_lanes(gx, gi, b);
                }
                None => self.0.backward_lanes(b, x, y, lanes, g, None, &mut grads.0),
            }
        }
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.0.prepare_forward(&mut ws.samples);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.0.prepare_backward(&mut ws.samples);
    }

    fn forward_sample(
        &self,
        n: usize,
        input: &Net::Input,
        output: &mut Net::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.forward_sample(n, input, output, &mut ws.samples);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        input: &Net::Input,
        output: &mut Net::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0
            .forward_sample_in(pass, n, input, output, &mut ws.samples);
    }

    fn infer_sample(
        &self,
        n: usize,
        input: &Net::Input,
        output: &mut Net::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.infer_sample(n, input, output, &mut ws.samples);
    }

    fn backward_sample(
        &self,
        n: usize,
        input: &Net::Input,
        ws: &mut Self::BatchWorkspace,
        grad_output: &Net::Output,
        grad_input: Option<&mut Net::Input>,
        grads: &mut Self,
    ) {
        self.0.backward_sample(
            n,
            input,
            &mut ws.samples,
            grad_output,
            grad_input,
            &mut grads.0,
        );
    }
}

crate::zeroable!(impl [Net: Zeroable] for Lanes [Net] (_0));
#[cfg(not(feature = "threads"))]
crate::zeroable!(impl [Net: BatchLayer<N> + LaneLayer<N>, const N: usize]
    for LanesWorkspace [Net, N] { samples, lanes, input, output, grad_output, grad_input, in_lanes });
#[cfg(feature = "threads")]
crate::zeroable!(impl [Net: BatchLayer<N> + LaneLayer<N>, const N: usize]
for LanesWorkspace [Net, N] {
    samples, lanes, input, output, grad_output, grad_input, in_lanes, second
});
#[cfg(feature = "threads")]
crate::zeroable!(impl [Net: LaneLayer<N>, const N: usize]
    for LanesHalf [Net, N] { lanes, input, output });
