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
//! Each kernel keeps at most 56 KB of fixed-size buffers on its stack, whatever the layer's
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

use crate::conv_kernel::{ConvGeometry, sum};
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

/// The left matrix of [`micro`], as the `MR` values of its column `d`.
trait Panel<const MR: usize>: Copy {
    fn col(&self, d: usize) -> [f32; MR];
}

/// `MR` rows, each a slice of the depth.
#[derive(Clone, Copy)]
struct Rows<'a, const MR: usize>([&'a [f32]; MR]);

impl<const MR: usize> Panel<MR> for Rows<'_, MR> {
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        core::array::from_fn(|r| self.0[r][d])
    }
}

/// Columns of `MR` values one after another: value `(r, d)` at `d·MR + r`.
#[derive(Clone, Copy)]
struct Packed<'a>(&'a [f32]);

impl<const MR: usize> Panel<MR> for Packed<'_> {
    #[inline(always)]
    fn col(&self, d: usize) -> [f32; MR] {
        core::array::from_fn(|r| self.0[d * MR..][..MR][r])
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
        if u + S::LANES <= n {
            s.load(c, at + u)
        } else if u < n {
            let mut tail = [0.0f32; 16];
            tail[..n - u].copy_from_slice(&c[at + u..at + n]);
            s.load(&tail, 0)
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
        if u + S::LANES <= n {
            s.store(c, at + u, v);
        } else if u < n {
            let mut tail = [0.0f32; 16];
            s.store(&mut tail, 0, v);
            c[at + u..at + n].copy_from_slice(&tail[..n - u]);
        }
    }
}

/// For tap column `j`, the outputs `ox0 + t`, `t` in the returned `lo..hi` (within `0..n`),
/// whose input column `(ox0 + t)·S + j − P` is on the map.
#[inline(always)]
fn on_map(geo: &ConvGeometry, j: usize, ox0: usize, n: usize) -> (usize, usize) {
    let s = geo.stride;
    let first = geo.pad.saturating_sub(j).div_ceil(s);
    let end = (geo.w + geo.pad).saturating_sub(j).div_ceil(s);
    let lo = first.saturating_sub(ox0).min(n);
    (lo, end.saturating_sub(ox0).min(n).max(lo))
}

/// The pieces of output rows that pixels `p0..p0 + pw` make: `(column in the panel, oy, ox0,
/// length)`.
#[inline(always)]
fn segments(geo: &ConvGeometry, p0: usize, pw: usize) -> impl Iterator<Item = [usize; 4]> {
    let ow = geo.ow;
    let mut c = 0;
    core::iter::from_fn(move || {
        (c < pw).then(|| {
            let p = p0 + c;
            let (oy, ox0) = (p / ow, p % ow);
            let n = (ow - ox0).min(pw - c);
            c += n;
            [c - n, oy, ox0, n]
        })
    })
}

/// Row `kk` of `X̂` as `(channel, i, j)`, and the input row tap row `i` of output row `oy`
/// reads, if on the map.
#[inline(always)]
fn tap(geo: &ConvGeometry, kk: usize, oy: usize) -> (usize, Option<usize>, usize) {
    let k = geo.k;
    let (c, i, j) = (kk / (k * k), kk / k % k, kk % k);
    let iy = (oy * geo.stride + i).checked_sub(geo.pad);
    (c, iy.filter(|&iy| iy < geo.h), j)
}

/// Packs rows `kk0..kk0 + kb` and pixels `p0..p0 + pw` of `X̂` (of the group whose input
/// channels are `x`) into `buf`, row `r` at `r·PB`, zeros from `pw` to [`PB`].
#[inline(always)]
fn im2col(
    geo: &ConvGeometry,
    x: &[f32],
    (kk0, kb): (usize, usize),
    (p0, pw): (usize, usize),
    buf: &mut [f32],
) {
    let s = geo.stride;
    for (r, row) in buf.chunks_exact_mut(PB).take(kb).enumerate() {
        row[pw..].fill(0.0);
        for [at, oy, ox0, n] in segments(geo, p0, pw) {
            let seg = &mut row[at..at + n];
            let (c, iy, j) = tap(geo, kk0 + r, oy);
            let Some(iy) = iy else {
                seg.fill(0.0);
                continue;
            };
            let (lo, hi) = on_map(geo, j, ox0, n);
            seg[..lo].fill(0.0);
            seg[hi..].fill(0.0);
            if lo < hi {
                let x_row = &x[(c * geo.h + iy) * geo.w..][..geo.w];
                let from = (ox0 + lo) * s + j - geo.pad;
                if s == 1 {
                    seg[lo..hi].copy_from_slice(&x_row[from..from + hi - lo]);
                } else {
                    for (v, &x) in seg[lo..hi].iter_mut().zip(x_row[from..].iter().step_by(s)) {
                        *v = x;
                    }
                }
            }
        }
    }
}

