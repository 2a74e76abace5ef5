//! The pieces of Winograd's F(2×2, 3×3) with the tiles along the vector lanes, shared by
//! [`crate::conv_winograd`] (the forward pass and the input gradient), [`crate::conv_winograd4`]
//! (F(4×4, 3×3), which walks its tiles and sums them the same way) and
//! [`crate::conv_winograd_grad`] (the weight gradient): the blocks' sizes and buffers, the
//! walk of a block's tiles row by row ([`segments`]), the input transform `Bᵀ d B`
//! ([`inputs`]), the kernel transform `G g Gᵀ` ([`kernel_transform`]), the products
//! position by position ([`products`]) and the sums' additions to the output ([`add_to`]).

use crate::conv_gemm_micro::{After, Rows, copy, micro, zero};
use crate::conv_kernel::ConvGeometry;
use crate::simd::Simd;

/// Output channels whose transformed weights are kept at once.
pub(crate) const MB: usize = 64;
/// Input channels summed per block (the depth of each product).
pub(crate) const CB: usize = 32;
/// Output channels of one block of sums (the microkernel's rows).
pub(crate) const MR: usize = 4;
/// The most tiles of a block (the microkernel's widest: 4 vectors of 16 lanes).
pub(crate) const MAX_TB: usize = 64;
/// The widest map the row buffers hold.
pub(crate) const MAX_W: usize = 512;
/// A padded input row: the map's width, the padding and two vectors' overreach.
pub(crate) const ROW: usize = MAX_W + 48;
/// Two channels' padded input rows for [`inputs`] (one copied while the other is read), their
/// columns left and right of the map the callers' zeros, written once.
pub(crate) type InputRows = [[[f32; ROW]; 4]; 2];

/// A buffer on a cache line's boundary.
#[repr(C, align(64))]
pub(crate) struct Aligned<T>(pub(crate) T);

/// Rows of the transformed weights past the edge of a block: zeros, as long as a depth.
static ZEROS: [f32; CB] = [0.0; CB];

/// The 2×2 blocks of outputs of `geo` (those at an odd edge half off the map).
pub(crate) const fn tiles(geo: &ConvGeometry) -> usize {
    geo.oh.div_ceil(2) * geo.ow.div_ceil(2)
}

/// The tiles of a row of `geo`'s map and the rows of tiles: [`segments`]' grid.
pub(crate) const fn grid(geo: &ConvGeometry) -> (usize, usize) {
    (geo.ow.div_ceil(2), geo.oh.div_ceil(2))
}

/// Where the products read the transformed weights of a block of channels.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// Transformed for this block: `u[(ξ·MB + r)·CB + c]`.
    Block(&'a [f32]),
    /// Transformed for the whole layer once ([`crate::conv_winograd::prepare`]), from output channel `o0` and
    /// input channel `c0` on, rows of `c_in`.
    Prepared(Prepared<'a>, (usize, usize, usize)),
}

impl<'a> Weights<'a> {
    /// Rows `r0..r0 + mr` of the block (zeros past `mr`), `cb` input channels, at `ξ`.
    #[inline(always)]
    pub(crate) fn rows(self, xi: usize, (r0, mr): (usize, usize), cb: usize) -> Rows<'a, MR> {
        match self {
            Weights::Block(u) => Rows::new(&u[xi * MB * CB..], (r0, CB), (mr, cb), &ZEROS),
            Weights::Prepared(p, (o0, c0, c_in)) => {
                Rows::new(&p.at(xi)[c0..], (o0 + r0, c_in), (mr, cb), &ZEROS)
            }
        }
    }
}

