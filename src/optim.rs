//! Parameter updates from accumulated gradients.

use crate::layer::Layer;
use crate::scalar::Scalar;

/// Plain gradient descent: `w ← w − lr · ∂E/∂w`, the article's update rule.
///
/// ```
/// use constnet::{Layer, Linear, Sgd, zeroed_box};
/// let mut fc = zeroed_box::<Linear<f64, 1, 1>>();
/// let mut grads = zeroed_box::<Linear<f64, 1, 1>>();
/// grads.weight = [[2.0]];
/// Sgd { lr: 0.25 }.step(&mut *fc, &grads);
/// assert_eq!(fc.weight, [[-0.5]]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd<T> {
    /// Learning rate.
    pub lr: T,
}

impl<T: Scalar> Sgd<T> {
    /// Applies one update to every parameter of `net` from `grads` (same network type).
    pub fn step<L: Layer<Scalar = T>>(&self, net: &mut L, grads: &L) {
        for i in 0..L::PARAM_TENSORS {
            for (w, &g) in net.param_mut(i).iter_mut().zip(grads.param(i)) {
                *w = *w - self.lr * g;
            }
        }
    }
}
