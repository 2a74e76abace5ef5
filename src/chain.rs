//! Sequential composition: the output of one layer is the input of the next.

use rand::Rng;

use core::fmt;

use crate::fusion::{Epilogue, Fusion};
use crate::layer::{Activation, Layer, Shape, TensorKind, count};
use crate::mode::{Mode, Pass, Train};
use crate::place::{self, Alone, Place};

/// Two layers in sequence, `first` then `then`. It compiles only if `then` reads exactly the
/// tensor `first` writes (same element type, channels and sizes).
///
/// Longer chains nest to the left: [`sequential!`](crate::sequential)`[A, B, C]` is
/// `Chain<Chain<A, B>, C>`, so the last layer is always `then` at the top and everything
/// before it is `first` (a classifier's logits are `first`'s output, see [`crate::LeNet5`]).
/// A chain is itself a [`Layer`], so chains compose like layers.
///
/// ```
/// use constnet::{Chain, Layer, Linear, Relu, zeroed_box};
/// type Mlp = Chain<Chain<Linear<f32, 4, 8>, Relu<[f32; 8]>>, Linear<f32, 8, 2>>;
/// let net = zeroed_box::<Mlp>();
/// let mut ws = zeroed_box::<<Mlp as Layer>::Workspace>();
/// let mut y = [1.0f32; 2];
/// net.forward(&[1.0; 4], &mut y, &mut ws);
/// assert_eq!(y, [0.0, 0.0]);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chain<A, B> {
    /// The earlier layer(s).
    pub first: A,
    /// The later layer.
    pub then: B,
}

/// What a [`Chain`] keeps between its passes: both layers' workspaces, the intermediate
/// activation and, during backward, its gradient.
pub struct ChainWorkspace<A: Layer, B: Layer<Input = A::Output>> {
    /// Workspace of the first layer(s).
    pub first: A::Workspace,
    /// Output of `first` (= input of `then`) from the latest forward pass.
    pub mid: A::Output,
    /// Gradient with respect to `mid` from the latest backward pass.
    pub mid_grad: A::Output,
    /// Workspace of the later layer.
    pub then: B::Workspace,
}

