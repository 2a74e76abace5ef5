//! Local response normalisation across channels (AlexNet, ZF Net), as PyTorch's
//! `LocalResponseNorm`.

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::lrn_kernel::{self, LrnGeometry};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};

/// Local response normalisation over `SIZE` neighbouring channels of `C` maps of `H`×`W`,
/// with PyTorch's (and Caffe's) formula:
///
/// ```text
/// s[c] = k + (alpha / SIZE) · Σ_{c' = c − ⌊SIZE/2⌋}^{c + ⌊(SIZE−1)/2⌋} a[c']²
/// b[c] = a[c] / s[c]^beta
/// ```
///
/// at every pixel, channels outside `0..C` counting 0. `alpha` is divided by `SIZE` (the
/// AlexNet paper does not divide it); for even `SIZE` the window is one channel longer
/// below than above (`SIZE = 4`: `c − 2 ..= c + 1`).
///
/// The gradient: every output in the window of `a[j]` depends on it, so with `g = ∂E/∂b`,
///
/// ```text
/// ∂E/∂a[j] = g[j] · s[j]^−beta − (2·alpha·beta / SIZE) · a[j] · Σ_c g[c] · a[c] · s[c]^(−beta−1)
/// ```
///
/// the sum over the channels `c` whose window holds `j`: `j − ⌊(SIZE−1)/2⌋ ..= j + ⌊SIZE/2⌋`.
///
/// **Constants, not parameters.** `alpha`, `beta` and `k` are part of the architecture,
/// like the window: [`Layer::param`] lists none, so optimisers, [`Layer::init`] and weight
/// files leave them alone, and a gradient value (`grads: &mut Self`) holds no gradient in
/// them. Set them with [`LocalResponseNorm::new`] (PyTorch's constructor order), or assign
/// the fields. A layer built from zeroed memory ([`crate::zeroed_box`] of a whole network,
/// then weights loaded into it) has all three zero, which is the identity (`s^0 = 1`; the
/// second term of the gradient is skipped when `alpha·beta = 0`), never a division by zero:
/// set the constants after building such a network. [`Default`] gives PyTorch's defaults
/// (`alpha = 1e-4`, `beta = 0.75`, `k = 1`). With `k > 0`, `alpha ≥ 0` every `s` is positive and
/// the output finite; with `k = 0` an all-zero pixel gives NaN, as in PyTorch.
///
/// In `f32` both passes run the SIMD kernels of [`crate::lrn_kernel`] (vectors of
/// neighbouring pixels): the window sums, and the input gradients from them, are the
/// reference loops' bits; the factor `s^−beta` is too, except for `beta = 0.75`, which takes
/// two square roots and a division (within 8 ulp of `powf`: three roundings of its own beside `powf`'s).
///
/// ```
/// use constnet::{Layer, LocalResponseNorm};
/// // AlexNet's normalisation in PyTorch's convention, over 3 channels of 1×1
/// let lrn = LocalResponseNorm::<f64, 3, 1, 1, 5>::new(1e-4, 0.75, 2.0);
/// let x = [[[10.0]], [[20.0]], [[30.0]]];
/// let mut y = [[[0.0]]; 3];
/// let mut ws = constnet::zeroed_box::<constnet::lrn::LrnWorkspace<f64, 3, 1, 1>>();
/// lrn.forward(&x, &mut y, &mut ws);
/// // every window holds all 3 channels: s = 2 + 1e-4 / 5 · (100 + 400 + 900)
/// let s: f64 = 2.0 + 1e-4 / 5.0 * 1400.0;
/// assert!((y[1][0][0] - 20.0 / s.powf(0.75)).abs() < 1e-12);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalResponseNorm<T, const C: usize, const H: usize, const W: usize, const SIZE: usize> {
    /// The scale of the sum of squares (divided by `SIZE` in the formula).
    pub alpha: T,
    /// The exponent.
    pub beta: T,
    /// The additive constant (PyTorch's `k`, Caffe's 1).
    pub k: T,
}

