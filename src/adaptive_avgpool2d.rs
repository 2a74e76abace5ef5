//! Adaptive average pooling: `H`×`W` maps to `OH`×`OW` by PyTorch's window rule.

use core::marker::PhantomData;

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;
use crate::tensor::Maps;

/// PyTorch's `AdaptiveAvgPool2d((OH, OW))`: output pixel `(i, j)` of each of `C` maps is the
/// mean of input rows `⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉` and columns `⌊j·W/OW⌋ .. ⌈(j+1)·W/OW⌉`.
/// When `OH` divides `H` (and `OW` divides `W`) the windows tile the map, as an
/// [`AvgPool2d`](crate::AvgPool2d) with kernel and stride `H/OH` would; otherwise they
/// overlap and differ in size. GoogLeNet's auxiliary heads pool 14×14 to 4×4 through the
/// windows at rows 0..4, 3..7, 7..11 and 10..14.
///
/// The gradient of each output goes to every pixel of its window, divided by the window's
/// size, and adds up where windows overlap. The layer is small (an auxiliary head's 14×14 to
/// 4×4), so `f32` runs these plain loops too.
///
/// ```
/// use constnet::{AdaptiveAvgPool2d, Layer};
/// let pool = AdaptiveAvgPool2d::<f64, 1, 1, 3, 1, 2>::new();
/// let mut y = [[[0.0; 2]; 1]; 1];
/// pool.forward(&[[[1.0, 2.0, 6.0]]], &mut y, &mut ());
/// assert_eq!(y, [[[1.5, 4.0]]]); // columns 0..2 and 1..3
/// ```
///
/// An empty input or output does not compile:
/// ```compile_fail
/// use constnet::{AdaptiveAvgPool2d, Layer};
/// const _: () = <AdaptiveAvgPool2d<f32, 4, 14, 14, 0, 4> as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{AdaptiveAvgPool2d, Layer};
/// const _: () = <AdaptiveAvgPool2d<f32, 4, 14, 14, 4, 4> as Layer>::CHECK;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdaptiveAvgPool2d<
    T,
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(PhantomData<T>);

