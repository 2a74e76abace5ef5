//! F(2×2, 3×3) ([`crate::conv_winograd`]'s algorithm) for the small maps, at most 64 tiles
//! (16×16 outputs), with the **output channels along the vector lanes**.
//!
//! [`crate::conv_winograd`] runs each position `ξ`'s product `U_ξ [c_out × c_in] ·
//! V_ξ [c_in × tiles]` with the tiles along the lanes, and adds each block of input channels'
//! share to the outputs as it is done. On a 7×7 or 8×8 map a row holds 4 tiles: its
//! transforms fill 4 lanes of 16, and a deep layer's outputs are transformed back and read
//! and written again for every block of 32 input channels (ResNet-18's 512 → 512 on 7×7
//! ran at 60–70 GFLOP/s as direct products, no faster than without Winograd's algorithm).
//! Here the product is `M_ξ [tiles × c_out] = V_ξᵀ · U_ξᵀ`: the microkernel's rows are tiles,
//! its lanes output channels, and the sums of a block of tiles and of up to 64 output
//! channels run over **all** the input channels before they are transformed back, once, in
//! vectors of output channels (bias, batch norm and ReLU as vectors of constants), then
//! transposed into the output's rows. The input transform runs along the input channels:
//! each block of 32 of them is transposed to `[pixel][channel]` first, so a tile's 4×4 patch
//! is 16 vector loads whatever the map's width.
//!
//! [`crate::conv_gemm`] runs it with AVX-512 only (four vectors of 16 output channels; each
//! instantiation of the kernel costs about a second of the build), `conv_winograd`'s kernel
//! on the other instruction sets.
//!
//! A block of tiles holds whole samples (up to 64 tiles: four 7×7 maps, one 16×16), so a
//! batch's small maps fill the microkernel's rows where one sample's would not. The inputs
//! are transformed again for each block of 64 output channels, the weights of a block of
//! channels for each block of tiles (a 3×3 kernel's nine taps made a vector of output
//! channels' by a transpose). Every sum runs in an order fixed
//! by the geometry, so a result is the same, bit for bit, from one call to the next, for any
//! grouping of the samples into calls and on one thread or two (split by output channels or
//! samples).
//!
//! ```
//! use constnet::{conv_gemm, conv_winograd_channels};
//! use constnet::conv_kernel::{self, ConvGeometry};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 32, c_out: 64, groups: 1, k: 3, stride: 1, pad: 1, h: 7, w: 7, oh: 7, ow: 7,
//! }
//! .checked();
//! assert!(conv_winograd_channels::pays_for(&GEO, 2));
//! let x: Vec<f32> = (0..2 * GEO.input_len()).map(|i| (i % 5) as f32).collect();
//! let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut y, mut direct) = (vec![0.0; 2 * GEO.output_len()], vec![0.0; 2 * GEO.output_len()]);
//! conv_gemm::forward(&GEO, &x, &w, &[0.5; 64], &mut y); // two samples, by this module
//! conv_kernel::forward(&GEO, &x, &w, &[0.5; 64], &mut direct);
//! assert_eq!(y, direct); // small integers (and halves): every sum is exact in any order
//! ```

use core::ops::Range;

use crate::conv_gemm_micro::{After, Rows, blocks, micro};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd::fits;
use crate::conv_winograd_tiles::{Aligned, CB, MAX_TB, grid, kernel_transform};
use crate::simd::{self, Simd};

/// Tiles of a block: whole samples, at most 64.
pub(crate) const TB: usize = MAX_TB;
/// Tiles of one run of the microkernel (its rows).
const MR: usize = 4;
/// Output channels of a block, at most (the microkernel's lanes: 4 vectors of 16).
const MAX_OB: usize = 64;

/// Whether this module's kernel can run `geo`: where [`crate::conv_winograd`]'s can (a 3×3
/// kernel at stride 1 with padding 0 or 1, one group, at least 16 channels in and out), on
/// a map of at most 64 tiles (16×16 outputs) and at least 16 outputs.
pub const fn takes(geo: &ConvGeometry) -> bool {
    let tiles = crate::conv_winograd_tiles::tiles(geo);
    fits(geo) && tiles <= TB && geo.oh * geo.ow >= 16 && TB / tiles * geo.h * geo.w <= XT_PIXELS
}

