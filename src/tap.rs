//! A side head on a network's path: GoogLeNet's auxiliary classifiers.

use core::fmt;

use rand::Rng;

use crate::batch::BatchLayer;
use crate::layer::{Activation, Layer, Shape, TensorKind};
use crate::mode::{Mode, Pass, Train};
use crate::residual::add_to;
use crate::tensor::Tensor;

/// A layer that passes its input through unchanged and, in training, also runs `head` on it:
/// a side output for a loss of its own, as GoogLeNet's auxiliary classifiers read the
/// activations after `inception4a` and `inception4d`.
///
/// * **Training** ([`Pass::train`], and [`Layer::forward`]): the head's output is kept in
///   the workspace (`out`), and its gradient `grad` is reset to zero. Whoever computes the
///   side loss writes `∂loss/∂out` to `grad` before the backward pass; the backward pass then
///   adds the head's input gradient to the gradient that flows through, and the head's
///   parameter gradients to `grads`. A `grad` left at zero adds nothing (and costs nothing).
/// * **Evaluation** ([`Pass::eval`], [`Layer::infer`]): the head does not run, as
///   torchvision's `GoogLeNet` returns only its main logits in `eval()` mode.
///
/// Its tensors are the head's, unprefixed: wrap it in [`Named`](crate::Named) (`aux1`).
///
/// ```
/// use constnet::{sequential, zeroed_box, Layer, Linear, Tap};
/// type Net = sequential![Linear<f64, 2, 3>, Tap<Linear<f64, 3, 1>>, Linear<f64, 3, 2>];
/// let mut net = zeroed_box::<Net>();
/// net.first.then.head.bias = [5.0];
/// let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
/// let mut y = [0.0; 2];
/// net.forward(&[1.0, 2.0], &mut y, &mut ws);
/// assert_eq!(ws.first.then.out, [5.0]); // the side output
/// ws.first.then.grad = [1.0]; // ∂(side loss)/∂out
/// let mut grads = zeroed_box::<Net>();
/// net.backward(&[1.0, 2.0], &mut ws, &[0.0, 0.0], None, &mut grads);
/// assert_eq!(grads.first.then.head.bias, [1.0]);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tap<H> {
    /// The side head.
    pub head: H,
}

/// What a [`Tap`] keeps between its passes.
pub struct TapWorkspace<H: Layer> {
    /// The head's workspace.
    pub head: H::Workspace,
    /// The head's output from the latest training pass.
    pub out: H::Output,
    /// The gradient of the side loss with respect to `out`: zero after each training pass,
    /// written by the caller before the backward pass.
    pub grad: H::Output,
    /// The head's input gradient during backward.
    pub head_grad_input: H::Input,
    /// Whether the latest forward pass ran the head (a training pass).
    pub ran: bool,
}

fn is_zero<X: Tensor>(x: &X) -> bool {
    x.flat()
        .iter()
        .all(|v| *v == <X::Scalar as num_traits::Zero>::zero())
}

fn clear<X: Tensor>(x: &mut X) {
    x.flat_mut().fill(<X::Scalar as num_traits::Zero>::zero());
}

/// `*to = *from`, element by element (a large tensor is never copied through the stack).
fn copy<X: Tensor>(to: &mut X, from: &X) {
    to.flat_mut().copy_from_slice(from.flat());
}

impl<H: Layer> Layer for Tap<H> {
    type Scalar = H::Scalar;
    type Input = H::Input;
    type Output = H::Input;
    type Workspace = TapWorkspace<H>;
    const CHECK: () = H::CHECK;
    const PARAM_TENSORS: usize = H::PARAM_TENSORS;
    const BUFFER_TENSORS: usize = H::BUFFER_TENSORS;
    const COUNTERS: usize = H::COUNTERS;

    fn forward(&self, x: &H::Input, y: &mut H::Input, ws: &mut Self::Workspace) {
        self.forward_in(&Pass::<Train>::DEFAULT, x, y, ws);
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &H::Input,
        y: &mut H::Input,
        ws: &mut Self::Workspace,
    ) {
        copy(y, x);
        ws.ran = M::TRAIN;
        if M::TRAIN {
            self.head.forward_in(pass, x, &mut ws.out, &mut ws.head);
            clear(&mut ws.grad);
        }
    }

