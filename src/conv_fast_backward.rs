//! LeNet-5's tuned direct convolution in `f32`, backward pass: the input gradient and the
//! parameter gradients of one sample, for the geometries `conv_fast` [takes]; the same wide
//! rows and channel lanes as its forward pass (see there).
//!
//! [takes]: crate::conv_fast::takes

use crate::lane_layout::CacheLines;
use crate::pairs::Pairs;
use crate::simd::{self, Kernel, Simd, for_blocks, load_vectors, transpose_matrix};

/// `gi = ∂E/∂x` for one sample's output gradient `g` (`[CO][OH][OW]`) and the weights `w`
/// (`[CO][CI][K][K]`); every value of `gi` (`[CI][H][W]`) is written. `packed`, if given,
/// holds the weights already packed by [`pack_input_grad`]: a batch packs them once.
#[inline]
pub(crate) fn input_grad<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    (w, packed): (&[f32], Option<&[f32]>),
    g: &[f32],
    gi: &mut [f32],
) {
    simd::dispatch(InputGrad::<CI, CO, K, H, W, OH, OW> { w, packed, g, gi });
}

/// `gw += ∂E/∂w` and `gb += ∂E/∂b` for one sample's input `x` and output gradient `g`.
#[inline]
pub(crate) fn weight_grad<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    x: &[f32],
    g: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
) {
    simd::dispatch(WeightGrad::<CI, CO, K, H, W, OH, OW> { x, g, gw, gb });
}

/// `packed[i][o][j][c] = w[o][c][i][j]`: the weights of [`InputGrad`].
pub(crate) fn pack_input_grad<const CI: usize, const CO: usize, const K: usize>(
    w: &[f32],
    packed: &mut [f32],
) {
    let mut at = 0;
    for i in 0..K {
        for o in 0..CO {
            for j in 0..K {
                for c in 0..CI {
                    packed[at] = w[((o * CI + c) * K + i) * K + j];
                    at += 1;
                }
            }
        }
    }
}

/// Input gradient: `gi[c][y + i][x + j] += w[o][c][i][j] · g[o][y][x]`.
///
/// In wide rows (the output gradient laid out with the input's row width `W`, zeros in
/// the dropped columns), kernel row `i` adds to input-gradient rows `i..i + OH` the sum
/// over `o` and `j` of `w[o][c][i][j] · g[o][q − j]`: a *gather* along the row (shifted
/// loads of `g`, accumulators in registers for a block of input channels × pixel vectors)
/// and one add to memory per kernel row. (Scattering each tap to memory instead stalled
/// on store forwarding: five overlapping read-modify-writes per block.)
struct InputGrad<
    'a,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    w: &'a [f32],
    /// The weights already packed by [`pack_input_grad`], if a batch did it once.
    packed: Option<&'a [f32]>,
    g: &'a [f32],
    gi: &'a mut [f32],
}