/// The distance between two positions `ξ` of the transformed inputs `v`: a block's `TB × CB`
/// values and a cache line more. Whole blocks apart (8 KB), the 16 values a tile's
/// transform stores would fall in one set of the 8-way L1 cache.
pub(crate) const V_XI: usize = TB * CB + 16;

/// The distance between two positions `ξ` of the transformed kernels `u` and of the sums
/// `m`: a block's values and a cache line more (see [`V_XI`]).
const U_XI: usize = CB * MAX_OB + 16;
const M_XI: usize = TB * MAX_OB + 16;

/// Rows of the transformed inputs past the block's tiles: zeros, a depth long.
static ZEROS: [f32; CB] = [0.0; CB];

/// A block of at most [`TB`] tiles: the tile rows `ty0..ty0 + rows` of `samples` samples
/// one after the other (every row of several whole samples, or a band of one sample's
/// rows), numbered `(j·rows + ty − ty0)·tiles_per_row + tx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Band {
    pub(crate) samples: usize,
    pub(crate) ty0: usize,
    pub(crate) rows: usize,
}

impl Band {
    /// The block's tiles.
    pub(crate) const fn tiles(&self, geo: &ConvGeometry) -> usize {
        self.samples * self.rows * grid(geo).0
    }

    /// The input rows its tiles read, `(first, count)` (those on the map).
    pub(crate) const fn input_rows(&self, geo: &ConvGeometry) -> (usize, usize) {
        let first = (2 * self.ty0).saturating_sub(geo.pad);
        let end = 2 * (self.ty0 + self.rows) + 2 - geo.pad;
        let end = if end < geo.h { end } else { geo.h };
        (first, end - first)
    }

    /// The output rows of its tiles, `(first, count)` (those on the map).
    pub(crate) const fn output_rows(&self, geo: &ConvGeometry) -> (usize, usize) {
        let (first, end) = (2 * self.ty0, 2 * (self.ty0 + self.rows));
        (first, if end < geo.oh { end } else { geo.oh } - first)
    }

    /// Its rows of tiles, `ty0..ty0 + rows`.
    #[inline(always)]
    pub(crate) const fn tile_rows(&self) -> Range<usize> {
        self.ty0..self.ty0 + self.rows
    }

    /// The number in the block of tile `(ty, tx)` of its sample `j` (`tw` tiles to a row).
    /// The kernels walk the tiles in this order, `j`, then `ty`, then `tx`, as nested loops:
    /// an iterator of all three cost the weight gradient of 16 channels 12% (one vector of
    /// channels per tile leaves little to hide its branches behind), a method taking a
    /// closure most of the forward pass (the closure's body lacks the kernel's instruction
    /// set, so its SIMD calls are not inlined).
    #[inline(always)]
    pub(crate) const fn tile(&self, tw: usize, (j, ty, tx): (usize, usize, usize)) -> usize {
        (j * self.rows + ty - self.ty0) * tw + tx
    }
}

/// The blocks of tiles of `samples` samples of `geo`, with the first sample of each:
/// groups of whole samples where one has at most [`TB`] tiles, else bands of whole tile
/// rows of one sample (`geo` at most [`TB`] tiles wide).
#[inline]
pub(crate) fn bands(geo: &ConvGeometry, samples: usize) -> impl Iterator<Item = (usize, Band)> {
    let (tw, th) = grid(geo);
    let per = tw * th;
    let (group, rows) = if per <= TB {
        (TB / per, th)
    } else {
        (1, TB / tw)
    };
    (0..samples).step_by(group).flat_map(move |n0| {
        let ns = group.min(samples - n0);
        (0..th).step_by(rows).map(move |ty0| {
            let band = Band {
                samples: ns,
                ty0,
                rows: rows.min(th - ty0),
            };
            (n0, band)
        })
    })
}

/// Whether [`Band`]s of `geo`'s tiles fit the buffers: at most [`TB`] tiles to a row and
/// [`XT_PIXELS`] input pixels to a block.
pub(crate) const fn bands_fit(geo: &ConvGeometry) -> bool {
    let (tw, th) = grid(geo);
    let per = tw * th;
    if per <= TB {
        TB / per * geo.h * geo.w <= XT_PIXELS
    } else {
        tw <= TB && (2 * (TB / tw) + 2) * geo.w <= XT_PIXELS
    }
}

