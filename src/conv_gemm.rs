//! 2-D convolution in `f32` as a packed matrix product, for the layers with many channels:
//! the same entry points and [`ConvGeometry`] as [`crate::conv_kernel`], several times faster
//! on ResNet's and VGG's layers.
//!
//! A convolution of one group is a product of matrices, with `K = c_in / groups · k · k`
//! rows of taps and `P = oh · ow` output pixels:
//!
//! * forward: `Y [c_out × P] = W [c_out × K] · X̂ [K × P] + b`, where `X̂` ("im2col") holds in
//!   row `(c, i, j)` and column `(y, x)` the input pixel tap `(i, j)` of output `(y, x)` reads;
//! * weight gradient: `∂W [c_out × K] += G [c_out × P] · X̂ᵀ`, over every sample of a batch
//!   before it is added; for up to 64 output channels computed transposed (`∂Wᵀ = X̂ · Gᵀ`,
//!   the output channels along the vector lanes), for more, with AVX-512, as it lies (`G`'s
//!   rows as the product's, each panel of `X̂` transposed so that the taps run along the
//!   lanes: packed once for every output channel);
//! * input gradient: `Ĝ [K × P] = Wᵀ · G`, then each value of `Ĝ` added to the input pixel
//!   it stands for ("col2im").
//!
//! No matrix is built whole. `X̂` is packed on the fly, a panel of at most 192 rows × 64
//! pixels at a time, and every product runs through one register-blocked microkernel (in
//! `conv_gemm_micro`): an `MR × NV` block of vectors of sums stays in registers while it
//! runs along the shared dimension, each step one broadcast value of the left matrix per
//! row and `NV` vector loads of the right one per column block. Blocks past the edge of a
//! matrix are computed on zero rows or columns and dropped.
//!
//! Each kernel keeps at most 60 KB of fixed-size buffers on its stack (the weight gradient
//! of more than 64 output channels 160 KB: the sums of 512 channels), whatever the layer's
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

use crate::columns::ColumnsMut;
use crate::conv_channels;
use crate::conv_gemm_micro::Panel;
use crate::conv_gemm_micro::{
    After, PB, Rows, Segment, Strided, blocks, col2im, copy, im2col, load_row, micro, segments,
    store_row, zero,
};
pub use crate::conv_kernel::ConvGeometry;
use crate::conv_kernel::{self, sum};
use crate::conv_winograd;
use crate::conv_winograd_channels;
use crate::conv_winograd_grad;
use crate::conv_winograd_grad_channels;
use crate::conv_winograd_tiles::Prepared;
use crate::conv_winograd4;
use crate::fusion::{ChannelAffine, Epilogue};
use crate::simd::{self, Kernel, Simd};

/// A buffer on a cache line's boundary: a packed panel's rows start on a line, so that no
/// vector load of the microkernel is split across two lines.
#[repr(C, align(64))]
struct Aligned<T>(T);

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

/// The forward pass with `MR × NV` blocks: rows are output channels, lanes output pixels.
#[inline(always)]
fn forward_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, w, b): (&ConvGeometry, &[f32], &[f32], &[f32]),
    (chans, mut y): (core::ops::Range<usize>, ColumnsMut),
    after: Option<After>,
) {
    let (cig, cog) = (geo.in_per_group(), geo.out_per_group());
    let (kdim, map) = (cig * geo.k * geo.k, cig * geo.h * geo.w);
    let nr = NV * S::LANES;
    // One row past the deepest panel: `micro` reads whole rows from column `pt` on.
    let mut xcol = Aligned([0.0f32; (KB + 1) * PB]);
    let xcol: &mut [f32] = &mut xcol.0;
    let mut segs = [Segment::default(); PB];
    // A 1×1 convolution at stride 1 reads its input as it lies: the rows of `X̂` are the
    // input's channels, so a whole panel is read in place instead of packed (im2col was
    // 12–14% of such a layer's time).
    let as_it_lies = geo.k == 1 && geo.stride == 1 && geo.pad == 0;
    let hw = geo.h * geo.w;
    for g in 0..geo.groups {
        let xg = &x[g * map..][..map];
        // This group's output channels among those `y` holds (all of them but when
        // `forward` splits a layer between threads by channels).
        let outs = (g * cog).max(chans.start)..((g + 1) * cog).min(chans.end);
        if outs.is_empty() {
            continue;
        }
        let b = &b[chans.start..];
        let after = after.map(|a| a.from(chans.start));
        // The pixels (columns) of `y` this call computes: all of them but when `forward`
        // splits a layer between threads by pixels.
        let pixels = y.cols();
        for p0 in pixels.clone().step_by(PB) {
            let pw = PB.min(pixels.end - p0);
            let count = segments(geo, (p0, pw), &mut segs);
            for (kk0, kb) in blocks(kdim, KB) {
                let in_place = as_it_lies && pw == PB;
                if !in_place {
                    im2col(s, geo, xg, (kk0, kb), (&segs[..count], pw), xcol);
                }
                for o0 in outs.clone().step_by(MR) {
                    let mr = MR.min(outs.end - o0);
                    let rows = Rows::new(&w[kk0..], (o0, kdim), (mr, kb), &ZEROS);
                    for pt in (0..pw).step_by(nr) {
                        let n = nr.min(pw - pt);
                        let tile = Tile {
                            rows: (o0 - chans.start, mr),
                            at: p0 - pixels.start + pt,
                            n,
                            depth: kb,
                            start: if kk0 == 0 {
                                Start::Bias(b)
                            } else {
                                Start::Sums
                            },
                            after: after.filter(|_| kk0 + kb == kdim),
                        };
                        let panel = if in_place {
                            (&xg[kk0 * hw + p0 + pt..], hw)
                        } else {
                            (&xcol[pt..], PB)
                        };
                        tile_of::<S, _, MR, NV>(s, rows, panel, tile, &mut y);
                    }
                }
            }
        }
    }
}