/// A layer's weights transformed once ([`crate::conv_winograd::prepare`]): position `ξ`'s matrix `[c_out][c_in]`
/// at `ξ · c_out · c_in` of `lo` for `ξ < 9`, of `hi` (from `ξ = 9`) for the others. A batch
/// keeps them in the two arrays its convolution packs LeNet's weights into, which a layer
/// by F(2×2, 3×3) does not use (16 matrices in 18 of the weights' size).
#[derive(Clone, Copy)]
pub(crate) struct Prepared<'a> {
    lo: &'a [f32],
    hi: &'a [f32],
    len: usize,
}

impl<'a> Prepared<'a> {
    /// The weights of `geo` transformed in `lo` and `hi` by [`prepare`]. Panics unless they
    /// hold 9 and 7 of `geo`'s matrices.
    #[inline]
    pub(crate) fn new(geo: &ConvGeometry, lo: &'a [f32], hi: &'a [f32]) -> Self {
        let len = geo.c_out * geo.c_in;
        assert!(lo.len() >= 9 * len && hi.len() >= 7 * len);
        Prepared { lo, hi, len }
    }

    #[inline(always)]
    pub(crate) fn at(&self, xi: usize) -> &'a [f32] {
        match xi {
            0..9 => &self.lo[xi * self.len..][..self.len],
            _ => &self.hi[(xi - 9) * self.len..][..self.len],
        }
    }
}

/// The tiles of one tile row in a block: row `ty` of sample `sample`'s map, `count` tiles
/// from column `tx0` on, at `at` in the block.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) sample: usize,
    pub(crate) ty: usize,
    pub(crate) tx0: usize,
    pub(crate) count: usize,
    pub(crate) at: usize,
}

/// The tile rows that tiles `t0..t0 + n` cross (`tw` tiles to a row, `th` rows to a
/// sample's map: the tiles of several samples are numbered one sample after the other), in
/// order: what the input and output transforms walk, a vector of tiles at a time within each.
/// A row never crosses from one sample to the next.
#[inline(always)]
pub(crate) fn segments((tw, th): (usize, usize), (t0, n): (usize, usize)) -> Segments {
    Segments {
        tw,
        th,
        t0,
        t: t0,
        end: t0 + n,
    }
}

/// The iterator of [`segments`]: a struct rather than `iter::from_fn`, whose closure was a
/// call of its own in the transforms' loops (not inlined, 1.4% of a weight gradient).
pub(crate) struct Segments {
    tw: usize,
    th: usize,
    t0: usize,
    t: usize,
    end: usize,
}

impl Iterator for Segments {
    type Item = Segment;

    #[inline(always)]
    fn next(&mut self) -> Option<Segment> {
        let Segments { tw, th, t0, t, end } = *self;
        if t >= end {
            return None;
        }
        let (row, tx0) = (t / tw, t % tw);
        let count = (tw - tx0).min(end - t);
        self.t = t + count;
        Some(Segment {
            sample: row / th,
            ty: row % th,
            tx0,
            count,
            at: t - t0,
        })
    }
}

/// A block of tiles `t0..t0 + n`, its buffers `tb` tiles wide, and `cb` input channels.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    pub(crate) t0: usize,
    pub(crate) n: usize,
    pub(crate) tb: usize,
    pub(crate) cb: usize,
}

/// Whether a block of input channels is the first of the sum (which starts from the biases)
/// and the last (after which `after` applies).
#[derive(Clone, Copy)]
pub(crate) struct Sum {
    pub(crate) first: bool,
    pub(crate) last: bool,
}

/// `G g Gᵀ` of a vector of 3×3 kernels `g` (tap by tap), position `ξ` at `[ξ]`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
#[inline(always)]
pub(crate) fn kernel_transform<S: Simd>(s: S, g: [S::F; 9]) -> [S::F; 16] {
    let half = s.splat(0.5);
    // G g: rows of 3.
    let mut t = [[s.splat(0.0); 3]; 4];
    for j in 0..3 {
        let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
        t[0][j] = g0;
        t[1][j] = s.mul(half, s.add(s.add(g0, g1), g2));
        t[2][j] = s.mul(half, s.add(s.sub(g0, g1), g2));
        t[3][j] = g2;
    }
    // (G g) Gᵀ.
    let mut u = [s.splat(0.0); 16];
    for (a, [t0, t1, t2]) in t.into_iter().enumerate() {
        u[4 * a] = t0;
        u[4 * a + 1] = s.mul(half, s.add(s.add(t0, t1), t2));
        u[4 * a + 2] = s.mul(half, s.add(s.sub(t0, t1), t2));
        u[4 * a + 3] = t2;
    }
    u
}