/// Whether [`crate::conv_gemm::forward`] runs this module's kernel for `samples` samples of
/// `geo` in one call (with AVX-512; [`crate::conv_winograd`]'s on the other instruction
/// sets): a map it [`takes`] with at least 64 output channels (a whole block: with 32, half
/// the lanes would be idle) and 16 tiles in all. Measured (`cargo bench
/// --bench conv_gemm`, alternating, GFLOP/s as direct products, one sample and
/// `gemm_batch`'s 8): ResNet-20's 64 → 64 on 8×8 85–87 → 101–105 and 118 → 171 (by
/// [`crate::conv_winograd`] with the tiles along the lanes), ResNet-18's 512 → 512 on 7×7
/// 66–77 → 85–91 (by the product on `X̂`) and 94 → 126–135, 256 → 256 on 14×14 124–132 →
/// 165–167, VGG-16's 512 → 512 on 14×14 128–131 → 154–156.
pub const fn pays_for(geo: &ConvGeometry, samples: usize) -> bool {
    takes(geo) && geo.c_out >= MAX_OB && crate::conv_winograd_tiles::tiles(geo) * samples >= 16
}

/// Whether `samples` samples of `geo` in one call fill this module's blocks better than one
/// at a time: it [`pays_for`] them and one sample's tiles fill less than a block (16 tiles of
/// 64 on ResNet-20's 8×8 maps and ResNet-18's 7×7). A batch's inference then runs the layer
/// on the whole batch ([`crate::BatchLayer::INFER_WHOLE_BATCH`]) rather than sample by sample.
pub(crate) const fn fills_more_with(geo: &ConvGeometry, samples: usize) -> bool {
    samples > 1 && pays_for(geo, samples) && crate::conv_winograd_tiles::tiles(geo) < TB
}

/// Whether [`crate::conv_gemm::input_grad`] runs this module's kernel for `samples` samples
/// of `geo` in one call: the input gradient of a 3×3 convolution at stride 1 with padding
/// 1 is itself one, run where that convolution [`pays_for`] them.
pub const fn pays_input_grad_for(geo: &ConvGeometry, samples: usize) -> bool {
    geo.pad == 1
        && geo.stride == 1
        && pays_for(&crate::conv_winograd::input_grad_geometry(geo), samples)
}

/// The output channels `chans` of the convolution `geo` of the samples `x` by `w` (one
/// sample's output channels `chans` as rows of `y`, or, for several samples, every output
/// channel of each sample, one sample after the other), from the biases `b` (zeros
/// without), `NV` vectors of output channels per block, `after` applied to the final sums.
/// With `FLIPPED`, `w` holds the weights of the convolution whose input gradient this is
/// (as in [`crate::conv_winograd`]).
#[inline(always)]
pub(crate) fn forward_with<S: Simd, const NV: usize, const FLIPPED: bool>(
    s: S,
    (geo, x, w, b): (&ConvGeometry, &[f32], &[f32], Option<&[f32]>),
    (chans, y): (Range<usize>, &mut [f32]),
    after: Option<After>,
) {
    debug_assert!(takes(geo));
    let nr = NV * S::LANES;
    let samples = geo.samples_of_inputs(x.len());
    let (per, pixels) = (crate::conv_winograd_tiles::tiles(geo), geo.oh * geo.ow);
    debug_assert!(samples == 1 || chans == (0..geo.c_out));
    // `y`'s rows of one sample.
    let rows_per = chans.len();
    let mut u = Aligned([0.0f32; 16 * U_XI]);
    let mut v = Aligned([0.0f32; 16 * V_XI]);
    let mut m = Aligned([0.0f32; 16 * M_XI]);
    // One sample's outputs `[pixel][channel]` (at most 4 per tile).
    let mut out = Aligned([0.0f32; 4 * TB * MAX_OB]);
    // A block of input channels of the block's samples, `[sample][pixel][channel]`.
    let mut xt = Aligned([0.0f32; XT_PIXELS * CB]);
    for (o0, ob) in blocks(rows_per, nr) {
        let o = chans.start + o0;
        for (n0, band) in bands(geo, samples) {
            let (ns, n) = (band.samples, band.tiles(geo));
            debug_assert!(n == ns * per);
            for (c0, cb) in blocks(geo.c_in, CB) {
                weights::<S, NV, FLIPPED>(s, geo, w, (o, ob), (c0, cb), &mut u.0);
                let xs = &x[n0 * geo.input_len()..][..ns * geo.input_len()];
                let rows = (geo.c_in, geo.h, geo.w, band.input_rows(geo));
                to_lanes(s, xs, rows, (c0, cb), CB, &mut xt.0);
                inputs(s, geo, &xt.0, (band, cb), &mut v.0);
                products::<S, NV>(s, (&u.0, &v.0), (n, cb), c0 == 0, &mut m.0);
            }
            for j in 0..ns {
                let sums = (b, after.as_ref(), (o, ob));
                outputs::<S, NV>(s, geo, &m.0, j * per, sums, &mut out.0);
                let at = ((n0 + j) * rows_per + o0) * pixels;
                let dst = &mut y[at..][..ob * pixels];
                if pixels >= S::LANES && ob >= S::LANES {
                    simd::transpose(s, &out.0, (pixels, ob, nr), dst, pixels);
                } else {
                    simd::transpose(simd::Scalar, &out.0, (pixels, ob, nr), dst, pixels);
                }
            }
        }
    }
}