/// Where a block of a product goes: rows `r0..r0 + mr` of the result (output channels in
/// the forward pass, taps in the input gradient), columns (pixels) `at..at + n` of each, over
/// `depth` steps, and what the sums start from.
#[derive(Clone, Copy)]
struct Tile<'a> {
    rows: (usize, usize),
    at: usize,
    n: usize,
    depth: usize,
    start: Start<'a>,
    /// What the forward pass's last block of taps applies to the sums before it stores
    /// them (batch norm and a ReLU after the convolution).
    after: Option<After<'a>>,
}

/// What a block's sums start from: the biases of its rows (the forward pass's first block
/// of taps), zero (the input gradient's first block of output channels), or the sums the
/// result already holds (every later block).
#[derive(Clone, Copy)]
enum Start<'a> {
    Bias(&'a [f32]),
    Zero,
    Sums,
}

/// One block of a product, `MR` rows of up to `NV` vectors: `c = start + a · panel` (see
/// [`Tile`]). The last pixels of a map take as few vectors as hold them.
#[inline(always)]
fn tile_of<S: Simd, A: Panel<MR>, const MR: usize, const NV: usize>(
    s: S,
    a: A,
    panel: (&[f32], usize),
    tile: Tile,
    out: &mut ColumnsMut,
) {
    match tile.n.div_ceil(S::LANES) {
        v if v >= NV => tile_with::<S, _, MR, NV>(s, a, panel, tile, out),
        1 => tile_with::<S, _, MR, 1>(s, a, panel, tile, out),
        2 => tile_with::<S, _, MR, 2>(s, a, panel, tile, out),
        _ => tile_with::<S, _, MR, 3>(s, a, panel, tile, out),
    }
}

/// [`tile_of`] with `NV` vectors per row.
#[inline(always)]
fn tile_with<S: Simd, A: Panel<MR>, const MR: usize, const NV: usize>(
    s: S,
    a: A,
    (panel, ldb): (&[f32], usize),
    Tile {
        rows: (r0, mr),
        at,
        n,
        depth,
        start,
        after,
    }: Tile,
    out: &mut ColumnsMut,
) {
    let mut c = [[s.splat(0.0); NV]; MR];
    match start {
        Start::Bias(b) => {
            for (c, &b) in c.iter_mut().zip(&b[r0..r0 + mr]) {
                *c = [s.splat(b); NV];
            }
        }
        Start::Zero => {}
        Start::Sums => {
            for (r, c) in c.iter_mut().enumerate().take(mr) {
                *c = load_row(s, out.row(r0 + r), at, n);
            }
        }
    }
    if panel.len() >= depth * ldb {
        micro(s, a, (panel, ldb), depth, &mut c);
    } else {
        // A panel read in place whose last row ends the input: that row holds only the
        // vectors this block reads.
        let last = depth - 1;
        micro(s, a, (panel, ldb), last, &mut c);
        let row = &panel[last * ldb..];
        micro(s, a.skip(last), (row, NV * S::LANES), 1, &mut c);
    }
    for (r, mut c) in c.into_iter().enumerate().take(mr) {
        if let Some(after) = &after {
            after.apply(s, r0 + r, &mut c);
        }
        store_row(s, out.row(r0 + r), at, n, c);
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

/// The weight gradient with `MR × NV` blocks: rows are taps, lanes output channels, over
/// every sample of `x` and `g` before the sums are added. When the map fits one panel
/// (`oh·ow ≤ PB`, the deep layers) and there is one sample, the output gradient's block is
/// transposed once per block of channels rather than once per block of taps.
#[inline(always)]
fn weight_grad_with<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    let (cig, cog, p_all) = (geo.in_per_group(), geo.out_per_group(), geo.oh * geo.ow);
    let (kdim, map) = (cig * geo.k * geo.k, cig * geo.h * geo.w);
    let (len_in, len_out) = (geo.input_len(), geo.output_len());
    let samples = x.len() / len_in;
    let nr = NV * S::LANES;
    let single = p_all <= PB;
    let keep = single && samples == 1;
    let mut xcol = Aligned([0.0f32; WKB * PB]);
    let xcol: &mut [f32] = &mut xcol.0;
    let mut segs = [Segment::default(); PB];
    let mut count = if single {
        segments(geo, (0, p_all), &mut segs)
    } else {
        0
    };
    // The output gradient transposed, `[pixel][output channel]`, and the sums `[tap][channel]`.
    let mut gt = Aligned([0.0f32; PB * MAX_NR]);
    let gt: &mut [f32] = &mut gt.0;
    let mut sums = Aligned([0.0f32; WKB * MAX_NR]);
    let sums: &mut [f32] = &mut sums.0;
    for grp in 0..geo.groups {
        let outs = grp * cog..(grp + 1) * cog;
        for o0 in outs.clone().step_by(nr) {
            let on = nr.min(outs.end - o0);
            if keep {
                transpose_block(s, &g[o0 * p_all..], p_all, (on, p_all), gt, nr);
            }
            for (kk0, kb) in blocks(kdim, WKB) {
                sums[..kb * nr].fill(0.0);
                for n in 0..samples {
                    let xg = &x[n * len_in + grp * map..][..map];
                    let gn = &g[n * len_out..][..len_out];
                    for p0 in (0..p_all).step_by(PB) {
                        let pw = PB.min(p_all - p0);
                        if !single {
                            count = segments(geo, (p0, pw), &mut segs);
                        }
                        if !keep {
                            let at = o0 * p_all + p0;
                            transpose_block(s, &gn[at..], p_all, (on, pw), gt, nr);
                        }
                        im2col(s, geo, xg, (kk0, kb), (&segs[..count], pw), xcol);
                        for r0 in (0..kb).step_by(MR) {
                            let mr = MR.min(kb - r0);
                            let rows = Rows::new(xcol, (r0, PB), (mr, pw), &ZEROS);
                            add_product::<S, MR, NV>(s, rows, gt, (r0, mr, nr), pw, sums);
                        }
                    }
                }
                add_scaled_transposed(
                    s,
                    sums,
                    (kb, on, nr),
                    scale,
                    xcol,
                    &mut gw[o0 * kdim + kk0..],
                    kdim,
                );
            }
        }
    }
}

/// `sums[(r0 + r)·nr ..][..nr] += Σ_d a[r][d] · b[d·nr ..][..nr]` for the `mr` rows of `a`
/// over `depth` steps: the rows of sums loaded, the microkernel run, the rows stored.
#[inline(always)]
fn add_product<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    a: Rows<'_, MR>,
    b: &[f32],
    (r0, mr, nr): (usize, usize, usize),
    depth: usize,
    sums: &mut [f32],
) {
    let mut c = [[s.splat(0.0); NV]; MR];
    for (r, c) in c.iter_mut().enumerate().take(mr) {
        *c = load_row(s, sums, (r0 + r) * nr, nr);
    }
    micro(s, a, (b, nr), depth, &mut c);
    for (r, c) in c.into_iter().enumerate().take(mr) {
        store_row(s, sums, (r0 + r) * nr, nr, c);
    }
}

