//! Softmax: logits to class probabilities.

use core::marker::PhantomData;

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;

/// `p_i = exp(x_i − max x) / Σ_j exp(x_j − max x)`: `N` logits to `N` probabilities.
/// Subtracting the maximum keeps it finite for any finite logits.
///
/// ```
/// use constnet::{Layer, Softmax};
/// let mut p = [0.0f64; 2];
/// Softmax::<f64, 2>::new().forward(&[1000.0, 1000.0], &mut p, &mut [0.0; 2]);
/// assert_eq!(p, [0.5, 0.5]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Softmax<T, const N: usize>(PhantomData<T>);

impl<T: Scalar, const N: usize> Softmax<T, N> {
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(N > 0, "Softmax: N must be at least 1");

    /// The softmax (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

/// Writes `softmax(logits)` to `probs`.
pub(crate) fn softmax<T: Scalar, const N: usize>(logits: &[T; N], probs: &mut [T; N]) {
    let max = logits.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
    let mut sum = T::zero();
    for (p, &x) in probs.iter_mut().zip(logits) {
        *p = (x - max).exp();
        sum = sum + *p;
    }
    for p in probs.iter_mut() {
        *p = *p / sum;
    }
}

impl<T: Scalar, const N: usize> Layer for Softmax<T, N> {
    type Scalar = T;
    type Input = [T; N];
    type Output = [T; N];
    /// The probabilities of the latest forward pass.
    type Workspace = [T; N];
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &[T; N], output: &mut [T; N], ws: &mut [T; N]) {
        const { Self::SHAPE_OK };
        softmax(input, output);
        *ws = *output;
    }

    /// `∂E/∂x_i = p_i · (g_i − Σ_j g_j p_j)`.
    fn backward(
        &self,
        _input: &[T; N],
        ws: &mut [T; N],
        grad_output: &[T; N],
        grad_input: Option<&mut [T; N]>,
        _grads: &mut Self,
    ) {
        let Some(gi) = grad_input else { return };
        let dot = ws
            .iter()
            .zip(grad_output)
            .fold(T::zero(), |a, (&p, &g)| a + p * g);
        for ((gi, &p), &g) in gi.iter_mut().zip(ws.iter()).zip(grad_output) {
            *gi = p * (g - dot);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("Softmax", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("Softmax", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [T: Scalar, const N: usize] for Softmax [T, N] (_0));

// How it runs in batches and in the fused SGD step: sample by sample.
crate::batch_by_sample::per_sample!(impl<T; const L: usize> for Softmax<T, L>);
crate::fused::no_params!(impl<T; const L: usize> for Softmax<T, L>);

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn probabilities_sum_to_one_and_keep_order() {
        let mut p = [0.0f32; 4];
        softmax(&[1.0, 2.0, 3.0, -50.0], &mut p);
        assert_relative_eq!(p.iter().sum::<f32>(), 1.0, epsilon = 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0] && p[0] > p[3]);
        assert_relative_eq!(p[1] / p[0], 1.0f32.exp(), max_relative = 1e-5);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let mut p = [0.0f32; 3];
        softmax(&[1e30, -1e30, 0.0], &mut p);
        assert_eq!(p, [1.0, 0.0, 0.0]);
    }
}
