//! 2-D convolution in `f32` as a packed matrix product, for the layers with many channels:
//! the same entry points and [`ConvGeometry`] as [`crate::conv_kernel`], several times faster
//! on ResNet's and VGG's layers.
//!
//! A convolution of one group is a product of matrices, with `K = c_in / groups · k · k`
//! rows of taps and `P = oh · ow` output pixels:
//!
//! * forward: `Y [c_out × P] = W [c_out × K] · X̂ [K × P] + b`, where `X̂` ("im2col") holds in
//!   row `(c, i, j)` and column `(y, x)` the input pixel tap `(i, j)` of output `(y, x)` reads;
//! * weight gradient: `∂W [c_out × K] += G [c_out × P] · X̂ᵀ`, computed transposed
//!   (`∂Wᵀ = X̂ · Gᵀ`, with the output channels along the vector lanes);
//! * input gradient: `Ĝ [K × P] = Wᵀ · G`, then each value of `Ĝ` added to the input pixel
//!   it stands for ("col2im").
//!
//! No matrix is built whole. `X̂` is packed on the fly, a panel of at most [`KB`] rows ×
//! [`PB`] pixels at a time, and every product runs through one register-blocked
//! microkernel ([`micro`]): an `MR × NV` block of vectors of sums stays in registers while
//! it runs along the shared dimension, each step one broadcast value of the left matrix per
//! row and `NV` vector loads of the right one per column block. Blocks past the edge of a
//! matrix are computed on zero rows or columns and dropped.
//!
//! Each kernel keeps at most 58 KB of fixed-size buffers on its stack, whatever the layer's
//! size, and asks no scratch of the caller. Every sum runs in an order fixed by the geometry
//! alone, so a result is the same, bit for bit, from one call to the next. The instruction
//! set is picked at run time by [`simd::dispatch`], as for [`crate::conv_kernel`].
//!
//! ```
//! use constnet::conv_gemm;
//! use constnet::conv_kernel::{self, ConvGeometry};
//! // 8 → 8 channels, 3×3, padding 1, on a 6×6 map.
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 8, c_out: 8, groups: 1, k: 3, stride: 1, pad: 1, h: 6, w: 6, oh: 6, ow: 6,
//! }
//! .checked();
//! assert!(conv_gemm::pays(&GEO));
//! let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 5) as f32).collect();
//! let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut y, mut direct) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
//! conv_gemm::forward(&GEO, &x, &w, &[0.5; 8], &mut y);
//! conv_kernel::forward(&GEO, &x, &w, &[0.5; 8], &mut direct);
//! assert_eq!(y, direct); // small integers: every sum is exact in any order
//! ```

pub use crate::conv_kernel::ConvGeometry;
use crate::conv_kernel::{self, sum};
use crate::simd::{self, Kernel, Simd};

/// Output pixels of a packed panel: a multiple of every microkernel's width.
const PB: usize = 64;
/// Rows (taps) of a packed panel of the forward pass.
const KB: usize = 192;
/// Rows of a packed panel of the weight gradient.
const WKB: usize = 64;
/// Rows of a panel of the input gradient.
const IKB: usize = 64;
/// Output channels of a packed block of the output gradient, in the input gradient.
const IOB: usize = 128;
/// The widest microkernel: 4 vectors of 16 lanes.
const MAX_NR: usize = 64;
/// The most rows of a microkernel.
const MAX_MR: usize = 16;
/// Rows past the edge of a left matrix: zeros, as long as any panel's depth.
static ZEROS: [f32; KB] = [0.0; KB];

/// Whether the kernels of this module pay for `geo` rather than [`crate::conv_kernel`]'s:
/// at least 4 output channels per group and 4 taps per output (a depthwise convolution
/// has one channel per group, too few rows for a matrix product). A `const fn`, so a layer
/// decides once, as a constant.
///
/// ```
/// use constnet::{conv_gemm, conv_kernel::ConvGeometry};
/// let resnet = ConvGeometry {
///     c_in: 16, c_out: 16, groups: 1, k: 3, stride: 1, pad: 1, h: 32, w: 32, oh: 32, ow: 32,
/// };
/// let depthwise = ConvGeometry { groups: 16, ..resnet };
/// assert!(conv_gemm::pays(&resnet) && !conv_gemm::pays(&depthwise));
/// ```
pub const fn pays(geo: &ConvGeometry) -> bool {
    geo.out_per_group() >= 4 && geo.in_per_group() * geo.k * geo.k >= 4
}

