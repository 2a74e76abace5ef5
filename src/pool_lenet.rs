//! LeNet-5's 2×2 max pooling: the passes tuned for its two small layers before
//! [`crate::pool_kernel`] took every other pooling (and, in any scalar, the branch-free
//! forward loops of tiling windows).
//!
//! These kernels are compiled per shape (the sizes are const parameters, their per-map
//! buffers arrays on the stack), so they take only layers of at most 6×28×28 inputs whose
//! 2×2 windows at stride 2 tile maps of at most 28×28 ([`takes`]): LeNet-5's. There, on a
//! few hundred outputs, their two passes over whole maps cost less than the row-by-row
//! passes of [`crate::pool_kernel`] (measured on LeNet-5's layers: its forward pass 2.2×,
//! inference 3.7× as long, and the same passes with run-time sizes 1.3× and 1.5×).
//!
//! Two passes per map, each over contiguous memory: the better of each column pair of rows
//! `2y`, `2y + 1` (whole rows of `W` pixels), then the better of each pair of neighbours in
//! that result, which, `W` being even, is one flat run of pairs for the whole map, split
//! into even and odd lanes by a shuffle. The winner is the first maximum in reading order,
//! with NaN above every number, as in [`crate::MaxPool2d::forward_reference`] (see
//! [`crate::simd::beats`]).

use crate::pairs::Pairs;
use crate::scalar::Scalar;
use crate::simd::{Kernel, Simd, spans};
use crate::tensor::Maps;

/// Samples per block of the lane passes ([`crate::LANES`]).
const BLOCK: usize = 16;

/// Whether a max pooling of `c` maps of `h`×`w`, `k`×`k` windows at stride `s`, padding `p`,
/// ceil mode `ceil`, runs these kernels: 2×2 windows at stride 2 that tile maps of at most
/// 28×28 in floor mode (no padding, `h` and `w` even), at most 6×28×28 inputs.
pub(crate) const fn takes(
    (c, h, w): (usize, usize, usize),
    (k, s, p): (usize, usize, usize),
    ceil: bool,
) -> bool {
    k == 2
        && s == 2
        && p == 0
        && !ceil
        && h.is_multiple_of(2)
        && w.is_multiple_of(2)
        && h * w <= 28 * 28
        && c * h * w <= 6 * 28 * 28
}

/// `y` and the winners `at` of 2×2 windows with stride 2 over the `C` maps `x`.
pub(crate) struct Forward2x2<
    'a,
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    pub x: &'a [f32],
    pub y: &'a mut [f32],
    /// Winning tap `i·2 + j` of each window.
    pub at: &'a mut [u32],
}

/// 2²³: for an integer `0 ≤ i < 2²³`, the bits of `i + 2²³` are those of 2²³ plus `i`.
const MAGIC: f32 = 8_388_608.0;

/// `col[r][x] = max(x[2r][x], x[2r + 1][x])` for every row pair `r` of every map, and
/// `row[r][x]` = 2 where the lower row won (strictly), else 0.
#[inline(always)]
fn columns<S: Simd>(s: S, x: &[f32], w: usize, col: &mut [f32], row: &mut [f32]) {
    let (zero, two) = (s.splat(0.0), s.splat(2.0));
    for (r, pair) in x.chunks_exact(2 * w).enumerate() {
        for at in spans(w, S::LANES) {
            let (top, bottom) = (s.load(pair, at), s.load(pair, w + at));
            s.store(col, r * w + at, s.select_gt_nan(bottom, top, bottom, top));
            s.store(row, r * w + at, s.select_gt_nan(bottom, top, two, zero));
        }
    }
}

/// `y[k]`, `at[k]` from the pairs `2k`, `2k + 1` of `col` and `row` (see [`columns`]).
#[inline(always)]
fn pairs<S: Simd>(s: S, col: &[f32], row: &[f32], y: &mut [f32], at: &mut [f32]) {
    let (zero, half, one) = (s.splat(0.0), s.splat(0.5), s.splat(1.0));
    let magic = s.splat(MAGIC);
    for k in spans(y.len(), S::LANES) {
        let (v0, v1) = s.deinterleave(s.load(col, 2 * k), s.load(col, 2 * k + S::LANES));
        let (r0, r1) = s.deinterleave(s.load(row, 2 * k), s.load(row, 2 * k + S::LANES));
        let (i0, i1) = (r0, s.add(r1, one));
        // The right column wins if it beats the left, or if neither beats the other (equal,
        // or both NaN) and its winner comes first.
        let right = s.select_gt_nan(
            v1,
            v0,
            one,
            s.select_gt_nan(v0, v1, zero, s.select_gt(i0, i1, one, zero)),
        );
        s.store(y, k, s.select_gt(right, half, v1, v0));
        // + 2²³: the float's low bits are then the integer (see `run`).
        s.store(at, k, s.add(s.select_gt(right, half, i1, i0), magic));
    }
}

