//! A convolution's `f32` kernels in lanes, backward pass: the weight and bias gradients
//! gathered lane by lane over a batch's blocks, and the input gradient (see `conv_lanes` for
//! the layout).

use crate::conv_lanes::ConvLaneWorkspace;
use crate::lane_layout::{CacheLines, LANES};
use crate::pairs::Pairs;
use crate::scalar::Scalar;
use crate::simd::{self, Kernel, Simd, for_blocks};
use crate::tensor::{Maps, Tensor};

/// The lane backward pass of one block by the kernels: `x` the block's input, `g` its
/// output gradient (both in lanes), `w` the weights. The weight and bias gradients are
/// gathered lane by lane in `ws` from the batch's `first` block and added to `gw` and `gb`
/// after its `last`; the input gradient is written to `grad_input` if asked. With
/// `relu_output`, `g` is the gradient of the ReLU of this layer's output, and passes where
/// `relu_output > 0`. Returns `false`, doing nothing, unless `T` is `f32`.
#[inline]
pub(crate) fn backward<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    (first, last): (bool, bool),
    (x, g, relu_output): (&[T], &[T], Option<&[T]>),
    w: &[T],
    ws: &mut ConvLaneWorkspace<T, CI, CO, K, H, W, OH, OW>,
    grad_input: Option<&mut [T]>,
    (gw, gb): (&mut [T], &mut [T]),
) -> bool {
    if T::as_f32(x).is_none() {
        return false;
    }
    let ConvLaneWorkspace {
        gw: CacheLines(gwl),
        gb: CacheLines(gbl),
        g: CacheLines(masked),
        ..
    } = ws;
    let gwl = gwl.as_flattened_mut().as_flattened_mut().as_flattened_mut();
    let masked = Maps::flat_slice_mut(masked);
    let (Some(x), Some(g), Some(gwl), Some(gbl), Some(gw), Some(gb), Some(masked)) = (
        T::as_f32(x),
        T::as_f32(g),
        T::as_f32_mut(gwl.as_flattened_mut()),
        T::as_f32_mut(gbl.as_flattened_mut()),
        T::as_f32_mut(gw),
        T::as_f32_mut(gb),
        T::as_f32_mut(masked),
    ) else {
        unreachable!("T is f32")
    };
    let mut mask = relu_output.map(|y| T::as_f32(y).expect("T is f32"));
    let mut g = g;
    if let (Some(y), true) = (mask, grad_input.is_some()) {
        // Both kernels read the gradient: mask it once.
        for ((m, &g), &y) in masked.iter_mut().zip(g).zip(y) {
            *m = if y > 0.0 { g } else { 0.0 };
        }
        (g, mask) = (&*masked, None);
    }
    if first {
        gwl.fill(0.0);
        gbl.fill(0.0);
    }
    let kernel = WeightGrad::<CI, CO, K, H, W, OH, OW> {
        x,
        g,
        mask,
        gwl,
        gbl,
        sums: last.then_some((gw, gb)),
    };
    simd::dispatch(kernel);
    if let Some(gi) = grad_input
        && let (Some(w), Some(gi)) = (T::as_f32(w), T::as_f32_mut(gi))
    {
        simd::dispatch(InputGrad::<CI, CO, K, H, W, OH, OW> { w, g, gi });
    }
    true
}

/// Weight and bias gradients of a batch in lanes, per lane: `gwl[o][c][i][j][l] +=
/// Σ_p g[o][p][l] · x[c][p + (i, j)][l]`, `gbl[o][l] += Σ_p g[o][p][l]`.
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
    /// A ReLU's output: `g` passes where it is positive.
    mask: Option<&'a [f32]>,
    gwl: &'a mut [f32],
    gbl: &'a mut [f32],
    /// Where the lanes' sums are added, after the batch's last block.
    sums: Option<(&'a mut [f32], &'a mut [f32])>,
}

/// Output channels `o0..o0 + OB` × the `K` taps of kernel row `i` of input channel `c`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn weight_grad_block<S: Simd, const OB: usize, const K: usize, const MASK: bool>(
    s: S,
    (x, g, mask): (&[f32], &[f32], &[f32]),
    (o0, c, i, v0): (usize, usize, usize, usize),
    (ci, h, wd, oh, ow): (usize, usize, usize, usize, usize),
    rows: core::ops::Range<usize>,
    gwl: &mut [f32],
) {
    let mut acc = [[s.splat(0.0); K]; OB];
    for py in rows {
        for px in 0..ow {
            let mut gv = [s.splat(0.0); OB];
            for o in 0..OB {
                let at = (((o0 + o) * oh + py) * ow + px) * LANES + v0;
                gv[o] = s.load(g, at);
                if MASK {
                    let zero = s.splat(0.0);
                    gv[o] = s.select_gt(s.load(mask, at), zero, gv[o], zero);
                }
            }
            let at = ((c * h + py + i) * wd + px) * LANES + v0;
            for j in 0..K {
                let xv = s.load(x, at + j * LANES);
                for o in 0..OB {
                    acc[o][j] = s.mul_add(gv[o], xv, acc[o][j]);
                }
            }
        }
    }
    for o in 0..OB {
        for j in 0..K {
            let at = ((((o0 + o) * ci + c) * K + i) * K + j) * LANES + v0;
            s.store(gwl, at, s.add(s.load(gwl, at), acc[o][j]));
        }
    }
}