    fn infer(&self, x: &H::Input, y: &mut H::Input, ws: &mut Self::Workspace) {
        copy(y, x);
        ws.ran = false;
    }

    fn backward(
        &self,
        x: &H::Input,
        ws: &mut Self::Workspace,
        g: &H::Input,
        grad_input: Option<&mut H::Input>,
        grads: &mut Self,
    ) {
        let TapWorkspace {
            head,
            grad,
            head_grad_input,
            ran,
            ..
        } = ws;
        let side = *ran && !is_zero(grad);
        match grad_input {
            Some(gi) => {
                copy(gi, g);
                if side {
                    let hg = Some(&mut *head_grad_input);
                    self.head.backward(x, head, grad, hg, &mut grads.head);
                    add_to(gi, head_grad_input);
                }
            }
            None if side => self.head.backward(x, head, grad, None, &mut grads.head),
            None => {}
        }
    }

    fn param(&self, i: usize) -> &[H::Scalar] {
        self.head.param(i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [H::Scalar] {
        self.head.param_mut(i)
    }
    fn buffer(&self, i: usize) -> &[H::Scalar] {
        self.head.buffer(i)
    }
    fn buffer_mut(&mut self, i: usize) -> &mut [H::Scalar] {
        self.head.buffer_mut(i)
    }
    fn counter(&self, i: usize) -> u64 {
        self.head.counter(i)
    }
    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        self.head.counter_mut(i)
    }
    fn update_buffers(&mut self, stats: &Self) {
        self.head.update_buffers(&stats.head);
    }

    /// The head's names, unprefixed.
    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        H::tensor_name(kind, i, out)
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        self.head.tensor_shape(kind, i)
    }

    /// The head's activations by their names, and its output (the side logits) as `out`.
    fn activation<'a>(ws: &'a Self::Workspace, name: &str) -> Option<Activation<'a, H::Scalar>> {
        if name == "out" {
            return Some(Activation::of(&ws.out));
        }
        H::activation(&ws.head, name)
    }

    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.head.init(rng);
    }

    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.head.visit_layers_mut(visit);
    }
}

/// What a [`Tap`]'s batched passes keep: as [`TapWorkspace`], per sample.
pub struct TapBatchWorkspace<H: BatchLayer<N>, const N: usize> {
    /// The head's batch workspace.
    pub head: H::BatchWorkspace,
    /// The head's outputs from the latest training pass.
    pub out: [H::Output; N],
    /// The side loss's gradients with respect to `out`: zero after each training pass,
    /// written by the caller before the backward pass.
    pub grad: [H::Output; N],
    /// The head's input gradients during backward.
    pub head_grad_input: [H::Input; N],
    /// Whether the latest forward pass ran the head.
    pub ran: bool,
}

impl<H: BatchLayer<N>, const N: usize> BatchLayer<N> for Tap<H> {
    type BatchWorkspace = TapBatchWorkspace<H, N>;
    const WHOLE_BATCH: bool = H::WHOLE_BATCH;
    const INFER_WHOLE_BATCH: bool = H::INFER_WHOLE_BATCH;

