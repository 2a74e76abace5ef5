//! A direct convolution with the **output channels along the vector lanes**, for the strided
//! layers of few output channels (ResNet-20's downsampling 3×3/2 layers; its 1×1/2
//! projections stay on the packed product, which ran them as fast).
//!
//! The product on the packed input ([`crate::conv_gemm`]) shares each packed panel among the
//! layer's output channels; with 32 or 64 of them, at stride 2, packing the panel (each tap
//! of each output pixel gathered from every second input pixel) was half of the layer's time
//! (53 GFLOP/s, BENCHMARKS.md, thirty-second session). Here nothing is packed: each
//! multiply-add is one input pixel, broadcast from the input where it lies, times a vector
//! of output channels' weights for that tap, added to that pixel's vector of sums. A block
//! of `P` output pixels of one row × `OV` vectors of channels stays in registers for all
//! `c_in · k · k` taps; its sums then get the bias and the map after them (as vectors of
//! constants, [`crate::conv_winograd_channels`]'s rounding) and are transposed into the
//! output's rows a few rows of pixels at a time.
//!
//! The weights are transposed to `[c][tap][channel]`, once for a batch (kept in the layer's
//! batch workspace) or once per call on the stack (72 KiB, with 16 KiB of sums: the only
//! buffers). The input channels run in blocks whose weights stay in L1 (24 KiB), the sums
//! of a block of pixels kept between blocks with the outputs that wait to be transposed.
//! Every sum runs over the taps in the order `(c, i, j)`, one fused multiply-add each, from
//! zero, then adds the bias: the result is
//! the same, bit for bit, for any grouping of the samples into calls and on one thread or
//! two (split by samples or by blocks of 16 channels).

use core::ops::Range;

use crate::conv_gemm_micro::{After, blocks};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd_channels::apply;
use crate::conv_winograd_tiles::Aligned;
use crate::simd::{self, Simd};

/// The most weights of one output channel this module takes (`c_in · k · k`): 32 channels of
/// 3×3.
const MAX_TAPS: usize = 288;
/// The most output channels of one block: the weights' buffer holds `MAX_TAPS` × this.
const MAX_NR: usize = 64;
/// The weights of one pass over a block of pixels, at most (24 KiB, in L1 with the input
/// rows).
const WEIGHTS_L1: usize = 6144;
/// The most output pixels transposed at once.
const OUT_PIXELS: usize = 64;

/// Whether [`crate::conv_gemm::forward`] runs this module's kernel for `geo`: one group, a
/// stride of 2 to 4, a kernel of 3×3 to 7×7, 16, 32, 48 or 64 output channels, at most 288
/// taps per output channel (32 input channels of 3×3), maps at most 64 wide.
///
/// ```
/// use constnet::{conv_channels, conv_kernel::ConvGeometry};
/// let down = ConvGeometry {
///     c_in: 16, c_out: 32, groups: 1, k: 3, stride: 2, pad: 1, h: 32, w: 32, oh: 16, ow: 16,
/// };
/// assert!(conv_channels::pays(&down));
/// assert!(!conv_channels::pays(&ConvGeometry { stride: 1, oh: 32, ow: 32, ..down }));
/// assert!(!conv_channels::pays(&ConvGeometry { c_out: 128, ..down }));
/// ```
pub const fn pays(geo: &ConvGeometry) -> bool {
    geo.groups == 1
        && geo.stride >= 2
        && geo.stride <= 4
        && geo.k >= 3
        && geo.k <= 7
        && geo.c_out >= 16
        && geo.c_out <= MAX_NR
        && geo.c_out.is_multiple_of(16)
        && geo.c_in * geo.k * geo.k <= MAX_TAPS
        && geo.ow <= OUT_PIXELS
}

/// `wt[t · c_out + o] = w[o][t]` for the `c_in · k · k` taps `t` of `geo` (`[c][i][j][o]`):
/// the layout [`forward_with`] reads, made on its stack where the caller has not.
#[inline(always)]
fn transpose_weights<S: Simd>(s: S, geo: &ConvGeometry, w: &[f32], wt: &mut [f32]) {
    let taps = geo.c_in * geo.k * geo.k;
    simd::transpose_matrix(s, w, (geo.c_out, taps), &mut wt[..taps * geo.c_out]);
}

/// [`transpose_weights`] once for a batch of a layer [`pays`] for, into its batch workspace:
/// the weights `conv_gemm`'s prepared path hands to [`forward_with`].
#[inline]
pub(crate) fn prepare(geo: &ConvGeometry, w: &[f32], wt: &mut [f32]) {
    struct Prepare<'a>(&'a ConvGeometry, &'a [f32], &'a mut [f32]);
    impl simd::Kernel for Prepare<'_> {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            transpose_weights(s, self.0, self.1, self.2);
        }
    }
    assert!(pays(geo) && w.len() == geo.weight_len());
    simd::dispatch(Prepare(geo, w, wt));
}

