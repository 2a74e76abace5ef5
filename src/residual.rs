//! Residual connections (He et al. 2015): `y = F(x) + S(x)`, where the shortcut `S` is the
//! identity or a projection.

use rand::Rng;

use crate::batch::{BatchLayer, Slot, Whole};
pub use crate::identity::Identity;
use crate::place::{Alone, Place, add_flat};
use core::fmt;

use crate::fusion::Fusion;
use crate::layer::{Activation, Layer, Shape, TensorKind, count};
use crate::mode::{Mode, Pass, Train};
use crate::tensor::Tensor;

/// `y = body(x) + shortcut(x)`: a residual block. Both read the same input and must write the
/// same tensor type, or the block does not compile; with an [`Identity`] shortcut the body
/// must keep its input's shape ([`Skip`]).
///
/// The activation after the add (ResNet's final ReLU) is the next layer of a chain. The
/// gradient reaches the input along both paths and is summed.
///
/// ```
/// use constnet::{sequential, BatchNorm2d, Conv2d, Layer, Maps, Relu, Skip, zeroed_box};
/// use rand::SeedableRng;
/// // ResNet's BasicBlock on 8 channels of 6×6: relu(bn2(conv2(relu(bn1(conv1(x))))) + x).
/// type Body = sequential![
///     Conv2d<f32, 8, 8, 3, 1, 1, 6, 6, 6, 6>, BatchNorm2d<f32, 8, 6, 6>, Relu<Maps<f32, 8, 6, 6>>,
///     Conv2d<f32, 8, 8, 3, 1, 1, 6, 6, 6, 6>, BatchNorm2d<f32, 8, 6, 6>,
/// ];
/// type Block = sequential![Skip<Body>, Relu<Maps<f32, 8, 6, 6>>];
/// const _: () = <Block as Layer>::CHECK;
/// let mut block = zeroed_box::<Block>();
/// block.init(&mut rand::rngs::StdRng::seed_from_u64(0)); // batch norm: weight 1, var 1, eps 1e-5
/// let conv2 = &mut block.first.body.first.then; // conv2 = 0, weights and bias
/// (conv2.weight, conv2.bias) = ([[[[0.0; 3]; 3]; 8]; 8], [0.0; 8]);
/// let mut y = zeroed_box::<Maps<f32, 8, 6, 6>>();
/// let x = [[[1.0f32; 6]; 6]; 8];
/// block.infer(&x, &mut y, &mut zeroed_box()); // the body gives 0: y = relu(0 + x)
/// assert_eq!(*y, x);
/// ```
///
/// A shortcut whose output differs from the body's does not compile:
/// ```compile_fail
/// use constnet::{Conv2d, Layer, Residual};
/// // The body halves the maps (stride 2) but the projection keeps them.
/// type Down = Residual<Conv2d<f32, 4, 8, 3, 2, 1, 7, 7, 4, 4>, Conv2d<f32, 4, 8, 1, 1, 0, 7, 7, 7, 7>>;
/// const _: () = <Down as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{Conv2d, Layer, Residual};
/// type Down = Residual<Conv2d<f32, 4, 8, 3, 2, 1, 7, 7, 4, 4>, Conv2d<f32, 4, 8, 1, 2, 0, 7, 7, 4, 4>>;
/// const _: () = <Down as Layer>::CHECK;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Residual<F, S> {
    /// The residual branch `F`.
    pub body: F,
    /// The shortcut `S`: [`Identity`] or a projection.
    pub shortcut: S,
}

/// A residual block with the identity shortcut: `y = F(x) + x`.
pub type Skip<F> = Residual<F, Identity<<F as Layer>::Input>>;

