//! [`LaneLayer`]: the pass of a batch in the vector lanes (see [`crate::lanes`]); the place
//! of such a pass, block `b` of a batch in lanes (`Block`), through which a
//! [`Chain`]'s lane passes are its generic passes ([`crate::place`]); and the lane passes of
//! the layers whose lanes can stay lanes.

use crate::chain::{self, Chain};
use crate::fusion::Fusion;
use crate::lane_layout::{CacheLines, block_of, block_of_mut, check_lanes, relu_mask};
use crate::layer::Layer;
use crate::mode::{Mode, Pass, Train};
use crate::place::Place;
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

    /// What this layer is as a [`Fusion`], if it is one (a ReLU, a 2×2 stride-2 max pooling
    /// that covers its input): a map that the layer before it can apply as it writes its own
    /// output, so that what lies between them is never written. A [`Chain`] offers it to its
    /// first part ([`LaneLayer::forward_lanes_then`]).
    const LANE_EPILOGUE: Option<Fusion<'static, Self::Scalar>> = None;

    /// Whether this layer's output has passed through a ReLU at its end (a ReLU, or a chain
    /// whose last layer is one), so that masking its gradient by the ReLU is the ReLU's own
    /// backward pass (see [`LaneLayer::backward_lanes_masked`]).
    const ENDS_IN_RELU: bool = match Self::LANE_EPILOGUE {
        Some(f) => f.is_relu(),
        None => false,
    };

    /// Whether [`LaneLayer::forward_lanes_then`] with `epilogue` does the work (and returns
    /// `true`) for this layer as it is, and with a ReLU, [`LaneLayer::backward_lanes_then`];
    /// for an epilogue that does not [train](Fusion::trains), in inference only.
    /// Asked before anything is computed: the answer does not depend on the input.
    fn fuses(&self, epilogue: Fusion<'_, Self::Scalar>) -> bool {
        let _ = epilogue;
        false
    }

    /// [`LaneLayer::forward_lanes`] (or [`LaneLayer::infer_lanes`] if `infer`) followed by
    /// `epilogue`, written to `output` (the whole batch's elements flat, in lanes, as the
    /// layers of the epilogue would write them). Returns `false`, having done nothing, unless
    /// [`LaneLayer::fuses`] says it does `epilogue`. A pooling is for inference only:
    /// nothing before it is kept for a backward pass.
    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Scalar],
        ws: &mut Self::LaneWorkspace,
        epilogue: Fusion<'_, Self::Scalar>,
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
        epilogue: Fusion<'_, Self::Scalar>,
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

/// Block `b` of a batch of `N` in lanes ([`LaneLayer`]'s methods): a place where
/// [`Chain`]'s passes run ([`crate::place`]). Lane layers have no train/eval difference, so
/// the pass's mode is not passed on.
pub(crate) struct Block<const N: usize>(pub(crate) usize);

impl<L: LaneLayer<N>, const N: usize> Place<L> for Block<N> {
    type Ws = L::LaneWorkspace;
    type In = [L::Input; N];
    type Out = [L::Output; N];

    #[inline(always)]
    fn forward_in<M: Mode>(
        &self,
        _: &Pass<M>,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut Self::Ws,
    ) {
        layer.forward_lanes(self.0, x, y, ws);
    }

    /// Panics if `y` is `None`: a pass in lanes is always given its output (a chain has it).
    #[inline(always)]
    fn backward(
        &self,
        layer: &L,
        x: &Self::In,
        y: Option<&Self::Out>,
        ws: &mut Self::Ws,
        g: &Self::Out,
        gi: Option<&mut Self::In>,
        grads: &mut L,
    ) {
        let y = y.expect("a backward pass in lanes is given its output");
        layer.backward_lanes(self.0, x, y, ws, g, gi, grads);
    }

    #[inline(always)]
    fn infer(&self, layer: &L, x: &Self::In, y: &mut Self::Out, ws: &mut Self::Ws) {
        layer.infer_lanes(self.0, x, y, ws);
    }

