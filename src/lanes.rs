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

use rand::Rng;

use crate::batch::BatchLayer;
use crate::chain::Chain;
use crate::fused::SgdLayer;
use core::fmt;

use crate::layer::{Activation, Layer, Shape, TensorKind};
use crate::mode::{Mode, Pass, Train};
use crate::scalar::Scalar;
use crate::simd;
use crate::tensor::Tensor;
use crate::zeroed::Zeroable;

/// Samples per lane block: one AVX-512 vector of `f32` (two AVX2 vectors, four SSE2 ones).
pub const LANES: usize = 16;

/// A layer that runs a batch of `N` samples (`N` a multiple of [`LANES`]) in lanes.
///
/// The batch arrays hold `N / LANES` blocks one after the other; block `b` holds samples
/// `16·b .. 16·b + 16` element by element: element `e` of sample `16·b + l` is at flat index
/// `(b·LEN + e)·16 + l` ([`to_lanes`] and [`from_lanes`] convert). So `[n]` on these arrays
/// does not pick sample `n`; only the flat order matters. The results equal `N` calls of
/// [`Layer::forward`] and [`Layer::backward`] (up to the order of floating-point sums in the
/// `f32` fast paths), with parameter gradients *added* to `grads`. No method allocates.
/// The methods panic if `N` is not a multiple of [`LANES`].
pub trait LaneLayer<const N: usize>: Layer {
    /// What the forward pass keeps for the backward pass, and scratch space.
    type LaneWorkspace: Zeroable + Send + Sync + 'static;

