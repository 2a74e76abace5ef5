//! Dropout: in training, each activation is zeroed with probability `p` and the others are
//! scaled by `1 / (1 − p)`; in evaluation it is the identity.

use core::marker::PhantomData;

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::mode::{Mode, Pass, Train, splitmix64};
use crate::scalar::Scalar;
use crate::tensor::Tensor;

/// Inverted dropout over any tensor type `X`, as PyTorch's `nn.Dropout(p)`: during training
/// each element is kept with probability `1 − p` and scaled by `1 / (1 − p)`, so that the
/// expected activation is the same as in evaluation, where the layer is the identity.
///
/// The mask is not drawn from a generator carried along: element `e` of sample `s` at step
/// `t` of a run seeded with `seed` is kept when a hash of `(seed, t, s, e)` clears the
/// threshold ([`Pass::sample_key`]). So the mask is the same whichever thread runs the
/// sample, and the same seed gives bit-identical training. The backward pass uses the mask
/// its forward pass kept in the workspace.
///
/// `p` is a value, not a parameter: it is not trained or saved. A zeroed `Dropout` has
/// `p = 0` (the identity in both modes).
///
/// ```
/// use constnet::{Dropout, Layer, Pass};
/// let drop = Dropout::<[f32; 1000]>::new(0.25);
/// let (x, mut y, mut ws) = ([1.0f32; 1000], [0.0f32; 1000], [0.0f32; 1000]);
/// drop.forward_in(&Pass::train(2026, 0), &x, &mut y, &mut ws);
/// let kept = y.iter().filter(|&&v| v != 0.0).count();
/// assert!((700..800).contains(&kept)); // about 75% kept …
/// assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75)); // … and scaled by 1/(1 − p)
/// drop.infer(&x, &mut y, &mut ws);
/// assert_eq!(y, x); // evaluation: the identity
/// ```
#[derive(Debug, PartialEq)]
pub struct Dropout<X: Tensor> {
    /// The probability of zeroing an element in training, in `[0, 1]`.
    pub p: X::Scalar,
    tensor: PhantomData<X>,
}

impl<X: Tensor> Clone for Dropout<X> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<X: Tensor> Copy for Dropout<X> {}