/// Kernel row `i`, input channels `c0..c0 + CB`, wide pixels `p0..p0 + PV·LANES`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_grad_block<S: Simd, const CB: usize, const PV: usize, const K: usize>(
    s: S,
    g: &[f32],
    (g_stride, g_pad): (usize, usize),
    packed: &[f32],
    (i, c0, ci, co): (usize, usize, usize, usize),
    out: &mut [f32],
    (out_stride, p0, width): (usize, usize, usize),
) {
    let mut acc = [[s.splat(0.0); PV]; CB];
    for o in 0..co {
        for j in 0..K {
            let at = o * g_stride + g_pad + p0 - j;
            let gv: [S::F; PV] = load_vectors(s, g, at, S::LANES);
            let w: &[f32; CB] = packed[((i * co + o) * K + j) * ci + c0..][..CB]
                .try_into()
                .expect("CB weights");
            for (acc, &w) in acc.iter_mut().pairs(w) {
                let w = s.splat(w);
                for (a, &gv) in acc.iter_mut().pairs(&gv) {
                    *a = s.mul_add(w, gv, *a);
                }
            }
        }
    }
    for (c, acc) in acc.iter().enumerate() {
        for (v, &a) in acc.iter().enumerate() {
            let at = (c0 + c) * out_stride + i * width + p0 + v * S::LANES;
            s.store(out, at, s.add(s.load(out, at), a));
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
> Kernel for InputGrad<'_, CI, CO, K, H, W, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        // The gradient in wide rows after `K − 1` zeros, zero in the dropped columns and
        // past the last pixel: each channel gets 2·OH·W floats.
        let mut wide = [[[[0.0f32; W]; OH]; CO]; 2];
        let wide = wide
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        let (g_stride, g_pad) = (2 * OH * W, K - 1);
        for (o, g) in self.g.chunks_exact(OH * OW).enumerate() {
            for (y, g_row) in g.chunks_exact(OW).enumerate() {
                wide[o * g_stride + g_pad + y * W..][..OW].copy_from_slice(g_row);
            }
        }
        let wide = &*wide;
        // Cleared only when used: a batch passes its packed weights.
        let mut local;
        let packed = match self.packed {
            Some(packed) => packed,
            None => {
                local = [[[[0.0f32; CI]; K]; CO]; K];
                let local = local
                    .as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut();
                pack_input_grad::<CI, CO, K>(self.w, local);
                &*local
            }
        };

        // Input-gradient maps of 2·H·W floats: the last vector may run past H·W.
        let mut out = [[[[0.0f32; W]; H]; CI]; 2];
        let out = out.as_flattened_mut().as_flattened_mut().as_flattened_mut();
        let out_at = (2 * H * W, W);
        let vectors = (OH * W).div_ceil(S::LANES);
        for i in 0..K {
            if const { S::LANES >= 16 } {
                for_blocks!(const CI, [6, 4, 2, 1], |c0, CB| {
                    for_blocks!(vectors, [3, 1], |v0, PV| {
                        input_grad_block::<S, CB, PV, K>(
                            s,
                            wide,
                            (g_stride, g_pad),
                            packed,
                            (i, c0, CI, CO),
                            out,
                            (out_at.0, v0 * S::LANES, out_at.1),
                        );
                    });
                });
            } else {
                for_blocks!(const CI, [4, 2, 1], |c0, CB| {
                    for_blocks!(vectors, [2, 1], |v0, PV| {
                        input_grad_block::<S, CB, PV, K>(
                            s,
                            wide,
                            (g_stride, g_pad),
                            packed,
                            (i, c0, CI, CO),
                            out,
                            (out_at.0, v0 * S::LANES, out_at.1),
                        );
                    });
                });
            }
        }
        for (gi, out) in self
            .gi
            .chunks_exact_mut(H * W)
            .pairs(out.chunks_exact(2 * H * W))
        {
            gi.copy_from_slice(&out[..H * W]);
        }
    }
}

/// Weight gradient: `gw[o][c][i][j] += Σ_p g[o][p] · x[c][p + i·W + j]`.
///
/// When the output channels fill whole vectors (`CO` a multiple of the lane count, as
/// LeNet's 16), the lanes run over output channels: the gradient is transposed to
/// `[pixel][channel]` and each input pixel is broadcast, so there is no horizontal sum and
/// no wasted lane. Otherwise the lanes run over wide rows of pixels (see `conv_fast`).
struct WeightGrad<
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
    g: &'a [f32],
    gw: &'a mut [f32],
    /// Bias gradient: `gb[o] += Σ_p g[o][p]`.
    gb: &'a mut [f32],
}

/// `Σ v`, in `LANES` × 4 partial sums.
#[inline(always)]
fn sum<S: Simd>(s: S, v: &[f32]) -> f32 {
    let mut acc = [s.splat(0.0); 4];
    let mut chunks = v.chunks_exact(4 * S::LANES);
    for chunk in &mut chunks {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = s.add(*a, s.load(chunk, l * S::LANES));
        }
    }
    let total = s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3]));
    chunks.remainder().iter().fold(s.sum(total), |t, &v| t + v)
}