impl<A, B> Layer for Chain<A, B>
where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
{
    type Scalar = A::Scalar;
    type Input = A::Input;
    type Output = B::Output;
    type Workspace = ChainWorkspace<A, B>;
    const CHECK: () = {
        let ((), ()) = (A::CHECK, B::CHECK);
    };
    const PARAM_TENSORS: usize = A::PARAM_TENSORS + B::PARAM_TENSORS;

    fn forward(&self, input: &A::Input, output: &mut B::Output, ws: &mut Self::Workspace) {
        self.forward_in(&Pass::<Train>::DEFAULT, input, output, ws);
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::Workspace,
    ) {
        let ChainWorkspace {
            first, mid, then, ..
        } = ws;
        let parts = (&self.first, &self.then);
        forward_at(&Alone, pass, parts, input, output, (first, mid, then));
    }

    const APPLIES_EPILOGUES: bool =
        B::APPLIES_EPILOGUES || (B::EPILOGUE.is_some() && A::APPLIES_EPILOGUES);

    const APPLIES_CHANNEL_AFFINE: bool = B::APPLIES_CHANNEL_AFFINE;

    /// The two layers in turn; when the second is an [`Epilogue`] (a ReLU) or a
    /// [`ChannelAffine`](crate::ChannelAffine) map (batch norm) that the first
    /// [applies as it writes](Layer::APPLIES_EPILOGUES), the first does
    /// ([`Layer::infer_fused`]), and the workspace's copy of its output is not written.
    fn infer(&self, input: &A::Input, output: &mut B::Output, ws: &mut Self::Workspace) {
        self.infer_fused(input, output, ws, Fusion::NONE);
    }

    /// A fusion with an affine map goes to the second layer (`B` applies it, or it runs as a
    /// pass after the chain); an epilogue alone goes as far down as it can.
    fn infer_fused(
        &self,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::Workspace,
        fusion: Fusion<'_, A::Scalar>,
    ) {
        let ChainWorkspace {
            first, mid, then, ..
        } = ws;
        let parts = (&self.first, &self.then);
        infer_at(&Alone, parts, input, output, (first, mid, then), fusion);
    }

    fn backward(
        &self,
        input: &A::Input,
        ws: &mut Self::Workspace,
        grad_output: &B::Output,
        grad_input: Option<&mut A::Input>,
        grads: &mut Self,
    ) {
        let ChainWorkspace {
            first,
            mid,
            mid_grad,
            then,
        } = ws;
        let (parts, buffers) = ((&self.first, &self.then), (first, &*mid, mid_grad, then));
        backward_at(
            &Alone,
            parts,
            input,
            None,
            buffers,
            grad_output,
            grad_input,
            grads,
        );
    }

    fn param(&self, i: usize) -> &[A::Scalar] {
        if i < A::PARAM_TENSORS {
            self.first.param(i)
        } else {
            self.then.param(i - A::PARAM_TENSORS)
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [A::Scalar] {
        if i < A::PARAM_TENSORS {
            self.first.param_mut(i)
        } else {
            self.then.param_mut(i - A::PARAM_TENSORS)
        }
    }

    const BUFFER_TENSORS: usize = A::BUFFER_TENSORS + B::BUFFER_TENSORS;

    fn buffer(&self, i: usize) -> &[A::Scalar] {
        if i < A::BUFFER_TENSORS {
            self.first.buffer(i)
        } else {
            self.then.buffer(i - A::BUFFER_TENSORS)
        }
    }

    fn buffer_mut(&mut self, i: usize) -> &mut [A::Scalar] {
        if i < A::BUFFER_TENSORS {
            self.first.buffer_mut(i)
        } else {
            self.then.buffer_mut(i - A::BUFFER_TENSORS)
        }
    }

    const COUNTERS: usize = A::COUNTERS + B::COUNTERS;

    fn counter(&self, i: usize) -> u64 {
        if i < A::COUNTERS {
            self.first.counter(i)
        } else {
            self.then.counter(i - A::COUNTERS)
        }
    }

    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        if i < A::COUNTERS {
            self.first.counter_mut(i)
        } else {
            self.then.counter_mut(i - A::COUNTERS)
        }
    }

    fn update_buffers(&mut self, stats: &Self) {
        self.first.update_buffers(&stats.first);
        self.then.update_buffers(&stats.then);
    }

    const CHILDREN: usize = A::CHILDREN + B::CHILDREN;

    /// A chain is a sequence: its layers are numbered from 0 (or called by their names).
    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        Self::tensor_name_at(kind, i, 0, out)
    }

    /// Nested chains are one sequence: `B` is numbered after all of `A`'s layers.
    fn tensor_name_at(
        kind: TensorKind,
        i: usize,
        position: usize,
        out: &mut dyn fmt::Write,
    ) -> fmt::Result {
        let split = count::<A>(kind);
        if i < split {
            A::tensor_name_at(kind, i, position, out)
        } else {
            B::tensor_name_at(kind, i - split, position + A::CHILDREN, out)
        }
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        let split = count::<A>(kind);
        if i < split {
            self.first.tensor_shape(kind, i)
        } else {
            self.then.tensor_shape(kind, i - split)
        }
    }

    fn activation<'a>(ws: &'a Self::Workspace, name: &str) -> Option<Activation<'a, A::Scalar>> {
        Self::activation_at(ws, name, 0)
    }

    fn ends_with(name: &str) -> bool {
        Self::ends_with_at(name, 0)
    }

    /// Nested chains are one sequence: `B`'s layers are numbered after all of `A`'s.
    fn activation_at<'a>(
        ws: &'a Self::Workspace,
        name: &str,
        position: usize,
    ) -> Option<Activation<'a, A::Scalar>> {
        if A::ends_with_at(name, position) {
            return Some(Activation::of(&ws.mid));
        }
        A::activation_at(&ws.first, name, position)
            .or_else(|| B::activation_at(&ws.then, name, position + A::CHILDREN))
    }

    fn ends_with_at(name: &str, position: usize) -> bool {
        B::ends_with_at(name, position + A::CHILDREN)
    }

    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.first.init(rng);
        self.then.init(rng);
    }

    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.first.visit_layers_mut(visit);
        self.then.visit_layers_mut(visit);
    }
}

