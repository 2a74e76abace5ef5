//! Fully connected layer, `y = W·x + b`.

use rand::Rng;

use crate::layer::{Layer, he_uniform, no_such_param};
use crate::scalar::Scalar;

/// A fully connected layer from `IN` to `OUT` values: `y = W·x + b`.
///
/// The weight is stored `[out][in]`, PyTorch's layout.
///
/// ```
/// use constnet::{Layer, Linear, zeroed_box};
/// let mut fc = zeroed_box::<Linear<f64, 2, 3>>();
/// fc.weight = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// fc.bias = [0.0, 0.0, 0.5];
/// let mut y = [0.0; 3];
/// fc.forward(&[2.0, 3.0], &mut y, &mut ());
/// assert_eq!(y, [2.0, 3.0, 5.5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T, const IN: usize, const OUT: usize> {
    /// Weights, `[output][input]`.
    pub weight: [[T; IN]; OUT],
    /// One bias per output.
    pub bias: [T; OUT],
}

impl<T: Scalar, const IN: usize, const OUT: usize> Linear<T, IN, OUT> {
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(IN > 0 && OUT > 0, "Linear: IN and OUT must be at least 1");
}

impl<T: Scalar, const IN: usize, const OUT: usize> Layer for Linear<T, IN, OUT> {
    type Scalar = T;
    type Input = [T; IN];
    type Output = [T; OUT];
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &[T; IN], output: &mut [T; OUT], _ws: &mut ()) {
        const { Self::SHAPE_OK };
        for ((y, w), &b) in output.iter_mut().zip(&self.weight).zip(&self.bias) {
            *y = w.iter().zip(input).fold(b, |acc, (&w, &x)| acc + w * x);
        }
    }

    fn backward(
        &self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        for ((gw, gb), &g) in grads
            .weight
            .iter_mut()
            .zip(&mut grads.bias)
            .zip(grad_output)
        {
            *gb = *gb + g;
            for (gw, &x) in gw.iter_mut().zip(input) {
                *gw = *gw + g * x;
            }
        }
        if let Some(gi) = grad_input {
            *gi = [T::zero(); IN];
            for (w, &g) in self.weight.iter().zip(grad_output) {
                for (gi, &w) in gi.iter_mut().zip(w) {
                    *gi = *gi + g * w;
                }
            }
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened(),
            1 => &self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => self.weight.as_flattened_mut(),
            1 => &mut self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    /// He uniform over fan-in `IN`; biases zero.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        he_uniform(self.weight.as_flattened_mut(), IN, rng);
        self.bias = [T::zero(); OUT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    #[test]
    fn backward_gives_outer_product_and_transpose() {
        let mut fc = zeroed_box::<Linear<f64, 2, 2>>();
        fc.weight = [[1.0, 2.0], [3.0, 4.0]];
        let mut grads = zeroed_box::<Linear<f64, 2, 2>>();
        let mut gx = [0.0; 2];
        fc.backward(
            &[5.0, 6.0],
            &mut (),
            &[1.0, -1.0],
            Some(&mut gx),
            &mut grads,
        );
        assert_eq!(gx, [1.0 - 3.0, 2.0 - 4.0]);
        assert_eq!(grads.weight, [[5.0, 6.0], [-5.0, -6.0]]);
        assert_eq!(grads.bias, [1.0, -1.0]);
        // A second sample accumulates.
        fc.backward(&[5.0, 6.0], &mut (), &[1.0, -1.0], None, &mut grads);
        assert_eq!(grads.bias, [2.0, -2.0]);
    }
}