    /// Computes block `block`'s output (samples `16·block .. 16·block + 16`) from its input,
    /// both in lanes. A batch runs block by block, so that each block's activations are
    /// still in cache for the next layer.
    fn forward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::LaneWorkspace,
    );

    /// [`LaneLayer::forward_lanes`] when no backward pass follows (see [`Layer::infer`]).
    fn infer_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        self.forward_lanes(block, input, output, ws);
    }

    /// Back-propagates block `block`'s `grad_output` (in lanes); `input` and `ws` must be
    /// those of the latest [`LaneLayer::forward_lanes`] of every block. Writes the block's
    /// input gradient (in lanes) if asked. Call it for blocks `0, 1, …, N/16 − 1` in that
    /// order: a layer may gather its parameter gradients lane by lane over the blocks and
    /// add their sums to `grads` only after the last one.
    #[allow(clippy::too_many_arguments)]
    fn backward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    );

    /// Whether this layer is a [`Relu`](crate::Relu): a chain then offers the layer before it to apply
    /// the ReLU itself ([`LaneLayer::forward_lanes_relu`]), so that the pre-activation maps
    /// are never written and read back.
    const RELU: bool = false;

    /// Whether [`LaneLayer::forward_lanes_relu`] and [`LaneLayer::backward_lanes_relu`]
    /// do the work (and return `true`) for this layer as it is.
    fn fuses_relu(&self) -> bool {
        false
    }

    /// [`LaneLayer::forward_lanes`] followed by a ReLU, written to `output`: the block's
    /// elements flat, in lanes, as a [`Relu`](crate::Relu) after this layer would write them. Returns
    /// `false`, having done nothing, if the layer does not fuse a ReLU (the default,
    /// whenever [`LaneLayer::fuses_relu`] is `false`).
    fn forward_lanes_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        let _ = (block, input, output, ws);
        false
    }

    /// [`LaneLayer::forward_lanes_relu`] when no backward pass follows (see
    /// [`Layer::infer`]).
    fn infer_lanes_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        self.forward_lanes_relu(block, input, output, ws)
    }

    /// The backward pass of [`LaneLayer::forward_lanes_relu`]: `output` is what it wrote and
    /// `grad_output` the gradient with respect to it (both flat, the whole batch), or, with
    /// `output` `None`, `grad_output` is already the gradient with respect to the ReLU's
    /// input (zero where the ReLU's output is; see [`LaneLayer::backward_lanes_through_relu`]).
    /// Returns `false`, having done nothing, if the layer does not fuse a ReLU (the
    /// default, whenever [`LaneLayer::fuses_relu`] is `false`).
    #[allow(clippy::too_many_arguments)]
    fn backward_lanes_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: Option<&[Self::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Scalar],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        let _ = (block, input, output, ws, grad_output, grad_input, grads);
        false
    }

    /// Whether this layer ends in a ReLU that the layer before it applies (a chain whose
    /// last two layers fused): its backward pass can then start from the gradient with
    /// respect to that ReLU's input ([`LaneLayer::backward_lanes_through_relu`]).
    fn ends_in_fused_relu(&self) -> bool {
        false
    }

    /// [`LaneLayer::backward_lanes`] of a layer that ends in a fused ReLU, from the gradient
    /// with respect to that ReLU's input (flat, the whole batch). Returns `false`, having
    /// done nothing, unless [`LaneLayer::ends_in_fused_relu`].
    fn backward_lanes_through_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        ws: &mut Self::LaneWorkspace,
        grad: &[Self::Scalar],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        let _ = (block, input, ws, grad, grad_input, grads);
        false
    }

    /// Whether this layer is a 2×2, stride-2 max pooling: in inference a chain then offers
    /// the layer before it and its ReLU to pool their output themselves
    /// ([`LaneLayer::infer_lanes_relu_pool`]).
    const POOL_2X2: bool = false;

    /// Whether [`LaneLayer::infer_lanes_relu_pool`] does the work (and returns `true`) for
    /// this layer as it is.
    fn fuses_relu_pool(&self) -> bool {
        false
    }

    /// [`LaneLayer::infer_lanes`], a ReLU, then a 2×2, stride-2 max pooling, written to
    /// `output` (the block's elements flat, in lanes, as the pooling would write them).
    /// Returns `false`, having done nothing, unless [`LaneLayer::fuses_relu_pool`].
    fn infer_lanes_relu_pool(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        let _ = (block, input, output, ws);
        false
    }

    /// [`LaneLayer::infer_lanes`] then a 2×2, stride-2 max pooling, written as
    /// [`LaneLayer::infer_lanes_relu_pool`] writes it, if this layer ends in a ReLU that the
    /// layer before it applies and pools itself (a chain); otherwise returns `false`, having
    /// done nothing.
    fn infer_lanes_pooled(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        let _ = (block, input, output, ws);
        false
    }

    /// Whether [`LaneLayer::backward_lanes_masked`] costs nothing over the plain backward
    /// pass (max pooling: the mask is read at the winning input, already at hand).
    const MASKS_FOR_FREE: bool = false;

    /// [`LaneLayer::backward_lanes`] writing the gradient with respect to the input of the
    /// ReLU whose output this layer reads: the input gradient, zero where the input is not
    /// positive. By default the plain pass, then the mask over the block.
    #[allow(clippy::too_many_arguments)]
    fn backward_lanes_masked(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: &mut [Self::Input; N],
        grads: &mut Self,
    ) {
        let gi = Some(&mut *grad_input);
        self.backward_lanes(block, input, output, ws, grad_output, gi, grads);
        relu_mask(
            Self::Input::flat_slice_mut(block_of_mut(grad_input, block)),
            Self::Input::flat_slice(block_of(input, block)),
        );
    }
}

/// Panics unless the batch `n` is a multiple of [`LANES`] (a constant test, folded away:
/// it is not a compile-time error only because [`Lanes`] instantiates the lane passes for
/// every batch size and calls them for multiples of 16 alone).
#[track_caller]
pub(crate) const fn check_lanes(n: usize) {
    assert!(
        n.is_multiple_of(LANES),
        "LaneLayer: the batch N must be a multiple of LANES (16)"
    );
}