    fn forward_batch(
        &self,
        x: &[H::Input; N],
        y: &mut [H::Input; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch_in(&Pass::<Train>::DEFAULT, x, y, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &[H::Input; N],
        y: &mut [H::Input; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        y.iter_mut().zip(x).for_each(|(y, x)| copy(y, x));
        ws.ran = M::TRAIN;
        if M::TRAIN {
            self.head
                .forward_batch_in(pass, x, &mut ws.out, &mut ws.head);
            ws.grad.iter_mut().for_each(clear);
        }
    }

    fn infer_batch(&self, x: &[H::Input; N], y: &mut [H::Input; N], ws: &mut Self::BatchWorkspace) {
        y.iter_mut().zip(x).for_each(|(y, x)| copy(y, x));
        ws.ran = false;
    }

    fn backward_batch(
        &self,
        x: &[H::Input; N],
        ws: &mut Self::BatchWorkspace,
        g: &[H::Input; N],
        grad_input: Option<&mut [H::Input; N]>,
        grads: &mut Self,
    ) {
        let TapBatchWorkspace {
            head,
            grad,
            head_grad_input,
            ran,
            ..
        } = ws;
        let side = *ran && !grad.iter().all(is_zero);
        match grad_input {
            Some(gi) => {
                gi.iter_mut().zip(g).for_each(|(gi, g)| copy(gi, g));
                if side {
                    let hg = Some(&mut *head_grad_input);
                    self.head.backward_batch(x, head, grad, hg, &mut grads.head);
                    gi.iter_mut()
                        .zip(head_grad_input.iter())
                        .for_each(|(gi, h)| add_to(gi, h));
                }
            }
            None if side => self
                .head
                .backward_batch(x, head, grad, None, &mut grads.head),
            None => {}
        }
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.head.prepare_forward(&mut ws.head);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.head.prepare_backward(&mut ws.head);
    }

    fn forward_sample(
        &self,
        n: usize,
        x: &H::Input,
        y: &mut H::Input,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_sample_in(&Pass::<Train>::DEFAULT, n, x, y, ws);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        x: &H::Input,
        y: &mut H::Input,
        ws: &mut Self::BatchWorkspace,
    ) {
        copy(y, x);
        ws.ran = M::TRAIN;
        if M::TRAIN {
            self.head
                .forward_sample_in(pass, n, x, &mut ws.out[n], &mut ws.head);
            clear(&mut ws.grad[n]);
        }
    }

    fn infer_sample(
        &self,
        _n: usize,
        x: &H::Input,
        y: &mut H::Input,
        ws: &mut Self::BatchWorkspace,
    ) {
        copy(y, x);
        ws.ran = false;
    }

    fn backward_sample(
        &self,
        n: usize,
        x: &H::Input,
        ws: &mut Self::BatchWorkspace,
        g: &H::Input,
        grad_input: Option<&mut H::Input>,
        grads: &mut Self,
    ) {
        let TapBatchWorkspace {
            head,
            grad,
            head_grad_input,
            ran,
            ..
        } = ws;
        let side = *ran && !is_zero(&grad[n]);
        match grad_input {
            Some(gi) => {
                copy(gi, g);
                if side {
                    let hg = Some(&mut head_grad_input[0]);
                    self.head
                        .backward_sample(n, x, head, &grad[n], hg, &mut grads.head);
                    add_to(gi, &head_grad_input[0]);
                }
            }
            None if side => self
                .head
                .backward_sample(n, x, head, &grad[n], None, &mut grads.head),
            None => {}
        }
    }
}

crate::zeroable!(impl [H: crate::zeroed::Zeroable] for Tap [H] { head });
crate::zeroable!(impl [H: Layer] for TapWorkspace [H] { head, out, grad, head_grad_input, ran });
crate::zeroable!(impl [H: BatchLayer<N>, const N: usize]
    for TapBatchWorkspace [H, N] { head, out, grad, head_grad_input, ran });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Linear, Relu, sequential, zeroed_box};

    type Head = sequential![Linear<f64, 3, 4>, Relu<[f64; 4]>, Linear<f64, 4, 2>];
    type Net = sequential![Linear<f64, 2, 3>, Tap<Head>, Linear<f64, 3, 2>];

    fn net() -> std::boxed::Box<Net> {
        let mut net = zeroed_box::<Net>();
        for i in 0..Net::PARAM_TENSORS {
            for (k, w) in net.param_mut(i).iter_mut().enumerate() {
                *w = ((i * 7 + k) as f64 * 0.77).sin();
            }
        }
        net
    }

    /// loss = ⟨main output, a⟩ + ⟨side output, b⟩; its gradient through the tap equals
    /// central differences for every parameter and input.
    #[test]
    fn the_side_gradient_adds_to_the_main_one() {
        let (a, b) = ([0.3, -1.1], [0.8, 0.45]);
        let x = [0.6, -0.9];
        let loss = |net: &Net, x: &[f64; 2]| {
            let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
            let mut y = [0.0; 2];
            net.forward(x, &mut y, &mut ws);
            let side = ws.first.then.out;
            a[0] * y[0] + a[1] * y[1] + b[0] * side[0] + b[1] * side[1]
        };
        let mut net = net();
        let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
        let mut y = [0.0; 2];
        net.forward(&x, &mut y, &mut ws);
        ws.first.then.grad = b;
        let mut grads = zeroed_box::<Net>();
        let mut gx = [0.0; 2];
        net.backward(&x, &mut ws, &a, Some(&mut gx), &mut grads);
        let h = 1e-6;
        for i in 0..Net::PARAM_TENSORS {
            for k in 0..net.param(i).len() {
                let w = net.param(i)[k];
                net.param_mut(i)[k] = w + h;
                let up = loss(&net, &x);
                net.param_mut(i)[k] = w - h;
                let down = loss(&net, &x);
                net.param_mut(i)[k] = w;
                let numeric = (up - down) / (2.0 * h);
                assert!(
                    (grads.param(i)[k] - numeric).abs() < 1e-8,
                    "tensor {i}[{k}]"
                );
            }
        }
        for k in 0..2 {
            let mut xp = x;
            xp[k] += h;
            let up = loss(&net, &xp);
            xp[k] -= 2.0 * h;
            let numeric = (up - loss(&net, &xp)) / (2.0 * h);
            assert!((gx[k] - numeric).abs() < 1e-8, "input {k}");
        }
        // The head's parameters got a gradient only through the side loss.
        assert!(
            grads
                .first
                .then
                .head
                .then
                .weight
                .iter()
                .flatten()
                .any(|&g| g != 0.0)
        );
    }

    /// In evaluation the head does not run, and the output is the same as in training.
    #[test]
    fn evaluation_skips_the_head() {
        let net = net();
        let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
        let (mut trained, mut inferred) = ([0.0; 2], [0.0; 2]);
        net.forward(&[1.0, 2.0], &mut trained, &mut ws);
        assert!(ws.first.then.ran && ws.first.then.out != [0.0; 2]);
        let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
        net.infer(&[1.0, 2.0], &mut inferred, &mut ws);
        assert_eq!(trained, inferred);
        assert!(!ws.first.then.ran);
        assert_eq!(ws.first.then.out, [0.0; 2]);
    }

    /// The batched passes give each sample the per-sample gradients, summed.
    #[test]
    fn batches_add_up_the_samples() {
        let net = net();
        let xs = [[0.6, -0.9], [1.5, 0.2], [-0.3, 0.4]];
        let gs = [[1.0, 0.5], [-0.2, 0.1], [0.0, 0.0]];
        let sides = [[0.3, 0.3], [0.0, 0.0], [-1.0, 2.0]];
        let mut ws = zeroed_box::<<Net as BatchLayer<3>>::BatchWorkspace>();
        let mut ys = [[0.0; 2]; 3];
        net.forward_batch(&xs, &mut ys, &mut ws);
        ws.first.then.grad = sides;
        let mut batch_grads = zeroed_box::<Net>();
        let mut gx = [[0.0; 2]; 3];
        net.backward_batch(&xs, &mut ws, &gs, Some(&mut gx), &mut batch_grads);
        let mut grads = zeroed_box::<Net>();
        for n in 0..3 {
            let mut ws = zeroed_box::<<Net as Layer>::Workspace>();
            let mut y = [0.0; 2];
            net.forward(&xs[n], &mut y, &mut ws);
            assert_eq!(y, ys[n]);
            ws.first.then.grad = sides[n];
            let mut g = [0.0; 2];
            net.backward(&xs[n], &mut ws, &gs[n], Some(&mut g), &mut grads);
            for k in 0..2 {
                assert!((g[k] - gx[n][k]).abs() < 1e-12);
            }
        }
        for i in 0..Net::PARAM_TENSORS {
            for (a, b) in grads.param(i).iter().zip(batch_grads.param(i)) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }
}