/// [`forward`]'s signature: geometry, input, weights, biases, output.
pub type ForwardFn = fn(&ConvGeometry, &[f32], &[f32], &[f32], &mut [f32]);
/// [`weight_grad`]'s signature: geometry, input, output gradient, weight and bias gradients,
/// scale.
pub type WeightGradFn = fn(&ConvGeometry, &[f32], &[f32], &mut [f32], &mut [f32], f32);
/// [`input_grad`]'s signature: geometry, weights, output gradient, input gradient.
pub type InputGradFn = fn(&ConvGeometry, &[f32], &[f32], &mut [f32]);

/// The three passes of one implementation, with the signatures of [`forward`],
/// [`weight_grad`] and [`input_grad`]: what a layer calls, picked once by [`kernels_for`].
#[derive(Clone, Copy, Debug)]
pub struct ConvKernels {
    /// A name for messages: `"gemm"` or `"direct"`.
    pub name: &'static str,
    /// The forward pass.
    pub forward: ForwardFn,
    /// The parameter gradients, scaled and added.
    pub weight_grad: WeightGradFn,
    /// The input gradient.
    pub input_grad: InputGradFn,
}

/// This module's kernels.
pub const GEMM: ConvKernels = ConvKernels {
    name: "gemm",
    forward,
    weight_grad,
    input_grad,
};

/// The direct kernels of [`crate::conv_kernel`].
pub const DIRECT: ConvKernels = ConvKernels {
    name: "direct",
    forward: conv_kernel::forward,
    weight_grad: conv_kernel::weight_grad,
    input_grad: conv_kernel::input_grad,
};

/// [`GEMM`] where it [`pays`], else [`DIRECT`]: a layer's `f32` kernels, as a constant.
///
/// ```
/// use constnet::conv_gemm::{self, ConvGeometry};
/// const DW: ConvGeometry = ConvGeometry {
///     c_in: 8, c_out: 8, groups: 8, k: 3, stride: 1, pad: 1, h: 9, w: 9, oh: 9, ow: 9,
/// };
/// assert_eq!(conv_gemm::kernels_for(&DW).name, "direct");
/// assert_eq!(conv_gemm::kernels_for(&ConvGeometry { groups: 1, ..DW }).name, "gemm");
/// ```
pub const fn kernels_for(geo: &ConvGeometry) -> &'static ConvKernels {
    if pays(geo) { &GEMM } else { &DIRECT }
}

/// The left matrix of [`micro`], as the `MR` values of its column `d`.
trait Panel<const MR: usize>: Copy {
    /// Panics unless columns `0..depth` are there (so that [`Panel::col`] checks no bound).
    fn check(&self, depth: usize);
    fn col(&self, d: usize) -> [f32; MR];
}

/// `MR` rows, each a slice of the depth.
#[derive(Clone, Copy)]
struct Rows<'a, const MR: usize>([&'a [f32]; MR]);

impl<const MR: usize> Panel<MR> for Rows<'_, MR> {
    #[inline(always)]
    fn check(&self, depth: usize) {
        assert!(self.0.iter().all(|row| row.len() >= depth));
    }
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        core::array::from_fn(|r| self.0[r][d])
    }
}

/// Columns of `MR` values at a stride: value `(r, d)` at `d·stride + r`.
#[derive(Clone, Copy)]
struct Strided<'a>(&'a [f32], usize);

impl<const MR: usize> Panel<MR> for Strided<'_> {
    #[inline(always)]
    fn check(&self, depth: usize) {
        assert!(depth == 0 || self.0.len() >= (depth - 1) * self.1 + MR);
    }
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        let col: &[f32; MR] = self.0[d * self.1..][..MR].try_into().unwrap();
        *col
    }
}

/// The microkernel: `c[r][v] += Σ_d a(r, d) · b[d·ldb + v·LANES ..]` for `d < depth`, the
/// `MR × NV` vectors of `c` in registers throughout, the sum of each lane in the order of `d`.
#[inline(always)]
fn micro<S: Simd, A: Panel<MR>, const MR: usize, const NV: usize>(
    s: S,
    a: A,
    (b, ldb): (&[f32], usize),
    depth: usize,
    c: &mut [[S::F; NV]; MR],
) {
    a.check(depth);
    assert!(depth == 0 || b.len() >= (depth - 1) * ldb + NV * S::LANES);
    let mut acc = *c;
    for d in 0..depth {
        let row = &b[d * ldb..][..NV * S::LANES];
        let bv: [S::F; NV] = core::array::from_fn(|v| s.load(row, v * S::LANES));
        let av = a.col(d);
        for (acc, &av) in acc.iter_mut().zip(&av) {
            let av = s.splat(av);
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = s.mul_add(av, bv, *acc);
            }
        }
    }
    *c = acc;
}