/// A chain's buffers in place `P`: `A`'s workspace, the activation between the parts, `B`'s
/// workspace.
pub(crate) type Between<'a, P, A, B> = (
    &'a mut <P as Place<A>>::Ws,
    &'a mut <P as Place<A>>::Out,
    &'a mut <P as Place<B>>::Ws,
);

/// The map `then` is in place `P`, with `f` after it, if `first` applies both as it writes
/// there (in a training pass too if `train`): what `first` is offered when `then` is a ReLU
/// after it, or in lanes a pooling after a ReLU.
#[inline(always)]
fn taken_over<'f, P, A, B>(
    first: &A,
    f: Fusion<'f, A::Scalar>,
    train: bool,
) -> Option<Fusion<'f, A::Scalar>>
where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B>,
{
    let both = f.after(<P as Place<B>>::AS_FUSION?)?;
    <P as Place<A>>::fuses(first, both, train).then_some(both)
}

/// [`Layer::forward_in`] of the chain `first` then `then` in place `at` (see
/// [`crate::place`]), `first`'s output kept in `mid`; where the place trains fused and `then`
/// is a ReLU that `first` applies as it writes, `first` writes `y` and `mid` is not written.
pub(crate) fn forward_at<P, A, B, M: Mode>(
    at: &P,
    pass: &Pass<M>,
    (first, then): (&A, &B),
    x: &<P as Place<A>>::In,
    y: &mut <P as Place<B>>::Out,
    (ws_first, mid, ws_then): Between<'_, P, A, B>,
) where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    if const { <P as Place<A>>::TRAINS_FUSED }
        && let Some(f) = taken_over::<P, A, B>(first, Fusion::NONE, true)
    {
        let y = <P as Place<B>>::flat_out_mut(y);
        let fused = at.forward_fused(first, x, y, ws_first, f, false);
        debug_assert!(fused, "fuses promised a fused forward pass");
        return;
    }
    at.forward_in(pass, first, x, mid, ws_first);
    at.forward_in(pass, then, mid, y, ws_then);
}

/// [`Layer::backward`] of the chain `first` then `then` in place `at`, after
/// [`forward_at`], which kept `first`'s output in `mid`; the gradient between the two passes
/// through `mid_grad`. `y` is the chain's output, if the caller has it (in lanes it does).
/// Where the forward pass was fused, from its output; where `then` masks for free (a max
/// pooling) after a ReLU that `first` applied, `then` hands back the gradient with respect to
/// that ReLU's input, which `first` starts from.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(crate) fn backward_at<P, A, B>(
    at: &P,
    (first, then): (&A, &B),
    x: &<P as Place<A>>::In,
    y: Option<&<P as Place<B>>::Out>,
    (ws_first, mid, mid_grad, ws_then): (
        &mut <P as Place<A>>::Ws,
        &<P as Place<A>>::Out,
        &mut <P as Place<A>>::Out,
        &mut <P as Place<B>>::Ws,
    ),
    g: &<P as Place<B>>::Out,
    gi: Option<&mut <P as Place<A>>::In>,
    grads: &mut Chain<A, B>,
) where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    if const { <P as Place<A>>::TRAINS_FUSED } {
        if let Some(f) = taken_over::<P, A, B>(first, Fusion::NONE, true) {
            let y = y.map(<P as Place<B>>::flat_out);
            let g = <P as Place<B>>::flat_out(g);
            let fused = at.backward_fused(first, x, y, ws_first, g, f, gi, &mut grads.first);
            debug_assert!(fused, "fuses promised a fused backward pass");
            return;
        }
        let relu = Fusion::epilogue(Epilogue::Relu);
        if <P as Place<B>>::MASKS_FOR_FREE
            && <P as Place<A>>::ENDS_IN_RELU
            && <P as Place<A>>::fuses(first, relu, true)
        {
            at.backward_masked(then, mid, y, ws_then, g, mid_grad, &mut grads.then);
            let g = <P as Place<A>>::flat_out(mid_grad);
            let grads = &mut grads.first;
            let fused = at.backward_fused(first, x, None, ws_first, g, relu, gi, grads);
            debug_assert!(fused, "fuses promised a fused backward pass");
            return;
        }
    }
    let g_mid = Some(&mut *mid_grad);
    at.backward(then, mid, y, ws_then, g, g_mid, &mut grads.then);
    let grads = &mut grads.first;
    at.backward(first, x, Some(mid), ws_first, mid_grad, gi, grads);
}

