//! LeNet-5's tuned direct convolution in `f32`, forward pass: stride 1, no padding, generic
//! over the instruction set ([`Simd`]); the backward kernels are in `conv_fast_backward`.
//! [`crate::Conv2d`] runs them for the geometries they [take](takes), and the kernels of
//! [`crate::conv_kernel`] for the rest.
//!
//! The trick that makes a 5×5 convolution vector-friendly: index output pixel `(y, x)` as
//! `p = y·W + x`, with the *input's* row width `W`. Then input pixel `(y + i, x + j)` is
//! `p + i·W + j` for every output pixel, so each kernel tap multiplies one contiguous run of
//! input by one weight and adds it to one contiguous run of output ("wide" rows; the
//! `W − OW` columns past the right edge are computed and dropped). A block of output channels
//! × a few vectors of pixels stays in registers for all `CI·K·K` taps.
//!
//! Unlike [`crate::conv_kernel`], these kernels take the shape as const parameters: their
//! buffers live on the stack at the shape's exact size and their loops have constant trips,
//! which is what they are tuned for (LeNet-5's two convolutions). [`takes`] reads the shape
//! as a [`ConvGeometry`], at compile time in the layer.
//!
//! [`Simd`]: crate::simd::Simd

use crate::conv_kernel::ConvGeometry;
use crate::pairs::Pairs;
use crate::simd::{self, Kernel, Simd, for_blocks, load_vectors, transpose_matrix};

/// Whether the kernels of this module and of `conv_fast_backward` take `geo`: one group,
/// stride 1, no padding, at least one 32-float vector block of output pixels, and buffers
/// that fit on a thread's stack ([`stack_floats`]).
pub(crate) const fn takes(geo: &ConvGeometry) -> bool {
    let ConvGeometry {
        groups,
        k,
        stride,
        pad,
        h,
        w,
        oh,
        ow,
        ..
    } = *geo;
    groups == 1
        && stride == 1
        && pad == 0
        && (oh - 1) * w + ow >= 32
        && oh * w + k + 16 <= 2 * oh * w
        && h * w >= 32
        && 4 * stack_floats(geo) <= 256 * 1024
}

/// Floats the kernels keep on the stack, bounded by every buffer of the largest pass:
/// ResNet's 64-channel 1×1 convolution on 56×56 maps would need 3.2 MB in its input gradient
/// alone, LeNet-5's convolutions need at most 71 KB.
const fn stack_floats(geo: &ConvGeometry) -> usize {
    let ConvGeometry {
        c_in: ci,
        c_out: co,
        k,
        h,
        w,
        oh,
        ow,
        ..
    } = *geo;
    let forward = 2 * co * ci * k * k + co * oh * w + oh * ow * co;
    let input_grad = 2 * co * oh * w + k * co * k * ci + 2 * ci * h * w;
    let weight_grad = oh * ow * co + 2 * ci * k * k * co + 3 * co * oh * w + 2 * ci * h * w;
    let most = if forward > input_grad {
        forward
    } else {
        input_grad
    };
    if most > weight_grad {
        most
    } else {
        weight_grad
    }
}

/// `y = conv(x, w) + b` for one sample: `x` is `[CI][H][W]`, `w` `[CO][CI][K][K]`, `y`
/// `[CO][OH][OW]`. `wt`, if given, holds the weights already in `[c][i][j][o]` order
/// ([`pack_channel_lanes`]): a batch packs them once for all its samples.
#[inline]
pub(crate) fn forward<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    x: &[f32],
    (w, wt): (&[f32], Option<&[f32]>),
    b: &[f32],
    y: &mut [f32],
) {
    simd::dispatch(Forward::<CI, CO, K, H, W, OH, OW> { x, w, wt, b, y });
}

/// `wt[c][i][j][o] = w[o][c][i][j]`: the weights of the channel-lane kernels (a SIMD
/// transpose, once per batch or once per single pass).
pub(crate) fn pack_channel_lanes<const CI: usize, const CO: usize, const K: usize>(
    w: &[f32],
    wt: &mut [f32],
) {
    let (rows, cols) = (CO, CI * K * K);
    simd::dispatch(simd::Transposed {
        src: w,
        rows,
        cols,
        dst: wt,
    });
}

