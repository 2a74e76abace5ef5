//! The identity map, a layer with no parameters: the shortcut of a residual block whose body
//! keeps the shape ([`Skip`](crate::Skip)), and the first branch of a DenseNet layer's
//! concatenation.

use core::marker::PhantomData;

use rand::Rng;

use crate::fusion::Epilogue;
use crate::layer::{Layer, no_such_param};
use crate::tensor::Tensor;

/// The identity map `y = x` over any tensor type: the shortcut of a residual block whose body
/// keeps the shape, and the first branch of a DenseNet layer's concatenation.
///
/// ```
/// use constnet::{Identity, Layer};
/// let mut y = [0.0f32; 3];
/// Identity::<[f32; 3]>::new().forward(&[1.0, -2.0, 3.0], &mut y, &mut ());
/// assert_eq!(y, [1.0, -2.0, 3.0]);
/// ```
#[derive(Debug, Default, PartialEq)]
pub struct Identity<X>(PhantomData<X>);

impl<X> Identity<X> {
    /// The identity (it has no parameters).
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<X> Clone for Identity<X> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<X> Copy for Identity<X> {}

impl<X: Tensor> Layer for Identity<X> {
    type Scalar = X::Scalar;
    type Input = X;
    type Output = X;
    type Workspace = ();
    const CHECK: () = ();
    const PARAM_TENSORS: usize = 0;
    const EPILOGUE: Option<Epilogue> = Some(Epilogue::Identity);

    fn forward(&self, input: &X, output: &mut X, _ws: &mut ()) {
        *output = *input;
    }

    fn backward(&self, _x: &X, _ws: &mut (), g: &X, grad_input: Option<&mut X>, _: &mut Self) {
        if let Some(gi) = grad_input {
            *gi = *g;
        }
    }

    fn param(&self, i: usize) -> &[X::Scalar] {
        no_such_param("Identity", i)
    }

    fn param_mut(&mut self, i: usize) -> &mut [X::Scalar] {
        no_such_param("Identity", i)
    }

    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [X] for Identity [X] (_0));
crate::batch_by_sample::per_sample!(impl<X: Tensor> for Identity<X>);
crate::fused::no_params!(impl<X: Tensor> for Identity<X>);