/// Output channels of a block of sums of [`weight_grad_taps`]: ResNet-18's and VGG-16's
/// widest layers in one block.
const TAP_OB: usize = 512;

/// The weight gradient with `MR × NV` blocks whose rows are output channels and lanes taps:
/// each block of taps of a sample is packed once for every output channel (and the output
/// gradient read as it lies), where [`weight_grad_with`], taps as rows, packs the input
/// once per block of 64 output channels and transposes the output gradient. The sums
/// `[channel][tap]` lie as the weights do. For one group.
#[inline(always)]
fn weight_grad_taps<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    debug_assert_eq!(geo.groups, 1);
    let (kdim, p_all, l) = (geo.c_in * geo.k * geo.k, geo.oh * geo.ow, S::LANES);
    let (len_in, len_out) = (geo.input_len(), geo.output_len());
    let nr = NV * l;
    let single = p_all <= PB;
    let mut xcol = Aligned([0.0f32; WKB * PB]);
    let xcol: &mut [f32] = &mut xcol.0;
    // A block of packed taps transposed, `[pixel][tap]`.
    let mut xt = Aligned([0.0f32; PB * MAX_NR]);
    let xt: &mut [f32] = &mut xt.0;
    let mut segs = [Segment::default(); PB];
    let mut count = if single {
        segments(geo, (0, p_all), &mut segs)
    } else {
        0
    };
    let mut sums = Aligned([0.0f32; TAP_OB * MAX_NR]);
    let sums: &mut [f32] = &mut sums.0;
    for (o0, ob) in blocks(geo.c_out, TAP_OB) {
        for (kk0, kb) in blocks(kdim, nr) {
            sums[..ob * nr].fill(0.0);
            for (x, g) in x.chunks_exact(len_in).zip(g.chunks_exact(len_out)) {
                for p0 in (0..p_all).step_by(PB) {
                    let pw = PB.min(p_all - p0);
                    if !single {
                        count = segments(geo, (p0, pw), &mut segs);
                    }
                    im2col(s, geo, x, (kk0, kb), (&segs[..count], pw), xcol);
                    if kb >= l && pw >= l {
                        simd::transpose(s, xcol, (kb, pw, PB), xt, nr);
                    } else {
                        simd::transpose(simd::Scalar, xcol, (kb, pw, PB), xt, nr);
                    }
                    let g = &g[p0..];
                    for r0 in (0..ob).step_by(MR) {
                        let mr = MR.min(ob - r0);
                        let rows = Rows::new(g, (o0 + r0, p_all), (mr, pw), &ZEROS);
                        add_product::<S, MR, NV>(s, rows, xt, (r0, mr, nr), pw, sums);
                    }
                }
            }
            for (o, sums) in sums.chunks_exact(nr).take(ob).enumerate() {
                add_scaled(
                    s,
                    &sums[..kb],
                    scale,
                    &mut gw[(o0 + o) * kdim + kk0..][..kb],
                );
            }
        }
    }
}

/// Whether [`weight_grad_taps`] runs `geo`'s weight gradient rather than
/// [`weight_grad_with`] (with AVX-512): one group of more than 64 output channels (more
/// than one block of [`weight_grad_with`]'s). Measured (`cargo bench --bench conv_gemm`, a batch of 8):
/// ResNet-18's 512 → 512 channels on 7×7 52 → 90 GFLOP/s, 256 → 512 1×1 at stride 2
/// 44 → 87; on 64 channels or fewer it is even or slower (ResNet-20's 1×1 layers 0.5–0.7×).
const fn taps_pay(geo: &ConvGeometry) -> bool {
    geo.groups == 1 && geo.c_out > 64
}

/// `row[u] += scale · t[u]` in vectors: each value `scale · t[u]` rounded, then added and
/// rounded, as a scalar `+=` would be.
#[inline(always)]
fn add_scaled<S: Simd>(s: S, t: &[f32], scale: f32, row: &mut [f32]) {
    let sv = s.splat(scale);
    for u in (0..row.len()).step_by(S::LANES) {
        let m = row.len() - u;
        let v = s.add(
            s.load_partial(row, u, m),
            s.mul(sv, s.load_partial(t, u, m)),
        );
        s.store_partial(row, u, m, v);
    }
}

/// `gw[o·kdim + r] += scale · sums[r·nr + o]` for `r < kb`, `o < on`: a block of sums
/// `[tap][channel]` added to the weights' rows `[channel][tap]`, transposed in vectors
/// (through `buf`) where the block holds whole ones. Each value is `scale · v` rounded, then
/// added and rounded, as a scalar `+=` would be.
#[inline(always)]
fn add_scaled_transposed<S: Simd>(
    s: S,
    sums: &[f32],
    (kb, on, nr): (usize, usize, usize),
    scale: f32,
    buf: &mut [f32],
    gw: &mut [f32],
    kdim: usize,
) {
    if kb >= S::LANES && on >= S::LANES {
        simd::transpose(s, sums, (kb, on, nr), buf, WKB);
        for o in 0..on {
            add_scaled(s, &buf[o * WKB..][..kb], scale, &mut gw[o * kdim..][..kb]);
        }
    } else {
        for (r, sums) in sums.chunks_exact(nr).take(kb).enumerate() {
            for (o, &v) in sums[..on].iter().enumerate() {
                gw[o * kdim + r] += scale * v;
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
    // (`gy` has a row past its deepest, as the forward pass's panel.)
    let mut gy = Aligned([0.0f32; (IOB + 1) * PB]);
    let gy: &mut [f32] = &mut gy.0;
    let mut gcol = Aligned([0.0f32; IKB * PB]);
    let gcol: &mut [f32] = &mut gcol.0;
    let mut wt = Aligned([0.0f32; IOB * MAX_MR]);
    let wt: &mut [f32] = &mut wt.0;
    let mut segs = [Segment::default(); PB];
    for grp in 0..geo.groups {
        let gig = &mut gi[grp * map..][..map];
        let outs = grp * cog..(grp + 1) * cog;
        for p0 in (0..p_all).step_by(PB) {
            let pw = PB.min(p_all - p0);
            let count = segments(geo, (p0, pw), &mut segs);
            for (kk0, kb) in blocks(kdim, IKB) {
                let mut products = ColumnsMut::whole(gcol, PB);
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
                            let n = nr.min(pw - pt);
                            let tile = Tile {
                                rows: (r0, mr),
                                at: pt,
                                n,
                                depth: obn,
                                start: if ob0 == outs.start {
                                    Start::Zero
                                } else {
                                    Start::Sums
                                },
                                after: None,
                            };
                            tile_of::<S, _, MR, NV>(s, wt, (&gy[pt..], PB), tile, &mut products);
                        }
                    }
                }
                col2im(s, geo, gcol, (kk0, kb), &segs[..count], gig);
            }
        }
    }
}

