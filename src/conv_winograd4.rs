//! The forward pass of a 3×3, stride-1 convolution in `f32` on the larger maps by Winograd's
//! F(4×4, 3×3) (Lavin and Gray, 2015): each 4×4 block of outputs ("tile") of each pair of
//! channels costs 36 multiply-adds instead of 144 (F(2×2, 3×3), [`crate::conv_winograd`]:
//! 64 for the same outputs). [`crate::conv_gemm::forward`] runs it where it [`pays`]: maps
//! of at least 53 columns (ResNet-18's layer1, VGG-16's first seven convolutions,
//! DenseNet-121's first dense block); [`crate::conv_gemm::input_grad`] too, for the
//! convolution the input gradient is.
//!
//! With `d` the 6×6 input patch of a tile and `g` a 3×3 kernel, the tile's outputs are
//! `Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A` with the matrices of the interpolation points
//! 0, ±1, ±2 below: 36 matrix products, one per position `ξ` of the 6×6 transformed tile,
//! through [`crate::conv_gemm`]'s register-blocked microkernel with the tiles along the
//! vector lanes, blocked as [`crate::conv_winograd`]'s (64 output channels' transformed
//! weights at a time, sums over blocks of 32 input channels, 64 tiles per block; about 640
//! KB of fixed-size buffers on the stack, whatever the layer). Every sum runs in an order
//! fixed by the geometry alone: the same result on one thread or two (split by output
//! channels), from one call to the next.
//!
//! The transforms scale by 4, 5 and 8 and by ¼, ⅙, 1⁄12 and 1⁄24 (the last three
//! inexact in binary), so the result differs from the direct sum by more units in the last
//! place than F(2×2, 3×3)'s: the tests bound it against the `f64` reference with the same
//! bound as every other kernel. A NaN or an infinity in a tile's 6×6 patch can reach all
//! sixteen of its outputs.
//!
//! ```
//! use constnet::{conv_gemm, conv_winograd4};
//! use constnet::conv_kernel::{self, ConvGeometry};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 16, c_out: 32, groups: 1, k: 3, stride: 1, pad: 1, h: 56, w: 57, oh: 56, ow: 57,
//! }
//! .checked();
//! assert!(conv_winograd4::pays(&GEO));
//! let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 5) as f32 - 2.0).collect();
//! let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut y, mut direct) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
//! conv_gemm::forward(&GEO, &x, &w, &[0.5; 32], &mut y); // runs F(4×4, 3×3)
//! conv_kernel::forward(&GEO, &x, &w, &[0.5; 32], &mut direct);
//! for (y, d) in y.iter().zip(&direct) {
//!     assert!((y - d).abs() <= 1e-4 * d.abs().max(1.0), "{y} vs {d}");
//! }
//! ```

use core::ops::Range;

use crate::columns::ColumnsMut;
use crate::conv_gemm_micro::{After, blocks};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd_tiles::{
    Aligned, Block, CB, MAX_TB, MB, MR, Segment, Sum, Weights, add_to, kernels, padded_rows,
    products, segments, v_xi,
};
use crate::simd::Simd;

/// Positions of a transformed tile (6×6).
const XI: usize = 36;
/// A padded input row: the widest map [`crate::conv_winograd::pays`] takes, the padding and
/// the loads' overreach (a vector of tiles reads 4 vectors, then 4 more from 4 columns on).
const ROW: usize = 512 + 80;
/// The fewest 4×4 tiles in a row of tiles for which F(4×4, 3×3) replaces F(2×2, 3×3): a map
/// of 53 to 56 columns. A vector of 16 tiles runs along a row of tiles, and the input and
/// output transforms cost as much for a vector that holds 7 (a 28-column map) as for a full
/// one; each input transform is shared by at most 64 output channels. Measured
/// (`cargo bench --bench conv_gemm`, BENCHMARKS.md): 64 → 64 channels on 56×56 1.31×
/// faster than F(2×2, 3×3), 256 → 256 on 56×56 1.32×, 128 → 32 on 56×56 1.2×, but 128 →
/// 128 and 512 → 512 on 28×28 within ±5%, and 16 → 16 on 32×32 0.82×.
pub const MIN_ROW_TILES: usize = 14;
/// The fewest output channels for which F(4×4, 3×3) pays: see [`MIN_ROW_TILES`].
pub const MIN_OUT: usize = 32;