/// The reverse of [`im2col`]: adds each value of `buf` (laid out as `im2col` packs) to the
/// input pixel it stands for, where on the map.
#[inline(always)]
fn col2im(
    geo: &ConvGeometry,
    buf: &[f32],
    (kk0, kb): (usize, usize),
    (p0, pw): (usize, usize),
    gi: &mut [f32],
) {
    let s = geo.stride;
    for (r, row) in buf.chunks_exact(PB).take(kb).enumerate() {
        for [at, oy, ox0, n] in segments(geo, p0, pw) {
            let (c, Some(iy), j) = tap(geo, kk0 + r, oy) else {
                continue;
            };
            let (lo, hi) = on_map(geo, j, ox0, n);
            if lo < hi {
                let gi_row = &mut gi[(c * geo.h + iy) * geo.w..][..geo.w];
                let from = (ox0 + lo) * s + j - geo.pad;
                for (g, &v) in gi_row[from..]
                    .iter_mut()
                    .step_by(s)
                    .zip(&row[at + lo..at + hi])
                {
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
    let kdim = cig * geo.k * geo.k;
    let nr = NV * S::LANES;
    let mut xcol = [0.0f32; KB * PB];
    for g in 0..geo.groups {
        let xg = &x[g * cig * geo.h * geo.w..][..cig * geo.h * geo.w];
        let outs = g * cog..(g + 1) * cog;
        for p0 in (0..p_all).step_by(PB) {
            let pw = PB.min(p_all - p0);
            for (kk0, kb) in blocks(kdim, KB) {
                im2col(geo, xg, (kk0, kb), (p0, pw), &mut xcol);
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

/// The weight gradient with `MR × NV` blocks: rows are taps, lanes output channels.
#[inline(always)]
fn weight_grad_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    let (cig, cog, p_all) = (geo.in_per_group(), geo.out_per_group(), geo.oh * geo.ow);
    let kdim = cig * geo.k * geo.k;
    let nr = NV * S::LANES;
    let mut xcol = [0.0f32; WKB * PB];
    // The output gradient transposed, `[pixel][output channel]`, and the sums `[tap][channel]`.
    let mut gt = [0.0f32; PB * MAX_NR];
    let mut sums = [0.0f32; WKB * MAX_NR];
    for grp in 0..geo.groups {
        let xg = &x[grp * cig * geo.h * geo.w..][..cig * geo.h * geo.w];
        let outs = grp * cog..(grp + 1) * cog;
        for (kk0, kb) in blocks(kdim, WKB) {
            for o0 in outs.clone().step_by(nr) {
                let on = nr.min(outs.end - o0);
                sums[..kb * nr].fill(0.0);
                for p0 in (0..p_all).step_by(PB) {
                    let pw = PB.min(p_all - p0);
                    im2col(geo, xg, (kk0, kb), (p0, pw), &mut xcol);
                    for (d, gt) in gt.chunks_exact_mut(nr).take(pw).enumerate() {
                        for (o, gt) in gt.iter_mut().enumerate() {
                            *gt = if o < on {
                                g[(o0 + o) * p_all + p0 + d]
                            } else {
                                0.0
                            };
                        }
                    }
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
    let kdim = cig * geo.k * geo.k;
    let nr = NV * S::LANES;
    gi.fill(0.0);
    // A block of the output gradient `[channel][pixel]`, the products `[tap][pixel]`, and a
    // block of the transposed weights, `[channel][tap]`.
    let mut gy = [0.0f32; IOB * PB];
    let mut gcol = [0.0f32; IKB * PB];
    let mut wt = [0.0f32; IOB * MAX_MR];
    for grp in 0..geo.groups {
        let gig = &mut gi[grp * cig * geo.h * geo.w..][..cig * geo.h * geo.w];
        let outs = grp * cog..(grp + 1) * cog;
        for p0 in (0..p_all).step_by(PB) {
            let pw = PB.min(p_all - p0);
            for (kk0, kb) in blocks(kdim, IKB) {
                for ob0 in outs.clone().step_by(IOB) {
                    let obn = IOB.min(outs.end - ob0);
                    for (o, row) in gy.chunks_exact_mut(PB).take(obn).enumerate() {
                        let at = (ob0 + o) * p_all + p0;
                        row[..pw].copy_from_slice(&g[at..at + pw]);
                        row[pw..].fill(0.0);
                    }
                    for r0 in (0..kb).step_by(MR) {
                        let mr = MR.min(kb - r0);
                        for (o, wt) in wt.chunks_exact_mut(MR).take(obn).enumerate() {
                            let at = (ob0 + o) * kdim + kk0 + r0;
                            wt[..mr].copy_from_slice(&w[at..at + mr]);
                            wt[mr..].fill(0.0);
                        }
                        for pt in (0..pw).step_by(nr) {
                            let mut c: [[S::F; NV]; MR] = core::array::from_fn(|r| {
                                if r < mr && ob0 != outs.start {
                                    load_row(s, &gcol, (r0 + r) * PB + pt, nr)
                                } else {
                                    [s.splat(0.0); NV]
                                }
                            });
                            micro(s, Packed(&wt), (&gy[pt..], PB), obn, &mut c);
                            for (r, c) in c.into_iter().enumerate().take(mr) {
                                store_row(s, &mut gcol, (r0 + r) * PB + pt, nr, c);
                            }
                        }
                    }
                }
                col2im(geo, &gcol, (kk0, kb), (p0, pw), gig);
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