/// The pixels of the input maps of a block of tiles, at most: whole samples of at most 64
/// tiles, each of at most `(2·rows + 2) × (2·columns + 2)` pixels, which is at most 1024
/// (four 8×8 maps take 400, sixteen 4×4 maps 576).
pub(crate) const XT_PIXELS: usize = 1024;

/// `dst[((j·count + r)·w + x)·stride + c] = maps[j][c0 + c][first + r][x]` for the samples
/// `j` of `maps` (each `channels` maps of `h × w`), its rows `first..first + count` and
/// `c < cb`: a block of channels along the lanes, one transpose per sample.
#[inline(always)]
pub(crate) fn to_lanes<S: Simd>(
    s: S,
    maps: &[f32],
    (channels, h, w, (first, count)): (usize, usize, usize, (usize, usize)),
    (c0, cb): (usize, usize),
    stride: usize,
    dst: &mut [f32],
) {
    let (p, len) = (h * w, count * w);
    for (j, x) in maps.chunks_exact(channels * p).enumerate() {
        let src = &x[c0 * p + first * w..][..(cb - 1) * p + len];
        let dst = &mut dst[j * len * stride..][..len * stride];
        if cb >= S::LANES && len >= S::LANES {
            simd::transpose(s, src, (cb, len, p), dst, stride);
        } else {
            simd::transpose(simd::Scalar, src, (cb, len, p), dst, stride);
        }
    }
}

/// `v[ξ·V_XI + t·CB + c] = (Bᵀ d B)_ξ` for the 4×4 input patch `d` of tile `t` of the
/// block `band` in input channel `c < cb` (zeros off the map), read from `xt` (its input rows)
/// ([`to_lanes`]), with `Bᵀ` as in [`crate::conv_winograd`]. The input channels run along
/// the lanes (the lanes past `cb` hold whatever the row held).
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
pub(crate) fn inputs<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    xt: &[f32],
    (band, cb): (Band, usize),
    v: &mut [f32],
) {
    let (h, w, pad, l) = (geo.h, geo.w, geo.pad, S::LANES);
    let tw = grid(geo).0;
    let (first, count) = band.input_rows(geo);
    let zero = s.splat(0.0);
    for j in 0..band.samples {
        for ty in band.tile_rows() {
            for tx in 0..tw {
                let t = band.tile(tw, (j, ty, tx));
                for c in (0..cb).step_by(l) {
                    // The patch, rows then Bᵀ along each row.
                    let mut r = [[zero; 4]; 4];
                    for i in 0..4 {
                        let iy = (2 * ty + i).wrapping_sub(pad);
                        let mut d = [zero; 4];
                        if iy < h {
                            for jj in 0..4 {
                                let ix = (2 * tx + jj).wrapping_sub(pad);
                                if ix < w {
                                    let row = j * count + iy - first;
                                    d[jj] = s.load(xt, (row * w + ix) * CB + c);
                                }
                            }
                        }
                        r[i] = [
                            s.sub(d[0], d[2]),
                            s.add(d[1], d[2]),
                            s.sub(d[2], d[1]),
                            s.sub(d[1], d[3]),
                        ];
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
                            s.store(v, (4 * a + bb) * V_XI + t * CB + c, value);
                        }
                    }
                }
            }
        }
    }
}