/// The output channels `chans` of the convolution `geo` of the samples `x` by `w`, from the
/// biases `b`, into `y` (each sample's `chans.len()` rows of `oh · ow` pixels, one sample
/// after the other), `after` applied to the final sums, with the weights transposed by
/// [`transpose_weights`] if given (else on the stack). `OV` vectors of channels × `P` pixels
/// of sums per block.
#[inline(always)]
pub(crate) fn forward_with<S: Simd, const OV: usize, const P: usize>(
    s: S,
    (geo, x, w, b): (&ConvGeometry, &[f32], &[f32], Option<&[f32]>),
    (chans, y): (Range<usize>, &mut [f32]),
    after: Option<After>,
    transposed: Option<&[f32]>,
) {
    debug_assert!(pays(geo));
    let (l, nr) = (S::LANES, OV * S::LANES);
    let pixels = geo.oh * geo.ow;
    let samples = geo.samples_of_inputs(x.len());
    debug_assert!(y.len() == samples * chans.len() * pixels);
    let mut own;
    let wt = match transposed {
        Some(wt) => wt,
        None => {
            own = Aligned([0.0f32; MAX_TAPS * MAX_NR]);
            transpose_weights(s, geo, w, &mut own.0);
            &own.0[..]
        }
    };
    let mut out = Aligned([0.0f32; OUT_PIXELS * MAX_NR]);
    // Output rows transposed at once: at least a vector of pixels where the map has them.
    let rows = (OUT_PIXELS / geo.ow).min(geo.oh);
    // Input channels per pass over a block of pixels: their weights stay in L1 (the 73 KB of
    // 32 → 64 channels of 3×3 streamed from L2 for every 4 pixels ran at half the speed).
    let cb = (WEIGHTS_L1 / (geo.k * geo.k * nr)).max(1);
    for o0 in (0..chans.len()).step_by(nr) {
        let (o, ob) = (chans.start + o0, nr.min(chans.len() - o0));
        let wt = (wt, o, ob);
        for n in 0..samples {
            let x = &x[n * geo.input_len()..][..geo.input_len()];
            let y = &mut y[(n * chans.len() + o0) * pixels..][..ob * pixels];
            for oy0 in (0..geo.oh).step_by(rows) {
                let count = rows.min(geo.oh - oy0);
                for (c0, c_len) in blocks(geo.c_in, cb) {
                    let last = c0 + c_len == geo.c_in;
                    for oy in oy0..oy0 + count {
                        let at = (oy - oy0) * geo.ow;
                        for ox in (0..geo.ow).step_by(P) {
                            let tile = (oy, ox, P.min(geo.ow - ox));
                            let mut sums = [[s.splat(0.0); OV]; P];
                            if c0 > 0 {
                                for (p, sums) in sums.iter_mut().enumerate().take(tile.2) {
                                    for (v, sum) in sums.iter_mut().enumerate() {
                                        *sum = s.load(&out.0, (at + ox + p) * nr + v * l);
                                    }
                                }
                            }
                            let taps = (c0, c_len);
                            match interior::<P>(geo, tile) {
                                true => {
                                    block::<S, OV, P, false>(s, geo, x, wt, tile, taps, &mut sums)
                                }
                                false => {
                                    block::<S, OV, P, true>(s, geo, x, wt, tile, taps, &mut sums)
                                }
                            }
                            for (p, sums) in sums.into_iter().enumerate().take(tile.2) {
                                for (v, sum) in sums.into_iter().enumerate() {
                                    let (first, n) = (v * l, ob.saturating_sub(v * l).min(l));
                                    if n == 0 {
                                        break;
                                    }
                                    let mut total = [sum];
                                    if last {
                                        let bias = b.map_or(s.splat(0.0), |b| {
                                            s.load_partial(b, o + first, n)
                                        });
                                        total[0] = s.add(sum, bias);
                                        if let Some(after) = &after {
                                            apply(s, after, (o + first, n), &mut total);
                                        }
                                    }
                                    s.store(&mut out.0, (at + ox + p) * nr + first, total[0]);
                                }
                            }
                        }
                    }
                }
                let (n, dst) = (count * geo.ow, &mut y[oy0 * geo.ow..]);
                if n >= l && ob >= l {
                    simd::transpose(s, &out.0, (n, ob, nr), dst, pixels);
                } else {
                    simd::transpose(simd::Scalar, &out.0, (n, ob, nr), dst, pixels);
                }
            }
        }
    }
}

/// Whether the block of output pixels `(oy, ox..ox + n)` is whole (`n = P`) and every tap
/// of it reads inside the map's columns (rows outside the map are skipped whole).
#[inline(always)]
fn interior<const P: usize>(geo: &ConvGeometry, (_, ox, n): (usize, usize, usize)) -> bool {
    n == P && ox * geo.stride >= geo.pad && (ox + P - 1) * geo.stride + geo.k - 1 < geo.w + geo.pad
}