/// Rearranges a batch of samples into lanes (see [`LaneLayer`]). Panics if `N` is not a
/// multiple of [`LANES`].
pub fn to_lanes<X: Tensor, const N: usize>(samples: &[X; N], lanes: &mut [X; N]) {
    check_lanes(N);
    transpose_blocks(
        X::flat_slice(samples),
        X::flat_slice_mut(lanes),
        (LANES, X::LEN),
    );
}

/// Rearranges a batch in lanes back into samples (the inverse of [`to_lanes`]).
pub fn from_lanes<X: Tensor, const N: usize>(lanes: &[X; N], samples: &mut [X; N]) {
    check_lanes(N);
    transpose_blocks(
        X::flat_slice(lanes),
        X::flat_slice_mut(samples),
        (X::LEN, LANES),
    );
}

/// [`to_lanes`] of block `b` alone.
fn block_to_lanes<X: Tensor, const N: usize>(samples: &[X; N], lanes: &mut [X; N], b: usize) {
    transpose_blocks(
        X::flat_slice(block_of(samples, b)),
        X::flat_slice_mut(block_of_mut(lanes, b)),
        (LANES, X::LEN),
    );
}

/// [`from_lanes`] of block `b` alone.
pub(crate) fn block_from_lanes<X: Tensor, const N: usize>(
    lanes: &[X; N],
    samples: &mut [X; N],
    b: usize,
) {
    transpose_blocks(
        X::flat_slice(block_of(lanes, b)),
        X::flat_slice_mut(block_of_mut(samples, b)),
        (X::LEN, LANES),
    );
}

/// Transposes each `rows × cols` block of `src` into `dst`.
pub(crate) fn transpose_blocks<T: Scalar>(src: &[T], dst: &mut [T], (rows, cols): (usize, usize)) {
    let block = rows * cols;
    if let (Some(src), Some(dst)) = (T::as_f32(src), T::as_f32_mut(dst)) {
        for (src, dst) in src.chunks_exact(block).zip(dst.chunks_exact_mut(block)) {
            simd::dispatch(simd::Transposed {
                src,
                rows,
                cols,
                dst,
            });
        }
        return;
    }
    for (src, dst) in src.chunks_exact(block).zip(dst.chunks_exact_mut(block)) {
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dst[c * rows + r] = v;
            }
        }
    }
}

/// A ReLU's backward pass in place: `grad` zero where `input` is not positive (NaN
/// included), as [`Relu`](crate::Relu) does.
pub(crate) fn relu_mask<T: Scalar>(grad: &mut [T], input: &[T]) {
    for (g, &x) in grad.iter_mut().zip(input) {
        *g = if x > T::zero() { *g } else { T::zero() };
    }
}

/// Copies sample `n` of a batch in lanes (of `sample.len()` elements each) into `sample`:
/// the reference lane passes run the per-sample loops on it.
pub(crate) fn lane_get<T: Copy>(lanes: &[T], n: usize, sample: &mut [T]) {
    let (block, lane, len) = (n / LANES, n % LANES, sample.len());
    let lanes = &lanes[block * len * LANES..][..len * LANES];
    for (v, chunk) in sample.iter_mut().zip(lanes.chunks_exact(LANES)) {
        *v = chunk[lane];
    }
}

/// Writes `sample` as sample `n` of a batch in lanes (the inverse of [`lane_get`]).
pub(crate) fn lane_put<T: Copy>(sample: &[T], n: usize, lanes: &mut [T]) {
    let (block, lane, len) = (n / LANES, n % LANES, sample.len());
    let lanes = &mut lanes[block * len * LANES..][..len * LANES];
    for (&v, chunk) in sample.iter().zip(lanes.chunks_exact_mut(LANES)) {
        chunk[lane] = v;
    }
}

/// [`LaneLayer::forward_lanes`] of a layer whose lanes can stay lanes (element-wise, or a
/// reshape): its per-sample pass over the block's slots.
pub(crate) fn forward_slots<L: Layer<Workspace = ()>, const N: usize>(
    layer: &L,
    block: usize,
    input: &[L::Input; N],
    output: &mut [L::Output; N],
) {
    check_lanes(N);
    for (x, y) in block_of(input, block)
        .iter()
        .zip(block_of_mut(output, block))
    {
        layer.forward(x, y, &mut ());
    }
}

