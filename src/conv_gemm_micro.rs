//! The parts of [`crate::conv_gemm`]'s matrix products: the register-blocked microkernel
//! ([`micro`]), the loads and stores of its blocks of sums, and the packing of the input as
//! the matrix `X̂` of taps × pixels (`im2col`) and its reverse (`col2im`), a panel of at most
//! [`PB`] pixels at a time.

use crate::conv_kernel::ConvGeometry;
use crate::fusion::{ChannelAffine, Epilogue};
use crate::simd::{Simd, load_vectors};

/// Output pixels of a packed panel: a multiple of every microkernel's width.
pub(crate) const PB: usize = 64;

/// The left matrix of [`micro`], as the `MR` values of its column `d`.
pub(crate) trait Panel<const MR: usize>: Copy {
    /// The panel cut to columns `0..depth`; panics unless they are all there. Cut, the
    /// lengths tell the compiler that [`Panel::col`] of a `d < depth` needs no bound check.
    fn cut(self, depth: usize) -> Self;
    fn col(&self, d: usize) -> [f32; MR];
    /// The panel from column `d` on.
    fn skip(self, d: usize) -> Self;
}

/// `MR` rows, each a slice of the depth.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, const MR: usize>(pub(crate) [&'a [f32]; MR]);

impl<'a, const MR: usize> Rows<'a, MR> {
    /// Rows `r0 + r` (`r < mr`) of a matrix of rows `stride` apart, `len` values each; the
    /// rows from `mr` on read `zeros`.
    #[inline(always)]
    pub(crate) fn new(
        m: &'a [f32],
        (r0, stride): (usize, usize),
        (mr, len): (usize, usize),
        zeros: &'a [f32],
    ) -> Self {
        let mut rows = [&zeros[..len]; MR];
        for (r, row) in rows.iter_mut().enumerate().take(mr) {
            *row = &m[(r0 + r) * stride..][..len];
        }
        Rows(rows)
    }
}

impl<const MR: usize> Panel<MR> for Rows<'_, MR> {
    #[inline(always)]
    fn cut(self, depth: usize) -> Self {
        Rows(self.0.map(|row| &row[..depth]))
    }
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        let mut col = [0.0; MR];
        for (r, v) in col.iter_mut().enumerate() {
            *v = self.0[r][d];
        }
        col
    }
    #[inline(always)]
    fn skip(self, d: usize) -> Self {
        Rows(self.0.map(|row| &row[d..]))
    }
}

/// Columns of `MR` values at a stride: value `(r, d)` at `d·stride + r`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a>(pub(crate) &'a [f32], pub(crate) usize);

impl<const MR: usize> Panel<MR> for Strided<'_> {
    #[inline(always)]
    fn cut(self, depth: usize) -> Self {
        assert!(depth == 0 || self.0.len() >= (depth - 1) * self.1 + MR);
        self
    }
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        let col: &[f32; MR] = self.0[d * self.1..][..MR].try_into().unwrap();
        *col
    }
    #[inline(always)]
    fn skip(self, d: usize) -> Self {
        Strided(&self.0[d * self.1..], self.1)
    }
}

/// The microkernel: `c[r][v] += Σ_d a(r, d) · b[d·ldb + v·LANES ..]` for `d < depth`, the
/// `MR × NV` vectors of `c` in registers throughout, the sum of each lane in the order of `d`.
/// Panics unless `b` holds `depth · ldb` values: whole rows, so that the loop walks them as
/// exact chunks with no bound to recompute (a panel read from a column past 0 is one row
/// longer than its depth). That loop ran 2–6% faster than one over `chunks(ldb)`.
#[inline(always)]
pub(crate) fn micro<S: Simd, A: Panel<MR>, const MR: usize, const NV: usize>(
    s: S,
    a: A,
    (b, ldb): (&[f32], usize),
    depth: usize,
    c: &mut [[S::F; NV]; MR],
) {
    let a = a.cut(depth);
    assert!(ldb >= NV * S::LANES);
    let mut acc = *c;
    for (d, row) in b[..depth * ldb].chunks_exact(ldb).enumerate() {
        let row: &[f32] = &row[..NV * S::LANES];
        let bv: [S::F; NV] = load_vectors(s, row, 0, S::LANES);
        let av = a.col(d);
        // By index into the fixed-size `av` and `bv`, not zipped with them: loops of one
        // exit and a known count, which the compiler keeps in registers (see `crate::pairs`).
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = s.splat(av[r]);
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = s.mul_add(av, bv[v], *acc);
            }
        }
    }
    *c = acc;
}

