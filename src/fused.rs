//! A plain-SGD training step with no gradient buffer: each layer's backward pass updates its
//! own parameters as it goes.
//!
//! At batch 1 the separate steps, clearing a network-sized gradient buffer, back-propagating
//! into it, and [`Sgd::step`](crate::Sgd::step) reading it back, stream LeNet-5's
//! 244 KB of parameters three more times than needed; together they cost a quarter of a
//! training step. [`Chain::train_sgd`] gives the same result (bit for bit in `f64`; up to
//! rounding in the `f32` fast paths, which fuse the multiply-adds) in one pass.
//!
//! ```
//! use constnet::{LeNet5, Loss};
//! use rand::SeedableRng;
//!
//! let mut net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(0));
//! let mut ws = LeNet5::<f32>::workspace();
//! let mut image = [[[0.0f32; 32]; 32]; 1];
//! image[0][8..24].iter_mut().for_each(|row| row[15] = 1.0); // a "1"
//! let before = net.train_sgd(&image, 1, Loss::CrossEntropy, 0.01, &mut ws);
//! for _ in 0..20 {
//!     net.train_sgd(&image, 1, Loss::CrossEntropy, 0.01, &mut ws);
//! }
//! assert!(net.train_sgd(&image, 1, Loss::CrossEntropy, 0.01, &mut ws) < before);
//! ```

use crate::chain::{Chain, ChainWorkspace};
use crate::layer::Layer;
use crate::loss::{Loss, softmax_loss};
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::zeroed::Zeroable;
use crate::{Conv2d, Flatten, Linear, MaxPool2d, Relu};

/// A layer whose backward pass can apply plain SGD, `w ← w − lr · ∂E/∂w`, to its own
/// parameters instead of adding the gradient to a buffer.
pub trait SgdLayer: Layer {
    /// [`Layer::backward`] for one sample followed by the SGD update of this layer's
    /// parameters with that sample's gradient. The input gradient, if asked for, is
    /// computed with the parameters from before the update.
    fn backward_sgd(
        &mut self,
        input: &Self::Input,
        ws: &mut Self::Workspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        lr: Self::Scalar,
    );
}

/// Layers without parameters: just the backward pass.
macro_rules! no_params {
    (impl<$($g:ident),* ; $(const $c:ident),*> for $ty:ty) => {
        impl<$($g: Scalar,)* $(const $c: usize,)*> SgdLayer for $ty where $ty: Layer {
            fn backward_sgd(
                &mut self,
                input: &Self::Input,
                ws: &mut Self::Workspace,
                grad_output: &Self::Output,
                grad_input: Option<&mut Self::Input>,
                _lr: Self::Scalar,
            ) {
                // A zero-sized value: nothing is built.
                self.backward(input, ws, grad_output, grad_input, &mut Self::zeroed());
            }
        }
    };
}

no_params!(impl<T; const C, const H, const W, const K, const S, const OH, const OW>
    for MaxPool2d<T, C, H, W, K, S, OH, OW>);
no_params!(impl<T; const C, const H, const W, const L> for Flatten<T, C, H, W, L>);
no_params!(impl<T; const L> for Softmax<T, L>);

impl<X: crate::tensor::Tensor> SgdLayer for Relu<X> {
    fn backward_sgd(
        &mut self,
        input: &X,
        ws: &mut (),
        grad_output: &X,
        grad_input: Option<&mut X>,
        _lr: X::Scalar,
    ) {
        self.backward(input, ws, grad_output, grad_input, &mut Relu::new());
    }
}

/// A convolution's gradient is small (2,416 numbers for LeNet's conv2): it is computed on
/// the stack, then applied.
impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> SgdLayer for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    fn backward_sgd(
        &mut self,
        input: &Self::Input,
        ws: &mut (),
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        lr: T,
    ) {
        let mut grads = Self::zeroed();
        self.backward(input, ws, grad_output, grad_input, &mut grads);
        for i in 0..Self::PARAM_TENSORS {
            for (w, &g) in self.param_mut(i).iter_mut().zip(grads.param(i)) {
                *w = *w - lr * g;
            }
        }
    }
}

/// A fully connected layer's gradient is as big as its weights: the update is the weight
/// gradient's outer product, added straight to the weights.
impl<T: Scalar, const IN: usize, const OUT: usize> SgdLayer for Linear<T, IN, OUT> {
    fn backward_sgd(
        &mut self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        lr: T,
    ) {
        self.backward_sgd_fused(input, grad_output, grad_input, lr);
    }
}

impl<A, B> SgdLayer for Chain<A, B>
where
    A: SgdLayer,
    B: SgdLayer<Scalar = A::Scalar, Input = A::Output>,
{
    fn backward_sgd(
        &mut self,
        input: &A::Input,
        ws: &mut Self::Workspace,
        grad_output: &B::Output,
        grad_input: Option<&mut A::Input>,
        lr: A::Scalar,
    ) {
        let ChainWorkspace {
            first,
            mid,
            mid_grad,
            then,
        } = ws;
        self.then
            .backward_sgd(mid, then, grad_output, Some(mid_grad), lr);
        self.first
            .backward_sgd(input, first, mid_grad, grad_input, lr);
    }
}

impl<Net, T, const C: usize> Chain<Net, Softmax<T, C>>
where
    T: Scalar,
    Net: SgdLayer<Scalar = T, Output = [T; C]>,
{
    /// One plain-SGD training step on one sample: forward pass, `loss` against `label`, and
    /// a backward pass that updates every parameter by `−lr · ∂E/∂w` as it goes. Returns the
    /// loss before the update. The same as clearing a gradient buffer,
    /// [`Chain::backprop`] and [`Sgd::step`](crate::Sgd::step), without the buffer.
    /// Panics if `label >= C`.
    pub fn train_sgd(
        &mut self,
        input: &Net::Input,
        label: usize,
        loss: Loss,
        lr: T,
        ws: &mut ChainWorkspace<Net, Softmax<T, C>>,
    ) -> T {
        assert!(
            label < C,
            "train_sgd: label {label} is not below the class count {C}"
        );
        let ChainWorkspace {
            first,
            mid: logits,
            mid_grad,
            then: probs,
        } = ws;
        self.first.forward(input, logits, first);
        let value = softmax_loss(logits, label, loss, probs, mid_grad);
        self.first.backward_sgd(input, first, mid_grad, None, lr);
        value
    }
}