/// [`LaneLayer::backward_lanes`] of such a layer (see [`forward_slots`]).
pub(crate) fn backward_slots<L: Layer<Workspace = ()>, const N: usize>(
    layer: &L,
    block: usize,
    (input, grad_output): (&[L::Input; N], &[L::Output; N]),
    grad_input: Option<&mut [L::Input; N]>,
    grads: &mut L,
) {
    check_lanes(N);
    let Some(gi) = grad_input else { return };
    let slots = block_of(input, block)
        .iter()
        .zip(block_of(grad_output, block));
    for ((x, g), gi) in slots.zip(block_of_mut(gi, block)) {
        layer.backward(x, &mut (), g, Some(gi), grads);
    }
}

/// The block a layer's lane backward pass expects next, kept in its lane workspace by the
/// layers that gather parameter gradients over the blocks ([`crate::Conv2d`] and
/// [`crate::Linear`]): they clear their sums at block 0 and add them to `grads` after the last,
/// so blocks out of order, repeated or skipped would give wrong gradients without a sound.
/// Instead the pass panics, naming the block it got and the one it expected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockOrder(usize);

impl BlockOrder {
    /// The block expected next (0 before the first backward pass and after the last block).
    pub fn expected(self) -> usize {
        self.0
    }

    /// Records that the backward pass of `block` (of `blocks`) runs now.
    ///
    /// # Panics
    /// If `block` is not the expected one: blocks run `0, 1, …, blocks − 1`, in that order.
    #[track_caller]
    pub fn take(&mut self, block: usize, blocks: usize) {
        assert!(
            block == self.0 && block < blocks,
            "backward_lanes: got block {block}, expected block {} (the {blocks} blocks of a \
             batch run 0, 1, …, {} in order: the parameter gradients are gathered over them)",
            self.0,
            blocks.saturating_sub(1),
        );
        self.0 = if block + 1 == blocks { 0 } else { block + 1 };
    }
}

/// A value aligned to a 64-byte cache line. In lanes every vector load reads one whole
/// line, so a buffer that starts mid-line would split every one of them in two.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct CacheLines<X>(pub X);

/// What a [`Chain`]'s lane passes keep: both parts' workspaces and the intermediate
/// activation and its gradient, in lanes.
pub struct LaneChainWorkspace<A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize> {
    /// Workspace of the first layer(s).
    pub first: A::LaneWorkspace,
    /// Output of `first`, in lanes.
    pub mid: CacheLines<[A::Output; N]>,
    /// Gradient with respect to `mid`, in lanes.
    pub mid_grad: CacheLines<[A::Output; N]>,
    /// Workspace of the later layer.
    pub then: B::LaneWorkspace,
}

impl<A, B> Chain<A, B> {
    /// The forward pass of a layer and the ReLU after it, fused, if `B` is a ReLU that `A`
    /// can apply itself (then returns `true`), for inference if `infer`.
    fn forward_fused<const N: usize>(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut LaneChainWorkspace<A, B, N>,
        infer: bool,
    ) -> bool
    where
        A: LaneLayer<N>,
        B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
    {
        if !(B::RELU && self.first.fuses_relu()) {
            return false;
        }
        let y = B::Output::flat_slice_mut(output);
        let fused = if infer {
            self.first.infer_lanes_relu(block, input, y, &mut ws.first)
        } else {
            self.first
                .forward_lanes_relu(block, input, y, &mut ws.first)
        };
        debug_assert!(fused, "fuses_relu promised a fused forward pass");
        true
    }
}

