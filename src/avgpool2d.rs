//! 2-D average pooling, as PyTorch's `AvgPool2d`.

use core::marker::PhantomData;

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;
use crate::shape::pool_out;
use crate::tensor::{Maps, Tensor};

/// Average pooling over `K`×`K` windows with stride `S`, from `C`×`H`×`W` to `C`×`OH`×`OW`,
/// with PyTorch's `AvgPool2d(K, S, P, ceil_mode = CEIL, count_include_pad = INCLUDE_PAD)`
/// semantics.
///
/// The parameters are [`crate::MaxPool2d`]'s, in the same order, plus `INCLUDE_PAD`: `P`
/// pads each side with zeros (at most `K / 2`, as PyTorch requires), `CEIL` turns on ceil
/// mode, and `OH`, `OW` must equal [`crate::pool_out`]`(H, K, S, P, CEIL)`. DenseNet's
/// transition pool is `AvgPool2d<T, C, H, W, 2, 2, OH, OW>`; Inception-v3's branch pool is
/// `AvgPool2d<T, C, H, W, 3, 1, H, W, 1>`.
///
/// Each output is the sum of the window's taps on the map divided by `d`:
/// * `INCLUDE_PAD = true` (PyTorch's default): `d` is the number of window positions inside
///   the padded map, the window clipped to `H + P` rows and `W + P` columns as PyTorch does.
///   That is `K·K` except for a ceil-mode window that runs past the padding.
/// * `INCLUDE_PAD = false`: `d` is the number of taps on the map (for a 3×3 window with
///   `P = 1`: 4 at a corner, 6 on an edge, 9 inside).
///
/// The gradient of an output goes to each of its window's taps on the map, divided by the
/// same `d`. In `f32` both passes run SIMD kernels (see [`crate::simd`]) that add in the order
/// of the reference loops, so they give the same bits on every instruction set.
///
/// ```
/// use constnet::{AvgPool2d, Layer};
/// // 3×3 windows, stride 1, padding 1, the padding left out of the count
/// let pool = AvgPool2d::<f64, 1, 3, 3, 3, 1, 3, 3, 1, false, false>::new();
/// let x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
/// let mut y = [[[0.0; 3]; 3]; 1];
/// pool.forward(&x, &mut y, &mut ());
/// assert_eq!(y[0][0][0], (1.0 + 2.0 + 4.0 + 5.0) / 4.0); // a corner: 4 taps on the map
/// assert_eq!(y[0][1][1], 5.0); // the middle: all 9
/// ```
///
/// A padding over half the window does not compile (PyTorch's rule), nor does a wrong
/// output size; each failing example has a compiling twin that differs only in that number.
/// `P = 2` with a 3×3 window:
/// ```compile_fail
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 1, 8, 8, 3, 5, 2, 2, 2> as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 1, 8, 8, 3, 5, 2, 2, 1> as Layer>::CHECK;
/// ```
/// The build says:
/// ```text
/// error[E0080]: evaluation panicked: AvgPool2d: padding P must be at most half the window K (PyTorch's rule)
/// ```
/// A 3×3 window at stride 1 with padding 1 keeps 6×6 maps 6×6, not 7×6:
/// ```compile_fail
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 4, 6, 6, 3, 1, 7, 6, 1> as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 4, 6, 6, 3, 1, 6, 6, 1> as Layer>::CHECK;
/// ```
/// In ceil mode, 3×3 windows at stride 2 over 10 rows give ⌈7 / 2⌉ + 1 = 5, not 4:
/// ```compile_fail
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 4, 10, 10, 3, 2, 4, 5, 0, true> as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{AvgPool2d, Layer};
/// const _: () = <AvgPool2d<f32, 4, 10, 10, 3, 2, 5, 5, 0, true> as Layer>::CHECK;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AvgPool2d<
    T,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize = 0,
    const CEIL: bool = false,
    const INCLUDE_PAD: bool = true,
