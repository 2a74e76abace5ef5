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
    (impl<$($g:ident),* ; $(const $c:ident : $ct:ty),*> for $ty:ty) => {
        $crate::fused::no_params!(@impl [$($g: $crate::scalar::Scalar,)* $(const $c: $ct,)*] for $ty);
    };
    (impl<$g:ident : $bound:path> for $ty:ty) => {
        $crate::fused::no_params!(@impl [$g: $bound,] for $ty);
    };
    (@impl [$($gen:tt)*] for $ty:ty) => {
        impl<$($gen)*> $crate::fused::SgdLayer for $ty
        where
            $ty: $crate::layer::Layer,
        {
            fn backward_sgd(
                &mut self,
                input: &Self::Input,
                ws: &mut Self::Workspace,
                grad_output: &Self::Output,
                grad_input: Option<&mut Self::Input>,
                _lr: Self::Scalar,
            ) {
                // A zero-sized value: nothing is built.
                self.backward(input, ws, grad_output, grad_input, &mut <Self as $crate::zeroed::Zeroable>::zeroed());
            }
        }
    };
}
pub(crate) use no_params;

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