/// `out[a][p] = init[a] + Σ_r Σ_t packed[r][t][a] · src[r·src_stride + p + taps[t]]` for
/// `a < OB`, `p < span`: `NV` vectors of pixels at a time, the last block shifted back
/// to end at `span` (recomputing a few pixels, which only rewrites the same values).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn correlate<S: Simd, const OB: usize, const NV: usize>(
    s: S,
    src: &[f32],
    src_stride: usize,
    taps: &[usize],
    packed: &[f32],
    init: &[f32],
    out: &mut [f32],
    out_stride: usize,
    span: usize,
) {
    let step = NV * S::LANES;
    let rows = packed.len() / (taps.len() * OB);
    let init: &[f32; OB] = init[..OB].try_into().expect("OB initial values");
    let mut p0 = 0;
    while p0 < span {
        let p = p0.min(span - step);
        let mut acc = [[s.splat(0.0); NV]; OB];
        for (row, &b) in acc.iter_mut().pairs(init) {
            *row = [s.splat(b); NV];
        }
        let mut weights = packed.chunks_exact(OB);
        for r in 0..rows {
            let base = r * src_stride + p;
            for &tap in taps {
                let w: &[f32; OB] = weights
                    .next()
                    .and_then(|w| w.try_into().ok())
                    .expect("packed weights");
                let mut xs = [s.splat(0.0); NV];
                for (v, x) in xs.iter_mut().enumerate() {
                    *x = s.load(src, base + tap + v * S::LANES);
                }
                for (row, &wa) in acc.iter_mut().pairs(w) {
                    let wa = s.splat(wa);
                    for (a, &x) in row.iter_mut().pairs(&xs) {
                        *a = s.mul_add(wa, x, *a);
                    }
                }
            }
        }
        for (a, row) in acc.iter().enumerate() {
            for (v, &acc) in row.iter().enumerate() {
                s.store(out, a * out_stride + p + v * S::LANES, acc);
            }
        }
        p0 += step;
    }
}

/// `correlate` for output rows of more than one and at most two vectors: for each output
/// row `y`, the vectors at `x = 0` and `x = OW − LANES` (overlapping in the middle);
/// `RB` rows at a time share each broadcast weight.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn correlate_rows<S: Simd, const OB: usize, const RB: usize>(
    s: S,
    src: &[f32],
    (src_stride, width): (usize, usize),
    taps: &[usize],
    packed: &[f32],
    init: &[f32],
    out: &mut [f32],
    (oh, ow): (usize, usize),
) {
    let rows = packed.len() / (taps.len() * OB);
    let init: &[f32; OB] = init[..OB].try_into().expect("OB initial values");
    let starts = [0, ow - S::LANES];
    let mut y0 = 0;
    while y0 < oh {
        // The last block moves back to end at the last row (recomputing a row).
        let y0c = y0.min(oh - RB);
        let mut acc = [[[s.splat(0.0); 2]; RB]; OB];
        for (row, &b) in acc.iter_mut().pairs(init) {
            *row = [[s.splat(b); 2]; RB];
        }
        let mut weights = packed.chunks_exact(OB);
        for r in 0..rows {
            let base = r * src_stride + y0c * width;
            for &tap in taps {
                let w: &[f32; OB] = weights
                    .next()
                    .and_then(|w| w.try_into().ok())
                    .expect("packed weights");
                let mut xs = [[s.splat(0.0); 2]; RB];
                for (dy, xs) in xs.iter_mut().enumerate() {
                    for (x, &start) in xs.iter_mut().pairs(&starts) {
                        *x = s.load(src, base + dy * width + tap + start);
                    }
                }
                for (row, &wa) in acc.iter_mut().pairs(w) {
                    let wa = s.splat(wa);
                    for (a, x) in row.iter_mut().pairs(&xs) {
                        for (a, &x) in a.iter_mut().pairs(x) {
                            *a = s.mul_add(wa, x, *a);
                        }
                    }
                }
            }
        }
        for (a, row) in acc.iter().enumerate() {
            for (dy, row) in row.iter().enumerate() {
                for (&x, &acc) in starts.iter().pairs(row) {
                    s.store(out, (a * oh + y0c + dy) * ow + x, acc);
                }
            }
        }
        y0 += RB;
    }
}