/// Adds to `sums` the products of output pixels `(oy, ox..ox + n)` (`n ≤ P`; the rest get
/// zeros) and the input channels `c0..c0 + c_len`, for the `ob` output channels from `o` on
/// (a multiple of the lanes), whose weights are those of the transposed `wt`: `P × OV`
/// vectors.
#[inline(always)]
fn block<S: Simd, const OV: usize, const P: usize, const EDGE: bool>(
    s: S,
    geo: &ConvGeometry,
    x: &[f32],
    (wt, o, ob): (&[f32], usize, usize),
    (oy, ox, n): (usize, usize, usize),
    (c0, c_len): (usize, usize),
    sums: &mut [[S::F; OV]; P],
) {
    let (k, st) = (geo.k, geo.stride);
    for c in c0..c0 + c_len {
        let map = &x[c * geo.h * geo.w..][..geo.h * geo.w];
        for i in 0..k {
            let iy = (oy * st + i).wrapping_sub(geo.pad);
            if iy >= geo.h {
                continue;
            }
            let row = &map[iy * geo.w..][..geo.w];
            for j in 0..k {
                let t = (c * k + i) * k + j;
                let mut wv = [s.splat(0.0); OV];
                for (v, wv) in wv.iter_mut().enumerate() {
                    // Past the block's channels (48 in vectors of 64): zeros, no load past
                    // the row.
                    if v * S::LANES < ob {
                        *wv = s.load(wt, t * geo.c_out + o + v * S::LANES);
                    }
                }
                for (p, sums) in sums.iter_mut().enumerate() {
                    let xv = if EDGE {
                        let ix = ((ox + p) * st + j).wrapping_sub(geo.pad);
                        match p < n && ix < geo.w {
                            true => row[ix],
                            false => 0.0,
                        }
                    } else {
                        row[(ox + p) * st + j - geo.pad]
                    };
                    let xv = s.splat(xv);
                    for (sum, &wv) in sums.iter_mut().zip(&wv) {
                        *sum = s.mul_add(xv, wv, *sum);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::conv_gemm::{self, Ready};
    use crate::conv_kernel::ConvGeometry;
    use crate::simd::{Isa, with_isa};

    /// The weights transposed once for a batch ([`super::prepare`]) give the
    /// bits of the pass that transposes them on its stack, with and without the map after
    /// the sums, on every instruction set; the transposed layout is `[c][i][j][o]`.
    #[test]
    fn weights_transposed_once_give_the_same_bits() {
        let geo = ConvGeometry {
            c_in: 16,
            c_out: 48,
            groups: 1,
            k: 3,
            stride: 2,
            pad: 1,
            h: 13,
            w: 11,
            oh: 7,
            ow: 6,
        }
        .checked();
        assert!(super::pays(&geo));
        let value = |i: usize, m: usize| ((i * 37 % m) as f32 / m as f32) - 0.5;
        let x: Vec<f32> = (0..2 * geo.input_len()).map(|i| value(i, 101)).collect();
        let w: Vec<f32> = (0..geo.weight_len()).map(|i| value(i, 89)).collect();
        let b: Vec<f32> = (0..geo.c_out).map(|i| value(i, 7)).collect();
        let mut wt = vec![f32::NAN; geo.weight_len()];
        super::prepare(&geo, &w, &mut wt);
        let taps = geo.c_in * 9;
        assert_eq!(wt[5 * geo.c_out + 40], w[40 * taps + 5]);
        let shift: Vec<f32> = (0..geo.c_out).map(|i| value(i, 5)).collect();
        let ones = vec![1.0; geo.c_out];
        let affine = crate::ChannelAffine {
            mean: &b,
            scale: &ones,
            shift: &shift,
        };
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for isa in [Isa::Scalar, Isa::Sse2, Isa::Avx2, Isa::Avx512] {
            with_isa(isa, || {
                let e = crate::Epilogue::Relu;
                for after in [None, Some((Some(affine), e))] {
                    let mut each = vec![0.0f32; 2 * geo.output_len()];
                    match after {
                        None => conv_gemm::forward(&geo, &x, &w, &b, &mut each),
                        Some(_) => {
                            conv_gemm::forward_then(&geo, &x, &w, &b, &mut each, Some(affine), e)
                        }
                    }
                    let mut once = vec![f32::NAN; each.len()];
                    let ready = Ready::Channels(&wt);
                    conv_gemm::forward_prepared(&geo, (&x, &w, &b), &mut once, after, ready);
                    assert!(bits(&once) == bits(&each), "{isa:?}, {}", after.is_some());
                }
            });
        }
    }
}