/// [`weight_grad_block`] over all weights for vector `v0` of a block, in bands of output
/// rows whose gradient and input stay in L1 across all the weights (a whole map's
/// gradient would be read from L2 once per kernel row).
#[inline(always)]
fn weight_grad_bands<S: Simd, const K: usize, const MASK: bool>(
    s: S,
    data: (&[f32], &[f32], &[f32]),
    v0: usize,
    dims: (usize, usize, usize, usize, usize),
    co: usize,
    gwl: &mut [f32],
) {
    let (ci, oh, ow) = (dims.0, dims.3, dims.4);
    // Rows per band: 4 channels' gradient rows in ~24 KiB, the bands even.
    let band = {
        let rows = (384 / (4 * ow)).max(1);
        oh.div_ceil(oh.div_ceil(rows))
    };
    for py0 in (0..oh).step_by(band) {
        let rows = py0..(py0 + band).min(oh);
        if const { S::LANES >= 16 } {
            for_blocks!(co, [4, 2, 1], |o0, OB| {
                for c in 0..ci {
                    for i in 0..K {
                        let (at, rows) = ((o0, c, i, v0), rows.clone());
                        weight_grad_block::<S, OB, K, MASK>(s, data, at, dims, rows, gwl);
                    }
                }
            });
        } else {
            for_blocks!(co, [2, 1], |o0, OB| {
                for c in 0..ci {
                    for i in 0..K {
                        let (at, rows) = ((o0, c, i, v0), rows.clone());
                        weight_grad_block::<S, OB, K, MASK>(s, data, at, dims, rows, gwl);
                    }
                }
            });
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
        let dims = (CI, H, W, OH, OW);
        let blocks = self.x.chunks_exact(CI * H * W * LANES);
        let mask = self.mask.unwrap_or(&[]);
        let masks = mask.chunks_exact(CO * OH * OW * LANES);
        let g_len = CO * OH * OW * LANES;
        for (k, (x, g)) in blocks.pairs(self.g.chunks_exact(g_len)).enumerate() {
            let mask = match self.mask {
                Some(_) => masks.clone().nth(k).expect("a mask per block"),
                None => &[][..],
            };
            for v0 in (0..LANES).step_by(S::LANES) {
                for o in 0..CO {
                    let mut acc = s.load(self.gbl, o * LANES + v0);
                    for p in 0..OH * OW {
                        let at = (o * OH * OW + p) * LANES + v0;
                        let mut gv = s.load(g, at);
                        if self.mask.is_some() {
                            let zero = s.splat(0.0);
                            gv = s.select_gt(s.load(mask, at), zero, gv, zero);
                        }
                        acc = s.add(acc, gv);
                    }
                    s.store(self.gbl, o * LANES + v0, acc);
                }
                if self.mask.is_some() {
                    weight_grad_bands::<S, K, true>(s, (x, g, mask), v0, dims, CO, self.gwl);
                } else {
                    weight_grad_bands::<S, K, false>(s, (x, g, mask), v0, dims, CO, self.gwl);
                }
            }
        }
        let lane_sum = |lanes: &[f32]| {
            let mut acc = s.load(lanes, 0);
            for v0 in (S::LANES..LANES).step_by(S::LANES) {
                acc = s.add(acc, s.load(lanes, v0));
            }
            s.sum(acc)
        };
        let Some((gw, gb)) = self.sums else { return };
        for (gw, lanes) in gw.iter_mut().pairs(self.gwl.chunks_exact(LANES)) {
            *gw += lane_sum(lanes);
        }
        for (gb, lanes) in gb.iter_mut().pairs(self.gbl.chunks_exact(LANES)) {
            *gb += lane_sum(lanes);
        }
    }
}

/// Input gradient of a batch in lanes: `gi[c][y][x] = Σ_o Σ_(i,j) w[o][c][i][j] ·
/// g[o][y − i][x − j]` over the taps that land inside `g`.
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
    g: &'a [f32],
    gi: &'a mut [f32],
}

