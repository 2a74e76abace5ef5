//! Parallel branches on one input, their maps stacked along the channels: GoogLeNet's
//! Inception module, DenseNet's growing input.

use core::marker::PhantomData;

use rand::Rng;

use crate::batch::{BatchLayer, Slot, Whole};
use crate::place::{self, Alone, Place, add_flat};
use core::fmt;

use crate::layer::{Activation, Layer, Shape, TensorKind, count, no_such_param, no_such_tensor};
use crate::mode::{Mode, Pass, Train};
use crate::tensor::{MapsShape, Tensor};

/// The branches `B` (a tuple of 2, 3 or 4 layers) all read the same input; the output `Out`
/// holds their maps one after the other along the channels (PyTorch's
/// `torch.cat([b(x) for b in branches], 1)`). In CHW layout each branch's maps are one
/// contiguous range of the output.
///
/// Checked at compile time: every branch reads the same tensor (a type error otherwise), and
/// [`Layer::CHECK`] requires that `Out`'s channels are the sum of the branches' and that every
/// branch gives maps of `Out`'s height and width. The gradient of the input is the sum of the
/// branches' input gradients.
///
/// ```
/// use constnet::{Concat, Conv2d, Layer, Maps, MaxPool2d, zeroed_box};
/// // Three branches on 8 channels of 5×5: 1×1 conv to 4, 3×3 conv to 5, pool then 1×1 to 2.
/// type Module = Concat<(
///     Conv2d<f32, 8, 4, 1, 1, 0, 5, 5, 5, 5>,
///     Conv2d<f32, 8, 5, 3, 1, 1, 5, 5, 5, 5>,
///     constnet::Chain<MaxPool2d<f32, 8, 5, 5, 3, 1, 5, 5, 1, true>, Conv2d<f32, 8, 2, 1, 1, 0, 5, 5, 5, 5>>,
/// ), Maps<f32, 11, 5, 5>>;
/// const _: () = <Module as Layer>::CHECK;
/// let mut module = zeroed_box::<Module>();
/// module.branches.1.bias = [1.0; 5];
/// let mut y = zeroed_box::<Maps<f32, 11, 5, 5>>();
/// module.infer(&[[[0.0; 5]; 5]; 8], &mut y, &mut zeroed_box());
/// assert_eq!((y[3][0][0], y[4][0][0], y[8][0][0], y[9][0][0]), (0.0, 1.0, 1.0, 0.0));
/// ```
///
/// Channels that do not add up, or maps of another size, do not compile:
/// ```compile_fail
/// use constnet::{Concat, Conv2d, Layer, Maps};
/// type Two = Concat<(Conv2d<f32, 8, 4, 1, 1, 0, 5, 5, 5, 5>, Conv2d<f32, 8, 5, 1, 1, 0, 5, 5, 5, 5>), Maps<f32, 10, 5, 5>>;
/// const _: () = <Two as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{Concat, Conv2d, Layer, Maps};
/// type Two = Concat<(Conv2d<f32, 8, 4, 1, 1, 0, 5, 5, 5, 5>, Conv2d<f32, 8, 5, 1, 1, 0, 5, 5, 5, 5>), Maps<f32, 9, 5, 5>>;
/// const _: () = <Two as Layer>::CHECK;
/// ```
/// ```compile_fail
/// use constnet::{Concat, Conv2d, Layer, Maps};
/// // The second branch has stride 2: 3×3 maps next to 5×5 ones.
/// type Two = Concat<(Conv2d<f32, 8, 4, 1, 1, 0, 5, 5, 5, 5>, Conv2d<f32, 8, 5, 1, 2, 0, 5, 5, 3, 3>), Maps<f32, 9, 5, 5>>;
/// const _: () = <Two as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{Concat, Conv2d, Layer, Maps};
/// type Two = Concat<(Conv2d<f32, 8, 4, 1, 1, 0, 5, 5, 5, 5>, Conv2d<f32, 8, 5, 1, 1, 0, 5, 5, 5, 5>), Maps<f32, 9, 5, 5>>;
/// const _: () = <Two as Layer>::CHECK;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Concat<B, Out> {
    /// The branches, in output order.
    pub branches: B,
    out: PhantomData<Out>,
}

/// What one branch keeps: its workspace and its output (which carries its share of the
/// output gradient during backward).
pub struct Branch<W, Y> {
    /// The branch's workspace.
    pub ws: W,
    /// The branch's output (per sample, or `[_; N]` in batches).
    pub out: Y,
}

