//! Where a pass runs, as a type: one sample alone ([`Alone`]: [`Layer`]'s methods), one sample
//! in slot `n` of a batch's workspace (`Slot`: [`BatchLayer`]'s `…_sample` methods), a
//! whole batch at once (`Whole`: [`BatchLayer`]'s `…_batch` methods), or block `b` of a batch
//! in lanes (`Block`: [`LaneLayer`]'s methods). A combinator's passes (a chain's, a residual
//! add's, a concatenation's) are written once, generic over the place, and each trait method
//! is a call of them: only the calls into the parts and the buffers between them differ from
//! place to place.
//!
//! What a place can do beyond the plain passes it says as data the generic code reads, most
//! of it at compile time: whether a layer applies a fusion as it writes
//! ([`Place::fuses`]), in a training pass too ([`Place::TRAINS_FUSED`]: only in lanes, where
//! a convolution's backward pass reads the ReLU output it wrote), into the output of a later
//! layer of another type (a pooling's, in lanes; [`Place::forward_fused`] writes flat values).
//!
//! `Slot` and `Whole` are implemented in [`crate::batch`], where [`BatchLayer`] is, and
//! `Block` in [`crate::lane_layer`], where [`LaneLayer`] is.
//!
//! [`BatchLayer`]: crate::BatchLayer
//! [`LaneLayer`]: crate::LaneLayer

use core::any::Any;

use crate::fusion::Fusion;
use crate::lane_layout::relu_mask;
use crate::layer::Layer;
use crate::mode::{Mode, Pass};
use crate::tensor::Tensor;

/// A place where layer `L`'s passes run: its workspace there and what it reads and writes
/// there (one sample, or the whole batch), and the calls into it.
pub(crate) trait Place<L: Layer> {
    /// The layer's workspace in this place.
    type Ws;
    /// What the layer reads in this place.
    type In: 'static;
    /// What the layer writes in this place.
    type Out: 'static;

    /// The layer's forward pass in the mode of `pass`, keeping in `ws` what the backward
    /// pass needs ([`Layer::forward_in`]).
    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut Self::Ws,
    );

    /// The layer's backward pass ([`Layer::backward`]); `y` is its output, if the caller has
    /// it (a chain has its parts' outputs; in lanes every pass is given its output).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        layer: &L,
        x: &Self::In,
        y: Option<&Self::Out>,
        ws: &mut Self::Ws,
        g: &Self::Out,
        gi: Option<&mut Self::In>,
        grads: &mut L,
    );

    /// The layer's inference, no map after it.
    fn infer(&self, layer: &L, x: &Self::In, y: &mut Self::Out, ws: &mut Self::Ws);

    /// The layer's inference followed by `f`'s maps ([`Layer::infer_fused`]), as a pass after
    /// it where the layer does not apply them itself. `f` has no pooling.
    fn infer_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut Self::Ws,
        f: Fusion<'_, L::Scalar>,
    );

    /// `f`'s maps as a pass of their own over the place's part of `y`.
    fn apply(&self, y: &mut Self::Out, f: Fusion<'_, L::Scalar>);

    /// What the layer is as a map that the layer before it may apply as it writes (a ReLU;
    /// in lanes a 2×2 max pooling too), if it is one. By default its [`Layer::EPILOGUE`].
    const AS_FUSION: Option<Fusion<'static, L::Scalar>> = sample_fusion::<L>();

    /// Whether the layer may apply some fusion as it writes here at all: by default whether
    /// it [applies epilogues](Layer::APPLIES_EPILOGUES). Read at compile time, so that a
    /// chain compiles no fused pass for parts that have none (a third of the test build's
    /// time when it did).
    const CAN_FUSE: bool = L::APPLIES_EPILOGUES;

    /// Whether a layer may apply a fusion here in a training pass too (its backward pass then
    /// starts from what it wrote, [`Place::backward_fused`]). A compile-time "no" for the
    /// sample and batch places.
    const TRAINS_FUSED: bool = false;

    /// Whether [`Place::backward_masked`] costs nothing over the plain backward pass.
    const MASKS_FOR_FREE: bool = false;

    /// Whether the layer's output has passed through a ReLU at its end, so that masking its
    /// gradient by its output's sign is that ReLU's backward pass.
    const ENDS_IN_RELU: bool = false;

    /// Whether `layer` applies `f` as it writes here ([`Place::forward_fused`] does the work),
    /// in a training pass too if `train`. Asked before anything is computed: the answer does
    /// not depend on the input. By default the sample and batch places' answer: in
    /// inference, an element-wise map by a layer that
    /// [applies epilogues](Layer::APPLIES_EPILOGUES) (an affine map is offered through
    /// [`Layer::channel_affine`] instead); never a pooling, never in training.
    #[inline(always)]
    fn fuses(layer: &L, f: Fusion<'_, L::Scalar>, train: bool) -> bool {
        let _ = layer;
        sample_fuses::<L>(f, train)
    }

    /// `layer`'s pass (its inference if `infer`) followed by `f`'s maps, written to `y`: the
    /// flat values of the output of the layers those maps stand for (another type than the
    /// layer's own after a pooling). Returns `false`, having done nothing, unless
    /// [`Place::fuses`] says it does `f`. By default (the sample and batch places, whose
    /// fusions keep the layer's type): [`Place::infer_fused`] on `y` seen as the output.
    #[allow(clippy::too_many_arguments)]
    fn forward_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut [L::Scalar],
        ws: &mut Self::Ws,
        f: Fusion<'_, L::Scalar>,
        infer: bool,
    ) -> bool {
        match Self::out_from_flat_mut(y) {
            Some(y) if infer && Self::fuses(layer, f, false) => {
                self.infer_fused(layer, x, y, ws, f);
                true
            }
            _ => false,
        }
    }

    /// The backward pass of a training [`Place::forward_fused`] (a ReLU): `y` is what it
    /// wrote and `g` the gradient with respect to it; or, with `y` `None`, `g` is already the
    /// gradient with respect to the ReLU's input. Returns `false`, having done nothing, where
    /// the place does not train fused.
    #[allow(clippy::too_many_arguments)]
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
        let _ = (layer, x, y, ws, g, f, gi, grads);
        false
    }

    /// [`Place::backward`] writing the gradient with respect to the input of the ReLU whose
    /// output `x` is: the input gradient, zero where `x` is not positive.
    #[allow(clippy::too_many_arguments)]
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
        self.backward(layer, x, y, ws, g, Some(&mut *gi), grads);
        relu_mask(Self::flat_in_mut(gi), Self::flat_in(x));
    }

    /// The values of `x`, flat (the samples one after the other). In lanes, the whole
    /// batch's, as the lane kernels take them (they find their block themselves): an
    /// element-wise pass of a combinator over them would touch every block, so a combinator
    /// whose passes do one (a residual add, a concatenation's copies) does not run in lanes.
    fn flat_in(x: &Self::In) -> &[L::Scalar];

    /// The values of `x`, flat and mutable.
    fn flat_in_mut(x: &mut Self::In) -> &mut [L::Scalar];

    /// `y` (flat values) seen as the layer's output here, if it has their number.
    fn out_from_flat_mut(y: &mut [L::Scalar]) -> Option<&mut Self::Out>;

    /// The values of `y`, flat.
    fn flat_out(y: &Self::Out) -> &[L::Scalar];

    /// The values of `y`, flat and mutable.
    fn flat_out_mut(y: &mut Self::Out) -> &mut [L::Scalar];
}