/// Offsets `i·W + j` of the `K×K` taps in a map of row width `W`.
fn tap_offsets<const K: usize, const W: usize>() -> [[usize; K]; K] {
    core::array::from_fn(|i| core::array::from_fn(|j| i * W + j))
}

/// Forward pass: `y = conv(x, w) + b`.
struct Forward<
    'a,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    x: &'a [f32],
    w: &'a [f32],
    /// The weights already in `[c][i][j][o]` order ([`pack_channel_lanes`]), if a batch
    /// packed them once for all its samples.
    wt: Option<&'a [f32]>,
    b: &'a [f32],
    y: &'a mut [f32],
}

impl<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Kernel for Forward<'_, CI, CO, K, H, W, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        if const { CO.is_multiple_of(S::LANES) && S::LANES > 1 } {
            return self.by_channel_lanes(s);
        }
        let taps = tap_offsets::<K, W>();
        let taps = taps.as_flattened();
        let kk = K * K;
        let mut packed = [[[[0.0f32; K]; K]; CI]; CO];
        let packed = packed
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        // packed[o0..][c][t][a] = w[o0 + a][c][t] for each block of channels o0..o0 + OB
        let pack = |packed: &mut [f32], o0: usize, ob: usize| {
            for (ct, chunk) in packed.chunks_exact_mut(ob).enumerate() {
                for (a, v) in chunk.iter_mut().enumerate() {
                    *v = self.w[(o0 + a) * CI * kk + ct];
                }
            }
        };
        if const { S::LANES < OW && OW <= 2 * S::LANES } {
            // Rows of two vectors (the second ending at the row's end): the sums go
            // straight to the output, with no wide buffer to clear and compact.
            for_blocks!(const CO, [6, 4, 2, 1], |o0, OB| {
                let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                pack(w, o0, OB);
                let (src, dims, b) = (self.x, (H * W, W), &self.b[o0..]);
                let (out, out_dims) = (&mut self.y[o0 * OH * OW..], (OH, OW));
                if const { S::LANES >= 16 && OH >= 2 } {
                    // 32 registers: two rows × OB channels × two vectors.
                    correlate_rows::<S, OB, 2>(s, src, dims, taps, w, b, out, out_dims);
                } else {
                    correlate_rows::<S, OB, 1>(s, src, dims, taps, w, b, out, out_dims);
                }
            });
            return;
        }
        let mut wide = [[[0.0f32; W]; OH]; CO];
        let wide = wide.as_flattened_mut().as_flattened_mut();
        let (span, stride) = ((OH - 1) * W + OW, OH * W);
        if const { S::LANES >= 16 } {
            for_blocks!(const CO, [8, 6, 4, 2, 1], |o0, OB| {
                let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                pack(w, o0, OB);
                correlate::<S, OB, 2>(
                    s,
                    self.x,
                    H * W,
                    taps,
                    w,
                    &self.b[o0..],
                    &mut wide[o0 * stride..],
                    stride,
                    span,
                );
            });
        } else {
            for_blocks!(const CO, [4, 2, 1], |o0, OB| {
                let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                pack(w, o0, OB);
                correlate::<S, OB, 2>(
                    s,
                    self.x,
                    H * W,
                    taps,
                    w,
                    &self.b[o0..],
                    &mut wide[o0 * stride..],
                    stride,
                    span,
                );
            });
        }
        for (out_row, wide_row) in self.y.chunks_exact_mut(OW).pairs(wide.chunks_exact(W)) {
            out_row.copy_from_slice(&wide_row[..OW]);
        }
    }
}

