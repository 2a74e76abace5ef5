//! [`BatchBySample`]: the batched passes of a layer whose batch is its per-sample pass run
//! for each sample, written once for every such layer, the crate's and a user's own.

use crate::batch::BatchLayer;
use crate::layer::Layer;
use crate::mode::{Mode, Pass};

/// A layer whose batches are `N` calls of its per-sample passes, each sample with its own
/// [`Layer::Workspace`]: implementing this marker gives the layer [`BatchLayer`] for every
/// batch size, so that a layer of your own, which needs nothing of the whole batch, works in
/// batches, in chains of batched layers and in the trainer with one line. (Layers that gain
/// from the whole batch, as [`Linear`](crate::Linear) and batch norm do, implement
/// [`BatchLayer`] themselves instead.)
///
/// ```
/// use constnet::{sequential, BatchBySample, BatchLayer, Layer, Linear, Zeroable, zeroed_box};
///
/// /// Doubles its input: a layer without parameters.
/// #[derive(Clone, Copy, Debug, Default)]
/// struct Double;
/// // SAFETY: a unit struct has no bytes, so all-zero bytes are a valid value.
/// unsafe impl Zeroable for Double {}
///
/// impl Layer for Double {
///     type Scalar = f32;
///     type Input = [f32; 4];
///     type Output = [f32; 4];
///     type Workspace = ();
///     const CHECK: () = ();
///     const PARAM_TENSORS: usize = 0;
///     fn forward(&self, x: &[f32; 4], y: &mut [f32; 4], _: &mut ()) {
///         *y = x.map(|v| 2.0 * v);
///     }
///     fn backward(&self, _: &[f32; 4], _: &mut (), g: &[f32; 4], gx: Option<&mut [f32; 4]>, _: &mut Self) {
///         if let Some(gx) = gx {
///             *gx = g.map(|v| 2.0 * v);
///         }
///     }
///     fn param(&self, i: usize) -> &[f32] { panic!("Double has no parameter {i}") }
///     fn param_mut(&mut self, i: usize) -> &mut [f32] { panic!("Double has no parameter {i}") }
///     fn init<R: rand::Rng + ?Sized>(&mut self, _: &mut R) {}
/// }
/// impl BatchBySample for Double {}
///
/// type Net = sequential![Double, Linear<f32, 4, 2>];
/// let mut net = zeroed_box::<Net>();
/// net.then.weight = [[1.0; 4], [0.0, 0.0, 0.0, 1.0]];
/// let mut ws = zeroed_box::<<Net as BatchLayer<3>>::BatchWorkspace>();
/// let x = [[1.0, 2.0, 3.0, 4.0], [0.0; 4], [-1.0, 0.0, 0.0, 0.5]];
/// let mut y = [[0.0; 2]; 3];
/// net.forward_batch(&x, &mut y, &mut ws);
/// assert_eq!(y, [[20.0, 8.0], [0.0, 0.0], [-1.0, 1.0]]);
/// ```
pub trait BatchBySample: Layer {}

/// `N` per-sample passes, sample `n` in slot `n` of the batch workspace.
impl<L: BatchBySample, const N: usize> BatchLayer<N> for L {
    type BatchWorkspace = [L::Workspace; N];

    fn forward_batch(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        for ((x, y), ws) in input.iter().zip(output.iter_mut()).zip(ws.iter_mut()) {
            self.forward(x, y, ws);
        }
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        for (n, ((x, y), ws)) in input
            .iter()
            .zip(output.iter_mut())
            .zip(ws.iter_mut())
            .enumerate()
        {
            self.forward_in(&pass.offset(n), x, y, ws);
        }
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_in(&pass.offset(n), input, output, &mut ws[n]);
    }

    fn backward_batch(
        &self,
        input: &[Self::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
        match grad_input {
            Some(gi) => {
                for (((x, ws), g), gi) in input.iter().zip(ws.iter_mut()).zip(grad_output).zip(gi) {
                    self.backward(x, ws, g, Some(gi), grads);
                }
            }
            None => {
                for ((x, ws), g) in input.iter().zip(ws.iter_mut()).zip(grad_output) {
                    self.backward(x, ws, g, None, grads);
                }
            }
        }
    }

    fn forward_sample(
        &self,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward(input, output, &mut ws[n]);
    }

    fn infer_batch(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        for ((x, y), ws) in input.iter().zip(output.iter_mut()).zip(ws.iter_mut()) {
            self.infer(x, y, ws);
        }
    }

    fn infer_sample(
        &self,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.infer(input, output, &mut ws[n]);
    }

    fn backward_sample(
        &self,
        n: usize,
        input: &Self::Input,
        ws: &mut Self::BatchWorkspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        self.backward(input, &mut ws[n], grad_output, grad_input, grads);
    }
}

/// Implements [`BatchBySample`] for a layer of this crate (its batches run as `N`
/// per-sample passes), with the layer's generic parameters spelled out once.
macro_rules! per_sample {
    (impl<$($g:ident),* ; $(const $c:ident : $ct:ty),*> for $ty:ty) => {
        $crate::batch_by_sample::per_sample!(@impl [$($g: $crate::scalar::Scalar,)* $(const $c: $ct,)*] for $ty);
    };
    (impl<$g:ident : $bound:path> for $ty:ty) => {
        $crate::batch_by_sample::per_sample!(@impl [$g: $bound,] for $ty);
    };
    (@impl [$($gen:tt)*] for $ty:ty) => {
        impl<$($gen)*> $crate::batch_by_sample::BatchBySample for $ty where $ty: $crate::layer::Layer {}
    };
}
pub(crate) use per_sample;