/// What [`LocalResponseNorm`]'s forward pass keeps for its backward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnWorkspace<T, const C: usize, const H: usize, const W: usize> {
    /// `s = k + alpha / SIZE · Σ a²` at every channel and pixel.
    pub scale: Maps<T, C, H, W>,
    /// `s^−beta`, the factor each input was multiplied by.
    pub factor: Maps<T, C, H, W>,
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize>
    LocalResponseNorm<T, C, H, W, SIZE>
{
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(
        SIZE >= 1,
        "LocalResponseNorm: the window SIZE must be at least 1 channel"
    );

    /// The shape, for the kernels of [`crate::lrn_kernel`].
    pub const GEO: LrnGeometry = LrnGeometry {
        c: C,
        h: H,
        w: W,
        size: SIZE,
    }
    .checked();

    /// Whether the passes of this layer run SIMD kernels: in `f32`, always (the others run
    /// the reference loops).
    ///
    /// ```
    /// use constnet::LocalResponseNorm;
    /// assert!(LocalResponseNorm::<f32, 96, 55, 55, 5>::uses_simd());
    /// assert!(!LocalResponseNorm::<f64, 96, 55, 55, 5>::uses_simd());
    /// ```
    pub fn uses_simd() -> bool {
        const { Self::SHAPE_OK };
        T::as_f32(&[]).is_some()
    }

    /// The layer with PyTorch's constants, in the order of its constructor
    /// `LocalResponseNorm(size, alpha, beta, k)` (the size is the type's `SIZE`).
    pub fn new(alpha: T, beta: T, k: T) -> Self {
        const { Self::SHAPE_OK };
        Self { alpha, beta, k }
    }

    /// The channels whose squares add into `s[c]`: `c − ⌊SIZE/2⌋ ..= c + ⌊(SIZE−1)/2⌋`,
    /// clipped to `0..C`.
    fn window(c: usize) -> core::ops::Range<usize> {
        c.saturating_sub(SIZE / 2)..(c + (SIZE - 1) / 2 + 1).min(C)
    }

    /// The channels whose window holds channel `j`: `j − ⌊(SIZE−1)/2⌋ ..= j + ⌊SIZE/2⌋`,
    /// clipped to `0..C`.
    fn reach(j: usize) -> core::ops::Range<usize> {
        j.saturating_sub((SIZE - 1) / 2)..(j + SIZE / 2 + 1).min(C)
    }

    /// The plain loops of [`Layer::forward`]: the definition the other paths are tested
    /// against.
    pub fn forward_reference(
        &self,
        input: &Maps<T, C, H, W>,
        output: &mut Maps<T, C, H, W>,
        ws: &mut LrnWorkspace<T, C, H, W>,
    ) {
        const { Self::SHAPE_OK };
        let scale = self.alpha / T::from_f64(SIZE as f64);
        for c in 0..C {
            let sum = ws.scale[c].as_flattened_mut();
            sum.fill(T::zero());
            for near in &input[Self::window(c)] {
                for (s, &a) in sum.iter_mut().zip(near.as_flattened()) {
                    *s = *s + a * a;
                }
            }
            let pixels = sum.iter_mut().zip(ws.factor[c].as_flattened_mut()).zip(
                input[c]
                    .as_flattened()
                    .iter()
                    .zip(output[c].as_flattened_mut()),
            );
            for ((s, f), (&a, b)) in pixels {
                *s = self.k + scale * *s;
                *f = s.powf(-self.beta);
                *b = a * *f;
            }
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`LocalResponseNorm::forward_reference`]
    /// and the gradient formula in the type's documentation).
    pub fn backward_reference(
        &self,
        input: &Maps<T, C, H, W>,
        ws: &LrnWorkspace<T, C, H, W>,
        grad_output: &Maps<T, C, H, W>,
        gi: &mut Maps<T, C, H, W>,
    ) {
        const { Self::SHAPE_OK };
        let two = T::from_f64(2.0);
        let coef = two * self.alpha * self.beta / T::from_f64(SIZE as f64);
        for j in 0..C {
            let gi = gi[j].as_flattened_mut();
            // Σ_c g[c]·a[c]·s[c]^(−beta−1) over the channels c whose window holds j, or
            // nothing when the second term is 0 (a zeroed layer: s = 0 would make it 0·∞).
            gi.fill(T::zero());
            if coef != T::zero() {
                for c in Self::reach(j) {
                    let terms = grad_output[c]
                        .as_flattened()
                        .iter()
                        .zip(input[c].as_flattened())
                        .zip(
                            ws.factor[c]
                                .as_flattened()
                                .iter()
                                .zip(ws.scale[c].as_flattened()),
                        );
                    for (t, ((&g, &a), (&f, &s))) in gi.iter_mut().zip(terms) {
                        *t = *t + g * a * f / s;
                    }
                }
            }
            let own = grad_output[j]
                .as_flattened()
                .iter()
                .zip(input[j].as_flattened())
                .zip(ws.factor[j].as_flattened());
            for (t, ((&g, &a), &f)) in gi.iter_mut().zip(own) {
                *t = g * f - coef * a * *t;
            }
        }
    }
}

/// PyTorch's defaults: `alpha = 1e-4`, `beta = 0.75`, `k = 1`.
impl<T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize> Default
    for LocalResponseNorm<T, C, H, W, SIZE>
{
    fn default() -> Self {
        Self::new(T::from_f64(1e-4), T::from_f64(0.75), T::one())
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize> Layer
    for LocalResponseNorm<T, C, H, W, SIZE>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, H, W>;
    type Workspace = LrnWorkspace<T, C, H, W>;
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    /// In `f32`, [`lrn_kernel::forward`] (see the type's documentation).
    fn forward(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        const { Self::SHAPE_OK };
        let constants = (self.alpha.to_f64(), self.beta.to_f64(), self.k.to_f64());
        if let (Some(x), Some(y), Some(scale), Some(factor)) = (
            T::as_f32(input.flat()),
            T::as_f32_mut(output.flat_mut()),
            T::as_f32_mut(ws.scale.flat_mut()),
            T::as_f32_mut(ws.factor.flat_mut()),
        ) {
            let (alpha, beta, k) = (constants.0 as f32, constants.1 as f32, constants.2 as f32);
            return lrn_kernel::forward(&Self::GEO, (alpha, beta, k), x, y, (scale, factor));
        }
        self.forward_reference(input, output, ws);
    }

    /// In `f32`, [`lrn_kernel::backward`] (the reference's bits, given the same workspace).
    fn backward(
        &self,
        input: &Self::Input,
        ws: &mut Self::Workspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        let Some(gi) = grad_input else { return };
        if let (Some(x), Some(scale), Some(factor), Some(g), Some(gx)) = (
            T::as_f32(input.flat()),
            T::as_f32(ws.scale.flat()),
            T::as_f32(ws.factor.flat()),
            T::as_f32(grad_output.flat()),
            T::as_f32_mut(gi.flat_mut()),
        ) {
            // As the reference rounds it: 2·alpha·beta / SIZE.
            let (alpha, beta) = (self.alpha.to_f64() as f32, self.beta.to_f64() as f32);
            let coef = 2.0 * alpha * beta / SIZE as f32;
            return lrn_kernel::backward(&Self::GEO, coef, x, (scale, factor), g, gx);
        }
        self.backward_reference(input, ws, grad_output, gi);
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("LocalResponseNorm", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("LocalResponseNorm", i)
    }
    /// Nothing to draw: `alpha`, `beta` and `k` are constants, kept as they are.
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize]
    for LocalResponseNorm [T, C, H, W, SIZE] { alpha, beta, k });
crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize]
    for LrnWorkspace [T, C, H, W] { scale, factor });

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const SIZE: usize>
    for LocalResponseNorm<T, C, H, W, SIZE>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const SIZE: usize>
    for LocalResponseNorm<T, C, H, W, SIZE>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed::Zeroable;

    /// The windows of PyTorch's formula: symmetric for odd sizes, one longer below for even.
    #[test]
    fn windows_follow_pytorchs_offsets() {
        type Odd = LocalResponseNorm<f64, 7, 1, 1, 5>;
        type Even = LocalResponseNorm<f64, 7, 1, 1, 4>;
        assert_eq!(Odd::window(0), 0..3);
        assert_eq!(Odd::window(3), 1..6);
        assert_eq!(Odd::window(6), 4..7);
        assert_eq!(Even::window(3), 1..5); // c − 2 ..= c + 1
        assert_eq!(Even::window(0), 0..2);
        assert_eq!(Even::window(6), 4..7);
        // reach is the transpose of window: j ∈ window(c) ⇔ c ∈ reach(j)
        for c in 0..7 {
            for j in 0..7 {
                assert_eq!(Even::window(c).contains(&j), Even::reach(j).contains(&c));
                assert_eq!(Odd::window(c).contains(&j), Odd::reach(j).contains(&c));
            }
        }
    }

    /// Hand-computed: size 2, alpha 2 (so alpha / size = 1), beta 1, k 1, over channels
    /// 1, 2, 3 at one pixel. Windows `c − 1 ..= c`: s = 1 + [1, 1 + 4, 4 + 9] = [2, 6, 14].
    #[test]
    fn forward_and_backward_by_hand() {
        let lrn = LocalResponseNorm::<f64, 3, 1, 1, 2>::new(2.0, 1.0, 1.0);
        let x = [[[1.0]], [[2.0]], [[3.0]]];
        let mut y = [[[0.0]]; 3];
        let mut ws = LrnWorkspace::zeroed();
        lrn.forward(&x, &mut y, &mut ws);
        for (y, e) in y.iter().zip([1.0 / 2.0, 2.0 / 6.0, 3.0 / 14.0]) {
            assert!((y[0][0] - e).abs() < 1e-15, "{} vs {e}", y[0][0]);
        }
        // g = 1 everywhere: ∂E/∂a[j] = 1/s[j] − 2·(alpha·beta/size)·a[j]·Σ_{c ∈ {j, j+1}} a[c]/s[c]²
        let mut gi = [[[f64::NAN]]; 3];
        lrn.backward(
            &x,
            &mut ws,
            &[[[1.0]]; 3],
            Some(&mut gi),
            &mut LocalResponseNorm::zeroed(),
        );
        let t = [1.0 / 4.0, 2.0 / 36.0, 3.0 / 196.0];
        let expected = [
            1.0 / 2.0 - 2.0 * 1.0 * (t[0] + t[1]),
            1.0 / 6.0 - 2.0 * 2.0 * (t[1] + t[2]),
            1.0 / 14.0 - 2.0 * 3.0 * t[2],
        ];
        for (g, e) in gi.iter().zip(expected) {
            assert!((g[0][0] - e).abs() < 1e-15, "{} vs {e}", g[0][0]);
        }
    }

    /// A zeroed layer (alpha = beta = k = 0) is the identity, gradient included, and
    /// produces no NaN even where an input is 0 (s = 0).
    #[test]
    fn a_zeroed_layer_is_the_identity() {
        let lrn = LocalResponseNorm::<f32, 4, 1, 2, 3>::zeroed();
        let x = [[[0.0, 1.0]], [[-2.0, 0.0]], [[3.5, 0.0]], [[0.0, 0.0]]];
        let mut y = [[[9.0; 2]]; 4];
        let mut ws = LrnWorkspace::zeroed();
        lrn.forward(&x, &mut y, &mut ws);
        assert_eq!(y, x);
        let g = [[[1.0, -1.0]], [[2.0, 0.5]], [[0.0, 3.0]], [[4.0, 4.0]]];
        let mut gi = [[[f32::NAN; 2]]; 4];
        lrn.backward(
            &x,
            &mut ws,
            &g,
            Some(&mut gi),
            &mut LocalResponseNorm::zeroed(),
        );
        assert_eq!(gi, g);
    }

    #[test]
    fn default_is_pytorchs() {
        let lrn = LocalResponseNorm::<f64, 1, 1, 1, 5>::default();
        assert_eq!((lrn.alpha, lrn.beta, lrn.k), (1e-4, 0.75, 1.0));
    }
}
