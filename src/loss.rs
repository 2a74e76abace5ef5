//! The errors a classifier minimises, each with its gradient.

use crate::scalar::Scalar;

/// Which error training minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Softmax cross-entropy, `L = −ln p_target`, computed from the logits
    /// (fused with the softmax; stable for large logits). The usual choice.
    #[default]
    CrossEntropy,
    /// The article's total error over the softmax probabilities,
    /// `E = Σ_i ½ (target_i − p_i)²`, with a one-hot target.
    HalfSse,
}

/// `E = Σ_i ½ (target_i − p_i)²`; writes `∂E/∂p = p − target` to `grad` and returns `E`.
///
/// ```
/// let mut g = [0.0; 2];
/// let e = constnet::half_sse(&[0.75, 0.25], &[1.0, 0.0], &mut g);
/// assert_eq!(e, 0.0625);
/// assert_eq!(g, [-0.25, 0.25]);
/// ```
pub fn half_sse<T: Scalar, const N: usize>(
    probs: &[T; N],
    target: &[T; N],
    grad: &mut [T; N],
) -> T {
    let half = T::from_f64(0.5);
    let mut e = T::zero();
    for ((g, &p), &t) in grad.iter_mut().zip(probs).zip(target) {
        *g = p - t;
        e = e + half * *g * *g;
    }
    e
}

/// Cross-entropy of `softmax(logits)` against class `class`, `L = logsumexp(x) − x_class`;
/// writes `∂L/∂x = softmax(x) − onehot(class)` to `grad_logits` and returns `L`.
///
/// Computed as `max + ln Σ exp(x − max) − x_class`, so logits of any finite size give a finite
/// loss and gradient. Panics if `class >= N`.
///
/// ```
/// let mut g = [0.0f32; 2];
/// let l = constnet::cross_entropy_with_logits(&[1000.0, 0.0], 1, &mut g);
/// assert_eq!(l, 1000.0);
/// assert_eq!(g, [1.0, -1.0]);
/// ```
pub fn cross_entropy_with_logits<T: Scalar, const N: usize>(
    logits: &[T; N],
    class: usize,
    grad_logits: &mut [T; N],
) -> T {
    assert!(
        class < N,
        "cross_entropy_with_logits: class {class} is not below N = {N}"
    );
    let max = logits.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
    let mut sum = T::zero();
    for (g, &x) in grad_logits.iter_mut().zip(logits) {
        *g = (x - max).exp();
        sum = sum + *g;
    }
    for g in grad_logits.iter_mut() {
        *g = *g / sum;
    }
    grad_logits[class] = grad_logits[class] - T::one();
    max + sum.ln() - logits[class]
}

/// The head every classifier here shares: `probs = softmax(logits)`, then `loss` against class
/// `label`; writes `∂loss/∂logits` to `grad_logits` and returns the loss. Cross-entropy is
/// fused with the softmax ([`cross_entropy_with_logits`]); the half-SSE goes back through it.
/// Panics if `label >= N`.
///
/// ```
/// use constnet::{Loss, softmax_loss};
/// let (mut p, mut g) = ([0.0f64; 2], [0.0; 2]);
/// let l = softmax_loss(&[0.0, 0.0], 1, Loss::CrossEntropy, &mut p, &mut g);
/// assert_eq!((p, g), ([0.5, 0.5], [0.5, -0.5]));
/// assert!((l - 2f64.ln()).abs() < 1e-15);
/// ```
pub fn softmax_loss<T: Scalar, const N: usize>(
    logits: &[T; N],
    label: usize,
    loss: Loss,
    probs: &mut [T; N],
    grad_logits: &mut [T; N],
) -> T {
    use crate::layer::Layer;
    assert!(
        label < N,
        "softmax_loss: label {label} is not below the class count {N}"
    );
    crate::softmax::softmax(logits, probs);
    match loss {
        Loss::CrossEntropy => cross_entropy_with_logits(logits, label, grad_logits),
        Loss::HalfSse => {
            let mut grad_probs = [T::zero(); N];
            let e = half_sse(probs, &one_hot(label), &mut grad_probs);
            let softmax = crate::Softmax::<T, N>::new();
            softmax.backward(
                logits,
                probs,
                &grad_probs,
                Some(grad_logits),
                &mut crate::Softmax::new(),
            );
            e
        }
    }
}

/// The one-hot vector for `class` (all zeros if `class >= N`).
pub fn one_hot<T: Scalar, const N: usize>(class: usize) -> [T; N] {
    let mut t = [T::zero(); N];
    if let Some(v) = t.get_mut(class) {
        *v = T::one();
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cross_entropy_equals_minus_log_softmax() {
        let x = [0.3f64, -1.2, 2.0, 0.0];
        let mut p = [0.0; 4];
        crate::softmax::softmax(&x, &mut p);
        let mut g = [0.0; 4];
        let l = cross_entropy_with_logits(&x, 2, &mut g);
        assert_relative_eq!(l, -p[2].ln(), max_relative = 1e-15);
        assert_relative_eq!(g[2], p[2] - 1.0, max_relative = 1e-15);
        assert_relative_eq!(g.iter().sum::<f64>(), 0.0, epsilon = 1e-15);
    }

    #[test]
    fn cross_entropy_is_finite_for_huge_logits() {
        let mut g = [0.0f32; 3];
        let l = cross_entropy_with_logits(&[-1e30, 1e30, 0.0], 0, &mut g);
        assert!(l.is_finite() && l > 1e29);
        assert_eq!(g, [-1.0, 1.0, 0.0]);
    }

    #[test]
    fn half_sse_is_zero_at_the_target() {
        let t = one_hot::<f64, 3>(1);
        assert_eq!(t, [0.0, 1.0, 0.0]);
        let mut g = [1.0; 3];
        assert_eq!(half_sse(&t, &t, &mut g), 0.0);
        assert_eq!(g, [0.0; 3]);
    }
}