/// What a [`Concat`] keeps: one [`Branch`] per branch and room for an input gradient.
pub struct ConcatWorkspace<B, G> {
    /// The branches' workspaces and outputs, as a tuple.
    pub branches: B,
    /// A branch's input gradient before it is added to the others'.
    pub grad: G,
}

/// Where a branch's maps are in the concatenation: `len` values from `offset` in each
/// sample's `whole` values.
#[derive(Clone, Copy)]
struct Part {
    offset: usize,
    len: usize,
    whole: usize,
}

impl Part {
    /// Copies each sample's branch output (`from`, `len` values a sample) into its part of
    /// each sample of `to`.
    fn scatter<T: Copy>(self, from: &[T], to: &mut [T]) {
        for (to, from) in to
            .chunks_exact_mut(self.whole)
            .zip(from.chunks_exact(self.len))
        {
            to[self.offset..self.offset + self.len].copy_from_slice(from);
        }
    }

    /// Copies the part of each sample of `from` into `to` (`len` values a sample).
    fn gather<T: Copy>(self, from: &[T], to: &mut [T]) {
        for (to, from) in to
            .chunks_exact_mut(self.len)
            .zip(from.chunks_exact(self.whole))
        {
            to.copy_from_slice(&from[self.offset..self.offset + self.len]);
        }
    }

    /// The part of `y` if `y` is one sample.
    fn of_one<T>(self, y: &[T]) -> Option<&[T]> {
        (y.len() == self.whole).then(|| &y[self.offset..self.offset + self.len])
    }

    /// The part of `y`, mutable, if `y` is one sample.
    fn of_one_mut<T>(self, y: &mut [T]) -> Option<&mut [T]> {
        (y.len() == self.whole).then(|| &mut y[self.offset..self.offset + self.len])
    }
}

/// A branch's forward pass in place `at` (see [`crate::place`]): its output kept in `out`,
/// where [`Layer::activation`] finds a named branch's, then copied into its channels of `y`
/// (flat, every sample of the place).
fn forward_branch<P: Place<L>, L: Layer, M: Mode>(
    at: &P,
    pass: &Pass<M>,
    layer: &L,
    x: &<P as Place<L>>::In,
    (out, ws): (&mut <P as Place<L>>::Out, &mut <P as Place<L>>::Ws),
    (y, part): (&mut [L::Scalar], Part),
) {
    at.forward_in(pass, layer, x, out, ws);
    part.scatter(<P as Place<L>>::flat_out(out), y);
}

/// A branch's inference in place `at`: written straight into its channels of `y` where they
/// are its output's type (one sample), else through `out` and copied.
fn infer_branch<P: Place<L>, L: Layer>(
    at: &P,
    layer: &L,
    x: &<P as Place<L>>::In,
    (out, ws): (&mut <P as Place<L>>::Out, &mut <P as Place<L>>::Ws),
    (y, part): (&mut [L::Scalar], Part),
) {
    let direct = part
        .of_one_mut(&mut *y)
        .and_then(<L::Output as Tensor>::from_flat_mut)
        .and_then(place::same::<<P as Place<L>>::Out, _>);
    match direct {
        Some(o) => at.infer(layer, x, o, ws),
        None => {
            at.infer(layer, x, out, ws);
            part.scatter(<P as Place<L>>::flat_out(out), y);
        }
    }
}

/// A branch's backward pass in place `at`: its share of the output gradient `g` read in
/// place (one sample) or copied into `out`; its input gradient written to `grad_input` if it
/// is the first branch, else added to it through `scratch`.
#[allow(clippy::too_many_arguments)]
fn backward_branch<P: Place<L>, L: Layer>(
    at: &P,
    layer: &L,
    x: &<P as Place<L>>::In,
    (out, ws): (&mut <P as Place<L>>::Out, &mut <P as Place<L>>::Ws),
    (g, part): (&[L::Scalar], Part),
    (grad_input, scratch, first): (
        Option<&mut <P as Place<L>>::In>,
        &mut <P as Place<L>>::In,
        bool,
    ),
    grads: &mut L,
) {
    let view = part
        .of_one(g)
        .and_then(<L::Output as Tensor>::from_flat)
        .and_then(place::same_ref::<<P as Place<L>>::Out, _>);
    let g_b: &<P as Place<L>>::Out = match view {
        Some(g_b) => g_b,
        None => {
            part.gather(g, <P as Place<L>>::flat_out_mut(out));
            out
        }
    };
    match grad_input {
        None => at.backward(layer, x, None, ws, g_b, None, grads),
        Some(gi) if first => at.backward(layer, x, None, ws, g_b, Some(gi), grads),
        Some(gi) => {
            at.backward(layer, x, None, ws, g_b, Some(&mut *scratch), grads);
            let gi = <P as Place<L>>::flat_in_mut(gi);
            add_flat(gi, <P as Place<L>>::flat_in(scratch));
        }
    }
}