    fn infer_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut Self::Ws,
        f: Fusion<'_, L::Scalar>,
    ) {
        let flat = L::Output::flat_slice_mut(y);
        if f.is_none() || !layer.forward_lanes_then(self.0, x, flat, ws, f, true) {
            layer.infer_lanes(self.0, x, y, ws);
            <Self as Place<L>>::apply(self, y, f);
        }
    }

    fn apply(&self, y: &mut Self::Out, f: Fusion<'_, L::Scalar>) {
        if !f.is_none() {
            f.apply(L::Output::flat_slice_mut(block_of_mut(y, self.0)));
        }
    }

    const AS_FUSION: Option<Fusion<'static, L::Scalar>> = L::LANE_EPILOGUE;
    const CAN_FUSE: bool = true;
    const TRAINS_FUSED: bool = true;
    const MASKS_FOR_FREE: bool = L::MASKS_FOR_FREE;
    const ENDS_IN_RELU: bool = L::ENDS_IN_RELU;

    #[inline(always)]
    fn fuses(layer: &L, f: Fusion<'_, L::Scalar>, train: bool) -> bool {
        (!train || f.trains()) && layer.fuses(f)
    }

    #[inline(always)]
    fn forward_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut [L::Scalar],
        ws: &mut Self::Ws,
        f: Fusion<'_, L::Scalar>,
        infer: bool,
    ) -> bool {
        layer.forward_lanes_then(self.0, x, y, ws, f, infer)
    }

    #[inline(always)]
    fn backward_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: Option<&[L::Scalar]>,
        ws: &mut Self::Ws,
        g: &[L::Scalar],
        f: Fusion<'_, L::Scalar>,
        gi: Option<&mut Self::In>,
        grads: &mut L,
    ) -> bool {
        layer.backward_lanes_then(self.0, x, y, ws, g, f, gi, grads)
    }

    /// Panics if `y` is `None`, as [`Place::backward`].
    #[inline(always)]
    fn backward_masked(
        &self,
        layer: &L,
        x: &Self::In,
        y: Option<&Self::Out>,
        ws: &mut Self::Ws,
        g: &Self::Out,
        gi: &mut Self::In,
        grads: &mut L,
    ) {
        let y = y.expect("a backward pass in lanes is given its output");
        layer.backward_lanes_masked(self.0, x, y, ws, g, gi, grads);
    }

    #[inline(always)]
    fn flat_in(x: &Self::In) -> &[L::Scalar] {
        Tensor::flat_slice(x)
    }

    #[inline(always)]
    fn flat_in_mut(x: &mut Self::In) -> &mut [L::Scalar] {
        Tensor::flat_slice_mut(x)
    }

    #[inline(always)]
    fn flat_out(y: &Self::Out) -> &[L::Scalar] {
        Tensor::flat_slice(y)
    }

    #[inline(always)]
    fn out_from_flat_mut(y: &mut [L::Scalar]) -> Option<&mut Self::Out> {
        L::Output::batch_from_flat_mut::<N>(y)
    }

    #[inline(always)]
    fn flat_out_mut(y: &mut Self::Out) -> &mut [L::Scalar] {
        Tensor::flat_slice_mut(y)
    }
}

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

impl<A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize>
    LaneChainWorkspace<A, B, N>
{
    /// The buffers of a forward pass: `first`'s workspace, the activation between the
    /// parts, `then`'s workspace.
    #[allow(clippy::type_complexity)]
    fn between(
        &mut self,
    ) -> (
        &mut A::LaneWorkspace,
        &mut [A::Output; N],
        &mut B::LaneWorkspace,
    ) {
        (&mut self.first, &mut self.mid.0, &mut self.then)
    }

    /// The buffers of a backward pass: those of [`LaneChainWorkspace::between`] and the
    /// gradient between the parts.
    #[allow(clippy::type_complexity)]
    fn around(
        &mut self,
    ) -> (
        &mut A::LaneWorkspace,
        &[A::Output; N],
        &mut [A::Output; N],
        &mut B::LaneWorkspace,
    ) {
        (
            &mut self.first,
            &self.mid.0,
            &mut self.mid_grad.0,
            &mut self.then,
        )
    }
}

/// A chain's passes in lanes are its generic passes (`chain::forward_at`, `infer_at`,
/// `backward_at` and the fused ones; see `src/place.rs`) in the place of one block: block by
/// block, layer by layer, a layer applying the ReLU after it as it writes (in training
/// too), and in inference a 2×2 max pooling after that ReLU.
impl<A, B, const N: usize> LaneLayer<N> for Chain<A, B>
where
    A: LaneLayer<N>,
    B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
{
    type LaneWorkspace = LaneChainWorkspace<A, B, N>;

    const ENDS_IN_RELU: bool = B::ENDS_IN_RELU;

    fn forward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        let (parts, buffers) = ((&self.first, &self.then), ws.between());
        let pass = &Pass::<Train>::DEFAULT;
        chain::forward_at(&Block::<N>(block), pass, parts, input, output, buffers);
    }

    fn infer_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        let (parts, buffers) = ((&self.first, &self.then), ws.between());
        chain::infer_at(
            &Block::<N>(block),
            parts,
            input,
            output,
            buffers,
            Fusion::NONE,
        );
    }

    fn fuses(&self, epilogue: Fusion<'_, A::Scalar>) -> bool {
        chain::fuses_at::<Block<N>, A, B>((&self.first, &self.then), epilogue, false)
    }

    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
        epilogue: Fusion<'_, A::Scalar>,
        infer: bool,
    ) -> bool {
        let (parts, buffers) = ((&self.first, &self.then), ws.between());
        let at = &Block::<N>(block);
        chain::forward_fused_at(at, parts, input, output, buffers, epilogue, infer)
    }

    fn backward_lanes_then(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: Option<&[A::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[A::Scalar],
        epilogue: Fusion<'_, A::Scalar>,
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        let (parts, buffers) = ((&self.first, &self.then), ws.around());
        let (at, g, e) = (&Block::<N>(block), grad_output, epilogue);
        chain::backward_fused_at(at, parts, input, output, buffers, g, e, grad_input, grads)
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
        let (parts, buffers) = ((&self.first, &self.then), ws.around());
        let (at, y, g) = (&Block::<N>(block), Some(output), grad_output);
        chain::backward_at(at, parts, input, y, buffers, g, grad_input, grads);
    }
}

crate::zeroable!(impl [A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize]
    for LaneChainWorkspace [A, B, N] { first, mid, mid_grad, then });

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