/// `NV` vectors from `c[at..at + n]`, zeros past `n`.
#[inline(always)]
fn load_row<S: Simd, const NV: usize>(s: S, c: &[f32], at: usize, n: usize) -> [S::F; NV] {
    core::array::from_fn(|v| {
        let u = v * S::LANES;
        if u < n {
            s.load_partial(c, at + u, n - u)
        } else {
            s.splat(0.0)
        }
    })
}

/// The first `n` lanes of `NV` vectors to `c[at..at + n]`.
#[inline(always)]
fn store_row<S: Simd, const NV: usize>(s: S, c: &mut [f32], at: usize, n: usize, v: [S::F; NV]) {
    for (i, v) in v.into_iter().enumerate() {
        let u = i * S::LANES;
        if u < n {
            s.store_partial(c, at + u, n - u, v);
        }
    }
}

/// `dst[a..b] = 0`, in vectors (a call to `memset` costs more than these few values).
#[inline(always)]
fn zero<S: Simd>(s: S, dst: &mut [f32], (a, b): (usize, usize)) {
    for u in (a..b).step_by(S::LANES) {
        s.store_partial(dst, u, b - u, s.splat(0.0));
    }
}

/// `dst = src`, in vectors.
#[inline(always)]
fn copy<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    for u in (0..n).step_by(S::LANES) {
        s.store_partial(dst, u, n - u, s.load_partial(src, u, n - u));
    }
}

/// A piece of an output row in a panel: pixels `ox0..ox0 + n` of row `oy`, at column `at`.
#[derive(Clone, Copy, Debug, Default)]
struct Segment {
    at: usize,
    oy: usize,
    ox0: usize,
    n: usize,
}

/// The pieces of output rows that pixels `p0..p0 + pw` make, into `out`; returns how many.
#[inline(always)]
fn segments(geo: &ConvGeometry, (p0, pw): (usize, usize), out: &mut [Segment; PB]) -> usize {
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
fn im2col<S: Simd>(
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
            } else {
                for (v, &x) in dst[lo..hi].iter_mut().zip(x_row[from..].iter().step_by(st)) {
                    *v = x;
                }
            }
        }
    }
}

/// The reverse of [`im2col`]: adds each value of `buf` (laid out as `im2col` packs) to the
/// input pixel it stands for, where on the map.
#[inline(always)]
fn col2im<S: Simd>(
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
fn blocks(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let size = n.div_ceil(n.div_ceil(max));
    (0..n).step_by(size).map(move |at| (at, size.min(n - at)))
}

/// The forward pass with `MR × NV` blocks: rows are output channels, lanes output pixels.
#[inline(always)]
fn forward_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, w, b): (&ConvGeometry, &[f32], &[f32], &[f32]),
    y: &mut [f32],
) {
    let (cig, cog, p_all) = (geo.in_per_group(), geo.out_per_group(), geo.oh * geo.ow);
    let (kdim, map) = (cig * geo.k * geo.k, cig * geo.h * geo.w);
    let nr = NV * S::LANES;
    let mut xcol = [0.0f32; KB * PB];
    let mut segs = [Segment::default(); PB];
    for g in 0..geo.groups {
        let xg = &x[g * map..][..map];
        let outs = g * cog..(g + 1) * cog;
        for p0 in (0..p_all).step_by(PB) {
            let pw = PB.min(p_all - p0);
            let count = segments(geo, (p0, pw), &mut segs);
            for (kk0, kb) in blocks(kdim, KB) {
                im2col(s, geo, xg, (kk0, kb), (&segs[..count], pw), &mut xcol);
                for o0 in outs.clone().step_by(MR) {
                    let mr = MR.min(outs.end - o0);
                    let rows = Rows(core::array::from_fn(|r| {
                        if r < mr {
                            &w[(o0 + r) * kdim + kk0..][..kb]
                        } else {
                            &ZEROS[..kb]
                        }
                    }));
                    for pt in (0..pw).step_by(nr) {
                        let n = nr.min(pw - pt);
                        let mut c: [[S::F; NV]; MR] = core::array::from_fn(|r| {
                            if r >= mr {
                                [s.splat(0.0); NV]
                            } else if kk0 == 0 {
                                [s.splat(b[o0 + r]); NV]
                            } else {
                                load_row(s, y, (o0 + r) * p_all + p0 + pt, n)
                            }
                        });
                        micro(s, rows, (&xcol[pt..], PB), kb, &mut c);
                        for (r, c) in c.into_iter().enumerate().take(mr) {
                            store_row(s, y, (o0 + r) * p_all + p0 + pt, n, c);
                        }
                    }
                }
            }
        }
    }
}

