//! Rectified linear unit, `max(x, 0)`, over any tensor.

use core::marker::PhantomData;

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::fusion::{Epilogue, Fusion};
use crate::lanes::{LaneLayer, backward_slots, forward_slots};
use crate::layer::{Layer, no_such_param};
use crate::tensor::Tensor;

/// `y = max(x, 0)` element-wise over the tensor type `X` (for example `Maps<f32, 6, 28, 28>`
/// or `[f32; 120]`). Its derivative is taken as 0 at `x = 0`, like PyTorch, and a NaN passes
/// through, like PyTorch: a NaN weight anywhere in a network then reaches the loss, and
/// training stops (the trainer reports `Diverged`) instead of carrying on.
///
/// ```
/// use constnet::{Layer, Relu};
/// let mut y = [0.0f32; 4];
/// Relu::<[f32; 4]>::new().forward(&[-1.0, 0.0, 2.5, f32::NAN], &mut y, &mut ());
/// assert_eq!(y[..3], [0.0, 0.0, 2.5]);
/// assert!(y[3].is_nan());
/// ```
#[derive(Debug, Default, PartialEq)]
pub struct Relu<X>(PhantomData<X>);

impl<X> Relu<X> {
    /// The activation (it has no parameters).
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<X> Clone for Relu<X> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<X> Copy for Relu<X> {}

impl<X: Tensor> Layer for Relu<X> {
    type Scalar = X::Scalar;
    type Input = X;
    type Output = X;
    type Workspace = ();
    const CHECK: () = ();
    const PARAM_TENSORS: usize = 0;
    const EPILOGUE: Option<Epilogue> = Some(Epilogue::Relu);

    fn forward(&self, input: &X, output: &mut X, _ws: &mut ()) {
        let zero = <X::Scalar as num_traits::Zero>::zero();
        for (y, &x) in output.flat_mut().iter_mut().zip(input.flat()) {
            // Not `x > 0`, which would turn a NaN into 0.
            *y = if x <= zero { zero } else { x };
        }
    }

    fn backward(
        &self,
        input: &X,
        _ws: &mut (),
        grad_output: &X,
        grad_input: Option<&mut X>,
        _grads: &mut Self,
    ) {
        let Some(gi) = grad_input else { return };
        let zero = <X::Scalar as num_traits::Zero>::zero();
        for ((gi, &g), &x) in gi
            .flat_mut()
            .iter_mut()
            .zip(grad_output.flat())
            .zip(input.flat())
        {
            *gi = if x > zero { g } else { zero };
        }
    }

    fn param(&self, i: usize) -> &[X::Scalar] {
        no_such_param("Relu", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [X::Scalar] {
        no_such_param("Relu", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [X] for Relu [X] (_0));

// How it runs: batches, lanes, and the fused SGD step.

impl<X: Tensor, const N: usize> BatchLayer<N> for Relu<X> {
    type BatchWorkspace = ();

    /// One element-wise pass over the whole batch.
    fn forward_batch(&self, input: &[X; N], output: &mut [X; N], _ws: &mut ()) {
        for (x, y) in input.iter().zip(output.iter_mut()) {
            self.forward(x, y, &mut ());
        }
    }

    fn backward_batch(
        &self,
        input: &[X; N],
        _ws: &mut (),
        grad_output: &[X; N],
        grad_input: Option<&mut [X; N]>,
        grads: &mut Self,
    ) {
        let Some(gi) = grad_input else { return };
        for ((x, g), gi) in input.iter().zip(grad_output).zip(gi) {
            self.backward(x, &mut (), g, Some(gi), grads);
        }
    }

    fn forward_sample(&self, _n: usize, input: &X, output: &mut X, _ws: &mut ()) {
        self.forward(input, output, &mut ());
    }

    fn backward_sample(
        &self,
        _n: usize,
        input: &X,
        _ws: &mut (),
        grad_output: &X,
        grad_input: Option<&mut X>,
        grads: &mut Self,
    ) {
        self.backward(input, &mut (), grad_output, grad_input, grads);
    }
}

/// Element-wise, so the layout does not matter: the per-sample pass over the block's slots.
impl<X: Tensor, const N: usize> LaneLayer<N> for Relu<X> {
    type LaneWorkspace = ();
    const LANE_EPILOGUE: Option<Fusion<'static, X::Scalar>> =
        Some(Fusion::epilogue(Epilogue::Relu));

    fn forward_lanes(&self, block: usize, input: &[X; N], output: &mut [X; N], _ws: &mut ()) {
        forward_slots(self, block, input, output);
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[X; N],
        _output: &[X; N],
        _ws: &mut (),
        grad_output: &[X; N],
        grad_input: Option<&mut [X; N]>,
        grads: &mut Self,
    ) {
        backward_slots(self, block, (input, grad_output), grad_input, grads);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_passes_only_where_input_is_positive() {
        let x = [[-2.0f64, 3.0], [0.0, 1e-300]];
        let mut gx = [[7.0; 2]; 2];
        Relu::new().backward(
            &x,
            &mut (),
            &[[1.0, 2.0], [3.0, 4.0]],
            Some(&mut gx),
            &mut Relu::new(),
        );
        assert_eq!(gx, [[0.0, 2.0], [0.0, 4.0]]);
    }
}