/// One sample alone, in the layer's own [`Layer::Workspace`].
pub(crate) struct Alone;

impl<L: Layer> Place<L> for Alone {
    type Ws = L::Workspace;
    type In = L::Input;
    type Out = L::Output;

    #[inline(always)]
    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        layer: &L,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
    ) {
        layer.forward_in(pass, x, y, ws);
    }

    #[inline(always)]
    fn backward(
        &self,
        layer: &L,
        x: &L::Input,
        _: Option<&L::Output>,
        ws: &mut L::Workspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut L,
    ) {
        layer.backward(x, ws, g, gi, grads);
    }

    #[inline(always)]
    fn infer(&self, layer: &L, x: &L::Input, y: &mut L::Output, ws: &mut L::Workspace) {
        layer.infer(x, y, ws);
    }

    #[inline(always)]
    fn infer_fused(
        &self,
        layer: &L,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
        f: Fusion<'_, L::Scalar>,
    ) {
        layer.infer_fused(x, y, ws, f);
    }

    fn apply(&self, y: &mut L::Output, f: Fusion<'_, L::Scalar>) {
        f.apply(y.flat_mut());
    }

    #[inline(always)]
    fn out_from_flat_mut(y: &mut [L::Scalar]) -> Option<&mut L::Output> {
        L::Output::from_flat_mut(y)
    }

    #[inline(always)]
    fn flat_in(x: &L::Input) -> &[L::Scalar] {
        x.flat()
    }

    #[inline(always)]
    fn flat_in_mut(x: &mut L::Input) -> &mut [L::Scalar] {
        x.flat_mut()
    }

    #[inline(always)]
    fn flat_out(y: &L::Output) -> &[L::Scalar] {
        y.flat()
    }

    #[inline(always)]
    fn flat_out_mut(y: &mut L::Output) -> &mut [L::Scalar] {
        y.flat_mut()
    }
}

/// [`Place::AS_FUSION`] in the sample and batch places: a layer's [`Layer::EPILOGUE`].
const fn sample_fusion<L: Layer>() -> Option<Fusion<'static, L::Scalar>> {
    match L::EPILOGUE {
        Some(e) => Some(Fusion::epilogue(e)),
        None => None,
    }
}

/// [`Place::fuses`] in the sample and batch places.
#[inline(always)]
fn sample_fuses<L: Layer>(f: Fusion<'_, L::Scalar>, train: bool) -> bool {
    !train && f.affine.is_none() && !f.pool && L::APPLIES_EPILOGUES
}

/// `y` as a `Y`, if it is one: a chain's output seen as its first part's, where the second
/// part is a map that keeps the type (a ReLU, batch norm). Decided at compile time.
#[inline(always)]
pub(crate) fn same<Y: 'static, X: 'static>(y: &mut X) -> Option<&mut Y> {
    (y as &mut dyn Any).downcast_mut()
}

/// `y` as a `Y`, if it is one (see [`same`]).
#[inline(always)]
pub(crate) fn same_ref<Y: 'static, X: 'static>(y: &X) -> Option<&Y> {
    (y as &dyn Any).downcast_ref()
}

/// `sum += other`, element by element: a gradient that two parts of a combinator share (a
/// residual block's input, a concatenation's), or a residual add.
#[inline]
pub(crate) fn add_flat<T: crate::scalar::Scalar>(sum: &mut [T], other: &[T]) {
    for (s, &o) in sum.iter_mut().zip(other) {
        *s = *s + o;
    }
}