/// The forward pass (see [`forward`]).
struct Forward<'a, const P: u8> {
    geo: &'a ConvGeometry,
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    /// The output channels `y` holds, `chans.start` first.
    chans: core::ops::Range<usize>,
    /// Those channels' rows, the pixels this call computes.
    y: ColumnsMut<'a>,
    /// What the sums become before they are stored.
    after: Option<After<'a>>,
    /// Which of the forward pass's paths.
    path: Path<'a>,
}

/// The paths of the forward pass: the product on the packed input `X̂`, F(2×2, 3×3)
/// ([`conv_winograd`]) with the weights transformed on the way or once for a batch, or
/// F(4×4, 3×3) ([`conv_winograd4`]) on the larger maps.
#[derive(Clone, Copy)]
enum Path<'a> {
    Columns,
    Winograd,
    WinogradPrepared(Prepared<'a>),
    Winograd4,
    WinogradChannels,
    Channels(Option<&'a [f32]>),
}

impl<'a> Path<'a> {
    /// F(4×4, 3×3) where it [`conv_winograd4::pays`] for `geo`, else F(2×2, 3×3) with the
    /// output channels along the lanes where it [`conv_winograd_channels::pays_for`]
    /// `samples` samples in one call, else F(2×2, 3×3) where [`conv_winograd::pays`], else
    /// the direct products with the output channels along the lanes where
    /// [`conv_channels::pays`] (weights transposed on the stack), else the product on `X̂`.
    #[inline]
    fn for_layer(geo: &ConvGeometry, samples: usize) -> Self {
        if conv_winograd4::pays(geo) {
            Path::Winograd4
        } else if conv_winograd_channels::pays_for(geo, samples) {
            Path::WinogradChannels
        } else if conv_winograd::pays(geo) {
            Path::Winograd
        } else if conv_channels::pays(geo) {
            Path::Channels(None)
        } else {
            Path::Columns
        }
    }

    /// The rows of outputs of a tile of Winograd's algorithm, if the path is one.
    #[cfg(feature = "std")]
    #[inline]
    fn tile(self) -> Option<usize> {
        match self {
            Path::Columns | Path::WinogradChannels | Path::Channels(_) => None,
            Path::Winograd | Path::WinogradPrepared(_) => Some(2),
            Path::Winograd4 => Some(4),
        }
    }

    /// Whether the path runs several samples in one call (F(2×2, 3×3), their tiles in the
    /// same blocks); the others run one sample after the other.
    #[inline]
    fn takes_batches(self) -> bool {
        matches!(
            self,
            Path::Winograd | Path::WinogradPrepared(_) | Path::WinogradChannels | Path::Channels(_)
        )
    }

    /// The weights a batch transformed, if any.
    #[inline]
    fn prepared(self) -> Option<Prepared<'a>> {
        match self {
            Path::WinogradPrepared(p) => Some(p),
            Path::Columns
            | Path::Winograd
            | Path::Winograd4
            | Path::WinogradChannels
            | Path::Channels(_) => None,
        }
    }
}

/// The kinds of [`Path`], as [`Forward`]'s parameter: each kind is a kernel of its own, whose
/// stack frame holds only its own buffers (one frame for all three, 1 MB, made ResNet-20's
/// batch-64 inference, which never takes F(4×4, 3×3), 2% slower).
const COLUMNS: u8 = 0;
/// See [`COLUMNS`].
const WINOGRAD: u8 = 1;
/// See [`COLUMNS`].
const WINOGRAD4: u8 = 2;
/// See [`COLUMNS`].
const WINOGRAD_CHANNELS: u8 = 3;
/// See [`COLUMNS`].
const CHANNELS: u8 = 4;

impl<const P: u8> Kernel for Forward<'_, P> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Forward {
            geo,
            x,
            w,
            b,
            chans,
            y,
            after,
            path,
        } = self;
        let (parts, out) = ((geo, x, w, Some(b)), (chans, y));
        let prepared = path.prepared();
        let wt = match path {
            Path::Channels(wt) => wt,
            _ => None,
        };
        match (P, S::LANES) {
            // With AVX-512 only: each instantiation of the kernel costs about a second of
            // the build; the other instruction sets run `conv_winograd`'s, which they have.
            (WINOGRAD_CHANNELS, 16) => {
                let y = (out.0, out.1.into_whole());
                conv_winograd_channels::forward_with::<S, 4, false>(s, parts, y, after)
            }
            // 64 channels: four vectors of them × 4 pixels with AVX-512; else two × 8.
            (CHANNELS, 16) if geo.c_out > 32 => {
                let y = (out.0, out.1.into_whole());
                conv_channels::forward_with::<S, 4, 4>(s, parts, y, after, wt)
            }
            (CHANNELS, _) => {
                let y = (out.0, out.1.into_whole());
                conv_channels::forward_with::<S, 2, 8>(s, parts, y, after, wt)
            }
            (COLUMNS, 16 | 1) => forward_with::<S, 4, 4>(s, (geo, x, w, b), out, after),
            (COLUMNS, _) => forward_with::<S, 4, 2>(s, (geo, x, w, b), out, after),
            (WINOGRAD4, 16 | 1) => {
                conv_winograd4::forward_with::<S, 4, false>(s, parts, out, after)
            }
            (WINOGRAD4, _) => conv_winograd4::forward_with::<S, 2, false>(s, parts, out, after),
            (_, 16 | 1) => {
                conv_winograd::forward_with::<S, 4, false>(s, parts, out, after, prepared)
            }
            (_, _) => conv_winograd::forward_with::<S, 2, false>(s, parts, out, after, prepared),
        }
    }
}