/// What a [`Residual`] keeps: both parts' workspaces, the shortcut's output and, during
/// backward, the shortcut's input gradient.
pub struct ResidualWorkspace<F: Layer, S: Layer> {
    /// Workspace of the body.
    pub body: F::Workspace,
    /// Workspace of the shortcut.
    pub shortcut: S::Workspace,
    /// The shortcut's output from the latest forward pass.
    pub skip: F::Output,
    /// The shortcut's input gradient from the latest backward pass.
    pub skip_grad: F::Input,
}

/// `sum += other`, element by element (shared with [`crate::tap`]).
pub(crate) fn add_to<X: Tensor>(sum: &mut X, other: &X) {
    add_flat(sum.flat_mut(), other.flat());
}

impl<F, S> Layer for Residual<F, S>
where
    F: Layer,
    S: Layer<Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
{
    type Scalar = F::Scalar;
    type Input = F::Input;
    type Output = F::Output;
    type Workspace = ResidualWorkspace<F, S>;
    const CHECK: () = {
        let ((), ()) = (F::CHECK, S::CHECK);
    };
    const PARAM_TENSORS: usize = F::PARAM_TENSORS + S::PARAM_TENSORS;
    const BUFFER_TENSORS: usize = F::BUFFER_TENSORS + S::BUFFER_TENSORS;
    const COUNTERS: usize = F::COUNTERS + S::COUNTERS;
    const APPLIES_EPILOGUES: bool = true;

    fn forward(&self, x: &F::Input, y: &mut F::Output, ws: &mut Self::Workspace) {
        self.forward_in(&Pass::<Train>::DEFAULT, x, y, ws);
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::Workspace,
    ) {
        let ResidualWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let parts = (&self.body, &self.shortcut);
        forward_at(&Alone, pass, parts, x, y, (body, skip, shortcut));
    }

    fn infer(&self, x: &F::Input, y: &mut F::Output, ws: &mut Self::Workspace) {
        self.infer_fused(x, y, ws, Fusion::NONE);
    }

    /// `e(F(x) + S(x))` in one pass over the sum, for an epilogue `e`; an identity shortcut
    /// (or any that is an [`Epilogue`](crate::Epilogue) of its input) is read from `x` with
    /// no copy of its own. An affine map after the sum runs as a pass of its own.
    fn infer_fused(
        &self,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::Workspace,
        f: Fusion<'_, F::Scalar>,
    ) {
        let ResidualWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let parts = (&self.body, &self.shortcut);
        infer_at(&Alone, parts, x, y, (body, skip, shortcut), f);
    }

    fn backward(
        &self,
        x: &F::Input,
        ws: &mut Self::Workspace,
        g: &F::Output,
        grad_input: Option<&mut F::Input>,
        grads: &mut Self,
    ) {
        let ResidualWorkspace {
            body,
            shortcut,
            skip_grad,
            ..
        } = ws;
        let (parts, buffers) = ((&self.body, &self.shortcut), (body, skip_grad, shortcut));
        backward_at(&Alone, parts, x, buffers, g, grad_input, grads);
    }

    fn param(&self, i: usize) -> &[F::Scalar] {
        if i < F::PARAM_TENSORS {
            self.body.param(i)
        } else {
            self.shortcut.param(i - F::PARAM_TENSORS)
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [F::Scalar] {
        if i < F::PARAM_TENSORS {
            self.body.param_mut(i)
        } else {
            self.shortcut.param_mut(i - F::PARAM_TENSORS)
        }
    }

    fn buffer(&self, i: usize) -> &[F::Scalar] {
        if i < F::BUFFER_TENSORS {
            self.body.buffer(i)
        } else {
            self.shortcut.buffer(i - F::BUFFER_TENSORS)
        }
    }

    fn buffer_mut(&mut self, i: usize) -> &mut [F::Scalar] {
        if i < F::BUFFER_TENSORS {
            self.body.buffer_mut(i)
        } else {
            self.shortcut.buffer_mut(i - F::BUFFER_TENSORS)
        }
    }

    fn counter(&self, i: usize) -> u64 {
        if i < F::COUNTERS {
            self.body.counter(i)
        } else {
            self.shortcut.counter(i - F::COUNTERS)
        }
    }

    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        if i < F::COUNTERS {
            self.body.counter_mut(i)
        } else {
            self.shortcut.counter_mut(i - F::COUNTERS)
        }
    }

    fn update_buffers(&mut self, stats: &Self) {
        self.body.update_buffers(&stats.body);
        self.shortcut.update_buffers(&stats.shortcut);
    }

    /// The body's and the shortcut's names, unprefixed (torchvision's `BasicBlock` has
    /// `conv1`, `bn1`, … and `downsample` side by side): name their parts.
    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        let split = count::<F>(kind);
        if i < split {
            F::tensor_name(kind, i, out)
        } else {
            S::tensor_name(kind, i - split, out)
        }
    }

    /// In a sequence too: a residual block is the module its parts belong to (put it in a
    /// [`Block`](crate::Block) to number it).
    fn tensor_name_at(
        kind: TensorKind,
        i: usize,
        _position: usize,
        out: &mut dyn fmt::Write,
    ) -> fmt::Result {
        Self::tensor_name(kind, i, out)
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        let split = count::<F>(kind);
        if i < split {
            self.body.tensor_shape(kind, i)
        } else {
            self.shortcut.tensor_shape(kind, i - split)
        }
    }

    fn activation<'a>(ws: &'a Self::Workspace, name: &str) -> Option<Activation<'a, F::Scalar>> {
        F::activation(&ws.body, name).or_else(|| S::activation(&ws.shortcut, name))
    }

    /// In a sequence too, as its tensors' names.
    fn activation_at<'a>(
        ws: &'a Self::Workspace,
        name: &str,
        _position: usize,
    ) -> Option<Activation<'a, F::Scalar>> {
        Self::activation(ws, name)
    }

    fn ends_with_at(name: &str, _position: usize) -> bool {
        Self::ends_with(name)
    }

    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.body.init(rng);
        self.shortcut.init(rng);
    }

    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.body.visit_layers_mut(visit);
        self.shortcut.visit_layers_mut(visit);
    }
}