/// `u[ξ·U_XI + c·nr + r] = (G g Gᵀ)_ξ` for the kernel `g` of output channel `o0 + r` and
/// input channel `c0 + c` (`r < ob`, `c < cb`; zeros for `r` from `ob` to `nr`), with `G`
/// as in [`crate::conv_winograd`]. The output channels run along the lanes: a whole
/// vector's kernels (each 9 values long) are gathered by a transpose (for all `cb` input
/// channels at once where they lie one after the other, else one `LANES × LANES` square per
/// input channel, read at a stride of 9), a partial one tap by tap.
#[inline(always)]
fn weights<S: Simd, const NV: usize, const FLIPPED: bool>(
    s: S,
    geo: &ConvGeometry,
    w: &[f32],
    (o0, ob): (usize, usize),
    (c0, cb): (usize, usize),
    u: &mut [f32],
) {
    let l = S::LANES;
    let mut taps = [0.0f32; 16 * 16];
    // A vector of output channels' kernels for the block's input channels, `[c·9 + tap][lane]`.
    let mut all = [0.0f32; 9 * CB * 16];
    for k in 0..NV {
        let (first, n) = (k * l, ob.saturating_sub(k * l).min(l));
        let whole = !FLIPPED && n == l && l > 1 && 9 * cb >= l;
        if whole {
            let src = &w[((o0 + first) * geo.c_in + c0) * 9..];
            simd::transpose(s, src, (l, 9 * cb, 9 * geo.c_in), &mut all, l);
        }
        for c in 0..cb {
            let mut g = [s.splat(0.0); 9];
            if whole {
                for (tap, g) in g.iter_mut().enumerate() {
                    *g = s.load(&all, (c * 9 + tap) * l);
                }
                transform::<S, NV>(s, g, (c, first), u);
                continue;
            }
            if FLIPPED && n == l && l > 1 {
                // The vector's kernels lie one after the other, `[lane][tap]`: a square of
                // `l` rows of `l` values at a stride of 9 (the last row reads `l − 9` values
                // past the last kernel, so not at the end of `w`).
                let at = ((c0 + c) * geo.c_out + o0 + first) * 9;
                if at + 9 * (l - 1) + l <= w.len() {
                    simd::transpose(s, &w[at..], (l, l, 9), &mut taps, l);
                    for (tap, g) in g.iter_mut().enumerate() {
                        *g = s.load(&taps, (8 - tap) * l);
                    }
                    transform::<S, NV>(s, g, (c, first), u);
                    continue;
                }
            }
            // Lanes past the block's channels: zeros.
            taps.fill(0.0);
            for lane in 0..n {
                let o = o0 + first + lane;
                if FLIPPED {
                    let g = &w[((c0 + c) * geo.c_out + o) * 9..][..9];
                    for (tap, &g) in g.iter().rev().enumerate() {
                        taps[tap * l + lane] = g;
                    }
                } else {
                    let g = &w[(o * geo.c_in + c0 + c) * 9..][..9];
                    for (tap, &g) in g.iter().enumerate() {
                        taps[tap * l + lane] = g;
                    }
                }
            }
            for (tap, g) in g.iter_mut().enumerate() {
                *g = s.load(&taps, tap * l);
            }
            transform::<S, NV>(s, g, (c, first), u);
        }
    }
}

/// `u[ξ·U_XI + c·nr + first ..] = (G g Gᵀ)_ξ` for a vector of kernels `g` (tap by tap).
#[inline(always)]
fn transform<S: Simd, const NV: usize>(
    s: S,
    g: [S::F; 9],
    (c, first): (usize, usize),
    u: &mut [f32],
) {
    let nr = NV * S::LANES;
    for (xi, value) in kernel_transform(s, g).into_iter().enumerate() {
        s.store(u, xi * U_XI + c * nr + first, value);
    }
}