/// Branch `layer`'s output for `x`, written to `part` (its channels of the concatenation): in
/// place where `part` can be viewed as the branch's output type, else through `out`.
fn infer_into<L: Layer>(
    layer: &L,
    x: &L::Input,
    part: &mut [L::Scalar],
    ws: &mut L::Workspace,
    out: &mut L::Output,
) {
    match <L::Output as Tensor>::from_flat_mut(part) {
        Some(o) => layer.infer(x, o, ws),
        None => {
            layer.infer(x, out, ws);
            part.copy_from_slice(out.flat());
        }
    }
}

macro_rules! concat {
    ($($b:ident $i:tt),+) => {
        impl<X, Out, $($b),+> Layer for Concat<($($b,)+), Out>
        where
            X: Tensor,
            Out: MapsShape<Scalar = X::Scalar>,
            $($b: Layer<Scalar = X::Scalar, Input = X>, $b::Output: MapsShape,)+
        {
            type Scalar = X::Scalar;
            type Input = X;
            type Output = Out;
            type Workspace = ConcatWorkspace<($(Branch<$b::Workspace, $b::Output>,)+), X>;
            const CHECK: () = {
                $(let () = $b::CHECK;)+
                assert!(
                    0 $(+ <$b::Output as MapsShape>::C)+ == Out::C,
                    "Concat: the output's channels must equal the sum of the branches' channels"
                );
                $(assert!(
                    <$b::Output as MapsShape>::H == Out::H && <$b::Output as MapsShape>::W == Out::W,
                    "Concat: every branch must give maps of the output's height and width"
                );)+
            };
            const PARAM_TENSORS: usize = 0 $(+ $b::PARAM_TENSORS)+;
            const BUFFER_TENSORS: usize = 0 $(+ $b::BUFFER_TENSORS)+;
            const COUNTERS: usize = 0 $(+ $b::COUNTERS)+;

            fn forward(&self, x: &X, y: &mut Out, ws: &mut Self::Workspace) {
                self.forward_in(&Pass::<Train>::DEFAULT, x, y, ws);
            }

            // A forward pass keeps each branch's output in its workspace (`Layer::activation`
            // finds a named branch's there), then copies it into the output.
            fn forward_in<M: Mode>(&self, pass: &Pass<M>, x: &X, y: &mut Out, ws: &mut Self::Workspace) {
                let (y, mut offset) = (y.flat_mut(), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let buffers = (&mut b.out, &mut b.ws);
                    forward_branch(&Alone, pass, &self.branches.$i, x, buffers, (&mut *y, part));
                    offset += part.len;
                )+
                let _ = offset;
            }

            // Inference writes each branch's maps straight into their channels of the output
            // (in CHW layout, one contiguous range), with no copy: DenseNet's steps copy every
            // channel so far once (the identity branch), not twice. The branches' outputs are
            // then not kept in the workspace.
            //
            // Inside `threads::within_layers(2, ..)`, the branches (an Inception module's
            // four, a DenseNet step's copy and new layer) run at once on the two threads,
            // each writing its own channels, and each may split its own layers between
            // them: every branch's result is the one it has alone.
            fn infer(&self, x: &X, y: &mut Out, ws: &mut Self::Workspace) {
                let mut rest = y.flat_mut();
                let mut jobs = ($({
                    let (part, tail) =
                        core::mem::take(&mut rest).split_at_mut(<$b::Output as Tensor>::LEN);
                    rest = tail;
                    let (layer, b) = (&self.branches.$i, &mut ws.branches.$i);
                    move || infer_into(layer, x, &mut *part, &mut b.ws, &mut b.out)
                },)+);
                debug_assert!(rest.is_empty(), "Concat: the branches fill the output");
                let jobs: &mut [&mut (dyn FnMut() + Send)] = &mut [$(&mut jobs.$i),+];
                #[cfg(feature = "std")]
                if jobs.len() >= 2 && crate::threads::layer_threads() > 1 {
                    return crate::threads::run_all(jobs);
                }
                jobs.iter_mut().for_each(|job| job());
            }

            fn backward(
                &self,
                x: &X,
                ws: &mut Self::Workspace,
                g: &Out,
                mut grad_input: Option<&mut X>,
                grads: &mut Self,
            ) {
                let (g, mut offset) = (g.flat(), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let input_grads = (grad_input.as_deref_mut(), &mut ws.grad, $i == 0);
                    let (layer, buffers) = (&self.branches.$i, (&mut b.out, &mut b.ws));
                    backward_branch(&Alone, layer, x, buffers, (g, part), input_grads, &mut grads.branches.$i);
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn param(&self, i: usize) -> &[X::Scalar] {
                let mut i = i;
                $(
                    if i < $b::PARAM_TENSORS {
                        return self.branches.$i.param(i);
                    }
                    i -= $b::PARAM_TENSORS;
                )+
                no_such_param("Concat", i)
            }

            fn param_mut(&mut self, i: usize) -> &mut [X::Scalar] {
                let mut i = i;
                $(
                    if i < $b::PARAM_TENSORS {
                        return self.branches.$i.param_mut(i);
                    }
                    i -= $b::PARAM_TENSORS;
                )+
                no_such_param("Concat", i)
            }

            fn buffer(&self, i: usize) -> &[X::Scalar] {
                let mut i = i;
                $(
                    if i < $b::BUFFER_TENSORS {
                        return self.branches.$i.buffer(i);
                    }
                    i -= $b::BUFFER_TENSORS;
                )+
                no_such_tensor("buffer", i)
            }

            fn buffer_mut(&mut self, i: usize) -> &mut [X::Scalar] {
                let mut i = i;
                $(
                    if i < $b::BUFFER_TENSORS {
                        return self.branches.$i.buffer_mut(i);
                    }
                    i -= $b::BUFFER_TENSORS;
                )+
                no_such_tensor("buffer", i)
            }

            fn counter(&self, i: usize) -> u64 {
                let mut i = i;
                $(
                    if i < $b::COUNTERS {
                        return self.branches.$i.counter(i);
                    }
                    i -= $b::COUNTERS;
                )+
                no_such_tensor("counter", i)
            }

            fn counter_mut(&mut self, i: usize) -> &mut u64 {
                let mut i = i;
                $(
                    if i < $b::COUNTERS {
                        return self.branches.$i.counter_mut(i);
                    }
                    i -= $b::COUNTERS;
                )+
                no_such_tensor("counter", i)
            }

            fn update_buffers(&mut self, stats: &Self) {
                $(self.branches.$i.update_buffers(&stats.branches.$i);)+
            }

            /// The branches' names, unprefixed (torchvision's Inception has `branch1` …
            /// `branch4` side by side): name the branches.
            fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
                let mut i = i;
                $(
                    if i < count::<$b>(kind) {
                        return $b::tensor_name(kind, i, out);
                    }
                    i -= count::<$b>(kind);
                )+
                write!(out, "{kind:?}{i}")
            }

            /// In a sequence too (put it in a [`Block`](crate::Block) to number it).
            fn tensor_name_at(kind: TensorKind, i: usize, _position: usize, out: &mut dyn fmt::Write) -> fmt::Result {
                Self::tensor_name(kind, i, out)
            }

            fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
                let mut i = i;
                $(
                    if i < count::<$b>(kind) {
                        return self.branches.$i.tensor_shape(kind, i);
                    }
                    i -= count::<$b>(kind);
                )+
                no_such_tensor("tensor", i)
            }

            /// In a sequence too, as its tensors' names.
            fn activation_at<'a>(ws: &'a Self::Workspace, name: &str, _position: usize) -> Option<Activation<'a, X::Scalar>> {
                Self::activation(ws, name)
            }

            fn ends_with_at(name: &str, _position: usize) -> bool {
                Self::ends_with(name)
            }

            fn activation<'a>(ws: &'a Self::Workspace, name: &str) -> Option<Activation<'a, X::Scalar>> {
                $(
                    if $b::ends_with(name) {
                        return Some(Activation::of(&ws.branches.$i.out));
                    }
                    if let Some(found) = $b::activation(&ws.branches.$i.ws, name) {
                        return Some(found);
                    }
                )+
                None
            }

            fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
                $(self.branches.$i.init(rng);)+
            }

            fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
                $(self.branches.$i.visit_layers_mut(visit);)+
            }
        }

        impl<X, Out, $($b),+, const N: usize> BatchLayer<N> for Concat<($($b,)+), Out>
        where
            X: Tensor,
            Out: MapsShape<Scalar = X::Scalar>,
            $($b: BatchLayer<N, Scalar = X::Scalar, Input = X>, $b::Output: MapsShape,)+
        {
            type BatchWorkspace = ConcatWorkspace<($(Branch<$b::BatchWorkspace, [$b::Output; N]>,)+), [X; N]>;
            const WHOLE_BATCH: bool = false $(|| $b::WHOLE_BATCH)+;
            const INFER_WHOLE_BATCH: bool = false $(|| $b::INFER_WHOLE_BATCH)+;

            fn forward_batch(&self, x: &[X; N], y: &mut [Out; N], ws: &mut Self::BatchWorkspace) {
                self.forward_batch_in(&Pass::<Train>::DEFAULT, x, y, ws);
            }

            fn forward_batch_in<M: Mode>(
                &self,
                pass: &Pass<M>,
                x: &[X; N],
                y: &mut [Out; N],
                ws: &mut Self::BatchWorkspace,
            ) {
                let (y, mut offset) = (Out::flat_slice_mut(y), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let buffers = (&mut b.out, &mut b.ws);
                    forward_branch(&Whole::<N>, pass, &self.branches.$i, x, buffers, (&mut *y, part));
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn infer_batch(&self, x: &[X; N], y: &mut [Out; N], ws: &mut Self::BatchWorkspace) {
                let (y, mut offset) = (Out::flat_slice_mut(y), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let buffers = (&mut b.out, &mut b.ws);
                    infer_branch(&Whole::<N>, &self.branches.$i, x, buffers, (&mut *y, part));
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn backward_batch(
                &self,
                x: &[X; N],
                ws: &mut Self::BatchWorkspace,
                g: &[Out; N],
                mut grad_input: Option<&mut [X; N]>,
                grads: &mut Self,
            ) {
                let (g, mut offset) = (Out::flat_slice(g), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let input_grads = (grad_input.as_deref_mut(), &mut ws.grad, $i == 0);
                    let (layer, buffers) = (&self.branches.$i, (&mut b.out, &mut b.ws));
                    backward_branch(&Whole::<N>, layer, x, buffers, (g, part), input_grads, &mut grads.branches.$i);
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
                $(self.branches.$i.prepare_forward(&mut ws.branches.$i.ws);)+
            }

            fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
                $(self.branches.$i.prepare_backward(&mut ws.branches.$i.ws);)+
            }

            fn forward_sample(&self, n: usize, x: &X, y: &mut Out, ws: &mut Self::BatchWorkspace) {
                self.forward_sample_in(&Pass::<Train>::DEFAULT, n, x, y, ws);
            }

            fn forward_sample_in<M: Mode>(
                &self,
                pass: &Pass<M>,
                n: usize,
                x: &X,
                y: &mut Out,
                ws: &mut Self::BatchWorkspace,
            ) {
                let (y, mut offset) = (y.flat_mut(), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let buffers = (&mut b.out[n], &mut b.ws);
                    forward_branch(&Slot::<N>(n), pass, &self.branches.$i, x, buffers, (&mut *y, part));
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn infer_sample(&self, n: usize, x: &X, y: &mut Out, ws: &mut Self::BatchWorkspace) {
                let (y, mut offset) = (y.flat_mut(), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    let buffers = (&mut b.out[n], &mut b.ws);
                    infer_branch(&Slot::<N>(n), &self.branches.$i, x, buffers, (&mut *y, part));
                    offset += part.len;
                )+
                let _ = offset;
            }

            fn backward_sample(
                &self,
                n: usize,
                x: &X,
                ws: &mut Self::BatchWorkspace,
                g: &Out,
                mut grad_input: Option<&mut X>,
                grads: &mut Self,
            ) {
                let (g, mut offset) = (g.flat(), 0);
                $(
                    let b = &mut ws.branches.$i;
                    let part = Part { offset, len: <$b::Output as Tensor>::LEN, whole: <Out as Tensor>::LEN };
                    // The branches' input gradients in slot 0, which stays in cache.
                    let input_grads = (grad_input.as_deref_mut(), &mut ws.grad[0], $i == 0);
                    let (layer, buffers) = (&self.branches.$i, (&mut b.out[n], &mut b.ws));
                    backward_branch(&Slot::<N>(n), layer, x, buffers, (g, part), input_grads, &mut grads.branches.$i);
                    offset += part.len;
                )+
                let _ = offset;
            }
        }
    };
}

concat!(A 0, B 1);
concat!(A 0, B 1, C 2);
concat!(A 0, B 1, C 2, D 3);

crate::zeroable!(impl [B: crate::zeroed::Zeroable, Out] for Concat [B, Out] { branches, out });
crate::zeroable!(impl [W: crate::zeroed::Zeroable, Y: crate::zeroed::Zeroable] for Branch [W, Y] { ws, out });
crate::zeroable!(impl [B: crate::zeroed::Zeroable, G: crate::zeroed::Zeroable] for ConcatWorkspace [B, G] { branches, grad });
