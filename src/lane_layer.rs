//! [`LaneLayer`]: the pass of a batch in the vector lanes (see [`crate::lanes`]), and the
//! lane passes of the layers whose lanes can stay lanes.

use crate::lane_layout::{block_of, block_of_mut, check_lanes, relu_mask};
use crate::layer::Layer;
use crate::tensor::Tensor;
use crate::zeroed::Zeroable;

/// A layer that runs a batch of `N` samples (`N` a multiple of [`LANES`](crate::LANES)) in lanes.
///
/// The batch arrays hold `N / LANES` blocks one after the other; block `b` holds samples
/// `16·b .. 16·b + 16` element by element: element `e` of sample `16·b + l` is at flat index
/// `(b·LEN + e)·16 + l` ([`to_lanes`](crate::to_lanes) and [`from_lanes`](crate::from_lanes) convert). So `[n]` on these arrays
/// does not pick sample `n`; only the flat order matters. The results equal `N` calls of
/// [`Layer::forward`] and [`Layer::backward`] (up to the order of floating-point sums in the
/// `f32` fast paths), with parameter gradients *added* to `grads`. No method allocates.
/// The methods panic if `N` is not a multiple of [`LANES`](crate::LANES).
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