/// Whether [`crate::conv_gemm::forward`] runs F(4×4, 3×3) for `geo`: where
/// [`crate::conv_winograd::pays`] (3×3, stride 1, padding 0 or 1, one group, at least 16
/// channels each side, a map at most 512 wide) for at least [`MIN_OUT`] output channels on a
/// map of at least [`MIN_ROW_TILES`] tiles of 4×4 outputs to a row. A `const fn`, decided
/// once per layer.
///
/// ```
/// use constnet::{conv_winograd4, conv_kernel::ConvGeometry};
/// let resnet18 = ConvGeometry {
///     c_in: 64, c_out: 64, groups: 1, k: 3, stride: 1, pad: 1, h: 56, w: 56, oh: 56, ow: 56,
/// };
/// assert!(conv_winograd4::pays(&resnet18));
/// let smaller = ConvGeometry { h: 28, w: 28, oh: 28, ow: 28, ..resnet18 };
/// assert!(!conv_winograd4::pays(&smaller)); // F(2×2, 3×3) there
/// ```
pub const fn pays(geo: &ConvGeometry) -> bool {
    crate::conv_winograd::pays(geo) && geo.c_out >= MIN_OUT && geo.ow.div_ceil(4) >= MIN_ROW_TILES
}

/// Whether [`crate::conv_gemm::input_grad`] runs F(4×4, 3×3) for `geo`: at padding 1, where
/// the convolution that gives the input gradient [`pays`].
pub const fn pays_input_grad(geo: &ConvGeometry) -> bool {
    crate::conv_winograd::pays_input_grad(geo)
        && pays(&crate::conv_winograd::input_grad_geometry(geo))
}

/// The output channels `chans` (rows of `y`, channel `chans.start` in row 0) of the
/// convolution `geo` of `x` by `w`, at `y`'s columns (pixels), which must be whole rows of
/// tiles (4 rows of outputs each, the last row of the map may be the last of them), from the
/// biases `b` (zeros without), with `NV` vectors of tiles per block, `after` applied to the
/// final sums. With `FLIPPED`, `w` holds the weights
/// of the convolution whose input gradient this is: kernel `(o, c)` of `geo` is kernel
/// `(c, o)` of `w`, turned by 180°.
#[inline(always)]
pub(crate) fn forward_with<S: Simd, const NV: usize, const FLIPPED: bool>(
    s: S,
    (geo, x, w, b): (&ConvGeometry, &[f32], &[f32], Option<&[f32]>),
    (chans, mut y): (Range<usize>, ColumnsMut),
    after: Option<After>,
) {
    debug_assert!(crate::conv_winograd::pays(geo));
    let tb = NV * S::LANES;
    // The tiles of `y`'s columns: whole rows of tiles (4 rows of outputs each).
    let (tw, tile_row) = (geo.ow.div_ceil(4), 4 * geo.ow);
    let cols = y.cols();
    debug_assert!(
        cols.start.is_multiple_of(tile_row)
            && (cols.end.is_multiple_of(tile_row) || cols.end == geo.oh * geo.ow)
    );
    let tiles = cols.start / tile_row * tw..cols.end.div_ceil(tile_row) * tw;
    let mut u = Aligned([0.0f32; XI * MB * CB]);
    let mut v = Aligned([0.0f32; XI * v_xi(MAX_TB)]);
    // One vector more: the last row's last tiles are read as a whole vector.
    let mut m = Aligned([0.0f32; XI * MR * MAX_TB + 16]);
    // Padded input rows: zeros left of the map and right of it, written once.
    let mut rows = Aligned([[0.0f32; ROW]; 6]);
    let b = b.map(|b| &b[chans.start..]);
    let after = after.map(|a| a.from(chans.start));
    for (o0, ob) in blocks(chans.len(), MB) {
        let o0 = chans.start + o0;
        for (c0, cb) in blocks(geo.c_in, CB) {
            weights::<S, FLIPPED>(s, geo, w, (o0, ob), (c0, cb), &mut u.0);
            let a = Weights::Block(&u.0);
            let sum = Sum {
                first: c0 == 0,
                last: c0 + cb == geo.c_in,
            };
            for t0 in tiles.clone().step_by(tb) {
                let n = tb.min(tiles.end - t0);
                inputs(s, geo, x, (c0, cb), (t0, n, tb), &mut v.0, &mut rows.0);
                for r0 in (0..ob).step_by(MR) {
                    let mr = MR.min(ob - r0);
                    let rows = (r0, mr);
                    let block = Block { t0, n, tb, cb };
                    match n.div_ceil(S::LANES) {
                        k if k >= NV => products::<S, NV, XI>(s, a, &v.0, block, rows, &mut m.0),
                        1 => products::<S, 1, XI>(s, a, &v.0, block, rows, &mut m.0),
                        2 => products::<S, 2, XI>(s, a, &v.0, block, rows, &mut m.0),
                        _ => products::<S, 3, XI>(s, a, &v.0, block, rows, &mut m.0),
                    }
                    let out = (o0 + r0 - chans.start, mr);
                    let sums = (b, after, sum);
                    outputs(s, geo, &m.0, block, out, sums, (&mut y, cols.start));
                }
            }
        }
    }
}