impl<X: Tensor> Dropout<X> {
    /// Dropout with probability `p`.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1]` (PyTorch raises an error there too).
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "Dropout: p must be a probability in [0, 1], got {p}"
        );
        Self {
            p: X::Scalar::from_f64(p),
            tensor: PhantomData,
        }
    }

    /// Writes the training mask of the sample that `pass` stands for: the factor each
    /// element is multiplied by (`0` or `1 / (1 − p)`).
    pub fn mask<M: Mode>(&self, pass: &Pass<M>, mask: &mut X) {
        let one = <X::Scalar as num_traits::One>::one();
        let zero = <X::Scalar as num_traits::Zero>::zero();
        let p = self.p.to_f64();
        if p <= 0.0 {
            return mask.flat_mut().fill(one);
        }
        if p >= 1.0 {
            return mask.flat_mut().fill(zero);
        }
        // Keep when a 24-bit uniform integer is at least p·2²⁴.
        let threshold = (p * (1u64 << 24) as f64 + 0.5) as u64;
        let scale = one / (one - self.p);
        let key = pass.sample_key();
        for (e, m) in mask.flat_mut().iter_mut().enumerate() {
            let u = splitmix64(key.wrapping_add((e as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            *m = if u >> 40 >= threshold { scale } else { zero };
        }
    }
}

impl<X: Tensor> Layer for Dropout<X> {
    type Scalar = X::Scalar;
    type Input = X;
    type Output = X;
    /// The mask of the latest forward pass.
    type Workspace = X;
    const CHECK: () = ();
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &X, output: &mut X, ws: &mut X) {
        self.forward_in(&Pass::<Train>::DEFAULT, input, output, ws);
    }

    fn forward_in<M: Mode>(&self, pass: &Pass<M>, input: &X, output: &mut X, ws: &mut X) {
        if M::TRAIN {
            self.mask(pass, ws);
            for ((y, &x), &m) in output
                .flat_mut()
                .iter_mut()
                .zip(input.flat())
                .zip(ws.flat())
            {
                *y = x * m;
            }
        } else {
            ws.flat_mut().fill(<X::Scalar as num_traits::One>::one());
            *output = *input;
        }
    }

    fn infer(&self, input: &X, output: &mut X, _ws: &mut X) {
        *output = *input;
    }

    fn backward(
        &self,
        _input: &X,
        ws: &mut X,
        grad_output: &X,
        grad_input: Option<&mut X>,
        _grads: &mut Self,
    ) {
        let Some(gi) = grad_input else { return };
        for ((gi, &g), &m) in gi
            .flat_mut()
            .iter_mut()
            .zip(grad_output.flat())
            .zip(ws.flat())
        {
            *gi = g * m;
        }
    }

    fn param(&self, i: usize) -> &[X::Scalar] {
        no_such_param("Dropout", i)
    }

    fn param_mut(&mut self, i: usize) -> &mut [X::Scalar] {
        no_such_param("Dropout", i)
    }

    /// Dropout has no parameters; `p` is kept.
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [X: Tensor] for Dropout [X] { p, tensor });
crate::batch_by_sample::per_sample!(impl<X: Tensor> for Dropout<X>);
crate::fused::no_params!(impl<X: Tensor> for Dropout<X>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchLayer;
    use crate::mode::Eval;

    #[test]
    fn the_mask_depends_on_seed_step_and_sample_only() {
        let drop = Dropout::<[f64; 64]>::new(0.5);
        let (mut a, mut b) = ([0.0; 64], [0.0; 64]);
        drop.mask(&Pass::train(1, 5).offset(3), &mut a);
        drop.mask(&Pass::train(1, 5).offset(3), &mut b);
        assert_eq!(a, b);
        for other in [
            Pass::train(2, 5).offset(3),
            Pass::train(1, 6).offset(3),
            Pass::train(1, 5),
        ] {
            drop.mask(&other, &mut b);
            assert_ne!(a, b, "{other:?}");
        }
    }

    #[test]
    fn a_batch_pass_gives_sample_n_the_mask_of_offset_n() {
        let drop = Dropout::<[f32; 32]>::new(0.3);
        let x = [[1.5f32; 32]; 4];
        let (mut y, mut ws) = ([[0.0; 32]; 4], [[0.0; 32]; 4]);
        let pass = Pass::train(9, 2).offset(8); // the second thread's part of a batch
        drop.forward_batch_in(&pass, &x, &mut y, &mut ws);
        for (n, y) in y.iter().enumerate() {
            let mut m = [0.0; 32];
            drop.mask(&pass.offset(n), &mut m);
            let expected: Vec<f32> = m.iter().map(|m| 1.5 * m).collect();
            assert_eq!(y.as_slice(), expected.as_slice());
        }
    }

    #[test]
    fn keep_rate_is_one_minus_p_and_the_mean_is_kept() {
        let drop = Dropout::<[f64; 4096]>::new(0.2);
        let mut m = [0.0; 4096];
        let (mut kept, mut sum) = (0usize, 0.0);
        for s in 0..16 {
            drop.mask(&Pass::train(3, 0).offset(s), &mut m);
            kept += m.iter().filter(|&&v| v != 0.0).count();
            sum += m.iter().sum::<f64>();
        }
        let rate = kept as f64 / (16.0 * 4096.0);
        // 65,536 draws: the standard deviation of the rate is 0.0016.
        assert!((rate - 0.8).abs() < 0.01, "keep rate {rate}");
        assert!((sum / (16.0 * 4096.0) - 1.0).abs() < 0.0125);
    }

    #[test]
    fn backward_applies_the_forward_mask_and_eval_is_the_identity() {
        let drop = Dropout::<[f64; 16]>::new(0.5);
        let x: [f64; 16] = core::array::from_fn(|i| i as f64 - 7.5);
        let (mut y, mut ws, mut gi) = ([0.0; 16], [0.0; 16], [0.0; 16]);
        drop.forward_in(&Pass::train(4, 1), &x, &mut y, &mut ws);
        drop.backward(&x, &mut ws, &[1.0; 16], Some(&mut gi), &mut drop.clone());
        for i in 0..16 {
            assert_eq!(y[i], x[i] * gi[i]);
            assert!(gi[i] == 0.0 || gi[i] == 2.0);
        }
        drop.forward_in(&Pass::<Eval>::DEFAULT, &x, &mut y, &mut ws);
        drop.backward(&x, &mut ws, &[3.0; 16], Some(&mut gi), &mut drop.clone());
        assert_eq!((y, gi), (x, [3.0; 16]));
    }

    #[test]
    fn p_zero_and_one_are_the_identity_and_zero() {
        let x = [2.0f32; 8];
        let (mut y, mut ws) = ([0.0; 8], [0.0; 8]);
        Dropout::<[f32; 8]>::new(0.0).forward(&x, &mut y, &mut ws);
        assert_eq!(y, x);
        Dropout::<[f32; 8]>::new(1.0).forward(&x, &mut y, &mut ws);
        assert_eq!(y, [0.0; 8]);
    }

    #[test]
    #[should_panic(expected = "p must be a probability")]
    fn p_outside_zero_one_is_refused() {
        let _ = Dropout::<[f32; 8]>::new(1.5);
    }
}
