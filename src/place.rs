//! Where a pass runs, as a type: one sample alone ([`Alone`]: [`Layer`]'s methods), one sample
//! in slot `n` of a batch's workspace (`Slot`: [`BatchLayer`]'s `…_sample` methods), or a
//! whole batch at once (`Whole`: [`BatchLayer`]'s `…_batch` methods). A combinator's passes
//! (a chain's, a residual add's) are written once, generic over the place, and each trait
//! method is a call of them: only the calls into the parts and the buffers between them
//! differ from place to place.
//!
//! `Slot` and `Whole` are implemented in [`crate::batch`], where [`BatchLayer`] is.
//!
//! [`BatchLayer`]: crate::BatchLayer

use core::any::Any;

use crate::fusion::Fusion;
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

    /// The layer's backward pass ([`Layer::backward`]).
    fn backward(
        &self,
        layer: &L,
        x: &Self::In,
        ws: &mut Self::Ws,
        g: &Self::Out,
        gi: Option<&mut Self::In>,
        grads: &mut L,
    );

    /// The layer's inference, no map after it.
    fn infer(&self, layer: &L, x: &Self::In, y: &mut Self::Out, ws: &mut Self::Ws);

    /// The layer's inference followed by `f`'s maps ([`Layer::infer_fused`]).
    fn infer_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut Self::Ws,
        f: Fusion<'_, L::Scalar>,
    );

    /// `f`'s maps as a pass of their own over each sample of `y`.
    fn apply(y: &mut Self::Out, f: Fusion<'_, L::Scalar>);

    /// The values of `x`, flat (the samples one after the other).
    fn flat_in(x: &Self::In) -> &[L::Scalar];

    /// The values of `x`, flat and mutable.
    fn flat_in_mut(x: &mut Self::In) -> &mut [L::Scalar];

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

    fn apply(y: &mut L::Output, f: Fusion<'_, L::Scalar>) {
        f.apply(y.flat_mut());
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