/// `G (g0, g1, g2)ᵀ` with `G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1⁄24, 1⁄12, ⅙],
/// [1⁄24, −1⁄12, ⅙], [0, 0, 1]]`.
#[inline(always)]
fn g6<S: Simd>(s: S, g0: S::F, g1: S::F, g2: S::F) -> [S::F; 6] {
    let (quarter, half, sixth) = (s.splat(0.25), s.splat(0.5), s.splat(1.0 / 6.0));
    let (even, odd) = (s.add(g0, g2), g1);
    let q0 = s.mul(quarter, g0);
    let (q1, h1) = (s.add(q0, g2), s.mul(half, odd));
    [
        q0,
        s.mul(s.splat(-1.0 / 6.0), s.add(even, odd)),
        s.mul(s.splat(-1.0 / 6.0), s.sub(even, odd)),
        s.mul(sixth, s.add(q1, h1)),
        s.mul(sixth, s.sub(q1, h1)),
        g2,
    ]
}

/// `u[(ξ·MB + r)·CB + c] = (G g Gᵀ)_ξ` for the kernel `g` of output channel `o0 + r` and
/// input channel `c0 + c` (`r < ob`, `c < cb`). The input channels run along the lanes: a
/// vector's kernels are gathered tap by tap into `taps` first (they lie 9 apart).
#[inline(always)]
fn weights<S: Simd, const FLIPPED: bool>(
    s: S,
    geo: &ConvGeometry,
    w: &[f32],
    (o0, ob): (usize, usize),
    (c0, cb): (usize, usize),
    u: &mut [f32],
) {
    let l = S::LANES;
    let mut taps = [0.0f32; 9 * 16];
    for r in 0..ob {
        for c in (0..cb).step_by(l) {
            let n = l.min(cb - c);
            let g = kernels::<S, FLIPPED>(s, geo, w, (o0 + r, c0 + c, n), &mut taps);
            // G g: six rows of 3.
            let mut t = [[s.splat(0.0); 3]; 6];
            for j in 0..3 {
                for (a, value) in g6(s, g[j], g[3 + j], g[6 + j]).into_iter().enumerate() {
                    t[a][j] = value;
                }
            }
            // (G g) Gᵀ.
            for (a, [t0, t1, t2]) in t.into_iter().enumerate() {
                for (bb, value) in g6(s, t0, t1, t2).into_iter().enumerate() {
                    s.store_partial(u, ((6 * a + bb) * MB + r) * CB + c, n, value);
                }
            }
        }
    }
}