/// [`Layer::infer_fused`] of the chain `first` then `then` in place `at`, given its parts'
/// workspaces and the buffer between them (`mid`). When `then` is a map that `first` applies
/// as it writes (batch norm after a convolution, a ReLU after a layer that
/// [`Layer::APPLIES_EPILOGUES`]; in lanes a pooling after a ReLU), `first` applies it, with
/// the maps offered to the chain after it, straight into `y`, and `mid` is not written; a
/// fusion with an affine map goes to `then` if it applies one, else runs as a pass after the
/// chain.
pub(crate) fn infer_at<P, A, B>(
    at: &P,
    (first, then): (&A, &B),
    x: &<P as Place<A>>::In,
    y: &mut <P as Place<B>>::Out,
    (ws_first, mid, ws_then): Between<'_, P, A, B>,
    f: Fusion<'_, A::Scalar>,
) where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    if f.affine.is_some() {
        if const { B::APPLIES_CHANNEL_AFFINE } {
            at.infer(first, x, mid, ws_first);
            at.infer_fused(then, mid, y, ws_then, f);
        } else {
            let parts = (&mut *ws_first, &mut *mid, &mut *ws_then);
            infer_at(at, (first, then), x, y, parts, Fusion::NONE);
            <P as Place<B>>::apply(at, y, f);
        }
        return;
    }
    let epilogue = f.epilogue;
    if const { A::APPLIES_CHANNEL_AFFINE }
        && let Some(out) = place::same::<<P as Place<A>>::Out, _>(y)
    {
        let fused = then.channel_affine(|affine| {
            let f = Fusion {
                affine: Some(affine),
                epilogue,
                pool: false,
            };
            at.infer_fused(first, x, out, ws_first, f);
        });
        if fused.is_some() {
            return;
        }
    }
    if const { <P as Place<B>>::AS_FUSION.is_some() && <P as Place<A>>::CAN_FUSE }
        && let Some(both) = taken_over::<P, A, B>(first, f, false)
        && at.forward_fused(
            first,
            x,
            <P as Place<B>>::flat_out_mut(y),
            ws_first,
            both,
            true,
        )
    {
        return;
    }
    at.infer(first, x, mid, ws_first);
    at.infer_fused(then, mid, y, ws_then, f);
}

/// Whether the chain `first` then `then` applies `f` as it writes in place `P` (see
/// [`Place::fuses`]): `first` applies `then` and `f` (`then` a map too), or `then` applies
/// `f`.
pub(crate) fn fuses_at<P, A, B>(
    (first, then): (&A, &B),
    f: Fusion<'_, A::Scalar>,
    train: bool,
) -> bool
where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    taken_over::<P, A, B>(first, f, train).is_some() || <P as Place<B>>::fuses(then, f, train)
}

/// [`Place::forward_fused`] of the chain `first` then `then` in place `at`: `first` applies
/// `then` and `f`, or the parts run apart and `then` applies `f`. Returns `false`, having done
/// nothing, unless [`fuses_at`] says the chain does `f`.
pub(crate) fn forward_fused_at<P, A, B>(
    at: &P,
    (first, then): (&A, &B),
    x: &<P as Place<A>>::In,
    y: &mut [A::Scalar],
    (ws_first, mid, ws_then): Between<'_, P, A, B>,
    f: Fusion<'_, A::Scalar>,
    infer: bool,
) -> bool
where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    if let Some(both) = taken_over::<P, A, B>(first, f, !infer) {
        return at.forward_fused(first, x, y, ws_first, both, infer);
    }
    // Asked first, with nothing computed: whether the last part fuses does not depend on its
    // input.
    if !<P as Place<B>>::fuses(then, f, !infer) {
        return false;
    }
    if infer {
        at.infer(first, x, mid, ws_first);
    } else {
        at.forward_in(&Pass::<Train>::DEFAULT, first, x, mid, ws_first);
    }
    at.forward_fused(then, mid, y, ws_then, f, infer)
}