/// `NV` vectors from `c[at..at + n]`, zeros past `n`.
#[inline(always)]
pub(crate) fn load_row<S: Simd, const NV: usize>(
    s: S,
    c: &[f32],
    at: usize,
    n: usize,
) -> [S::F; NV] {
    // A loop, not `array::from_fn`: its closure has no target features, so the masked load
    // inside could not be inlined into it (a call per vector, 3–5% of a network's time).
    let mut row = [s.splat(0.0); NV];
    for (v, row) in row.iter_mut().enumerate() {
        let u = v * S::LANES;
        if u < n {
            *row = s.load_partial(c, at + u, n - u);
        }
    }
    row
}

/// The first `n` lanes of `NV` vectors to `c[at..at + n]`.
#[inline(always)]
pub(crate) fn store_row<S: Simd, const NV: usize>(
    s: S,
    c: &mut [f32],
    at: usize,
    n: usize,
    v: [S::F; NV],
) {
    for (i, v) in v.into_iter().enumerate() {
        let u = i * S::LANES;
        if u < n {
            s.store_partial(c, at + u, n - u, v);
        }
    }
}

/// `dst[a..b] = 0`, in vectors (a call to `memset` costs more than these few values).
#[inline(always)]
pub(crate) fn zero<S: Simd>(s: S, dst: &mut [f32], (a, b): (usize, usize)) {
    for u in (a..b).step_by(S::LANES) {
        s.store_partial(dst, u, b - u, s.splat(0.0));
    }
}

/// `dst = src`, in vectors.
#[inline(always)]
pub(crate) fn copy<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    for u in (0..n).step_by(S::LANES) {
        s.store_partial(dst, u, n - u, s.load_partial(src, u, n - u));
    }
}

/// A piece of an output row in a panel: pixels `ox0..ox0 + n` of row `oy`, at column `at`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Segment {
    at: usize,
    oy: usize,
    ox0: usize,
    n: usize,
}

/// The pieces of output rows that pixels `p0..p0 + pw` make, into `out`; returns how many.
#[inline(always)]
pub(crate) fn segments(
    geo: &ConvGeometry,
    (p0, pw): (usize, usize),
    out: &mut [Segment; PB],
) -> usize {
    let (mut c, mut count) = (0, 0);
    while c < pw {
        let p = p0 + c;
        let (oy, ox0) = (p / geo.ow, p % geo.ow);
        let n = (geo.ow - ox0).min(pw - c);
        out[count] = Segment { at: c, oy, ox0, n };
        (c, count) = (c + n, count + 1);
    }
    count
}

/// The rows of `X̂` from `kk0` on, one after another: each row's input channel `c`, kernel
/// row `i` and column `j`, and the outputs `first..end` whose column `j` falls on the map
/// (`0 ≤ ox·S + j − P < w`). Counted up, not divided out: a division per row cost more
/// than packing it.
#[derive(Clone, Copy, Debug)]
struct Taps {
    c: usize,
    i: usize,
    j: usize,
}

impl Taps {
    #[inline(always)]
    fn from(geo: &ConvGeometry, kk0: usize) -> Taps {
        let k = geo.k;
        Taps {
            c: kk0 / (k * k),
            i: kk0 / k % k,
            j: kk0 % k,
        }
    }

    /// The current row's `(c, i, j, (first, end))`, then on to the next row.
    #[inline(always)]
    fn next(&mut self, geo: &ConvGeometry) -> (usize, usize, usize, (usize, usize)) {
        let Taps { c, i, j } = *self;
        let (first, end) = (
            geo.pad.saturating_sub(j),
            (geo.w + geo.pad).saturating_sub(j),
        );
        let on = match geo.stride {
            1 => (first, end),
            s => (first.div_ceil(s), end.div_ceil(s)),
        };
        self.j += 1;
        if self.j == geo.k {
            self.j = 0;
            self.i += 1;
            if self.i == geo.k {
                self.i = 0;
                self.c += 1;
            }
        }
        (c, i, j, on)
    }
}