/// `Bᵀ (d0, …, d5)ᵀ` with `Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0],
/// [0, 4, −4, −1, 1, 0], [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]]`.
#[inline(always)]
fn bt6<S: Simd>(s: S, d: [S::F; 6]) -> [S::F; 6] {
    let (four, minus_four, minus_five) = (s.splat(4.0), s.splat(-4.0), s.splat(-5.0));
    let [d0, d1, d2, d3, d4, d5] = d;
    // Products by ±4 and ±2 are exact: only the ones by 5 round before the sum.
    let t1 = s.mul_add(minus_four, d2, d4);
    let t2 = s.mul_add(minus_four, d1, d3);
    let t3 = s.sub(d4, d2);
    let t4 = s.sub(d3, d1);
    let t4 = s.add(t4, t4);
    [
        s.mul_add(four, d0, s.mul_add(minus_five, d2, d4)),
        s.add(t1, t2),
        s.sub(t1, t2),
        s.add(t3, t4),
        s.sub(t3, t4),
        s.mul_add(four, d1, s.mul_add(minus_five, d3, d5)),
    ]
}

/// `Aᵀ (m0, …, m5)ᵀ` with `Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0],
/// [0, 1, 1, 4, 4, 0], [0, 1, −1, 8, −8, 1]]`.
#[inline(always)]
fn at4<S: Simd>(s: S, m: [S::F; 6]) -> [S::F; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (a, b) = (s.add(m1, m2), s.sub(m1, m2));
    let (c, d) = (s.add(m3, m4), s.sub(m3, m4));
    [
        s.add(s.add(m0, a), c),
        s.mul_add(s.splat(2.0), d, b),
        s.mul_add(s.splat(4.0), c, a),
        s.add(s.mul_add(s.splat(8.0), d, b), m5),
    ]
}

/// Lanes `4t + k` of `v[0..4]` (one after the other) as vector `k`: the columns of a vector
/// of tiles, 4 apart.
#[inline(always)]
fn deinterleave4<S: Simd>(s: S, v: [S::F; 4]) -> [S::F; 4] {
    let (e01, o01) = s.deinterleave(v[0], v[1]);
    let (e23, o23) = s.deinterleave(v[2], v[3]);
    let (c0, c2) = s.deinterleave(e01, e23);
    let (c1, c3) = s.deinterleave(o01, o23);
    [c0, c1, c2, c3]
}

/// The inverse of [`deinterleave4`].
#[inline(always)]
fn interleave4<S: Simd>(s: S, c: [S::F; 4]) -> [S::F; 4] {
    let (x_lo, x_hi) = s.interleave(c[0], c[2]);
    let (y_lo, y_hi) = s.interleave(c[1], c[3]);
    let (o0, o1) = s.interleave(x_lo, y_lo);
    let (o2, o3) = s.interleave(x_hi, y_hi);
    [o0, o1, o2, o3]
}

