//! The weight gradient by F(2×2, 3×3) ([`crate::conv_winograd_grad`]'s algorithm) with the
//! **channels along the vector lanes**, for maps of at most 64 tiles (128 outputs) to a row:
//! the backward counterpart of [`crate::conv_winograd_channels`].
//!
//! [`crate::conv_winograd_grad`] transforms the inputs and the output gradient with the
//! tiles along the lanes: on a 7×7 or 8×8 map a row holds 4 tiles, so its transforms fill 4
//! lanes of 16, and the transformed inputs are transposed again before every product (it
//! ran ResNet-20's 64 → 64 on 8×8 and ResNet-18's 512 → 512 on 7×7 slower than the direct
//! product, which they took instead; about 100 GFLOP/s on the large maps). Here both are
//! transformed along their channels: each block of 32 input channels of a block of tiles
//! is transposed to `[pixel][channel]` (`conv_winograd_channels::to_lanes`), each
//! block of up to 64 output channels of the output gradient likewise, so a tile's 4×4 patch
//! is 16 vector loads and its 2×2 block of the output gradient 4, whatever the map's width.
//! The products `∂E/∂U_ξ[o][c] = Σ_t ∂E/∂M_ξ[t][o] · V_ξ[t][c]` then run straight from
//! those layouts through [`crate::conv_gemm`]'s microkernel (output channels as its rows,
//! read at a stride, input channels along its lanes: two vectors, or one with twice the
//! rows for blocks of at most 16 channels), over the tiles of every sample before each
//! kernel's `Gᵀ (∂E/∂U) G` is scaled and added, once. The 16 positions `ξ` of each
//! transformed block lie a block and a cache line apart, not a whole block (8 or 16 KB):
//! a tile's 16 stores then fall in different sets of the L1 cache (25–40% faster).
//!
//! A block of tiles (`conv_winograd_channels::bands`) holds whole samples where
//! one has at most 64 tiles, so a batch's small maps fill the depth of the products, else
//! a band of whole tile rows of one sample. Every sum runs in an order fixed by the
//! geometry and the number of samples, so a result is the same, bit for bit, from one call
//! to the next. [`crate::conv_gemm`] runs it with AVX-512 only (one instantiation),
//! [`crate::conv_winograd_grad`] or the direct product on the other instruction sets.
//!
//! ```
//! use constnet::{conv_gemm, conv_winograd_grad_channels};
//! use constnet::conv_kernel::{self, ConvGeometry};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 32, c_out: 64, groups: 1, k: 3, stride: 1, pad: 1, h: 8, w: 8, oh: 8, ow: 8,
//! }
//! .checked();
//! assert!(conv_winograd_grad_channels::pays_weight_grad_for(&GEO, 2));
//! let x: Vec<f32> = (0..2 * GEO.input_len()).map(|i| (i % 5) as f32).collect();
//! let g: Vec<f32> = (0..2 * GEO.output_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut gw, mut gb) = (vec![0.0; GEO.weight_len()], vec![0.0; 64]);
//! conv_gemm::weight_grad(&GEO, &x, &g, &mut gw, &mut gb, 1.0); // two samples, by this module
//! let (mut direct, mut db) = (vec![0.0; GEO.weight_len()], vec![0.0; 64]);
//! conv_kernel::weight_grad(&GEO, &x, &g, &mut direct, &mut db, 1.0);
//! assert_eq!(gw, direct); // small integers (and halves): every sum is exact in any order
//! ```

use crate::conv_gemm_micro::{Strided, blocks, micro};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd::fits;
use crate::conv_winograd_channels::{
    Band, TB, V_XI, XT_PIXELS, bands, bands_fit, inputs, to_lanes,
};
use crate::conv_winograd_grad::{MB, add_kernels, output_grad_transform};
use crate::conv_winograd_tiles::{Aligned, CB, grid};
use crate::simd::Simd;

/// Output channels of one run of the microkernel (its rows).
const MR: usize = 8;
/// Vectors of input channels of one run of the microkernel (its lanes: a block of 32).
const NV: usize = 2;
/// The distance between two positions `ξ` of the transformed output gradient `dm`: a
/// block's `TB × MB` values and a cache line more (see [`V_XI`]).
const DM_XI: usize = TB * MB + 16;
/// The output gradient's pixels of a block of tiles, at most: 4 per tile.
const GT_PIXELS: usize = 4 * TB;

/// Whether this module's kernel can run `geo`: where [`crate::conv_winograd`]'s can (a 3×3
/// kernel at stride 1 with padding 0 or 1, one group, at least 16 channels in and out), on
/// a map of at least 16 outputs whose blocks of tiles fit the buffers (at most 64 tiles, 128
/// outputs, to a row).
pub const fn takes(geo: &ConvGeometry) -> bool {
    fits(geo) && geo.oh * geo.ow >= 16 && bands_fit(geo)
}

/// Whether [`crate::conv_gemm::weight_grad`] runs this module's kernel for `samples` samples
/// of `geo` in one call (with AVX-512): a map it [`takes`], with at least 32 tiles in all
/// (the depth of the products: one 7×7 sample's 16 ran ResNet-18's 512 → 512 at 45 GFLOP/s
/// against 58 by the direct product). Measured (`cargo bench --bench conv_gemm`,
/// `weight_grad/gemm_batch`, 8 samples, GFLOP/s as direct products, against the path each
/// took before): ResNet-20's 16 → 16 on 32×32 66 → 119, 32 → 32 on 16×16 77 → 135 and
/// 64 → 64 on 8×8 60 → 146; ResNet-18's 64 → 64 on 56×56 100 → 174, 128 → 128 on 28×28 93
/// → 145, 256 → 256 on 14×14 93 → 141 and 512 → 512 on 7×7 90 → 109; DenseNet-121's
/// 128 → 32 on 14×14 47 → 100 and on 7×7 36 → 84.
pub const fn pays_weight_grad_for(geo: &ConvGeometry, samples: usize) -> bool {
    takes(geo) && crate::conv_winograd_tiles::tiles(geo) * samples >= 32
}