/// What a [`Residual`]'s batched passes keep.
pub struct ResidualBatchWorkspace<F: BatchLayer<N>, S: BatchLayer<N>, const N: usize> {
    /// Batch workspace of the body.
    pub body: F::BatchWorkspace,
    /// Batch workspace of the shortcut.
    pub shortcut: S::BatchWorkspace,
    /// The shortcut's outputs.
    pub skip: [F::Output; N],
    /// The shortcut's input gradients (slot 0 only, when run sample by sample).
    pub skip_grad: [F::Input; N],
}

impl<F, S, const N: usize> BatchLayer<N> for Residual<F, S>
where
    F: BatchLayer<N>,
    S: BatchLayer<N, Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
{
    type BatchWorkspace = ResidualBatchWorkspace<F, S, N>;
    const WHOLE_BATCH: bool = F::WHOLE_BATCH || S::WHOLE_BATCH;
    const INFER_WHOLE_BATCH: bool = F::INFER_WHOLE_BATCH || S::INFER_WHOLE_BATCH;

    fn forward_batch(
        &self,
        x: &[F::Input; N],
        y: &mut [F::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch_in(&Pass::<Train>::DEFAULT, x, y, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &[F::Input; N],
        y: &mut [F::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let parts = (&self.body, &self.shortcut);
        forward_at(&Whole::<N>, pass, parts, x, y, (body, skip, shortcut));
    }

    fn infer_batch(
        &self,
        x: &[F::Input; N],
        y: &mut [F::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.infer_batch_fused(x, y, ws, Fusion::NONE);
    }

    /// `e(F(x) + S(x))` for the whole batch, as [`Layer::infer_fused`].
    fn infer_batch_fused(
        &self,
        x: &[F::Input; N],
        y: &mut [F::Output; N],
        ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, F::Scalar>,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let parts = (&self.body, &self.shortcut);
        infer_at(&Whole::<N>, parts, x, y, (body, skip, shortcut), f);
    }

    fn backward_batch(
        &self,
        x: &[F::Input; N],
        ws: &mut Self::BatchWorkspace,
        g: &[F::Output; N],
        grad_input: Option<&mut [F::Input; N]>,
        grads: &mut Self,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip_grad,
            ..
        } = ws;
        let (parts, buffers) = ((&self.body, &self.shortcut), (body, skip_grad, shortcut));
        backward_at(&Whole::<N>, parts, x, buffers, g, grad_input, grads);
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.body.prepare_forward(&mut ws.body);
        self.shortcut.prepare_forward(&mut ws.shortcut);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.body.prepare_backward(&mut ws.body);
        self.shortcut.prepare_backward(&mut ws.shortcut);
    }

    fn forward_sample(
        &self,
        n: usize,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_sample_in(&Pass::<Train>::DEFAULT, n, x, y, ws);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let (parts, buffers) = ((&self.body, &self.shortcut), (body, &mut skip[n], shortcut));
        forward_at(&Slot::<N>(n), pass, parts, x, y, buffers);
    }

    fn infer_sample(
        &self,
        n: usize,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.infer_sample_fused(n, x, y, ws, Fusion::NONE);
    }

    /// `e(F(x) + S(x))` for one sample, as [`Layer::infer_fused`].
    fn infer_sample_fused(
        &self,
        n: usize,
        x: &F::Input,
        y: &mut F::Output,
        ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, F::Scalar>,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip,
            ..
        } = ws;
        let parts = (&self.body, &self.shortcut);
        let buffers = (body, &mut skip[n], shortcut);
        infer_at(&Slot::<N>(n), parts, x, y, buffers, f);
    }

    fn backward_sample(
        &self,
        n: usize,
        x: &F::Input,
        ws: &mut Self::BatchWorkspace,
        g: &F::Output,
        grad_input: Option<&mut F::Input>,
        grads: &mut Self,
    ) {
        let ResidualBatchWorkspace {
            body,
            shortcut,
            skip_grad,
            ..
        } = ws;
        // The shortcut's input gradient in slot 0, which stays in cache.
        let buffers = (body, &mut skip_grad[0], shortcut);
        let parts = (&self.body, &self.shortcut);
        backward_at(&Slot::<N>(n), parts, x, buffers, g, grad_input, grads);
    }
}

/// A residual block's buffers in place `P`: the body's workspace, the shortcut's output, the
/// shortcut's workspace.
pub(crate) type Sides<'a, P, F, S> = (
    &'a mut <P as Place<F>>::Ws,
    &'a mut <P as Place<F>>::Out,
    &'a mut <P as Place<S>>::Ws,
);

/// [`Layer::forward_in`] of the residual block `body`, `shortcut` in place `at` (see
/// [`crate::place`]), the shortcut's output kept in `skip`.
pub(crate) fn forward_at<P, F, S, M: Mode>(
    at: &P,
    pass: &Pass<M>,
    (body, shortcut): (&F, &S),
    x: &<P as Place<F>>::In,
    y: &mut <P as Place<F>>::Out,
    (ws_body, skip, ws_shortcut): Sides<'_, P, F, S>,
) where
    F: Layer,
    S: Layer<Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
    P: Place<F> + Place<S, In = <P as Place<F>>::In, Out = <P as Place<F>>::Out>,
{
    at.forward_in(pass, body, x, y, ws_body);
    at.forward_in(pass, shortcut, x, skip, ws_shortcut);
    add_flat(
        <P as Place<F>>::flat_out_mut(y),
        <P as Place<F>>::flat_out(skip),
    );
}

/// [`Layer::backward`] of the residual block `body`, `shortcut` in place `at`: both parts
/// read the output's gradient, and the input's is the sum of theirs (the shortcut's through
/// `skip_grad`).
#[allow(clippy::type_complexity)]
pub(crate) fn backward_at<P, F, S>(
    at: &P,
    (body, shortcut): (&F, &S),
    x: &<P as Place<F>>::In,
    (ws_body, skip_grad, ws_shortcut): (
        &mut <P as Place<F>>::Ws,
        &mut <P as Place<F>>::In,
        &mut <P as Place<S>>::Ws,
    ),
    g: &<P as Place<F>>::Out,
    grad_input: Option<&mut <P as Place<F>>::In>,
    grads: &mut Residual<F, S>,
) where
    F: Layer,
    S: Layer<Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
    P: Place<F> + Place<S, In = <P as Place<F>>::In, Out = <P as Place<F>>::Out>,
{
    match grad_input {
        Some(gi) => {
            at.backward(body, x, None, ws_body, g, Some(gi), &mut grads.body);
            let skip = Some(&mut *skip_grad);
            at.backward(shortcut, x, None, ws_shortcut, g, skip, &mut grads.shortcut);
            let gi = <P as Place<F>>::flat_in_mut(gi);
            add_flat(gi, <P as Place<F>>::flat_in(skip_grad));
        }
        None => {
            at.backward(body, x, None, ws_body, g, None, &mut grads.body);
            at.backward(shortcut, x, None, ws_shortcut, g, None, &mut grads.shortcut);
        }
    }
}

/// [`Layer::infer_fused`] of a residual block `y = body(x) + shortcut(x)` in place `at`,
/// given its parts' workspaces and the buffer for the shortcut's output (`skip`):
/// `e(F(x) + S(x))` in one pass over the sum for an epilogue `e`; a shortcut that is an
/// [`Epilogue`](crate::Epilogue) of its input (the identity) is read from `x` with no copy
/// of its own. An affine map after the sum runs as a pass of its own.
pub(crate) fn infer_at<P, F, S>(
    at: &P,
    (body, shortcut): (&F, &S),
    x: &<P as Place<F>>::In,
    y: &mut <P as Place<F>>::Out,
    (ws_body, skip, ws_shortcut): Sides<'_, P, F, S>,
    f: Fusion<'_, F::Scalar>,
) where
    F: Layer,
    S: Layer<Scalar = F::Scalar, Input = F::Input, Output = F::Output>,
    P: Place<F> + Place<S, In = <P as Place<F>>::In, Out = <P as Place<F>>::Out>,
{
    if f.affine.is_some() {
        let parts = (&mut *ws_body, &mut *skip, &mut *ws_shortcut);
        infer_at(at, (body, shortcut), x, y, parts, Fusion::NONE);
        return <P as Place<F>>::apply(at, y, f);
    }
    let e = f.epilogue;
    at.infer(body, x, y, ws_body);
    if const { S::EPILOGUE.is_some() && F::Input::LEN == F::Output::LEN }
        && let Some(s) = S::EPILOGUE
    {
        let x = <P as Place<F>>::flat_in(x);
        for (y, &x) in <P as Place<F>>::flat_out_mut(y).iter_mut().zip(x) {
            *y = e.of(*y + s.of(x));
        }
        return;
    }
    at.infer(shortcut, x, skip, ws_shortcut);
    let skip = <P as Place<F>>::flat_out(skip);
    for (y, &s) in <P as Place<F>>::flat_out_mut(y).iter_mut().zip(skip) {
        *y = e.of(*y + s);
    }
}

crate::zeroable!(impl [F: crate::zeroed::Zeroable, S: crate::zeroed::Zeroable] for Residual [F, S] { body, shortcut });
crate::zeroable!(impl [F: Layer, S: Layer] for ResidualWorkspace [F, S] { body, shortcut, skip, skip_grad });
crate::zeroable!(impl [F: BatchLayer<N>, S: BatchLayer<N>, const N: usize]
    for ResidualBatchWorkspace [F, S, N] { body, shortcut, skip, skip_grad });