/// `v[ξ·v_xi(tb) + c·tb + t] = (Bᵀ d B)_ξ` for the 6×6 input patch `d` of tile `t0 + t` in input
/// channel `c0 + c` (`t < n`, `c < cb`). The tiles run along the lanes: a tile row's input
/// columns, 4 apart, are six vectors, split from eight loads of each padded input row.
/// (Splitting each row into its four phases once, then loading the six columns from them,
/// was slower: the loads from one column on do not forward from the stores just made.)
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
fn inputs<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    x: &[f32],
    (c0, cb): (usize, usize),
    (t0, n, tb): (usize, usize, usize),
    v: &mut [f32],
    rows: &mut [[f32; ROW]; 6],
) {
    let (h, w, l) = (geo.h, geo.w, S::LANES);
    let grid = (geo.ow.div_ceil(4), geo.oh.div_ceil(4));
    // One sample's tiles: `sample` is 0.
    for Segment {
        ty, tx0, count, at, ..
    } in segments(grid, (t0, n))
    {
        for c in 0..cb {
            padded_rows(s, geo, &x[(c0 + c) * h * w..][..h * w], 4 * ty, rows);
            for k in (0..count).step_by(l) {
                let j = 4 * (tx0 + k);
                // Bᵀ along each row: columns 4tx … 4tx + 5 of each tile. (Loops, not
                // closures: a closure has no target features, so what it calls would not be
                // inlined.)
                let mut r = [[s.splat(0.0); 6]; 6];
                for (r, row) in r.iter_mut().zip(rows.iter()) {
                    let (mut lo, mut hi) = ([s.splat(0.0); 4], [s.splat(0.0); 4]);
                    for q in 0..4 {
                        lo[q] = s.load(row, j + q * l);
                        hi[q] = s.load(row, j + 4 + q * l);
                    }
                    let (lo, hi) = (deinterleave4(s, lo), deinterleave4(s, hi));
                    *r = bt6(s, [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]);
                }
                // Then down the columns.
                for bb in 0..6 {
                    let col = bt6(
                        s,
                        [r[0][bb], r[1][bb], r[2][bb], r[3][bb], r[4][bb], r[5][bb]],
                    );
                    for (a, value) in col.into_iter().enumerate() {
                        let at = (6 * a + bb) * v_xi(tb) + c * tb + at + k;
                        s.store_partial(v, at, count - k, value);
                    }
                }
            }
        }
    }
}

/// Transforms rows `0..mr` of `m` back (`Aᵀ M A`) and adds them to rows `out.0..out.0 + mr`
/// of `y` (whose columns start at pixel `col0`): to the biases for the first block of input
/// channels, to the sums so far for the others, `after` applied after the last.
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
fn outputs<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    m: &[f32],
    Block { t0, n, tb, .. }: Block,
    (y0, mr): (usize, usize),
    (b, after, sum): (Option<&[f32]>, Option<After>, Sum),
    (y, col0): (&mut ColumnsMut, usize),
) {
    let (oh, ow, l) = (geo.oh, geo.ow, S::LANES);
    let grid = (ow.div_ceil(4), oh.div_ceil(4));
    for r in 0..mr {
        let yr = y.row(y0 + r);
        let bias = s.splat(b.map_or(0.0, |b| b[y0 + r]));
        for Segment {
            ty, tx0, count, at, ..
        } in segments(grid, (t0, n))
        {
            for k in (0..count).step_by(l) {
                let at = |xi: usize| (xi * MR + r) * tb + at + k;
                // Aᵀ down the columns, then along the rows.
                let mut cols = [[s.splat(0.0); 6]; 4];
                for bb in 0..6 {
                    let mut col = [s.splat(0.0); 6];
                    for a in 0..6 {
                        col[a] = s.load(m, at(6 * a + bb));
                    }
                    for (dy, value) in at4(s, col).into_iter().enumerate() {
                        cols[dy][bb] = value;
                    }
                }
                // Output columns 4tx.. of these tiles, on the map.
                let (x0, width) = (4 * (tx0 + k), (4 * (count - k)).min(ow - 4 * (tx0 + k)));
                for (dy, row) in cols.into_iter().enumerate() {
                    let oy = 4 * ty + dy;
                    if oy >= oh {
                        continue;
                    }
                    let base = oy * ow + x0 - col0;
                    let values = interleave4(s, at4(s, row));
                    for (q, value) in values.into_iter().enumerate() {
                        let from = q * l;
                        if from >= width {
                            break;
                        }
                        let to = (base + from, width - from);
                        add_to(s, yr, to, value, (bias, sum, after.as_ref(), y0 + r));
                    }
                }
            }
        }
    }
}