/// `gw += scale · ∂E/∂w` of `geo` (a layer [`takes`]) for the inputs `x` and the output
/// gradients `g` of one sample or several one after the other, the sums over all of them
/// complete before they are scaled and added; the biases' gradient is not this function's.
#[inline(always)]
pub(crate) fn weight_grad<S: Simd>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    debug_assert!(takes(geo) && S::LANES * NV == CB);
    let samples = geo.samples_of_inputs(x.len());
    // The sums `[ξ][o][c]`, the transformed inputs `[ξ][t][c]`, the transformed output
    // gradient `[ξ][t][o]`, and the block's channels along the lanes, `[pixel][channel]`.
    let mut du = Aligned([0.0f32; 16 * MB * CB]);
    let mut v = Aligned([0.0f32; 16 * V_XI]);
    let mut dm = Aligned([0.0f32; 16 * DM_XI]);
    let mut xt = Aligned([0.0f32; XT_PIXELS * CB]);
    let mut gt = Aligned([0.0f32; GT_PIXELS * MB]);
    for (o0, ob) in blocks(geo.c_out, MB) {
        for (c0, cb) in blocks(geo.c_in, CB) {
            du.0.fill(0.0);
            for (n0, band) in bands(geo, samples) {
                let ns = band.samples;
                let xs = &x[n0 * geo.input_len()..][..ns * geo.input_len()];
                let rows = (geo.c_in, geo.h, geo.w, band.input_rows(geo));
                to_lanes(s, xs, rows, (c0, cb), CB, &mut xt.0);
                inputs(s, geo, &xt.0, (band, cb), &mut v.0);
                let gs = &g[n0 * geo.output_len()..][..ns * geo.output_len()];
                let rows = (geo.c_out, geo.oh, geo.ow, band.output_rows(geo));
                to_lanes(s, gs, rows, (o0, ob), MB, &mut gt.0);
                output_grads(s, geo, &gt.0, (band, ob), &mut dm.0);
                let parts = (&dm.0[..], &v.0[..]);
                if cb <= S::LANES {
                    products::<S, 16, 1>(s, parts, (ob, band.tiles(geo)), &mut du.0);
                } else {
                    products::<S, MR, NV>(s, parts, (ob, band.tiles(geo)), &mut du.0);
                }
            }
            add_kernels(s, geo, &du.0, (o0, ob), (c0, cb), scale, gw);
        }
    }
}

/// `dm[ξ·DM_XI + t·MB + o] = (A γ Aᵀ)_ξ` for the 2×2 block `γ` of the output gradient of tile
/// `t` of the block `band` in output channel `o < ob` (zeros past the map), read from `gt`
/// (its output rows, `[pixel][channel]`, `MB` apart), with `A` as in `output_grad_transform`.
/// The output channels run along the lanes (the lanes past `ob` hold whatever `gt` held).
#[inline(always)]
fn output_grads<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    gt: &[f32],
    (band, ob): (Band, usize),
    dm: &mut [f32],
) {
    let (oh, ow, l) = (geo.oh, geo.ow, S::LANES);
    let tw = grid(geo).0;
    let (first, count) = band.output_rows(geo);
    let zero = s.splat(0.0);
    for j in 0..band.samples {
        for ty in band.tile_rows() {
            for tx in 0..tw {
                let t = band.tile(tw, (j, ty, tx));
                for o in (0..ob).step_by(l) {
                    // γ = [[a, b], [c, d]], zeros past the map's last row or column.
                    let mut gamma = [zero; 4];
                    for (i, value) in gamma.iter_mut().enumerate() {
                        let (oy, ox) = (2 * ty + i / 2, 2 * tx + i % 2);
                        if oy < oh && ox < ow {
                            let row = j * count + oy - first;
                            *value = s.load(gt, (row * ow + ox) * MB + o);
                        }
                    }
                    for (xi, value) in output_grad_transform(s, gamma).into_iter().enumerate() {
                        s.store(dm, xi * DM_XI + t * MB + o, value);
                    }
                }
            }
        }
    }
}

/// `du[(ξ·MB + o)·CB + c] += Σ_t dm[ξ][t][o] · v[ξ][t][c]` over the block's `n` tiles, for
/// its `ob` output channels (rows, a run of [`MR`] at a time, read `MB` apart) and the
/// [`CB`] lanes of its input channels.
#[inline(always)]
fn products<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    (dm, v): (&[f32], &[f32]),
    (ob, n): (usize, usize),
    du: &mut [f32],
) {
    for xi in 0..16 {
        let (dm, v) = (&dm[xi * DM_XI..], &v[xi * V_XI..]);
        let du = &mut du[xi * MB * CB..][..MB * CB];
        for r0 in (0..ob).step_by(MR) {
            let mut c = [[s.splat(0.0); NV]; MR];
            for (r, c) in c.iter_mut().enumerate() {
                *c = crate::simd::load_vectors(s, du, (r0 + r) * CB, S::LANES);
            }
            micro(s, Strided(&dm[r0..], MB), (v, CB), n, &mut c);
            for (r, c) in c.into_iter().enumerate() {
                for (k, c) in c.into_iter().enumerate() {
                    s.store(du, (r0 + r) * CB + k * S::LANES, c);
                }
            }
        }
    }
}