/// Wide-row weight gradient of `OB` output channels × the `K` taps of each kernel row,
/// over `vectors` whole vectors of pixels (`g` is zero past the real pixels, and `x` is
/// long enough for the last vector).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weight_grad_rows<S: Simd, const OB: usize, const K: usize>(
    s: S,
    g: &[f32],
    g_stride: usize,
    x: &[f32],
    (x_stride, width, vectors): (usize, usize, usize),
    gw: &mut [f32],
    gw_stride: usize,
    kernel_rows: usize,
) {
    for row in 0..kernel_rows {
        let (c, i) = (row / K, row % K);
        let x_base = c * x_stride + i * width;
        let mut acc = [[s.splat(0.0); K]; OB];
        for p in (0..vectors * S::LANES).step_by(S::LANES) {
            let gv: [S::F; OB] = load_vectors(s, g, p, g_stride);
            for j in 0..K {
                let xv = s.load(x, x_base + j + p);
                for (acc, &gv) in acc.iter_mut().pairs(&gv) {
                    acc[j] = s.mul_add(gv, xv, acc[j]);
                }
            }
        }
        for (a, acc) in acc.iter().enumerate() {
            for (j, &acc) in acc.iter().enumerate() {
                gw[a * gw_stride + row * K + j] += s.sum(acc);
            }
        }
    }
}

/// Channel-lane weight gradient of output channels `o0..o0 + VB·LANES`: `gt` is the
/// gradient as `[pixel][channel]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weight_grad_lanes<S: Simd, const VB: usize, const K: usize>(
    s: S,
    gt: &[f32],
    (co, o0): (usize, usize),
    x: &[f32],
    (ci, h, w, oh, ow): (usize, usize, usize, usize, usize),
    gwt: &mut [f32],
) {
    for c in 0..ci {
        for i in 0..K {
            let mut acc = [[s.splat(0.0); VB]; K];
            for y in 0..oh {
                let x_row = &x[c * h * w + (y + i) * w..][..ow + K - 1];
                for (xx, g_at) in (0..ow).pairs((y * ow * co..).step_by(co)) {
                    let gv: [S::F; VB] = load_vectors(s, gt, g_at + o0, S::LANES);
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let xb = s.splat(x_row[xx + j]);
                        for (a, &gv) in acc.iter_mut().pairs(&gv) {
                            *a = s.mul_add(gv, xb, *a);
                        }
                    }
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                for (b, &a) in acc.iter().enumerate() {
                    s.store(gwt, ((c * K + i) * K + j) * co + o0 + b * S::LANES, a);
                }
            }
        }
    }
}