/// `y` of 2×2 windows with stride 2 over the `C` maps `x`, without the winners.
pub(crate) struct Max2x2<
    'a,
    const C: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl<const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize> Kernel
    for Max2x2<'_, C, H, W, OH, OW>
{
    /// `false`, doing nothing, when a row or a map is narrower than a vector (never with
    /// [`crate::simd::dispatch_within`] the row width).
    type Output = bool;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> bool {
        if const { W < S::LANES || OH * OW < S::LANES } {
            return false;
        }
        let mut col = [[0.0f32; W]; OH];
        let col = col.as_flattened_mut();
        for (x, y) in self
            .x
            .chunks_exact(H * W)
            .pairs(self.y.chunks_exact_mut(OH * OW))
        {
            // The better of each column pair of rows 2r, 2r + 1 (the lower row only if it
            // beats the upper, as the reference scans it: a NaN in either is kept).
            for (r, pair) in x.chunks_exact(2 * W).enumerate() {
                for at in spans(W, S::LANES) {
                    let (top, bottom) = (s.load(pair, at), s.load(pair, W + at));
                    let better = s.select_gt_nan(bottom, top, bottom, top);
                    s.store(col, r * W + at, better);
                }
            }
            // Then the better of each pair of neighbours: W is even, so the pairs of the
            // whole map are one flat run, split into even and odd lanes by a shuffle.
            for k in spans(OH * OW, S::LANES) {
                let (left, right) =
                    s.deinterleave(s.load(col, 2 * k), s.load(col, 2 * k + S::LANES));
                s.store(y, k, s.select_gt_nan(right, left, right, left));
            }
        }
        true
    }
}

impl<const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize> Kernel
    for Forward2x2<'_, C, H, W, OH, OW>
{
    /// `false`, doing nothing, when a row is narrower than a vector (LeNet's pool2 with
    /// 16 lanes): the branch-free scalar loop is faster there.
    type Output = bool;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> bool {
        if const { W < S::LANES || OH * OW < S::LANES } {
            return false;
        }
        // One map at a time, in buffers cleared once (clearing buffers for all maps
        // cost a third of the pass).
        let mut col = [[0.0f32; W]; OH];
        let mut row = [[0.0f32; W]; OH];
        let mut at = [[0.0f32; OW]; OH];
        let (col, row) = (col.as_flattened_mut(), row.as_flattened_mut());
        let at = at.as_flattened_mut();
        for ((x, y), out) in self
            .x
            .chunks_exact(H * W)
            .pairs(self.y.chunks_exact_mut(OH * OW))
            .pairs(self.at.chunks_exact_mut(OH * OW))
        {
            columns(s, x, W, col, row);
            pairs(s, col, row, y, at);
            // Not `a as u32`, which saturates and stays scalar.
            for (out, &a) in out.iter_mut().zip(at.iter()) {
                *out = a.to_bits() - MAGIC.to_bits();
            }
        }
        true
    }
}

/// The forward pass of `K`×`K` windows that tile the maps (stride `K`), in any scalar,
/// branch-free: with random data the winner is unpredictable, and a mispredicted branch
/// per tap cost more than the rest. The loops keep a plain `v > best` (the max
/// instruction's pattern, which [`crate::simd::beats`] is not: with it pool2 took 2–2.5× as long);
/// `true` if any tap was NaN, and the caller must redo the maps by [`crate::simd::beats`] (the
/// reference loops).
#[inline(always)]
pub(crate) fn forward_tiled<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const OH: usize,
    const OW: usize,
>(
    input: &Maps<T, C, H, W>,
    output: &mut Maps<T, C, OH, OW>,
    ws: &mut [[[u32; OW]; OH]; C],
) -> bool {
    let mut nan = false;
    // Index loops over the const sizes (no bounds left to check: `OW·K ≤ W`, `OH·K ≤ H`),
    // not zips: they need no link-time inlining (see `crate::pairs`).
    for c in 0..C {
        for oy in 0..OH {
            let (y, at) = (&mut output[c][oy], &mut ws[c][oy]);
            let rows = &input[c][oy * K..oy * K + K];
            // One tap at a time across the whole output row: loops the compiler vectorises.
            for ox in 0..OW {
                y[ox] = rows[0][ox * K];
                at[ox] = 0;
            }
            for (i, row) in rows.iter().enumerate() {
                for j in 0..K {
                    let tap = (i * K + j) as u32;
                    for ox in 0..OW {
                        let v = row[ox * K + j];
                        nan |= v.is_nan();
                        // `at` by mask arithmetic and `y` in the max instruction's
                        // pattern: the compiler turns a plain select into a branch.
                        let better = u32::from(v > y[ox]).wrapping_neg();
                        at[ox] ^= (at[ox] ^ tap) & better;
                        y[ox] = if v > y[ox] { v } else { y[ox] };
                    }
                }
            }
        }
    }
    nan
}