/// `gt[d·nr + o] = g[o·stride + d]` for `o < on`, `d < pw`, zero for `on ≤ o < nr`: a block
/// of the output gradient transposed, in vectors where it holds whole ones.
#[inline(always)]
fn transpose_block<S: Simd>(
    s: S,
    g: &[f32],
    stride: usize,
    (on, pw): (usize, usize),
    gt: &mut [f32],
    nr: usize,
) {
    if on >= S::LANES && pw >= S::LANES {
        simd::transpose(s, g, (on, pw, stride), gt, nr);
    } else {
        for (d, gt) in gt.chunks_exact_mut(nr).take(pw).enumerate() {
            for (o, gt) in gt[..on].iter_mut().enumerate() {
                *gt = g[o * stride + d];
            }
        }
    }
    if on < nr {
        for gt in gt.chunks_exact_mut(nr).take(pw) {
            zero(s, gt, (on, nr));
        }
    }
}

/// The weight gradient with `MR × NV` blocks: rows are taps, lanes output channels.
#[inline(always)]
fn weight_grad_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    let (cig, cog, p_all) = (geo.in_per_group(), geo.out_per_group(), geo.oh * geo.ow);
    let (kdim, map) = (cig * geo.k * geo.k, cig * geo.h * geo.w);
    let nr = NV * S::LANES;
    let mut xcol = [0.0f32; WKB * PB];
    let mut segs = [Segment::default(); PB];
    // The output gradient transposed, `[pixel][output channel]`, and the sums `[tap][channel]`.
    let mut gt = [0.0f32; PB * MAX_NR];
    let mut sums = [0.0f32; WKB * MAX_NR];
    for grp in 0..geo.groups {
        let xg = &x[grp * map..][..map];
        let outs = grp * cog..(grp + 1) * cog;
        for (kk0, kb) in blocks(kdim, WKB) {
            for o0 in outs.clone().step_by(nr) {
                let on = nr.min(outs.end - o0);
                sums[..kb * nr].fill(0.0);
                for p0 in (0..p_all).step_by(PB) {
                    let pw = PB.min(p_all - p0);
                    let count = segments(geo, (p0, pw), &mut segs);
                    im2col(s, geo, xg, (kk0, kb), (&segs[..count], pw), &mut xcol);
                    transpose_block(s, &g[o0 * p_all + p0..], p_all, (on, pw), &mut gt, nr);
                    for r0 in (0..kb).step_by(MR) {
                        let mr = MR.min(kb - r0);
                        let rows = Rows(core::array::from_fn(|r| {
                            if r < mr {
                                &xcol[(r0 + r) * PB..][..pw]
                            } else {
                                &ZEROS[..pw]
                            }
                        }));
                        let mut c: [[S::F; NV]; MR] = core::array::from_fn(|r| {
                            if r < mr {
                                load_row(s, &sums, (r0 + r) * nr, nr)
                            } else {
                                [s.splat(0.0); NV]
                            }
                        });
                        micro(s, rows, (&gt[..], nr), pw, &mut c);
                        for (r, c) in c.into_iter().enumerate().take(mr) {
                            store_row(s, &mut sums, (r0 + r) * nr, nr, c);
                        }
                    }
                }
                for (r, sums) in sums.chunks_exact(nr).take(kb).enumerate() {
                    for (o, &v) in sums[..on].iter().enumerate() {
                        gw[(o0 + o) * kdim + kk0 + r] += scale * v;
                    }
                }
            }
        }
    }
}