/// Of segment `seg`, for a tap of kernel row `i` and outputs `first..end` on the map: the
/// input row it reads (if on the map), and the range `lo..hi` of its pixels that read the map.
#[inline(always)]
fn reads(
    geo: &ConvGeometry,
    seg: Segment,
    i: usize,
    (first, end): (usize, usize),
) -> Option<(usize, usize, usize)> {
    let iy = (seg.oy * geo.stride + i)
        .checked_sub(geo.pad)
        .filter(|&iy| iy < geo.h)?;
    let lo = first.saturating_sub(seg.ox0).min(seg.n);
    Some((iy, lo, end.saturating_sub(seg.ox0).min(seg.n).max(lo)))
}

/// Packs rows `kk0..kk0 + kb` of `X̂` (of the group whose input channels are `x`) over the
/// panel's `segs` (`pw` pixels) into `buf`, row `r` at `r·PB`, zeros from `pw` to [`PB`].
#[inline(always)]
pub(crate) fn im2col<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    x: &[f32],
    (kk0, kb): (usize, usize),
    (segs, pw): (&[Segment], usize),
    buf: &mut [f32],
) {
    let st = geo.stride;
    let mut taps = Taps::from(geo, kk0);
    for row in buf.chunks_exact_mut(PB).take(kb) {
        zero(s, row, (pw, PB));
        let (c, i, j, on) = taps.next(geo);
        for &seg in segs {
            let dst = &mut row[seg.at..seg.at + seg.n];
            let Some((iy, lo, hi)) = reads(geo, seg, i, on) else {
                zero(s, dst, (0, seg.n));
                continue;
            };
            zero(s, dst, (0, lo));
            zero(s, dst, (hi, seg.n));
            if lo == hi {
                continue;
            }
            let x_row = &x[(c * geo.h + iy) * geo.w..][..geo.w];
            let from = (seg.ox0 + lo) * st + j - geo.pad;
            if st == 1 {
                copy(s, &x_row[from..from + hi - lo], &mut dst[lo..hi]);
            } else if st == 2 {
                every_other(s, &x_row[from..], &mut dst[lo..hi]);
            } else if st == 4 {
                every_fourth(s, &x_row[from..], &mut dst[lo..hi]);
            } else {
                for (v, &x) in dst[lo..hi].iter_mut().zip(x_row[from..].iter().step_by(st)) {
                    *v = x;
                }
            }
        }
    }
}

/// `dst[u] = src[2·u]`: two vectors of `src` deinterleaved into one of `dst` (a scalar loop
/// took a quarter of ResNet-18's stem, 7×7 at stride 2).
#[inline(always)]
fn every_other<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let (l, n) = (S::LANES, dst.len());
    for u in (0..n).step_by(l) {
        let m = (n - u).min(l);
        // Values `2u ..= 2(u + m − 1)` of `src`: two whole vectors where `src` has them.
        let at = 2 * u;
        let (a, b) = if at + 2 * l <= src.len() {
            (s.load(src, at), s.load(src, at + l))
        } else {
            let len = 2 * m - 1;
            let (first, second) = (len.min(l), len.saturating_sub(l));
            let b = if second > 0 {
                s.load_partial(src, at + l, second)
            } else {
                s.splat(0.0)
            };
            (s.load_partial(src, at, first), b)
        };
        s.store_partial(dst, u, m, s.deinterleave(a, b).0);
    }
}

/// `dst[u] = src[4·u]`: four vectors of `src` deinterleaved twice into one of `dst`
/// (AlexNet's first layer, 11×11 at stride 4, whose packing is 40% of its time: 10–15%
/// faster than the scalar loop).
#[inline(always)]
fn every_fourth<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let (l, n) = (S::LANES, dst.len());
    for u in (0..n).step_by(l) {
        let m = (n - u).min(l);
        // Values `4u ..= 4(u + m − 1)` of `src`, in whole vectors where `src` has them.
        let (at, len) = (4 * u, 4 * m - 3);
        let part = |k: usize| {
            let have = len.saturating_sub(k * l).min(l);
            if have == l {
                s.load(src, at + k * l)
            } else if have > 0 {
                s.load_partial(src, at + k * l, have)
            } else {
                s.splat(0.0)
            }
        };
        let low = s.deinterleave(part(0), part(1)).0;
        let high = s.deinterleave(part(2), part(3)).0;
        s.store_partial(dst, u, m, s.deinterleave(low, high).0);
    }
}

