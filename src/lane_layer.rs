//! [`LaneLayer`]: the pass of a batch in the vector lanes (see [`crate::lanes`]), and the
//! lane passes of the layers whose lanes can stay lanes.

pub use crate::fusion::LaneEpilogue;
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

    /// What this layer is as a [`LaneEpilogue`], if it is one (a ReLU, a 2×2 stride-2 max
    /// pooling): a map that the layer before it can apply as it writes its own output, so
    /// that what lies between them is never written. A [`Chain`](crate::Chain) offers it to
    /// its first part ([`LaneLayer::forward_lanes_then`]).
    const LANE_EPILOGUE: Option<LaneEpilogue> = None;

    /// Whether this layer's output has passed through a ReLU at its end (a ReLU, or a chain
    /// whose last layer is one), so that masking its gradient by the ReLU is the ReLU's own
    /// backward pass (see [`LaneLayer::backward_lanes_masked`]).
    const ENDS_IN_RELU: bool = matches!(Self::LANE_EPILOGUE, Some(LaneEpilogue::Relu));

    /// Whether [`LaneLayer::forward_lanes_then`] with `epilogue` does the work (and returns
    /// `true`) for this layer as it is, and with `Relu`, [`LaneLayer::backward_lanes_then`];
    /// for an epilogue that does not [train](LaneEpilogue::trains), in inference only.
    /// Asked before anything is computed: the answer does not depend on the input.
    fn fuses(&self, epilogue: LaneEpilogue) -> bool {
        let _ = epilogue;
        false
    }

    /// [`LaneLayer::forward_lanes`] (or [`LaneLayer::infer_lanes`] if `infer`) followed by
    /// `epilogue`, written to `output` (the whole batch's elements flat, in lanes, as the
    /// layers of the epilogue would write them). Returns `false`, having done nothing, unless
    /// [`LaneLayer::fuses`] says it does `epilogue`. [`LaneEpilogue::ReluPool`] is for
    /// inference only: nothing before the pooling is kept for a backward pass.
    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
        epilogue: LaneEpilogue,
        infer: bool,
    ) -> bool {
        let _ = (block, input, output, ws, epilogue, infer);
        false
    }

    /// The backward pass of [`LaneLayer::forward_lanes_then`] with a ReLU `epilogue`:
    /// `output` is what it wrote and `grad_output` the gradient with respect to it (both
    /// flat, the whole batch); or, with `output` `None`, `grad_output` is already the
    /// gradient with respect to the ReLU's input (zero where the ReLU's output is; see
    /// [`LaneLayer::backward_lanes_masked`]). Returns `false`, having done nothing, unless
    /// [`LaneLayer::fuses`] says it does `epilogue`.
    #[allow(clippy::too_many_arguments)]
    fn backward_lanes_then(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: Option<&[Self::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Scalar],
        epilogue: LaneEpilogue,
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        let _ = (
            block,
            input,
            output,
            ws,
            grad_output,
            epilogue,
            grad_input,
            grads,
        );
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