/// [`Place::backward_fused`] of the chain `first` then `then` in place `at`, after
/// [`forward_fused_at`] in training. Returns `false`, having done nothing, unless
/// [`fuses_at`] says the chain does `f` in training.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn backward_fused_at<P, A, B>(
    at: &P,
    (first, then): (&A, &B),
    x: &<P as Place<A>>::In,
    y: Option<&[A::Scalar]>,
    (ws_first, mid, mid_grad, ws_then): (
        &mut <P as Place<A>>::Ws,
        &<P as Place<A>>::Out,
        &mut <P as Place<A>>::Out,
        &mut <P as Place<B>>::Ws,
    ),
    g: &[A::Scalar],
    f: Fusion<'_, A::Scalar>,
    gi: Option<&mut <P as Place<A>>::In>,
    grads: &mut Chain<A, B>,
) -> bool
where
    A: Layer,
    B: Layer<Scalar = A::Scalar, Input = A::Output>,
    P: Place<A> + Place<B, In = <P as Place<A>>::Out>,
{
    if let Some(both) = taken_over::<P, A, B>(first, f, true) {
        return at.backward_fused(first, x, y, ws_first, g, both, gi, &mut grads.first);
    }
    if !<P as Place<B>>::fuses(then, f, true) {
        return false;
    }
    let g_mid = Some(&mut *mid_grad);
    let fused = at.backward_fused(then, mid, y, ws_then, g, f, g_mid, &mut grads.then);
    debug_assert!(fused, "fuses promised a fused backward pass");
    let grads = &mut grads.first;
    at.backward(first, x, Some(mid), ws_first, mid_grad, gi, grads);
    true
}

/// The type of layers applied in sequence: `sequential![A, B, C]` is
/// `Chain<Chain<A, B>, C>`. Each layer must read the tensor the previous one writes.
///
/// ```
/// use constnet::{sequential, Conv2d, Layer, MaxPool2d, Relu, Maps};
/// // The article's Figure 16: two conv+ReLU before one pool.
/// type Block = sequential![
///     Conv2d<f32, 1, 4, 3, 1, 1, 8, 8, 8, 8>, Relu<Maps<f32, 4, 8, 8>>,
///     Conv2d<f32, 4, 4, 3, 1, 1, 8, 8, 8, 8>, Relu<Maps<f32, 4, 8, 8>>,
///     MaxPool2d<f32, 4, 8, 8, 2, 2, 4, 4>,
/// ];
/// const _: () = <Block as Layer>::CHECK;
/// ```
#[macro_export]
macro_rules! sequential {
    ($only:ty $(,)?) => { $only };
    ($a:ty, $b:ty $(, $rest:ty)* $(,)?) => {
        $crate::sequential![$crate::Chain<$a, $b> $(, $rest)*]
    };
}

crate::zeroable!(impl [A: crate::zeroed::Zeroable, B: crate::zeroed::Zeroable] for Chain [A, B] { first, then });
crate::zeroable!(impl [A: Layer, B: Layer<Input = A::Output>]
    for ChainWorkspace [A, B] { first, mid, mid_grad, then });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Linear, Relu, zeroed_box};

    type Mlp = crate::sequential![Linear<f64, 2, 3>, Relu<[f64; 3]>, Linear<f64, 3, 1>];

    #[test]
    fn parameters_are_listed_in_layer_order() {
        let mut net = zeroed_box::<Mlp>();
        assert_eq!(Mlp::PARAM_TENSORS, 4);
        assert_eq!(net.param_count(), 6 + 3 + 3 + 1);
        net.param_mut(3)[0] = 4.0;
        assert_eq!(net.then.bias, [4.0]);
        net.param_mut(1)[2] = 5.0;
        assert_eq!(net.first.first.bias, [0.0, 0.0, 5.0]);
    }

    #[test]
    fn forward_keeps_intermediate_activations() {
        let mut net = zeroed_box::<Mlp>();
        net.first.first.weight = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]];
        net.then.weight = [[1.0, 1.0, 1.0]];
        let mut ws = zeroed_box::<<Mlp as Layer>::Workspace>();
        let mut y = [0.0];
        net.forward(&[2.0, 3.0], &mut y, &mut ws);
        assert_eq!(ws.first.mid, [2.0, 3.0, -2.0]);
        assert_eq!(ws.mid, [2.0, 3.0, 0.0]);
        assert_eq!(y, [5.0]);
    }
}