/// `m[ξ·M_XI + t·nr ..] (+)= Σ_c v[ξ][c][t] · u[ξ][c][..]` for the block's `n` tiles (rows, a
/// run of [`MR`] at a time) and `NV` vectors of output channels, over its `cb` input
/// channels: from zero for the first block of input channels, onto the sums so far for
/// the others.
#[inline(always)]
fn products<S: Simd, const NV: usize>(
    s: S,
    (u, v): (&[f32], &[f32]),
    (n, cb): (usize, usize),
    first: bool,
    m: &mut [f32],
) {
    let nr = NV * S::LANES;
    for xi in 0..16 {
        let b = &u[xi * U_XI..][..cb * nr];
        for t0 in (0..n).step_by(MR) {
            let mut c = [[s.splat(0.0); NV]; MR];
            if !first {
                for (r, c) in c.iter_mut().enumerate() {
                    *c = simd::load_vectors(s, m, xi * M_XI + (t0 + r) * nr, S::LANES);
                }
            }
            let a = Rows::new(&v[xi * V_XI..], (t0, CB), ((n - t0).min(MR), cb), &ZEROS);
            micro(s, a, (b, nr), cb, &mut c);
            for (r, c) in c.into_iter().enumerate() {
                for (k, c) in c.into_iter().enumerate() {
                    s.store(m, xi * M_XI + (t0 + r) * nr + k * S::LANES, c);
                }
            }
        }
    }
}

/// One sample's tiles, from tile `t0` of the block on, of the block's sums `m` transformed back
/// (`Aᵀ M A`, `A` as in [`crate::conv_winograd`]), added to the biases of output channels
/// `o0..o0 + ob` (`b`, zeros without) and mapped by `after`, into `out[pixel·nr + r]`.
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
fn outputs<S: Simd, const NV: usize>(
    s: S,
    geo: &ConvGeometry,
    m: &[f32],
    t0: usize,
    (b, after, (o0, ob)): (Option<&[f32]>, Option<&After>, (usize, usize)),
    out: &mut [f32],
) {
    let (l, nr, oh, ow) = (S::LANES, NV * S::LANES, geo.oh, geo.ow);
    for k in 0..NV {
        let (first, n) = (k * l, ob.saturating_sub(k * l).min(l));
        if n == 0 {
            break;
        }
        let bias = b.map_or(s.splat(0.0), |b| s.load_partial(b, o0 + first, n));
        let (tw, th) = grid(geo);
        for ty in 0..th {
            for tx in 0..tw {
                let t = t0 + ty * tw + tx;
                let at = |xi: usize| xi * M_XI + t * nr + first;
                // Aᵀ down the columns, then along the rows.
                let mut sums = [[s.splat(0.0); 4]; 2];
                for bb in 0..4 {
                    let m0 = s.load(m, at(bb));
                    let m1 = s.load(m, at(4 + bb));
                    let m2 = s.load(m, at(8 + bb));
                    let m3 = s.load(m, at(12 + bb));
                    sums[0][bb] = s.add(s.add(m0, m1), m2);
                    sums[1][bb] = s.sub(s.sub(m1, m2), m3);
                }
                for (dy, s_) in sums.into_iter().enumerate() {
                    let left = s.add(s.add(s_[0], s_[1]), s_[2]);
                    let right = s.sub(s.sub(s_[1], s_[2]), s_[3]);
                    let (oy, ox) = (2 * ty + dy, 2 * tx);
                    if oy >= oh {
                        continue;
                    }
                    for (dx, value) in [(0, left), (1, right)] {
                        if ox + dx < ow {
                            let mut total = [s.add(bias, value)];
                            if let Some(after) = after {
                                apply(s, after, (o0 + first, n), &mut total);
                            }
                            s.store(out, (oy * ow + ox + dx) * nr + first, total[0]);
                        }
                    }
                }
            }
        }
    }
}

/// `after` on a vector of output channels `o..o + n`: its constants loaded as vectors, each
/// operation rounded as [`After::apply`] rounds it, so the result is the same bit for bit.
#[inline(always)]
pub(crate) fn apply<S: Simd>(s: S, after: &After, (o, n): (usize, usize), v: &mut [S::F; 1]) {
    if let Some(a) = &after.affine {
        let mean = s.load_partial(a.mean, o, n);
        let scale = s.load_partial(a.scale, o, n);
        let shift = s.load_partial(a.shift, o, n);
        v[0] = s.add(s.mul(s.sub(v[0], mean), scale), shift);
    }
    if after.epilogue == crate::Epilogue::Relu {
        v[0] = s.relu(v[0]);
    }
}