/// Block by block, layer by layer.
impl<A, B, const N: usize> LaneLayer<N> for Chain<A, B>
where
    A: LaneLayer<N>,
    B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
{
    type LaneWorkspace = LaneChainWorkspace<A, B, N>;

    /// A layer followed by a ReLU that it can apply itself writes the ReLU's output
    /// straight away ([`LaneLayer::forward_lanes_relu`]): the maps before the ReLU are
    /// never written.
    fn forward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        if self.forward_fused(block, input, output, ws, false) {
            return;
        }
        self.first
            .forward_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .forward_lanes(block, &ws.mid.0, output, &mut ws.then);
    }

    fn infer_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        if self.forward_fused(block, input, output, ws, true) {
            return;
        }
        if B::POOL_2X2 {
            let y = B::Output::flat_slice_mut(output);
            if self
                .first
                .infer_lanes_pooled(block, input, y, &mut ws.first)
            {
                return;
            }
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes(block, &ws.mid.0, output, &mut ws.then);
    }

    fn fuses_relu_pool(&self) -> bool {
        self.then.fuses_relu_pool()
    }

    /// The chain's last layer applies the ReLU and the pooling, if it can.
    fn infer_lanes_relu_pool(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        if !self.then.fuses_relu_pool() {
            return false;
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes_relu_pool(block, &ws.mid.0, output, &mut ws.then)
    }

    /// A chain that ends in a ReLU (`B`) hands it and the pooling to the layer before it.
    fn infer_lanes_pooled(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        B::RELU
            && self.first.fuses_relu_pool()
            && self
                .first
                .infer_lanes_relu_pool(block, input, output, &mut ws.first)
    }

    /// The chain's last layer applies the ReLU, if it can.
    fn forward_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        // Asked first, with nothing computed: whether the last layer fuses does not depend
        // on its input.
        if !self.then.fuses_relu() {
            return false;
        }
        self.first
            .forward_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .forward_lanes_relu(block, &ws.mid.0, output, &mut ws.then)
    }

    fn infer_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        if !self.then.fuses_relu() {
            return false;
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes_relu(block, &ws.mid.0, output, &mut ws.then)
    }

    fn fuses_relu(&self) -> bool {
        self.then.fuses_relu()
    }

    fn ends_in_fused_relu(&self) -> bool {
        B::RELU && self.first.fuses_relu()
    }

    fn backward_lanes_through_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        ws: &mut Self::LaneWorkspace,
        grad: &[A::Scalar],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        self.ends_in_fused_relu()
            && self.first.backward_lanes_relu(
                block,
                input,
                None,
                &mut ws.first,
                grad,
                grad_input,
                &mut grads.first,
            )
    }

    fn backward_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: Option<&[A::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[A::Scalar],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        if !self.then.fuses_relu() {
            return false;
        }
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        let g = Some(&mut *mid_grad);
        let fused = self.then.backward_lanes_relu(
            block,
            mid,
            output,
            then,
            grad_output,
            g,
            &mut grads.then,
        );
        debug_assert!(fused, "fuses_relu promised a fused backward pass");
        self.first.backward_lanes(
            block,
            input,
            mid,
            first,
            mid_grad,
            grad_input,
            &mut grads.first,
        );
        true
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &[B::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[B::Output; N],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) {
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        if B::RELU && self.first.fuses_relu() {
            let (y, g) = (
                B::Output::flat_slice(output),
                B::Output::flat_slice(grad_output),
            );
            let grads = &mut grads.first;
            let fused =
                self.first
                    .backward_lanes_relu(block, input, Some(y), first, g, grad_input, grads);
            debug_assert!(fused, "fuses_relu promised a fused backward pass");
            return;
        }
        if B::MASKS_FOR_FREE && self.first.ends_in_fused_relu() {
            // The later layer hands back the gradient with respect to the fused ReLU's input.
            let g = &mut *mid_grad;
            self.then.backward_lanes_masked(
                block,
                mid,
                output,
                then,
                grad_output,
                g,
                &mut grads.then,
            );
            let fused = self.first.backward_lanes_through_relu(
                block,
                input,
                first,
                A::Output::flat_slice(mid_grad),
                grad_input,
                &mut grads.first,
            );
            debug_assert!(fused, "ends_in_fused_relu promised a fused backward pass");
            return;
        }
        let g = Some(&mut *mid_grad);
        self.then
            .backward_lanes(block, mid, output, then, grad_output, g, &mut grads.then);
        self.first.backward_lanes(
            block,
            input,
            mid,
            first,
            mid_grad,
            grad_input,
            &mut grads.first,
        );
    }
}

