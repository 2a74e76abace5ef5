//! Feature maps to a vector, in channel-row-column order.

use core::marker::PhantomData;

use rand::Rng;

use crate::lanes::{LaneLayer, backward_slots, forward_slots};
use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};

/// Reshapes `C`×`H`×`W` maps into a vector of `N = C·H·W` values, row-major (the order of
/// PyTorch's `flatten`). A wrong `N` does not compile.
///
/// ```
/// use constnet::{Flatten, Layer};
/// let mut v = [0.0f32; 8];
/// Flatten::<f32, 2, 2, 2, 8>::new().forward(&[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]], &mut v, &mut ());
/// assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flatten<T, const C: usize, const H: usize, const W: usize, const N: usize>(
    PhantomData<T>,
);

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const N: usize>
    Flatten<T, C, H, W, N>
{
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(
        N == C * H * W,
        "Flatten: output length N must equal C·H·W of the input maps"
    );

    /// The reshape (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const N: usize> Layer
    for Flatten<T, C, H, W, N>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = [T; N];
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &Self::Input, output: &mut [T; N], _ws: &mut ()) {
        const { Self::SHAPE_OK };
        output.copy_from_slice(input.flat());
    }

    fn backward(
        &self,
        _input: &Self::Input,
        _ws: &mut (),
        grad_output: &[T; N],
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if let Some(gi) = grad_input {
            gi.flat_mut().copy_from_slice(grad_output);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("Flatten", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("Flatten", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const N: usize]
    for Flatten [T, C, H, W, N] (_0));

// How it runs: batches, lanes, and the fused SGD step.

crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const L: usize> for Flatten<T, C, H, W, L>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const L: usize> for Flatten<T, C, H, W, L>);

/// A reshape keeps every element's place, so lanes stay lanes: the per-sample pass over the
/// block's slots.
impl<T: Scalar, const C: usize, const H: usize, const W: usize, const L: usize, const N: usize>
    LaneLayer<N> for Flatten<T, C, H, W, L>
{
    type LaneWorkspace = ();

    fn forward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [[T; L]; N],
        _ws: &mut (),
    ) {
        forward_slots(self, block, input, output);
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[[T; L]; N],
        _ws: &mut (),
        grad_output: &[[T; L]; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
        backward_slots(self, block, (input, grad_output), grad_input, grads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_is_the_inverse_reshape() {
        let g: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut gx = [[[0.0; 1]; 2]; 3];
        let f = Flatten::<f64, 3, 2, 1, 6>::new();
        f.backward(&gx.clone(), &mut (), &g, Some(&mut gx), &mut Flatten::new());
        assert_eq!(gx, [[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]]);
    }
}