// The lane passes (16 samples per vector, see `crate::lanes`): one vector of lanes per
// window tap.

/// Where tap `t` of the window of output `(c, oy, ox)` lies, in elements of the input.
#[inline(always)]
fn tap<const H: usize, const W: usize, const K: usize, const S: usize>(
    (c, oy, ox): (usize, usize, usize),
    t: usize,
) -> usize {
    (c * H + oy * S + t / K) * W + ox * S + t % K
}

/// The maximum of each window, lane by lane.
pub(crate) struct ForwardLanes<
    'a,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
> {
    pub x: &'a [f32],
    pub y: &'a mut [f32],
}

impl<
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
> Kernel for ForwardLanes<'_, C, H, W, K, S, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<Sd: Simd>(self, s: Sd) {
        let blocks = self.x.chunks_exact(C * H * W * BLOCK);
        for (x, y) in blocks.pairs(self.y.chunks_exact_mut(C * OH * OW * BLOCK)) {
            for c in 0..C {
                for oy in 0..OH {
                    for ox in 0..OW {
                        let out = ((c * OH + oy) * OW + ox) * BLOCK;
                        for v0 in (0..BLOCK).step_by(Sd::LANES) {
                            let at = |t| tap::<H, W, K, S>((c, oy, ox), t) * BLOCK + v0;
                            let mut best = s.load(x, at(0));
                            for t in 1..K * K {
                                let v = s.load(x, at(t));
                                best = s.select_gt_nan(v, best, v, best);
                            }
                            s.store(y, out + v0, best);
                        }
                    }
                }
            }
        }
    }
}

/// Each window's gradient added to its first maximum, lane by lane (`gi` starts zero).
pub(crate) struct BackwardLanes<
    'a,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
> {
    pub x: &'a [f32],
    pub g: &'a [f32],
    pub gi: &'a mut [f32],
    /// Whether the gradient passes only where the winner is positive (a fused ReLU's).
    pub relu: bool,
}

impl<
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
> Kernel for BackwardLanes<'_, C, H, W, K, S, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<Sd: Simd>(self, s: Sd) {
        let blocks = self.x.chunks_exact(C * H * W * BLOCK);
        let blocks = blocks.pairs(self.g.chunks_exact(C * OH * OW * BLOCK));
        for ((x, g), gi) in blocks.pairs(self.gi.chunks_exact_mut(C * H * W * BLOCK)) {
            for c in 0..C {
                for oy in 0..OH {
                    for ox in 0..OW {
                        let out = ((c * OH + oy) * OW + ox) * BLOCK;
                        for v0 in (0..BLOCK).step_by(Sd::LANES) {
                            let at = |t| tap::<H, W, K, S>((c, oy, ox), t) * BLOCK + v0;
                            // the winning tap's number, as a float, lane by lane
                            let (mut best, mut won) = (s.load(x, at(0)), s.splat(0.0));
                            for t in 1..K * K {
                                let v = s.load(x, at(t));
                                won = s.select_gt_nan(v, best, s.splat(t as f32), won);
                                best = s.select_gt_nan(v, best, v, best);
                            }
                            let (mut gv, zero) = (s.load(g, out + v0), s.splat(0.0));
                            if self.relu {
                                gv = s.select_gt(best, zero, gv, zero);
                            }
                            for t in 0..K * K {
                                let (lo, hi) = (s.splat(t as f32 - 0.5), s.splat(t as f32 + 0.5));
                                let mine =
                                    s.select_gt(won, lo, s.select_gt(hi, won, gv, zero), zero);
                                // Tiled windows (S = K, covering the map) write each
                                // input once.
                                let v = if S == K && H.is_multiple_of(K) && W.is_multiple_of(K) {
                                    mine
                                } else {
                                    s.add(s.load(gi, at(t)), mine)
                                };
                                s.store(gi, at(t), v);
                            }
                        }
                    }
                }
            }
        }
    }
}