/// Multiply-adds of a layer from which [`forward`] splits it between two threads, when
/// [`crate::threads::within_layers`] asks for them (about 70 µs of one core's work). 2²⁴ left
/// most of DenseNet-121's layers after its first block on one thread (1×1 convolutions of
/// 128 outputs on 14×14 maps: 2²²·⁶); 2²² made its two-thread inference 9% faster, the other
/// networks unchanged; 2²¹ also splits ResNet-20's 16-channel layers, sample by sample,
/// which made its batch inference on two threads erratic (BENCHMARKS.md, twenty-ninth
/// session).
pub const SPLIT_MACS: usize = 1 << 22;

/// Pixels of a map from which [`forward`] splits a layer by pixels rather than by output
/// channels.
#[cfg(feature = "std")]
const SPLIT_PIXELS: usize = 4 * PB;

/// How [`forward`] splits a layer between two threads.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Split {
    /// Pixels `..mid` and `mid..`: each thread packs only its own pixels' inputs and reads
    /// every weight. For the large maps.
    Pixels(usize),
    /// Output channels `..mid` and `mid..`: each thread reads half the weights and packs
    /// the whole input. For the small maps of many channels (one group).
    Channels(usize),
}

/// Where [`forward`] splits `geo` between two threads, if it does: enough work, then by
/// pixels on a large map (a whole number of 16-pixel vectors on the first side), else by
/// whole 16-channel blocks of one group's outputs. A layer by Winograd's algorithm, whose
/// tiles are `tile` rows of outputs high (2 or 4), with fewer than
/// [`WINOGRAD_SPLIT_CHANNELS`] output channels is split by whole rows of tiles where each
/// side has at least [`WINOGRAD_SPLIT_TILES`]: each thread then transforms only its own
/// tiles' inputs, each for all the output channels (split by channels, both threads
/// transformed every input, each for fewer channels than a block); else by channels. On
/// two threads (`nets` bench, 2 rounds): DenseNet-121 1–2.5% faster, VGG-16 3%, ResNet-18
/// 1%; splitting wider layers by rows of tiles too made VGG-16 8% slower (each thread
/// transforms all the weights).
#[cfg(feature = "std")]
#[inline]
pub(crate) fn split_at(geo: &ConvGeometry, tile: Option<usize>) -> Option<Split> {
    let (pixels, macs) = (geo.oh * geo.ow, geo.out_per_group() * geo.in_per_group());
    if macs * geo.groups * geo.k * geo.k * pixels < SPLIT_MACS {
        return None;
    }
    let mid = geo.c_out / 32 * 16;
    match tile {
        Some(tile) => {
            let (rows, per_row) = (geo.oh.div_ceil(tile), geo.ow.div_ceil(tile));
            if geo.c_out < WINOGRAD_SPLIT_CHANNELS && rows / 2 * per_row >= WINOGRAD_SPLIT_TILES {
                return Some(Split::Pixels(rows / 2 * tile * geo.ow));
            }
        }
        None if pixels >= SPLIT_PIXELS => return Some(Split::Pixels(pixels / 32 * 16)),
        None => {}
    }
    (geo.groups == 1 && mid > 0).then_some(Split::Channels(mid))
}

/// The fewest tiles on each side for which [`split_at`] splits a layer by Winograd's
/// algorithm by rows of tiles rather than by channels: a block of tiles (64).
#[cfg(feature = "std")]
pub(crate) const WINOGRAD_SPLIT_TILES: usize = 64;

/// The fewest output channels from which [`split_at`] splits a layer by Winograd's
/// algorithm by channels whatever its map: two blocks of the 64 whose transformed weights
/// are kept at once.
#[cfg(feature = "std")]
pub(crate) const WINOGRAD_SPLIT_CHANNELS: usize = 128;

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
        // Each channel's sum over the samples, one after the other, then scaled and added.
        let (pixels, len_out) = (geo.oh * geo.ow, geo.output_len());
        for (o, gb) in gb.iter_mut().enumerate() {
            let mut maps = g.chunks_exact(len_out).map(|g| &g[o * pixels..][..pixels]);
            let first = maps.next().map_or(0.0, |g| sum(s, g));
            *gb += scale * maps.fold(first, |total, g| total + sum(s, g));
        }
        let samples = geo.samples_of_inputs(x.len());
        if S::LANES == 16 && conv_winograd_grad_channels::pays_weight_grad_for(geo, samples) {
            // With AVX-512 only (see `Forward`).
            return conv_winograd_grad_channels::weight_grad(s, (geo, x, g), gw, scale);
        }
        if conv_winograd_grad::pays_weight_grad(geo) {
            return conv_winograd_grad::weight_grad(s, (geo, x, g), gw, scale);
        }
        // Output channels along the lanes: as many vectors as there are channels, up to 4.
        let vectors = geo.out_per_group().div_ceil(S::LANES);
        let args = (geo, x, g);
        if taps_pay(geo) && S::LANES == 16 {
            // Four rows of four vectors, in AVX-512's 32 registers (2 × 4 and 4 × 2 ran
            // 5–15% slower). One instantiation per instruction set: a `match` on the lanes,
            // with 4 × 2 for the 16 registers of SSE2 and AVX2, compiled both for each,
            // 2 s more of the main job's build; those keep `weight_grad_with`.
            return weight_grad_taps::<S, 4, 4>(s, args, gw, scale);
        }
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
struct InputGrad<'a, const P: u8> {
    geo: &'a ConvGeometry,
    w: &'a [f32],
    g: &'a [f32],
    gi: &'a mut [f32],
}