>(PhantomData<T>);

/// Window `o` along an axis of `n` inputs, PyTorch's way: the taps on the map are
/// `first..last`, and `padded` is the window's length clipped to the padded axis (`n + 2·p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// First input index in the window.
    pub(crate) first: usize,
    /// One past the last input index in the window.
    pub(crate) last: usize,
    /// The window's length inside the padded axis (PyTorch clips it to `n + p` in its own
    /// coordinates, where the map starts at 0).
    pub(crate) padded: usize,
}

/// The [`Span`] of window `o` of `k` taps at stride `s` over `n` inputs padded by `p`.
pub(crate) const fn span(o: usize, n: usize, k: usize, s: usize, p: usize) -> Span {
    // In padded coordinates the window is o·s .. o·s + k, the map p .. p + n.
    let start = o * s;
    let end = if start + k < n + 2 * p {
        start + k
    } else {
        n + 2 * p
    };
    let last = if end - p < n { end - p } else { n };
    Span {
        first: start.saturating_sub(p),
        last,
        padded: end - start,
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INCLUDE_PAD: bool,
> AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            K > 0 && S > 0,
            "AvgPool2d: window K and stride S must be at least 1"
        );
        assert!(
            2 * P <= K,
            "AvgPool2d: padding P must be at most half the window K (PyTorch's rule)"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "AvgPool2d: window K is larger than the padded map"
        );
        // PyTorch's rule: the last window that fits (floor), or in ceil mode one more if it
        // starts inside the map or its left padding; rows and columns past it unread.
        assert!(
            OH == pool_out(H, K, S, P, CEIL),
            "AvgPool2d: output height OH must equal pool_out(H, K, S, P, CEIL): ⌊(H + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
        assert!(
            OW == pool_out(W, K, S, P, CEIL),
            "AvgPool2d: output width OW must equal pool_out(W, K, S, P, CEIL): ⌊(W + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
    };

    /// The rows, the columns and the divisor of output `(y, x)`'s window.
    #[inline(always)]
    pub(crate) fn window(y: usize, x: usize) -> (Span, Span, usize) {
        let (rows, cols) = (span(y, H, K, S, P), span(x, W, K, S, P));
        let d = if INCLUDE_PAD {
            rows.padded * cols.padded
        } else {
            (rows.last - rows.first) * (cols.last - cols.first)
        };
        (rows, cols, d)
    }

    /// The divisor of output `(y, x)` (see the type's documentation).
    pub fn divisor(y: usize, x: usize) -> usize {
        const { Self::SHAPE_OK };
        Self::window(y, x).2
    }

    /// The plain loops of [`Layer::forward`], for any window, stride and padding: the
    /// definition the `f32` SIMD path reproduces bit for bit. Each window is summed column
    /// by column (each column's taps top to bottom, then the column sums left to right),
    /// the order in which the SIMD path adds whole rows.
    pub fn forward_reference(input: &Maps<T, C, H, W>, output: &mut Maps<T, C, OH, OW>) {
        const { Self::SHAPE_OK };
        for (x, out) in input.iter().zip(output.iter_mut()) {
            for (oy, out) in out.iter_mut().enumerate() {
                for (ox, out) in out.iter_mut().enumerate() {
                    let (rows, cols, d) = Self::window(oy, ox);
                    let mut sum = T::zero();
                    for c in cols.first..cols.last {
                        let column = x[rows.first..rows.last]
                            .iter()
                            .fold(T::zero(), |s, row| s + row[c]);
                        sum = sum + column;
                    }
                    *out = sum / T::from_f64(d as f64);
                }
            }
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`AvgPool2d::forward_reference`]), in
    /// the order of the SIMD path: for each output row, the shares `g / d` of its windows
    /// summed per column (left to right), then that row of sums added to each input row the
    /// windows cover.
    pub fn backward_reference(grad_output: &Maps<T, C, OH, OW>, gi: &mut Maps<T, C, H, W>) {
        const { Self::SHAPE_OK };
        for (g, gi) in grad_output.iter().zip(gi.iter_mut()) {
            gi.as_flattened_mut().fill(T::zero());
            for (oy, g) in g.iter().enumerate() {
                let mut shares = [T::zero(); W];
                let rows = Self::shares(oy, g, &mut shares);
                for row in &mut gi[rows.first..rows.last] {
                    for (v, &t) in row.iter_mut().zip(&shares) {
                        *v = *v + t;
                    }
                }
            }
        }
    }

    /// Adds the shares `g[ox] / d` of output row `oy`'s windows into `shares`, per input
    /// column, in output order; returns the input rows those windows cover.
    #[inline(always)]
    pub(crate) fn shares(oy: usize, g: &[T; OW], shares: &mut [T; W]) -> Span {
        for (ox, &g) in g.iter().enumerate() {
            let (_, cols, d) = Self::window(oy, ox);
            let share = g / T::from_f64(d as f64);
            for t in &mut shares[cols.first..cols.last] {
                *t = *t + share;
            }
        }
        span(oy, H, K, S, P)
    }

    /// The pooling layer (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INCLUDE_PAD: bool,
> Layer for AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, OH, OW>;
    /// Nothing: the backward pass needs only the window geometry.
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    /// In `f32`, the SIMD path (bit for bit [`AvgPool2d::forward_reference`]).
    fn forward(&self, input: &Self::Input, output: &mut Self::Output, _ws: &mut ()) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut())) {
            return Self::pass_f32(x, y, false);
        }
        Self::forward_reference(input, output);
    }

    /// In `f32`, the SIMD path (bit for bit [`AvgPool2d::backward_reference`]).
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
        if let (Some(g), Some(gi)) = (T::as_f32(grad_output.flat()), T::as_f32_mut(gi.flat_mut())) {
            return Self::pass_f32(g, gi, true);
        }
        Self::backward_reference(grad_output, gi);
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("AvgPool2d", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("AvgPool2d", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const K: usize, const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool, const INCLUDE_PAD: bool]
    for AvgPool2d [T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD] (_0));

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool,
    const INCLUDE_PAD: bool>
    for AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool,
    const INCLUDE_PAD: bool>
    for AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD>);

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..9 in a 3×3 map.
    const NINE: Maps<f64, 1, 3, 3> = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];

    /// `F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)`: the divisor is the number of taps
    /// on the map, 4 at a corner, 6 on an edge and 9 inside.
    #[test]
    fn exclude_pad_divides_by_the_taps_on_the_map() {
        type Pool = AvgPool2d<f64, 1, 4, 4, 3, 1, 4, 4, 1, false, false>;
        let d: Vec<usize> = (0..16).map(|i| Pool::divisor(i / 4, i % 4)).collect();
        #[rustfmt::skip]
        assert_eq!(d, [4, 6, 6, 4,
                       6, 9, 9, 6,
                       6, 9, 9, 6,
                       4, 6, 6, 4]);
        let pool = AvgPool2d::<f64, 1, 3, 3, 3, 1, 3, 3, 1, false, false>::new();
        let mut y = [[[0.0; 3]; 3]; 1];
        pool.forward(&NINE, &mut y, &mut ());
        let expected = [
            [12.0 / 4.0, 21.0 / 6.0, 16.0 / 4.0],
            [27.0 / 6.0, 45.0 / 9.0, 33.0 / 6.0],
            [24.0 / 4.0, 39.0 / 6.0, 28.0 / 4.0],
        ];
        assert_eq!(y, [expected]);
    }

    /// `F.avg_pool2d(x, 3, 1, 1)`: the padding counts, so every divisor is 9.
    #[test]
    fn include_pad_divides_by_the_whole_window() {
        let pool = AvgPool2d::<f64, 1, 3, 3, 3, 1, 3, 3, 1>::new();
        let mut y = [[[0.0; 3]; 3]; 1];
        pool.forward(&NINE, &mut y, &mut ());
        let expected = [
            [12.0 / 9.0, 21.0 / 9.0, 16.0 / 9.0],
            [27.0 / 9.0, 45.0 / 9.0, 33.0 / 9.0],
            [24.0 / 9.0, 39.0 / 9.0, 28.0 / 9.0],
        ];
        assert_eq!(y, [expected]);
    }

    /// The gradient of each output spreads over its taps on the map, divided by its divisor.
    /// With a gradient of 36 at every output, the divisors `[[4, 6, 4], [6, 9, 6], [4, 6, 4]]`
    /// give shares 36/d of 9 (corner windows), 6 (edge windows) and 4 (the centre window).
    #[test]
    fn backward_spreads_each_gradient_over_its_taps() {
        let pool = AvgPool2d::<f64, 1, 3, 3, 3, 1, 3, 3, 1, false, false>::new();
        let g = [[[36.0; 3]; 3]; 1];
        let mut gi = [[[f64::NAN; 3]; 3]; 1];
        pool.backward(&NINE, &mut (), &g, Some(&mut gi), &mut AvgPool2d::new());
        // A pixel is in every window centred at most one step away from it. A corner pixel:
        // its corner's window, the two edge windows beside it and the centre's.
        let corner = 9.0 + 6.0 + 6.0 + 4.0;
        // An edge pixel: the two corner windows beside it, three edge windows (its own and
        // the two diagonally below it) and the centre's.
        let edge = 9.0 + 9.0 + 6.0 + 6.0 + 6.0 + 4.0;
        let centre = 4.0 * 9.0 + 4.0 * 6.0 + 4.0;
        assert_eq!(
            gi,
            [[
                [corner, edge, corner],
                [edge, centre, edge],
                [corner, edge, corner]
            ]]
        );
    }

    /// Ceil mode (`F.avg_pool2d(x, 2, 2, ceil_mode=True)` over a 3×3 map): the last window
    /// runs past the map. Without padding it is clipped to the map in both counts, so its
    /// divisor is the number of taps on the map in both modes.
    #[test]
    fn ceil_mode_clips_the_last_window_to_the_padded_map() {
        let mut y = [[[0.0; 2]; 2]; 1];
        AvgPool2d::<f64, 1, 3, 3, 2, 2, 2, 2, 0, true>::new().forward(&NINE, &mut y, &mut ());
        assert_eq!(y, [[[3.0, 4.5], [7.5, 9.0]]]);
        // With P = 1 over 4 columns: windows start at −1, 1, 3 (ceil: ⌈4 / 2⌉ + 1 = 3); the
        // last one covers column 3 and the right padding column 4 (= W + P − 1), so with
        // the padding counted its divisor is 2 per axis, not clipped further.
        type Padded = AvgPool2d<f64, 1, 4, 4, 2, 2, 3, 3, 1, true, true>;
        assert_eq!([0, 1, 2].map(|x| Padded::divisor(0, x)), [4, 4, 4]);
        // With K = 3, S = 2, P = 1 over 6 columns in ceil mode: ⌈5 / 2⌉ + 1 = 4 windows at
        // −1, 1, 3, 5; the last reaches 7 = W + P, past the padding, so it is clipped to
        // columns 5..=6: 2 positions, 1 of them on the map.
        type Past = AvgPool2d<f64, 1, 6, 6, 3, 2, 4, 4, 1, true, true>;
        type PastEx = AvgPool2d<f64, 1, 6, 6, 3, 2, 4, 4, 1, true, false>;
        assert_eq!([0, 1, 2, 3].map(|x| Past::divisor(1, x)), [9, 9, 9, 6]);
        assert_eq!([0, 1, 2, 3].map(|x| PastEx::divisor(1, x)), [6, 9, 9, 3]);
    }
}
