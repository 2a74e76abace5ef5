//! Where an inference pass runs, as a type: one sample alone ([`Alone`], [`Layer::infer_fused`]),
//! one sample in slot `n` of a batch's workspace (`Slot`, [`BatchLayer::infer_sample_fused`]),
//! or a whole batch at once (`Whole`, [`BatchLayer::infer_batch_fused`]). The combinators'
//! inference with its fusions ([`chain`], [`residual`]) is written once, generic over the
//! place, instead of once per trait method: only the calls into the parts and the buffers
//! between them differ.
//!
//! `Slot` and `Whole` are implemented in [`crate::batch`], where [`BatchLayer`] is.
//!
//! [`BatchLayer`]: crate::BatchLayer
//! [`BatchLayer::infer_sample_fused`]: crate::BatchLayer::infer_sample_fused
//! [`BatchLayer::infer_batch_fused`]: crate::BatchLayer::infer_batch_fused

use core::any::Any;

use crate::fusion::Fusion;
use crate::layer::Layer;
use crate::tensor::Tensor;

/// A place where layer `L`'s inference runs: its workspace there and what it reads and
/// writes there (one sample, or the whole batch), and the calls into it.
pub(crate) trait InferAt<L: Layer> {
    /// The layer's workspace in this place.
    type Ws;
    /// What the layer reads in this place.
    type In: 'static;
    /// What the layer writes in this place.
    type Out: 'static;

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

    /// The values of `y`, flat.
    fn flat_out(y: &Self::Out) -> &[L::Scalar];

    /// The values of `y`, flat and mutable.
    fn flat_out_mut(y: &mut Self::Out) -> &mut [L::Scalar];
}

/// One sample alone, in the layer's own [`Layer::Workspace`].
pub(crate) struct Alone;

impl<L: Layer> InferAt<L> for Alone {
    type Ws = L::Workspace;
    type In = L::Input;
    type Out = L::Output;

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
fn same<Y: 'static, X: 'static>(y: &mut X) -> Option<&mut Y> {
    (y as &mut dyn Any).downcast_mut()
}

/// [`Layer::infer_fused`] of a chain `first` then `then` in place `at`, given its parts'
/// workspaces and the buffer between them (`mid`). When `then` is a map that `first` applies
/// as it writes (batch norm after a convolution, a ReLU after a layer that
/// [`Layer::APPLIES_EPILOGUES`]), `first` applies it, with the maps offered to the chain
/// after it, straight into `y`, and `mid` is not written; a fusion with an affine map goes to
/// `then` if it applies one, else runs as a pass after the chain.
#[allow(clippy::type_complexity)]
pub(crate) fn chain<P, A, B>(
    at: &P,
    (first, then): (&A, &B),
    x: &<P as InferAt<A>>::In,
    y: &mut <P as InferAt<B>>::Out,
    (ws_first, mid, ws_then): (
        &mut <P as InferAt<A>>::Ws,
        &mut <P as InferAt<A>>::Out,
        &mut <P as InferAt<B>>::Ws,
    ),
    f: Fusion<'_, A::Scalar>,
) where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: InferAt<A> + InferAt<B, In = <P as InferAt<A>>::Out>,
{
    if f.affine.is_some() {
        if const { B::APPLIES_CHANNEL_AFFINE } {
            at.infer(first, x, mid, ws_first);
            at.infer_fused(then, mid, y, ws_then, f);
        } else {
            let parts = (&mut *ws_first, &mut *mid, &mut *ws_then);
            chain(at, (first, then), x, y, parts, Fusion::NONE);
            <P as InferAt<B>>::apply(y, f);
        }
        return;
    }
    let epilogue = f.epilogue;
    if const { A::APPLIES_CHANNEL_AFFINE }
        && let Some(out) = same::<<P as InferAt<A>>::Out, _>(y)
    {
        let fused = then.channel_affine(|affine| {
            let f = Fusion {
                affine: Some(affine),
                epilogue,
            };
            at.infer_fused(first, x, out, ws_first, f);
        });
        if fused.is_some() {
            return;
        }
    }
    if const { B::EPILOGUE.is_some() && A::APPLIES_EPILOGUES } {
        let fused = B::EPILOGUE.and_then(|own| epilogue.after(own));
        let out = same::<<P as InferAt<A>>::Out, _>(y);
        if let (Some(fused), Some(out)) = (fused, out) {
            return at.infer_fused(first, x, out, ws_first, Fusion::epilogue(fused));
        }
    }
    at.infer(first, x, mid, ws_first);
    at.infer_fused(then, mid, y, ws_then, f);
}

/// [`Layer::infer_fused`] of a residual block `y = body(x) + shortcut(x)` in place `at`,
/// given its parts' workspaces and the buffer for the shortcut's output (`skip`):
/// `e(F(x) + S(x))` in one pass over the sum for an epilogue `e`; a shortcut that is an
/// [`Epilogue`](crate::Epilogue) of its input (the identity) is read from `x` with no copy
/// of its own. An affine map after the sum runs as a pass of its own.
#[allow(clippy::type_complexity)]
pub(crate) fn residual<P, F, S>(
    at: &P,
    (body, shortcut): (&F, &S),
    x: &<P as InferAt<F>>::In,
    y: &mut <P as InferAt<F>>::Out,
    (ws_body, skip, ws_shortcut): (
        &mut <P as InferAt<F>>::Ws,
        &mut <P as InferAt<F>>::Out,
        &mut <P as InferAt<S>>::Ws,
    ),
    f: Fusion<'_, F::Scalar>,
) where
    F: Layer,
    S: Layer<Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
    P: InferAt<F> + InferAt<S, In = <P as InferAt<F>>::In, Out = <P as InferAt<F>>::Out>,
{
    if f.affine.is_some() {
        let parts = (&mut *ws_body, &mut *skip, &mut *ws_shortcut);
        residual(at, (body, shortcut), x, y, parts, Fusion::NONE);
        return <P as InferAt<F>>::apply(y, f);
    }
    let e = f.epilogue;
    at.infer(body, x, y, ws_body);
    if const { S::EPILOGUE.is_some() && F::Input::LEN == F::Output::LEN }
        && let Some(s) = S::EPILOGUE
    {
        let x = <P as InferAt<F>>::flat_in(x);
        for (y, &x) in <P as InferAt<F>>::flat_out_mut(y).iter_mut().zip(x) {
            *y = e.of(*y + s.of(x));
        }
        return;
    }
    at.infer(shortcut, x, skip, ws_shortcut);
    let skip = <P as InferAt<F>>::flat_out(skip);
    for (y, &s) in <P as InferAt<F>>::flat_out_mut(y).iter_mut().zip(skip) {
        *y = e.of(*y + s);
    }
}