/// A kernel of its own for each path (see [`COLUMNS`]).
impl<const P: u8> Kernel for InputGrad<'_, P> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let InputGrad { geo, w, g, gi } = self;
        if P == WINOGRAD_CHANNELS && S::LANES == 16 {
            // With AVX-512 only (see `Forward`).
            let t = conv_winograd::input_grad_geometry(geo);
            let parts = (&t, g, w, None);
            return conv_winograd_channels::forward_with::<S, 4, true>(
                s,
                parts,
                (0..t.c_out, gi),
                None,
            );
        }
        if P == COLUMNS {
            return match S::LANES {
                16 | 1 => input_grad_with::<S, 4, 4>(s, (geo, w, g), gi),
                _ => input_grad_with::<S, 4, 2>(s, (geo, w, g), gi),
            };
        }
        // By Winograd's: the output gradient's convolution by the turned, transposed weights.
        let t = conv_winograd::input_grad_geometry(geo);
        let out = (0..t.c_out, ColumnsMut::whole(gi, t.oh * t.ow));
        let parts = (&t, g, w, None);
        match (P, S::LANES) {
            (WINOGRAD4, 16 | 1) => conv_winograd4::forward_with::<S, 4, true>(s, parts, out, None),
            (WINOGRAD4, _) => conv_winograd4::forward_with::<S, 2, true>(s, parts, out, None),
            (_, 16 | 1) => conv_winograd::forward_with::<S, 4, true>(s, parts, out, None, None),
            (_, _) => conv_winograd::forward_with::<S, 2, true>(s, parts, out, None, None),
        }
    }
}

/// The forward pass, as [`crate::conv_kernel::forward`] computes it (same arguments, same
/// panics), by a matrix product: `y = b + w ⋆ x`; for the 3×3 stride-1 layers where
/// [`conv_winograd::pays`], by Winograd's F(2×2, 3×3), whose products take 16 multiply-adds
/// per 2×2 outputs instead of 36, and on the larger maps where [`conv_winograd4::pays`] by
/// F(4×4, 3×3), 36 per 4×4 outputs instead of 144 ([`forward_on_columns`] keeps the product
/// on `X̂`).
///
/// `x` and `y` may hold several samples one after the other: by F(2×2, 3×3), their tiles
/// run in the same blocks of products (a 7×7 or 8×8 map has 16 tiles, too few to fill a
/// block alone), with the output channels along the lanes on the small maps where
/// [`conv_winograd_channels::pays_for`] them; else one sample after the other. Each output
/// is the same, bit for bit, as in a call for its sample alone on the same path.
///
/// Inside [`crate::threads::within_layers`] several samples are split between two threads,
/// half each, whatever the layer's size; one sample of a layer of at least [`SPLIT_MACS`]
/// multiply-adds by pixels on a map of 256 pixels or more (each thread packs only its own
/// pixels' inputs) unless by Winograd's, else by output channels (one group only). Each
/// output is computed by one thread, in the one-thread order.
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
#[inline]
pub fn forward(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    forward_with_after(
        geo,
        (x, w, b),
        y,
        None,
        Path::for_layer(geo, geo.samples_of_inputs(x.len())),
    );
}

/// [`forward`] as a product on the packed input `X̂` whatever the geometry, never by
/// F(2×2, 3×3): for comparisons (`cargo bench --bench conv_gemm`).
///
/// ```
/// use constnet::{conv_gemm, conv_winograd, conv_kernel::ConvGeometry};
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 16, c_out: 16, groups: 1, k: 3, stride: 1, pad: 1, h: 28, w: 28, oh: 28, ow: 28,
/// }
/// .checked();
/// assert!(conv_winograd::pays(&GEO));
/// let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 5) as f32).collect();
/// let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 3) as f32 - 1.0).collect();
/// let (mut y, mut winograd) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
/// conv_gemm::forward_on_columns(&GEO, &x, &w, &[0.5; 16], &mut y);
/// conv_gemm::forward(&GEO, &x, &w, &[0.5; 16], &mut winograd);
/// assert_eq!(y, winograd); // small integers: exact in any order
/// ```
#[inline]
pub fn forward_on_columns(geo: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    forward_with_after(geo, (x, w, b), y, None, Path::Columns);
}