/// `dst[2·u] += src[u]`, the values between left as they are: two vectors of `dst`
/// deinterleaved, the even one added to, interleaved back (see [`every_other`]).
#[inline(always)]
fn add_every_other<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let (l, n) = (S::LANES, src.len());
    for u in (0..n).step_by(l) {
        let m = (n - u).min(l);
        // Values `2u ..= 2(u + m − 1)` of `dst`, and no more: the odd ones go back unchanged.
        let (at, len) = (2 * u, 2 * m - 1);
        let (first, second) = (len.min(l), len.saturating_sub(l));
        let a = s.load_partial(dst, at, first);
        let b = if second > 0 {
            s.load_partial(dst, at + l, second)
        } else {
            s.splat(0.0)
        };
        let (even, odd) = s.deinterleave(a, b);
        let (a, b) = s.interleave(s.add(even, s.load_partial(src, u, m)), odd);
        s.store_partial(dst, at, first, a);
        if second > 0 {
            s.store_partial(dst, at + l, second, b);
        }
    }
}

/// The reverse of [`im2col`]: adds each value of `buf` (laid out as `im2col` packs) to the
/// input pixel it stands for, where on the map.
#[inline(always)]
pub(crate) fn col2im<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    buf: &[f32],
    (kk0, kb): (usize, usize),
    segs: &[Segment],
    gi: &mut [f32],
) {
    let st = geo.stride;
    let mut taps = Taps::from(geo, kk0);
    for row in buf.chunks_exact(PB).take(kb) {
        let (c, i, j, on) = taps.next(geo);
        for &seg in segs {
            let Some((iy, lo, hi)) = reads(geo, seg, i, on).filter(|&(_, lo, hi)| lo < hi) else {
                continue;
            };
            let gi_row = &mut gi[(c * geo.h + iy) * geo.w..][..geo.w];
            let from = (seg.ox0 + lo) * st + j - geo.pad;
            let src = &row[seg.at + lo..seg.at + hi];
            if st == 1 {
                let n = hi - lo;
                for u in (0..n).step_by(S::LANES) {
                    let m = n - u;
                    let sum = s.add(
                        s.load_partial(gi_row, from + u, m),
                        s.load_partial(src, u, m),
                    );
                    s.store_partial(gi_row, from + u, m, sum);
                }
            } else if st == 2 {
                add_every_other(s, src, &mut gi_row[from..]);
            } else {
                for (g, &v) in gi_row[from..].iter_mut().step_by(st).zip(src) {
                    *g += v;
                }
            }
        }
    }
}

/// Splits `0..n` into blocks of at most `max`, as even as can be: `(start, len)`.
#[inline(always)]
pub(crate) fn blocks(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let size = n.div_ceil(n.div_ceil(max));
    (0..n).step_by(size).map(move |at| (at, size.min(n - at)))
}

/// A [`ChannelAffine`] map of the output channels (if any) and an [`Epilogue`] after it,
/// applied to a block of sums in registers (`conv_gemm::forward_then`).
#[derive(Clone, Copy)]
pub(crate) struct After<'a> {
    pub(crate) affine: Option<ChannelAffine<'a, f32>>,
    pub(crate) epilogue: Epilogue,
}

impl<'a> After<'a> {
    /// The map from output channel `first` on (channel `first` becomes row 0).
    #[inline]
    pub(crate) fn from(self, first: usize) -> After<'a> {
        After {
            affine: self
                .affine
                .map(|ChannelAffine { mean, scale, shift }| ChannelAffine {
                    mean: &mean[first..],
                    scale: &scale[first..],
                    shift: &shift[first..],
                }),
            ..self
        }
    }

    /// Row `r`'s sums mapped: `e((c − mean)·scale + shift)`, each operation rounded as
    /// batch norm's pass rounds it (no fused multiply-add), so the result is that pass's
    /// to the bit; `e(c)` without the affine map.
    #[inline(always)]
    pub(crate) fn apply<S: Simd, const NV: usize>(&self, s: S, r: usize, c: &mut [S::F; NV]) {
        if let Some(a) = &self.affine {
            let (mean, scale, shift) =
                (s.splat(a.mean[r]), s.splat(a.scale[r]), s.splat(a.shift[r]));
            for c in c.iter_mut() {
                *c = s.add(s.mul(s.sub(*c, mean), scale), shift);
            }
        }
        if self.epilogue == Epilogue::Relu {
            for c in c.iter_mut() {
                *c = s.relu(*c);
            }
        }
    }
}