impl<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Forward<'_, CI, CO, K, H, W, OH, OW>
{
    /// When the output channels fill whole vectors (LeNet's 16): lanes over output
    /// channels, one broadcast input pixel per multiply-add, no wasted lane (the wide-row
    /// form wastes 60% on conv2's 10×10 maps). Weights are transposed to `[c][i][j][o]`,
    /// the result back to `[o][y][x]` at the end.
    #[inline(always)]
    fn by_channel_lanes<S: Simd>(self, s: S) {
        // Cleared only when used: a batch passes its packed weights.
        let mut local;
        let wt = match self.wt {
            Some(wt) => wt,
            None => {
                local = [[[[0.0f32; CO]; K]; K]; CI];
                let local = local
                    .as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut();
                pack_channel_lanes::<CI, CO, K>(self.w, local);
                &*local
            }
        };
        let mut yt = [[[0.0f32; CO]; OW]; OH];
        let yt = yt.as_flattened_mut().as_flattened_mut();
        let dims = (CI, CO, H * W, W, OW);
        for y in 0..OH {
            if const { S::LANES >= 16 } {
                for_blocks!(const CO / S::LANES, [1], |v0, VB| {
                    for_blocks!(const OW, [10, 8, 4, 1], |x0, PB| {
                        channel_lanes_block::<S, PB, VB, K>(
                            s,
                            self.x,
                            wt,
                            self.b,
                            yt,
                            (v0, y, x0),
                            dims,
                        );
                    });
                });
            } else {
                for_blocks!(const CO / S::LANES, [2, 1], |v0, VB| {
                    for_blocks!(const OW, [6, 4, 2, 1], |x0, PB| {
                        channel_lanes_block::<S, PB, VB, K>(
                            s,
                            self.x,
                            wt,
                            self.b,
                            yt,
                            (v0, y, x0),
                            dims,
                        );
                    });
                });
            }
        }
        transpose_matrix(s, yt, (OH * OW, CO), self.y);
    }
}

/// Output pixels `(y, x0..x0 + PB)` × `VB` vectors of output channels from vector `v0`:
/// `yt[y][x][o] = b[o] + Σ_{c,i,j} x[c][y + i][x + j] · wt[c][i][j][o]`.
#[inline(always)]
fn channel_lanes_block<S: Simd, const PB: usize, const VB: usize, const K: usize>(
    s: S,
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    yt: &mut [f32],
    (v0, y, x0): (usize, usize, usize),
    (ci, co, hw, w, ow): (usize, usize, usize, usize, usize),
) {
    let o0 = v0 * S::LANES;
    let bias: [S::F; VB] = load_vectors(s, b, o0, S::LANES);
    let mut acc = [bias; PB];
    for c in 0..ci {
        for i in 0..K {
            let row = &x[c * hw + (y + i) * w + x0..][..PB + K - 1];
            for j in 0..K {
                let at = ((c * K + i) * K + j) * co + o0;
                let wv: [S::F; VB] = load_vectors(s, wt, at, S::LANES);
                for (q, acc) in acc.iter_mut().enumerate() {
                    let xb = s.splat(row[q + j]);
                    for (a, &wv) in acc.iter_mut().pairs(&wv) {
                        *a = s.mul_add(xb, wv, *a);
                    }
                }
            }
        }
    }
    for (q, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            s.store(yt, (y * ow + x0 + q) * co + o0 + v * S::LANES, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::conv_out;

    /// A stride-`s`, padding-`p` convolution of `ci` → `co` channels, `k`×`k`, on `h`×`h` maps.
    const fn geo(ci: usize, co: usize, k: usize, s: usize, p: usize, h: usize) -> ConvGeometry {
        let o = conv_out(h, k, s, p);
        ConvGeometry {
            c_in: ci,
            c_out: co,
            groups: 1,
            k,
            stride: s,
            pad: p,
            h,
            w: h,
            oh: o,
            ow: o,
        }
        .checked()
    }

    /// LeNet-5's convolutions stay on these kernels; a ResNet-sized 1×1 convolution, whose
    /// buffers would not fit on the stack, and strided or padded ones go to `conv_kernel`.
    /// (Checked at compile time.)
    #[test]
    fn lenet_convolutions_keep_their_fast_path() {
        const {
            assert!(takes(&geo(1, 6, 5, 1, 0, 32)));
            assert!(takes(&geo(6, 16, 5, 1, 0, 14)));
            assert!(!takes(&geo(64, 64, 1, 1, 0, 56)));
            assert!(!takes(&geo(6, 16, 5, 1, 2, 14)));
            assert!(!takes(&geo(6, 16, 5, 2, 0, 15)));
        }
    }
}