/// The input gradient with `MR × NV` blocks: rows are taps, lanes output pixels.
#[inline(always)]
fn input_grad_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, w, g): (&ConvGeometry, &[f32], &[f32]),
    gi: &mut [f32],
) {
    let (cig, cog, p_all) = (geo.in_per_group(), geo.out_per_group(), geo.oh * geo.ow);
    let (kdim, map) = (cig * geo.k * geo.k, cig * geo.h * geo.w);
    let nr = NV * S::LANES;
    gi.fill(0.0);
    // A block of the output gradient `[channel][pixel]`, the products `[tap][pixel]`, and the
    // transposed weights of a last, partial block of taps, `[channel][tap]`.
    let mut gy = [0.0f32; IOB * PB];
    let mut gcol = [0.0f32; IKB * PB];
    let mut wt = [0.0f32; IOB * MAX_MR];
    let mut segs = [Segment::default(); PB];
    for grp in 0..geo.groups {
        let gig = &mut gi[grp * map..][..map];
        let outs = grp * cog..(grp + 1) * cog;
        for p0 in (0..p_all).step_by(PB) {
            let pw = PB.min(p_all - p0);
            let count = segments(geo, (p0, pw), &mut segs);
            for (kk0, kb) in blocks(kdim, IKB) {
                for ob0 in outs.clone().step_by(IOB) {
                    let obn = IOB.min(outs.end - ob0);
                    for (o, row) in gy.chunks_exact_mut(PB).take(obn).enumerate() {
                        let at = (ob0 + o) * p_all + p0;
                        copy(s, &g[at..at + pw], &mut row[..pw]);
                        zero(s, row, (pw, PB));
                    }
                    for r0 in (0..kb).step_by(MR) {
                        let mr = MR.min(kb - r0);
                        // Column `o` of the weights' block: `MR` taps of filter `o`, in place
                        // (a whole block) or copied (the last one, zeros past the taps).
                        let wt = if mr == MR {
                            Strided(&w[ob0 * kdim + kk0 + r0..], kdim)
                        } else {
                            for (o, wt) in wt.chunks_exact_mut(MR).take(obn).enumerate() {
                                let at = (ob0 + o) * kdim + kk0 + r0;
                                wt[..mr].copy_from_slice(&w[at..at + mr]);
                                wt[mr..].fill(0.0);
                            }
                            Strided(&wt[..], MR)
                        };
                        for pt in (0..pw).step_by(nr) {
                            let mut c: [[S::F; NV]; MR] = core::array::from_fn(|r| {
                                if r < mr && ob0 != outs.start {
                                    load_row(s, &gcol, (r0 + r) * PB + pt, nr)
                                } else {
                                    [s.splat(0.0); NV]
                                }
                            });
                            micro(s, wt, (&gy[pt..], PB), obn, &mut c);
                            for (r, c) in c.into_iter().enumerate().take(mr) {
                                store_row(s, &mut gcol, (r0 + r) * PB + pt, nr, c);
                            }
                        }
                    }
                }
                col2im(s, geo, &gcol, (kk0, kb), &segs[..count], gig);
            }
        }
    }
}

/// The forward pass (see [`forward`]).
struct Forward<'a> {
    geo: &'a ConvGeometry,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
}

impl Kernel for Forward<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward { geo, x, w, b, y } = self;
        match S::LANES {
            16 | 1 => forward_with::<S, 4, 4>(s, (geo, x, w, b), y),
            _ => forward_with::<S, 4, 2>(s, (geo, x, w, b), y),
        }
    }
}

/// The parameter gradients (see [`weight_grad`]).
struct WeightGrad<'a> {
    geo: &'a ConvGeometry,
    x: &'a [f32],
    g: &'a [f32],
    gw: &'a mut [f32],
    gb: &'a mut [f32],
    scale: f32,
}

impl Kernel for WeightGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let WeightGrad {
            geo,
            x,
            g,
            gw,
            gb,
            scale,
        } = self;
        for (gb, g) in gb.iter_mut().zip(g.chunks_exact(geo.oh * geo.ow)) {
            *gb += scale * sum(s, g);
        }
        // Output channels along the lanes: as many vectors as there are channels, up to 4.
        let vectors = geo.out_per_group().div_ceil(S::LANES);
        let args = (geo, x, g);
        match (S::LANES, vectors) {
            (1, _) => weight_grad_with::<S, 4, 4>(s, args, gw, scale),
            (16, 1) => weight_grad_with::<S, 16, 1>(s, args, gw, scale),
            (16, 2) => weight_grad_with::<S, 8, 2>(s, args, gw, scale),
            (16, _) => weight_grad_with::<S, 4, 4>(s, args, gw, scale),
            (_, 1) => weight_grad_with::<S, 8, 1>(s, args, gw, scale),
            _ => weight_grad_with::<S, 4, 2>(s, args, gw, scale),
        }
    }
}

/// The input gradient (see [`input_grad`]).
struct InputGrad<'a> {
    geo: &'a ConvGeometry,
    w: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