/// Weights a batch rearranged once for its layer's path ([`forward_prepared`]).
#[derive(Clone, Copy)]
pub(crate) enum Ready<'a> {
    /// Transformed for F(2×2, 3×3) ([`conv_winograd::prepare`]).
    Winograd(Prepared<'a>),
    /// Transposed to `[c][i][j][o]` for [`conv_channels`] (`conv_channels::prepare`).
    Channels(&'a [f32]),
}

/// [`forward_then`] (`after` given) or [`forward`] (without) for a layer F(2×2, 3×3) or
/// [`conv_channels`] pays for, with its weights rearranged once for a batch
/// ([`conv_winograd::prepare`], `conv_channels::prepare`): the same result, bit for bit.
#[inline]
pub(crate) fn forward_prepared(
    geo: &ConvGeometry,
    (x, w, b): (&[f32], &[f32], &[f32]),
    y: &mut [f32],
    after: Option<(Option<ChannelAffine<'_, f32>>, Epilogue)>,
    ready: Ready,
) {
    let path = match ready {
        Ready::Winograd(p) => {
            assert!(conv_winograd::pays(geo));
            Path::WinogradPrepared(p)
        }
        Ready::Channels(wt) => {
            assert!(conv_channels::pays(geo) && wt.len() >= geo.weight_len());
            Path::Channels(Some(wt))
        }
    };
    if let Some((Some(a), _)) = &after {
        check_affine(geo, a);
    }
    let after = after.map(|(affine, epilogue)| After { affine, epilogue });
    forward_with_after(geo, (x, w, b), y, after, path);
}

/// Panics unless `a` has one constant of each kind per output channel of `geo`.
#[inline]
fn check_affine(geo: &ConvGeometry, a: &ChannelAffine<'_, f32>) {
    let c_out = geo.c_out;
    assert!(
        a.mean.len() == c_out && a.scale.len() == c_out && a.shift.len() == c_out,
        "conv_gemm::forward_then: the map needs one constant of each kind per output channel ({c_out})"
    );
}

/// [`forward`], then `affine` on the output channels (if given) and `epilogue` after it,
/// applied to each block of sums before it is stored: batch norm (in evaluation) and a ReLU
/// after the convolution, or a ReLU alone, without a pass of their own over the maps. The
/// result is the same, bit for bit, as [`forward`] followed by [`ChannelAffine::apply`] (or
/// [`Epilogue::apply`]).
///
/// ```
/// use constnet::{conv_gemm, conv_kernel::ConvGeometry, ChannelAffine, Epilogue};
/// const GEO: ConvGeometry = ConvGeometry {
///     c_in: 4, c_out: 4, groups: 1, k: 3, stride: 1, pad: 1, h: 5, w: 5, oh: 5, ow: 5,
/// }
/// .checked();
/// let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 7) as f32 - 3.0).collect();
/// let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
/// let b = [0.5; 4];
/// let affine = ChannelAffine {
///     mean: &[1.0, -2.0, 0.5, 0.0],
///     scale: &[0.3, 1.7, -0.9, 2.0],
///     shift: &[0.1, -0.2, 0.0, 1.5],
/// };
/// let (mut fused, mut apart) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
/// conv_gemm::forward_then(&GEO, &x, &w, &b, &mut fused, Some(affine), Epilogue::Relu);
/// conv_gemm::forward(&GEO, &x, &w, &b, &mut apart);
/// affine.apply(&mut apart, Epilogue::Relu);
/// assert_eq!(fused, apart);
/// // A ReLU alone.
/// conv_gemm::forward_then(&GEO, &x, &w, &b, &mut fused, None, Epilogue::Relu);
/// conv_gemm::forward(&GEO, &x, &w, &b, &mut apart);
/// Epilogue::Relu.apply(&mut apart);
/// assert_eq!(fused, apart);
/// ```
#[inline]
pub fn forward_then(
    geo: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    affine: Option<ChannelAffine<'_, f32>>,
    epilogue: Epilogue,
) {
    if let Some(a) = &affine {
        check_affine(geo, a);
    }
    let after = Some(After { affine, epilogue });
    forward_with_after(
        geo,
        (x, w, b),
        y,
        after,
        Path::for_layer(geo, geo.samples_of_inputs(x.len())),
    );
}

/// [`forward`] and [`forward_then`]: the kernel of `path`.
#[inline]
fn forward_with_after(
    geo: &ConvGeometry,
    (x, w, b): (&[f32], &[f32], &[f32]),
    y: &mut [f32],
    after: Option<After>,
    path: Path,
) {
    geo.check_forward(x, w, b, y);
    if !path.takes_batches() && x.len() > geo.input_len() {
        #[cfg(feature = "std")]
        if crate::threads::layer_threads() > 1 {
            // Half the samples each, one after the other on each thread.
            let half = geo.samples_of_inputs(x.len()) / 2;
            let (x0, x1) = x.split_at(half * geo.input_len());
            let (y0, y1) = y.split_at_mut(half * geo.output_len());
            let half = |x: &[f32], y: &mut [f32]| {
                let one = || forward_with_after(geo, (x, w, b), y, after, path);
                crate::threads::within_layers(1, one);
            };
            let mut a = || half(x0, &mut *y0);
            let mut b = || half(x1, &mut *y1);
            return crate::threads::run_all(&mut [&mut a, &mut b]);
        }
        let each = x.chunks_exact(geo.input_len());
        for (x, y) in each.zip(y.chunks_exact_mut(geo.output_len())) {
            forward_with_after(geo, (x, w, b), y, after, path);
        }
        return;
    }
    let parts = (x, w, b);
    match path {
        Path::Columns => forward_on::<COLUMNS>(geo, parts, y, (after, path)),
        Path::Winograd | Path::WinogradPrepared(_) => {
            forward_on::<WINOGRAD>(geo, parts, y, (after, path))
        }
        Path::Winograd4 => forward_on::<WINOGRAD4>(geo, parts, y, (after, path)),
        Path::WinogradChannels => forward_on::<WINOGRAD_CHANNELS>(geo, parts, y, (after, path)),
        Path::Channels(_) => forward_on::<CHANNELS>(geo, parts, y, (after, path)),
    }
}

/// [`forward_with_after`] on the kernel of path kind `P`: the threads' split, then the kernel.
fn forward_on<const P: u8>(
    geo: &ConvGeometry,
    (x, w, b): (&[f32], &[f32], &[f32]),
    y: &mut [f32],
    (after, path): (Option<After>, Path),
) {
    let (pixels, c_out) = (geo.oh * geo.ow, geo.c_out);
    let pass = |x, chans, y| Forward::<P> {
        geo,
        x,
        w,
        b,
        chans,
        y,
        after,
        path,
    };
    #[cfg(feature = "std")]
    if crate::threads::layer_threads() > 1 {
        // Each output is one thread's, summed in the same order as on one: the result is
        // the same bit for bit.
        let samples = geo.samples_of_inputs(x.len());
        let (one, two) = if samples > 1 {
            // Several samples: half of them each.
            let (x0, x1) = x.split_at(samples / 2 * geo.input_len());
            let (y0, y1) = y.split_at_mut(samples / 2 * geo.output_len());
            let (y0, y1) = (ColumnsMut::whole(y0, pixels), ColumnsMut::whole(y1, pixels));
            (pass(x0, 0..c_out, y0), pass(x1, 0..c_out, y1))
        } else {
            let split = match P {
                // Whole samples' outputs: by channels only.
                WINOGRAD_CHANNELS | CHANNELS => {
                    split_at(geo, None).map(|_| Split::Channels(c_out / 32 * 16))
                }
                _ => split_at(geo, path.tile()),
            };
            match split.filter(|&s| s != Split::Channels(0)) {
                Some(Split::Pixels(mid)) => {
                    let (y0, y1) = ColumnsMut::split(y, pixels, mid);
                    (pass(x, 0..c_out, y0), pass(x, 0..c_out, y1))
                }
                Some(Split::Channels(mid)) => {
                    let (y0, y1) = y.split_at_mut(mid * pixels);
                    let (y0, y1) = (ColumnsMut::whole(y0, pixels), ColumnsMut::whole(y1, pixels));
                    (pass(x, 0..mid, y0), pass(x, mid..c_out, y1))
                }
                None => return simd::dispatch(pass(x, 0..c_out, ColumnsMut::whole(y, pixels))),
            }
        };
        return crate::threads::dispatch_both(one, two);
    }
    simd::dispatch(pass(x, 0..c_out, ColumnsMut::whole(y, pixels)));
}

/// The parameter gradients of one sample, scaled and added, as
/// [`crate::conv_kernel::weight_grad`] computes them: `gw += scale · ∂E/∂w`,
/// `gb += scale · ∂E/∂b`. Each value's sum is complete before it is scaled and added, so
/// `scale = −lr` on the weights themselves is `w − lr · ∂E/∂w`, to the bit. `x` and `g` may
/// hold several samples one after the other (as many inputs as output gradients): each
/// value's sum then runs over all of them before it is scaled and added, so that a batch
/// adds to `gw` once (a deep layer's weight gradient is megabytes, read and written once
/// per call). For a 3×3
/// stride-1 layer where [`conv_winograd_grad::pays_weight_grad`] (maps of 64 tiles of 2×2
/// outputs or more), the weights' gradient by F(2×2, 3×3): 16 multiply-adds per tile and
/// pair of channels instead of 36.
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
#[inline]
pub fn weight_grad(
    geo: &ConvGeometry,
    x: &[f32],
    g: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    scale: f32,
) {
    geo.check_weight_grad(x, g, gw, gb);
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
/// every value written (zero where no tap reads the input). For a 3×3 stride-1 layer with
/// padding 1 where [`conv_winograd::pays_input_grad`], by F(2×2, 3×3) (F(4×4, 3×3) where
/// [`conv_winograd4::pays_input_grad`]): the convolution of the output gradient by the
/// transposed weights, each kernel turned by 180°. `g` and `gi` may hold several samples,
/// run as [`forward`] runs them ([`conv_winograd_channels::pays_input_grad_for`]).
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
#[inline]
pub fn input_grad(geo: &ConvGeometry, w: &[f32], g: &[f32], gi: &mut [f32]) {
    geo.check_input_grad(w, g, gi);
    let samples = geo.samples_of_outputs(g.len());
    if !conv_winograd4::pays_input_grad(geo)
        && conv_winograd_channels::pays_input_grad_for(geo, samples)
    {
        return simd::dispatch(InputGrad::<WINOGRAD_CHANNELS> { geo, w, g, gi });
    }
    if samples > 1 {
        if !conv_winograd4::pays_input_grad(geo) && conv_winograd::pays_input_grad(geo) {
            // The samples' tiles in the same blocks.
            return simd::dispatch(InputGrad::<WINOGRAD> { geo, w, g, gi });
        }
        let each = g.chunks_exact(geo.output_len());
        for (g, gi) in each.zip(gi.chunks_exact_mut(geo.input_len())) {
            input_grad(geo, w, g, gi);
        }
        return;
    }
    if conv_winograd4::pays_input_grad(geo) {
        simd::dispatch(InputGrad::<WINOGRAD4> { geo, w, g, gi });
    } else if conv_winograd::pays_input_grad(geo) {
        simd::dispatch(InputGrad::<WINOGRAD> { geo, w, g, gi });
    } else {
        simd::dispatch(InputGrad::<COLUMNS> { geo, w, g, gi });
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    const fn layer(c_in: usize, c_out: usize, groups: usize, k: usize, hw: usize) -> ConvGeometry {
        ConvGeometry {
            c_in,
            c_out,
            groups,
            k,
            stride: 1,
            pad: k / 2,
            h: hw,
            w: hw,
            oh: hw,
            ow: hw,
        }
        .checked()
    }

    #[test]
    fn large_maps_split_by_pixels_small_ones_by_channels_small_layers_not_at_all() {
        for (geo, want) in [
            // ResNet-18's 56×56 and 28×28 layers on `X̂`: by pixels, the first side whole vectors.
            (layer(64, 64, 1, 3, 56), Some(Split::Pixels(1568))),
            (layer(128, 128, 1, 3, 28), Some(Split::Pixels(384))),
            // Grouped (AlexNet-2012's conv2 at 27×27): pixels too.
            (layer(96, 256, 2, 5, 27), Some(Split::Pixels(352))),
            // 14×14 and 7×7: by channels, 16-channel blocks.
            (layer(256, 256, 1, 3, 14), Some(Split::Channels(128))),
            (layer(512, 512, 1, 3, 7), Some(Split::Channels(256))),
            // Below 2²² multiply-adds: one thread (ResNet-20's 16-channel layers).
            (layer(16, 16, 1, 3, 32), None),
            // A small grouped map cannot be split by channels.
            (layer(1024, 1024, 2, 3, 7), None),
        ] {
            assert_eq!(split_at(&geo, None), want, "{geo:?}");
        }
        // By Winograd's algorithm: by whole rows of tiles where each side has 64 tiles and
        // there are fewer than 128 output channels, else by channels.
        for (geo, tile, want) in [
            // F(4×4, 3×3) on 56×56: 14 rows of 14 tiles, 7 rows (28 rows of outputs) each.
            (layer(64, 64, 1, 3, 56), 4, Split::Pixels(28 * 56)),
            // F(2×2, 3×3) on 28×28: 14 rows of 14 tiles; on 57×57, 29 rows, 14 + 15.
            (layer(128, 32, 1, 3, 28), 2, Split::Pixels(14 * 28)),
            (layer(64, 64, 1, 3, 57), 2, Split::Pixels(28 * 57)),
            // 128 output channels: by channels, however large the map.
            (layer(128, 128, 1, 3, 28), 2, Split::Channels(64)),
            (layer(128, 128, 1, 3, 56), 4, Split::Channels(64)),
            // 14×14: 49 tiles of 2×2 in all, by channels.
            (layer(256, 64, 1, 3, 14), 2, Split::Channels(32)),
        ] {
            assert_eq!(split_at(&geo, Some(tile)), Some(want), "{geo:?}");
        }
    }
}