/// Input gradient of pixels `x0..x0 + XB` of row `y` of channel `c`, in registers: each
/// gradient pixel is loaded once per kernel row and scattered to the `K` outputs it
/// reaches, so the maps' edges cost nothing (the edge tests are constant after
/// unrolling, except whether a gradient pixel exists).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn input_grad_block<S: Simd, const XB: usize, const K: usize>(
    s: S,
    (w, g): (&[f32], &[f32]),
    (c, y, x0, v0): (usize, usize, usize, usize),
    (ci, co, h, wd, oh, ow): (usize, usize, usize, usize, usize, usize),
    gi: &mut [f32],
) {
    let mut acc = [s.splat(0.0); XB];
    for o in 0..co {
        for i in 0..K {
            if y < i || y - i >= oh {
                continue;
            }
            let g_row = (o * oh + y - i) * ow;
            let taps = &w[((o * ci + c) * K + i) * K..][..K];
            let mut wv = [s.splat(0.0); K];
            for j in 0..K {
                wv[j] = s.splat(taps[j]);
            }
            for q in 0..XB + K - 1 {
                // gradient pixel x0 + q − (K − 1), which reaches outputs t = q + j − (K − 1)
                let px = (x0 + q).wrapping_sub(K - 1);
                if px >= ow {
                    continue;
                }
                let gv = s.load(g, (g_row + px) * LANES + v0);
                for j in 0..K {
                    let t = (q + j).wrapping_sub(K - 1);
                    if t < XB {
                        acc[t] = s.mul_add(wv[j], gv, acc[t]);
                    }
                }
            }
        }
    }
    for t in 0..XB {
        s.store(gi, ((c * h + y) * wd + x0 + t) * LANES + v0, acc[t]);
    }
}

/// [`input_grad_block`] for a whole row (`W = OW + K − 1` outputs in registers): every
/// multiply-add is a real one, and the loops have constant trips.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn input_grad_row<S: Simd, const W: usize, const OW: usize, const K: usize>(
    s: S,
    (w, g): (&[f32], &[f32]),
    (c, y, v0): (usize, usize, usize),
    (ci, h, oh): (usize, usize, usize),
    outputs: core::ops::Range<usize>,
    gi: &mut [f32],
) {
    let at = |t: usize| ((c * h + y) * W + t) * LANES + v0;
    let mut acc = [s.splat(0.0); W];
    if outputs.start > 0 {
        for t in 0..W {
            acc[t] = s.load(gi, at(t));
        }
    }
    for o in outputs {
        for i in 0..K {
            if y < i || y - i >= oh {
                continue;
            }
            let g_row = (o * oh + y - i) * OW;
            let taps = &w[((o * ci + c) * K + i) * K..][..K];
            let mut wv = [s.splat(0.0); K];
            for j in 0..K {
                wv[j] = s.splat(taps[j]);
            }
            for px in 0..OW {
                let gv = s.load(g, (g_row + px) * LANES + v0);
                for j in 0..K {
                    acc[px + j] = s.mul_add(wv[j], gv, acc[px + j]);
                }
            }
        }
    }
    for t in 0..W {
        s.store(gi, at(t), acc[t]);
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
        let dims = (CI, CO, H, W, OH, OW);
        // A whole row in registers, with room for the taps and a gradient vector.
        let whole_rows = W + K + 2 <= if S::LANES >= 16 { 32 } else { 16 };
        let blocks = self.g.chunks_exact(CO * OH * OW * LANES);
        for (g, gi) in blocks.pairs(self.gi.chunks_exact_mut(CI * H * W * LANES)) {
            for v0 in (0..LANES).step_by(S::LANES) {
                if whole_rows {
                    // Output channels in chunks whose gradient rows stay in L1 while
                    // every input channel reads them.
                    for o0 in (0..CO).step_by(8) {
                        for y in 0..H {
                            for c in 0..CI {
                                let (at, dims) = ((c, y, v0), (CI, H, OH));
                                let outputs = o0..(o0 + 8).min(CO);
                                input_grad_row::<S, W, OW, K>(
                                    s,
                                    (self.w, g),
                                    at,
                                    dims,
                                    outputs,
                                    gi,
                                );
                            }
                        }
                    }
                    continue;
                }
                for y in 0..H {
                    for c in 0..CI {
                        if const { S::LANES >= 16 } {
                            for_blocks!(const W, [16, 14, 12, 8, 4, 2, 1], |x0, XB| {
                                let at = (c, y, x0, v0);
                                input_grad_block::<S, XB, K>(s, (self.w, g), at, dims, gi);
                            });
                        } else {
                            for_blocks!(const W, [8, 4, 2, 1], |x0, XB| {
                                let at = (c, y, x0, v0);
                                input_grad_block::<S, XB, K>(s, (self.w, g), at, dims, gi);
                            });
                        }
                    }
                }
            }
        }
    }
}