impl Kernel for InputGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let InputGrad { geo, w, g, gi } = self;
        match S::LANES {
            16 | 1 => input_grad_with::<S, 4, 4>(s, (geo, w, g), gi),
            _ => input_grad_with::<S, 4, 2>(s, (geo, w, g), gi),
        }
    }
}

/// The forward pass, as [`crate::conv_kernel::forward`] computes it (same arguments, same
/// panics), by a matrix product: `y = b + w ⋆ x`.
///
/// ```
/// use constnet::{conv_gemm, conv_kernel::ConvGeometry};
/// // Two 1×1 filters over 4 channels at stride 2: each output a weighted sum of channels.
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 4, c_out: 2, groups: 1, k: 1, stride: 2, pad: 0, h: 3, w: 3, oh: 2, ow: 2,
/// }
/// .checked();
/// let x: Vec<f32> = (0..36).map(|i| i as f32).collect();
/// let mut y = [0.0f32; 8];
/// conv_gemm::forward(&GEO, &x, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0], &[0.0, 1.0], &mut y);
/// assert_eq!(y, [0.0, 2.0, 6.0, 8.0, 55.0, 59.0, 67.0, 71.0]); // channel 0; 1 + 2 · channel 3
/// ```
pub fn forward(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    geo.check(&[
        (x.len(), geo.input_len(), "the input"),
        (w.len(), geo.weight_len(), "the weight"),
        (b.len(), geo.c_out, "the bias"),
        (y.len(), geo.output_len(), "the output"),
    ]);
    simd::dispatch(Forward { geo, x, w, b, y });
}

/// The parameter gradients of one sample, scaled and added, as
/// [`crate::conv_kernel::weight_grad`] computes them: `gw += scale · ∂E/∂w`,
/// `gb += scale · ∂E/∂b`. Each value's sum is complete before it is scaled and added, so
/// `scale = −lr` on the weights themselves is `w − lr · ∂E/∂w`, to the bit.
///
/// ```
/// use constnet::{conv_gemm, conv_kernel::ConvGeometry};
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 1, c_out: 1, groups: 1, k: 2, stride: 1, pad: 0, h: 2, w: 3, oh: 1, ow: 2,
/// }
/// .checked();
/// let (mut gw, mut gb) = ([0.0f32; 4], [0.0f32; 1]);
/// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// conv_gemm::weight_grad(&GEO, &x, &[1.0, 10.0], &mut gw, &mut gb, 1.0);
/// assert_eq!(gw, [21.0, 32.0, 54.0, 65.0]); // x[i][j] + 10·x[i][j + 1]
/// assert_eq!(gb, [11.0]);
/// ```
pub fn weight_grad(
    geo: &ConvGeometry,
    x: &[f32],
    g: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    scale: f32,
) {
    geo.check(&[
        (x.len(), geo.input_len(), "the input"),
        (g.len(), geo.output_len(), "the output gradient"),
        (gw.len(), geo.weight_len(), "the weight gradient"),
        (gb.len(), geo.c_out, "the bias gradient"),
    ]);
    simd::dispatch(WeightGrad {
        geo,
        x,
        g,
        gw,
        gb,
        scale,
    });
}

/// The input gradient, as [`crate::conv_kernel::input_grad`] computes it: `gi = ∂E/∂x`,
/// every value written (zero where no tap reads the input).
///
/// ```
/// use constnet::{conv_gemm, conv_kernel::ConvGeometry};
/// // 2×2 taps at stride 2 over a 2×5 map: the last column is read by no window.
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 1, c_out: 1, groups: 1, k: 2, stride: 2, pad: 0, h: 2, w: 5, oh: 1, ow: 2,
/// }
/// .checked();
/// let mut gi = [f32::NAN; 10];
/// conv_gemm::input_grad(&GEO, &[1.0, 2.0, 3.0, 4.0], &[1.0, -1.0], &mut gi);
/// assert_eq!(gi, [1.0, 2.0, -1.0, -2.0, 0.0, 3.0, 4.0, -3.0, -4.0, 0.0]);
/// ```
pub fn input_grad(geo: &ConvGeometry, w: &[f32], g: &[f32], gi: &mut [f32]) {
    geo.check(&[
        (w.len(), geo.weight_len(), "the weight"),
        (g.len(), geo.output_len(), "the output gradient"),
        (gi.len(), geo.input_len(), "the input gradient"),
    ]);
    simd::dispatch(InputGrad { geo, w, g, gi });
}