/// The samples of block `block`: in lanes, the same slots hold the same block.
pub(crate) fn block_of<X, const N: usize>(x: &[X; N], block: usize) -> &[X] {
    &x[block * LANES..][..LANES]
}

/// Mutable version of [`block_of`].
pub(crate) fn block_of_mut<X, const N: usize>(x: &mut [X; N], block: usize) -> &mut [X] {
    &mut x[block * LANES..][..LANES]
}

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
}

impl<Net: Layer> Lanes<Net> {
    /// Whether a batch of `N` runs in lanes: `N` a multiple of [`LANES`], `f32`, and 16-lane
    /// vectors (AVX-512). With AVX2's 8 lanes the lane kernels' smaller register blocks made
    /// LeNet-5's training step 10–14% slower than sample by sample (measured when only its
    /// convolutions ran in lanes), and `f64` has no lane kernels, so those run sample by
    /// sample.
    pub fn runs_in_lanes<const N: usize>() -> bool {
        N.is_multiple_of(LANES)
            && Net::Scalar::as_f32(&[]).is_some()
            && simd::current() == simd::Isa::Avx512
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

    fn infer_batch(
        &self,
        input: &[Net::Input; N],
        output: &mut [Net::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        if Self::runs_in_lanes::<N>() {
            for b in 0..N / LANES {
                block_to_lanes(input, &mut ws.input.0, b);
                self.0
                    .infer_lanes(b, &ws.input.0, &mut ws.output.0, &mut ws.lanes);
                block_from_lanes(&ws.output.0, output, b);
            }
        } else {
            self.0.infer_batch(input, output, &mut ws.samples);
        }
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
crate::zeroable!(impl [A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize]
    for LaneChainWorkspace [A, B, N] { first, mid, mid_grad, then });
crate::zeroable!(impl [Net: BatchLayer<N> + LaneLayer<N>, const N: usize]
    for LanesWorkspace [Net, N] { samples, lanes, input, output, grad_output, grad_input, in_lanes });
crate::zeroable!(impl [X: Zeroable] for CacheLines [X] (_0));

crate::zeroable!(impl [] for BlockOrder [] (_0));

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn to_lanes_puts_sample_l_in_lane_l_and_from_lanes_undoes_it() {
        let mut samples = [[0.0f32; 20]; 32];
        for (n, s) in samples.iter_mut().enumerate() {
            for (e, v) in s.iter_mut().enumerate() {
                *v = (n * 100 + e) as f32;
            }
        }
        let mut lanes = [[0.0f32; 20]; 32];
        to_lanes(&samples, &mut lanes);
        let flat = lanes.as_flattened();
        // sample 16·b + l, element e at (b·20 + e)·16 + l
        assert_eq!(flat[(20 + 7) * 16 + 3], samples[19][7]);
        assert_eq!(flat[5 * 16 + 15], samples[15][5]);
        let mut back = [[0.0f32; 20]; 32];
        from_lanes(&lanes, &mut back);
        assert_eq!(back, samples);
        // f64 goes through the plain loops, to the same places
        let samples64 = samples.map(|s| s.map(f64::from));
        let mut lanes64 = [[0.0f64; 20]; 32];
        to_lanes(&samples64, &mut lanes64);
        assert!(
            lanes64
                .as_flattened()
                .iter()
                .zip(flat)
                .all(|(&a, &b)| a == f64::from(b))
        );
    }
}