/// The distance between two positions `ξ` of the transformed inputs of a block of `tb`
/// tiles: the block's `CB × tb` values and a cache line more. Whole blocks apart (8 KB for
/// 64 tiles), the 16 stores of a vector of tiles' transform would fall in one set of the
/// 8-way L1 cache.
pub(crate) const fn v_xi(tb: usize) -> usize {
    CB * tb + 16
}

/// `v[ξ·v_xi(tb) + c·tb + t] = (Bᵀ d B)_ξ` for the 4×4 input patch `d` of tile `t0 + t` in input
/// channel `c0 + c` (`t < n`, `c < cb`), with
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`. The tiles run along
/// the lanes: a tile row's even and odd input columns are two vectors.
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
pub(crate) fn inputs<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    x: &[f32],
    (c0, cb): (usize, usize),
    (t0, n, tb): (usize, usize, usize),
    v: &mut [f32],
    rows: &mut InputRows,
) {
    let (h, w, l) = (geo.h, geo.w, S::LANES);
    for Segment {
        sample,
        ty,
        tx0,
        count,
        at,
    } in segments(grid(geo), (t0, n))
    {
        let planes = &x[(sample * geo.c_in + c0) * h * w..][..cb * h * w];
        padded_rows(s, geo, &planes[..h * w], 2 * ty, &mut rows[0]);
        for c in 0..cb {
            // The next channel's rows copied before this channel's are read: a load of
            // values just stored, at another offset, waits until the stores complete.
            if c + 1 < cb {
                let next = &planes[(c + 1) * h * w..][..h * w];
                padded_rows(s, geo, next, 2 * ty, &mut rows[(c + 1) % 2]);
            }
            let rows = &rows[c % 2];
            for k in (0..count).step_by(l) {
                let j = 2 * (tx0 + k);
                // Bᵀ along each row: columns 2tx, 2tx + 1, 2tx + 2, 2tx + 3 of each tile. (Loops,
                // not closures: a closure has no target features, so what it calls would
                // not be inlined.)
                let mut r = [[s.splat(0.0); 4]; 4];
                for (r, row) in r.iter_mut().zip(rows.iter()) {
                    let (e, o) = s.deinterleave(s.load(row, j), s.load(row, j + l));
                    let (e2, o2) = s.deinterleave(s.load(row, j + 2), s.load(row, j + 2 + l));
                    *r = [s.sub(e, e2), s.add(o, e2), s.sub(e2, o), s.sub(o, o2)];
                }
                // Then down the columns.
                for bb in 0..4 {
                    let col = [
                        s.sub(r[0][bb], r[2][bb]),
                        s.add(r[1][bb], r[2][bb]),
                        s.sub(r[2][bb], r[1][bb]),
                        s.sub(r[1][bb], r[3][bb]),
                    ];
                    for (a, value) in col.into_iter().enumerate() {
                        let at = (4 * a + bb) * v_xi(tb) + c * tb + at + k;
                        s.store_partial(v, at, count - k, value);
                    }
                }
            }
        }
    }
}

/// `m[(ξ·MR + r)·tb ..] = Σ_c u[ξ][r0 + r][c] · v[ξ][c][..]` for the block's `NV` vectors of
/// tiles and each of the `XI` positions of a transformed tile (16 here, 36 for
/// [`crate::conv_winograd4`]), each `ξ` one run of the microkernel.
#[inline(always)]
pub(crate) fn products<S: Simd, const NV: usize, const XI: usize>(
    s: S,
    u: Weights,
    v: &[f32],
    Block { tb, cb, .. }: Block,
    (r0, mr): (usize, usize),
    m: &mut [f32],
) {
    for xi in 0..XI {
        let a = u.rows(xi, (r0, mr), cb);
        let mut c = [[s.splat(0.0); NV]; MR];
        micro(s, a, (&v[xi * v_xi(tb)..][..cb * tb], tb), cb, &mut c);
        for (r, c) in c.into_iter().enumerate() {
            for (k, c) in c.into_iter().enumerate() {
                s.store(m, (xi * MR + r) * tb + k * S::LANES, c);
            }
        }
    }
}

/// Adds `value` to the first `n` sums of row `row` of `y` from `at` (`to = (at, n)`): to the
/// bias `bias` for the first block of input channels, to the sums so far for the others,
/// `after` applied after the last.
#[inline(always)]
pub(crate) fn add_to<S: Simd>(
    s: S,
    y: &mut [f32],
    (at, n): (usize, usize),
    value: S::F,
    (bias, sum, after, row): (S::F, Sum, Option<&After>, usize),
) {
    let start = if sum.first {
        bias
    } else {
        s.load_partial(y, at, n)
    };
    let mut total = [s.add(start, value)];
    if sum.last
        && let Some(after) = after
    {
        after.apply(s, row, &mut total);
    }
    s.store_partial(y, at, n, total[0]);
}

/// The 3×3 kernels `(o, c + lane)` of `w` for the `n` lanes of a vector (`(o, c, n)`), tap by
/// tap, gathered through `taps` (they lie 9 apart). With `FLIPPED`, `w` holds the weights
/// `[c_in][c_out][3][3]` of the convolution whose input gradient `geo` is, and kernel
/// `(o, c)` is its kernel `(c, o)` turned by 180°.
#[inline(always)]
pub(crate) fn kernels<S: Simd, const FLIPPED: bool>(
    s: S,
    geo: &ConvGeometry,
    w: &[f32],
    (o, c, n): (usize, usize, usize),
    taps: &mut [f32; 9 * 16],
) -> [S::F; 9] {
    let l = S::LANES;
    if FLIPPED {
        for lane in 0..n {
            let g = &w[((c + lane) * geo.c_out + o) * 9..][..9];
            for (k, &g) in g.iter().rev().enumerate() {
                taps[k * l + lane] = g;
            }
        }
    } else {
        let row = &w[(o * geo.c_in + c) * 9..][..n * 9];
        for (lane, g) in row.chunks_exact(9).enumerate() {
            for (k, &g) in g.iter().enumerate() {
                taps[k * l + lane] = g;
            }
        }
    }
    let mut g = [s.splat(0.0); 9];
    for (k, g) in g.iter_mut().enumerate() {
        *g = s.load(&taps[..], k * l);
    }
    g
}

/// Rows `first..first + N` of the padded map `xc` (one channel of `geo`'s input) into `rows`
/// from column `geo.pad` on: the map's row, or zeros above and below it. The columns left
/// and right of the map are the callers' zeros, written once.
#[inline(always)]
pub(crate) fn padded_rows<S: Simd, const N: usize, const LEN: usize>(
    s: S,
    geo: &ConvGeometry,
    xc: &[f32],
    first: usize,
    rows: &mut [[f32; LEN]; N],
) {
    let (h, w, p) = (geo.h, geo.w, geo.pad);
    for (i, row) in rows.iter_mut().enumerate() {
        let dst = &mut row[p..p + w];
        match (first + i).checked_sub(p).filter(|&iy| iy < h) {
            Some(iy) => copy(s, &xc[iy * w..][..w], dst),
            None => zero(s, dst, (0, w)),
        }
    }
}