/// Window `i` of `o` over `n` pixels: PyTorch's `start_index` and `end_index`.
const fn window(i: usize, n: usize, o: usize) -> (usize, usize) {
    (i * n / o, ((i + 1) * n).div_ceil(o))
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize>
    AdaptiveAvgPool2d<T, C, H, W, OH, OW>
{
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(
        H > 0 && W > 0 && OH > 0 && OW > 0,
        "AdaptiveAvgPool2d: the input maps (H, W) and the output maps (OH, OW) must have at least one pixel"
    );

    /// The pooling layer (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }

    /// The rows `start..end` that output row `i` averages (columns: the same rule with `W`
    /// and `OW`).
    pub const fn rows(i: usize) -> (usize, usize) {
        window(i, H, OH)
    }

    /// The columns `start..end` that output column `j` averages.
    pub const fn cols(j: usize) -> (usize, usize) {
        window(j, W, OW)
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize>
    Layer for AdaptiveAvgPool2d<T, C, H, W, OH, OW>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, OH, OW>;
    /// Nothing: the gradient does not depend on the input.
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &Self::Input, output: &mut Self::Output, _ws: &mut ()) {
        const { Self::SHAPE_OK };
        for (x, y) in input.iter().zip(output.iter_mut()) {
            for (i, row) in y.iter_mut().enumerate() {
                let (r0, r1) = Self::rows(i);
                for (j, v) in row.iter_mut().enumerate() {
                    let (c0, c1) = Self::cols(j);
                    let sum = x[r0..r1]
                        .iter()
                        .flat_map(|r| &r[c0..c1])
                        .fold(T::zero(), |s, &a| s + a);
                    *v = sum / T::from_f64(((r1 - r0) * (c1 - c0)) as f64);
                }
            }
        }
    }

    fn backward(
        &self,
        _input: &Self::Input,
        _ws: &mut (),
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        let Some(gi) = grad_input else { return };
        for (g, gx) in grad_output.iter().zip(gi.iter_mut()) {
            for row in gx.iter_mut() {
                row.fill(T::zero());
            }
            for (i, grow) in g.iter().enumerate() {
                let (r0, r1) = Self::rows(i);
                for (j, &go) in grow.iter().enumerate() {
                    let (c0, c1) = Self::cols(j);
                    let share = go / T::from_f64(((r1 - r0) * (c1 - c0)) as f64);
                    for r in &mut gx[r0..r1] {
                        for v in &mut r[c0..c1] {
                            *v = *v + share;
                        }
                    }
                }
            }
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("AdaptiveAvgPool2d", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("AdaptiveAvgPool2d", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for AdaptiveAvgPool2d [T, C, H, W, OH, OW] (_0));

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize>
    for AdaptiveAvgPool2d<T, C, H, W, OH, OW>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize>
    for AdaptiveAvgPool2d<T, C, H, W, OH, OW>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AvgPool2d;

    /// PyTorch's windows for 14 → 4 (GoogLeNet's auxiliary heads), computed by hand from
    /// `start = floor(i·14/4)`, `end = ceil((i+1)·14/4)`, and for 5 → 3 and 2 → 3 (more
    /// outputs than inputs: windows of one pixel, repeated).
    #[test]
    fn windows_follow_pytorchs_rule() {
        type P = AdaptiveAvgPool2d<f32, 1, 14, 5, 4, 3>;
        let rows: [(usize, usize); 4] = core::array::from_fn(P::rows);
        assert_eq!(rows, [(0, 4), (3, 7), (7, 11), (10, 14)]);
        let cols: [(usize, usize); 3] = core::array::from_fn(P::cols);
        assert_eq!(cols, [(0, 2), (1, 4), (3, 5)]);
        type Up = AdaptiveAvgPool2d<f32, 1, 2, 2, 3, 3>;
        let up: [(usize, usize); 3] = core::array::from_fn(Up::rows);
        assert_eq!(up, [(0, 1), (0, 2), (1, 2)]);
    }

    /// Where the windows tile the map, the layer is `AvgPool2d` with kernel and stride
    /// `H/OH`, forward and backward.
    #[test]
    fn tiling_windows_equal_average_pooling() {
        let pool = AdaptiveAvgPool2d::<f64, 2, 6, 4, 3, 2>::new();
        let avg = AvgPool2d::<f64, 2, 6, 4, 2, 2, 3, 2>::new();
        let x: Maps<f64, 2, 6, 4> = core::array::from_fn(|c| {
            core::array::from_fn(|i| {
                core::array::from_fn(|j| (c * 24 + i * 4 + j) as f64 * 0.37 - 3.0)
            })
        });
        let (mut y, mut z) = ([[[0.0; 2]; 3]; 2], [[[0.0; 2]; 3]; 2]);
        pool.forward(&x, &mut y, &mut ());
        avg.forward(&x, &mut z, &mut Default::default());
        // The same sums, in another order: equal to the last bits.
        use crate::tensor::Tensor;
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-13);
        assert!(close(y.flat(), z.flat()), "{y:?} vs {z:?}");
        let g: Maps<f64, 2, 3, 2> = core::array::from_fn(|c| {
            core::array::from_fn(|i| core::array::from_fn(|j| (c + 2 * i + j) as f64 - 2.5))
        });
        let (mut gy, mut gz) = ([[[f64::NAN; 4]; 6]; 2], [[[f64::NAN; 4]; 6]; 2]);
        pool.backward(
            &x,
            &mut (),
            &g,
            Some(&mut gy),
            &mut AdaptiveAvgPool2d::new(),
        );
        avg.backward(
            &x,
            &mut Default::default(),
            &g,
            Some(&mut gz),
            &mut AvgPool2d::new(),
        );
        assert_eq!(gy, gz);
    }

    /// Overlapping windows (14 → 4): the backward pass is the transpose of the forward one,
    /// ⟨y(x), g⟩ = ⟨x, backward(g)⟩ for any x and g, and each output is its window's mean.
    #[test]
    fn overlapping_windows_have_the_transposed_gradient() {
        type P = AdaptiveAvgPool2d<f64, 2, 14, 14, 4, 4>;
        let pool = P::new();
        let x: Maps<f64, 2, 14, 14> = core::array::from_fn(|c| {
            core::array::from_fn(|i| {
                core::array::from_fn(|j| ((c * 196 + i * 14 + j) as f64 * 0.618).sin())
            })
        });
        let g: Maps<f64, 2, 4, 4> = core::array::from_fn(|c| {
            core::array::from_fn(|i| {
                core::array::from_fn(|j| ((c * 16 + i * 4 + j) as f64 * 1.3).cos())
            })
        });
        let mut y = [[[0.0; 4]; 4]; 2];
        pool.forward(&x, &mut y, &mut ());
        let window: f64 = x[1][3..7].iter().flat_map(|r| &r[7..11]).sum::<f64>() / 16.0;
        assert!((y[1][1][2] - window).abs() < 1e-15);
        let mut gx = [[[f64::NAN; 14]; 14]; 2];
        pool.backward(&x, &mut (), &g, Some(&mut gx), &mut P::new());
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        use crate::tensor::Tensor;
        let (lhs, rhs) = (dot(y.flat(), g.flat()), dot(x.flat(), gx.flat()));
        assert!(
            (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // Row 3 and column 10 lie in two windows each: pixel (3, 10) gets four shares.
        let share = |i: usize, j: usize| g[0][i][j] / 16.0;
        let expected = share(0, 2) + share(0, 3) + share(1, 2) + share(1, 3);
        assert!((gx[0][3][10] - expected).abs() < 1e-15);
    }
}