/// [`weight_grad_lanes`] for one vector of output channels from `o0` and kernel rows
/// `i0..i0 + IB`, two pixels at a time: the `K + 1` input pixels of a pair serve both,
/// so each broadcast feeds almost two multiply-adds (0.67 loads per multiply-add with
/// `IB = 3`, against 1.04 for one pixel at a time with `IB = 5`: the loads bound this
/// kernel, not the multiply-adds). An odd last pixel of a row goes alone.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn weight_grad_lane_pairs<S: Simd, const IB: usize, const K: usize>(
    s: S,
    gt: &[f32],
    (co, o0, i0): (usize, usize, usize),
    x: &[f32],
    (ci, h, w, oh, ow): (usize, usize, usize, usize, usize),
    gwt: &mut [f32],
) {
    for c in 0..ci {
        let mut acc = [[s.splat(0.0); K]; IB];
        for y in 0..oh {
            for xx in (0..ow - ow % 2).step_by(2) {
                let g_at = (y * ow + xx) * co + o0;
                let (g0, g1) = (s.load(gt, g_at), s.load(gt, g_at + co));
                for i in 0..IB {
                    let row = &x[c * h * w + (y + i0 + i) * w + xx..][..K + 1];
                    for j in 0..K {
                        acc[i][j] = s.mul_add(g0, s.splat(row[j]), acc[i][j]);
                        acc[i][j] = s.mul_add(g1, s.splat(row[j + 1]), acc[i][j]);
                    }
                }
            }
            if ow % 2 == 1 {
                let g0 = s.load(gt, (y * ow + ow - 1) * co + o0);
                for i in 0..IB {
                    let row = &x[c * h * w + (y + i0 + i) * w + ow - 1..][..K];
                    for j in 0..K {
                        acc[i][j] = s.mul_add(g0, s.splat(row[j]), acc[i][j]);
                    }
                }
            }
        }
        for i in 0..IB {
            for j in 0..K {
                s.store(gwt, ((c * K + i0 + i) * K + j) * co + o0, acc[i][j]);
            }
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
> Kernel for WeightGrad<'_, CI, CO, K, H, W, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        for (gb, g) in self.gb.iter_mut().pairs(self.g.chunks_exact(OH * OW)) {
            *gb += sum(s, g);
        }
        if const { CO.is_multiple_of(S::LANES) && S::LANES <= 16 } {
            // The gradient as [pixel][channel] in, the result as [c][i][j][o] out, both
            // by SIMD transposes.
            let mut gt = [[[0.0f32; CO]; OW]; OH];
            let gt = gt.as_flattened_mut().as_flattened_mut();
            transpose_matrix(s, self.g, (CO, OH * OW), gt);
            let mut gwt = [[[[0.0f32; CO]; K]; K]; CI];
            let gwt = gwt.as_flattened_mut().as_flattened_mut().as_flattened_mut();
            let dims = (CI, H, W, OH, OW);
            if const { S::LANES >= 16 } {
                // 32 registers: one vector of channels × up to 5 kernel rows × K taps.
                for v0 in 0..CO / S::LANES {
                    for_blocks!(const K, [3, 2, 1], |i0, IB| {
                        weight_grad_lane_pairs::<S, IB, K>(
                            s,
                            gt,
                            (CO, v0 * S::LANES, i0),
                            self.x,
                            dims,
                            gwt,
                        );
                    });
                }
            } else {
                for_blocks!(const CO / S::LANES, [2, 1], |v0, VB| {
                    weight_grad_lanes::<S, VB, K>(s, gt, (CO, v0 * S::LANES), self.x, dims, gwt);
                });
            }
            let mut back = [[[[0.0f32; K]; K]; CI]; CO];
            let back = back
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut();
            transpose_matrix(s, gwt, (CI * K * K, CO), back);
            for (v, &b) in self.gw.iter_mut().zip(back.iter()) {
                *v += b;
            }
            return;
        }
        // Wide rows, `g` with zeros in the dropped columns and past the last pixel, and
        // `x` copied with room for the last vector. When the whole vectors fit in OH·W
        // (LeNet's conv1: 56 × 16 = 28 × 32) each channel gets OH·W floats, else 2·OH·W.
        let span = (OH - 1) * W + OW;
        let fits = span.div_ceil(S::LANES) * S::LANES <= OH * W;
        let mut small;
        let mut big;
        let (wide, g_stride) = if fits {
            small = CacheLines([[[0.0f32; W]; OH]; CO]);
            for (wide, g) in small.0.iter_mut().flatten().pairs(self.g.chunks_exact(OW)) {
                wide[..OW].copy_from_slice(g);
            }
            (small.0.as_flattened().as_flattened(), OH * W)
        } else {
            big = CacheLines([[[[0.0f32; W]; OH]; CO]; 2]);
            let big = big
                .0
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut();
            for (o, g) in self.g.chunks_exact(OH * OW).enumerate() {
                for (y, g_row) in g.chunks_exact(OW).enumerate() {
                    big[(2 * o * OH + y) * W..][..OW].copy_from_slice(g_row);
                }
            }
            (&*big, 2 * OH * W)
        };
        let mut x = CacheLines([[[[0.0f32; W]; H]; CI]; 2]);
        let x = x.0.as_flattened_mut().as_flattened_mut().as_flattened_mut();
        x[..CI * H * W].copy_from_slice(self.x);
        let rows = (H * W, W, span.div_ceil(S::LANES));
        let gw_stride = CI * K * K;
        if const { S::LANES >= 16 } {
            for_blocks!(const CO, [3, 2, 1], |o0, OB| {
                weight_grad_rows::<S, OB, K>(
                    s,
                    &wide[o0 * g_stride..],
                    g_stride,
                    x,
                    rows,
                    &mut self.gw[o0 * gw_stride..],
                    gw_stride,
                    CI * K,
                );
            });
        } else {
            for_blocks!(const CO, [2, 1], |o0, OB| {
                weight_grad_rows::<S, OB, K>(
                    s,
                    &wide[o0 * g_stride..],
                    g_stride,
                    x,
                    rows,
                    &mut self.gw[o0 * gw_stride..],
                    gw_stride,
                    CI * K,
                );
            });
        }
    }
}
