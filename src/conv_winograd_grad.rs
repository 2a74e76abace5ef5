//! The weight gradient of a 3×3, stride-1 convolution in `f32` by Winograd's F(2×2, 3×3),
//! for the layers whose forward pass [`crate::conv_winograd`] runs: 16 multiply-adds per
//! 2×2 block of outputs ("tile") and pair of channels instead of 36.
//!
//! The forward pass computes each tile's outputs as `Aᵀ M A` with
//! `M_ξ = Σ_c U_ξ[o][c] · V_ξ[c][t]`, `U = G g Gᵀ` the transformed kernels and `V = Bᵀ d B`
//! the transformed input patches ([`crate::conv_winograd`] has the matrices). Differentiated:
//! the tile's `∂E/∂M = A (∂E/∂Y) Aᵀ` (a 2×2 block of the output gradient spread over 4×4,
//! zeros for outputs past the map's edge), `∂E/∂U_ξ[o][c] = Σ_t ∂E/∂M_ξ[o][t] · V_ξ[c][t]`
//! (sixteen matrix products whose depth is the tiles), and each kernel's
//! `∂E/∂g = Gᵀ (∂E/∂U) G`.
//!
//! Nothing is built whole: for each block of up to 64 output channels and 32 input
//! channels, the block's sums `∂E/∂U` (128 KB) run over the tiles in blocks of 32, the inputs
//! and the output gradient transformed for each; the input channels are moved onto the lanes
//! (the transformed inputs transposed) so that the products run through
//! [`crate::conv_gemm`]'s microkernel, output channels as its rows. Each weight's sum is
//! complete before it is scaled and added, as in [`crate::conv_gemm::weight_grad`]. The
//! buffers are fixed-size, about 390 KB on the stack.
//!
//! ```
//! use constnet::{conv_gemm, conv_winograd_grad};
//! use constnet::conv_kernel::{self, ConvGeometry};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 16, c_out: 16, groups: 1, k: 3, stride: 1, pad: 1, h: 16, w: 16, oh: 16, ow: 16,
//! }
//! .checked();
//! assert!(conv_winograd_grad::pays_weight_grad(&GEO));
//! let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 5) as f32).collect();
//! let g: Vec<f32> = (0..GEO.output_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut gw, mut gb) = (vec![0.0; GEO.weight_len()], vec![0.0; 16]);
//! conv_gemm::weight_grad(&GEO, &x, &g, &mut gw, &mut gb, 1.0); // by F(2×2, 3×3)
//! let (mut direct, mut db) = (vec![0.0; GEO.weight_len()], vec![0.0; 16]);
//! conv_kernel::weight_grad(&GEO, &x, &g, &mut direct, &mut db, 1.0);
//! assert_eq!(gw, direct); // small integers (and halves): every sum is exact in any order
//! ```

use crate::conv_gemm_micro::{Rows, blocks, micro};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd::pays;
use crate::conv_winograd_tiles::{Aligned, CB, ROW, Segment, grid, inputs, segments, tiles, v_xi};
use crate::simd::{Simd, transpose};

/// Output channels of a block of sums.
pub(crate) const MB: usize = 64;
/// Output channels of one run of the microkernel (its rows).
const MR: usize = 8;
/// Vectors of input channels of one run of the microkernel (one for blocks of one vector).
const NV: usize = 2;
/// Tiles transformed at once: the depth of each run of the microkernel.
const TB: usize = 32;

/// The fewest tiles for which this pays: 64, a map of 16×16 outputs or 15×15. On fewer,
/// each block of sums runs over too few tiles for what its transforms cost (measured:
/// ResNet-20's 64 → 64 channels on 8×8 and DenseNet-121's 128 → 32 on 7×7, 16 tiles, ran
/// 0.65× and 0.69× as fast as `conv_gemm`'s product; ResNet-18's 256 → 256 on 14×14,
/// 49 tiles, 1.0×; ResNet-20's 32 → 32 on 16×16, 64 tiles, 1.25×).
const MIN_TILES: usize = 64;

/// Whether [`crate::conv_gemm::weight_grad`] runs F(2×2, 3×3) for `geo`: where the forward
/// pass does ([`pays`]), on maps of at least 64 tiles (16×16 or 15×15 outputs): on fewer,
/// each block of sums runs over too few tiles for what its transforms cost.
pub const fn pays_weight_grad(geo: &ConvGeometry) -> bool {
    pays(geo) && tiles(geo) >= MIN_TILES
}

/// Rows of the output gradient's transform past the block's channels: zeros, a depth long.
static ZEROS: [f32; TB] = [0.0; TB];

/// `gw += scale · ∂E/∂w` of `geo` (a layer [`pays_weight_grad`] for) for the inputs `x` and
/// the output gradients `g` of one sample or several one after the other, the sums over all
/// of them complete before they are scaled and added; the biases' gradient is not this
/// function's.
#[inline(always)]
pub(crate) fn weight_grad<S: Simd>(
    s: S,
    (geo, x, g): (&ConvGeometry, &[f32], &[f32]),
    gw: &mut [f32],
    scale: f32,
) {
    let samples = geo.samples_of_inputs(x.len());
    debug_assert!(pays_weight_grad(geo));
    // The tiles of all the samples, one sample after the other.
    let tiles = samples * tiles(geo);
    // The sums `[ξ][o][c]`, the transformed inputs `[ξ][c][t]` and transposed `[ξ][t][c]`
    // (a row more: a run of the microkernel from a later vector reads whole rows), the
    // transformed output gradient `[ξ][o][t]`.
    let mut du = Aligned([0.0f32; 16 * MB * CB]);
    let mut v = Aligned([0.0f32; 16 * v_xi(TB)]);
    let mut vt = Aligned([0.0f32; 16 * TB * CB + CB]);
    let mut dm = Aligned([0.0f32; 16 * MB * TB]);
    let mut rows = Aligned([[[0.0f32; ROW]; 4]; 2]);
    for (o0, ob) in blocks(geo.c_out, MB) {
        for (c0, cb) in blocks(geo.c_in, CB) {
            du.0.fill(0.0);
            for t0 in (0..tiles).step_by(TB) {
                let n = TB.min(tiles - t0);
                inputs(s, geo, x, (c0, cb), (t0, n, TB), &mut v.0, &mut rows.0);
                // The block's channels and tiles, a whole vector of each at least (the lanes
                // past them are never read back).
                let l = S::LANES;
                let (cr, tr) = (cb.max(l), n.max(l));
                for xi in 0..16 {
                    let (v, vt) = (&v.0[xi * v_xi(TB)..], &mut vt.0[xi * TB * CB..]);
                    transpose(s, v, (cr, tr, TB), vt, CB);
                }
                output_grads(s, geo, g, (o0, ob), (t0, n), &mut dm.0);
                if cb <= l {
                    products::<S, 1>(s, &dm.0, &vt.0, (ob, n, cb), &mut du.0);
                } else {
                    products::<S, NV>(s, &dm.0, &vt.0, (ob, n, cb), &mut du.0);
                }
            }
            add_kernels(s, geo, &du.0, (o0, ob), (c0, cb), scale, gw);
        }
    }
}

/// `dm[(ξ·MB + r)·TB + t] = (A γ Aᵀ)_ξ` for the 2×2 block `γ` of the output gradient of
/// tile `t0 + t` in output channel `o0 + r` (zeros past the map), with
/// `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`. The tiles run along the lanes.
#[inline(always)]
fn output_grads<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    g: &[f32],
    (o0, ob): (usize, usize),
    (t0, n): (usize, usize),
    dm: &mut [f32],
) {
    let (oh, ow, l) = (geo.oh, geo.ow, S::LANES);
    let zero = s.splat(0.0);
    for r in 0..ob {
        for Segment {
            sample,
            ty,
            tx0,
            count,
            at,
        } in segments(grid(geo), (t0, n))
        {
            let plane = &g[(sample * geo.c_out + o0 + r) * oh * ow..][..oh * ow];
            for k in (0..count).step_by(l) {
                let (x0, tn) = (2 * (tx0 + k), (count - k).min(l));
                let cols = (2 * tn).min(ow - x0);
                // Each output row's even and odd columns of these tiles.
                let mut pair = [(zero, zero); 2];
                for (dy, pair) in pair.iter_mut().enumerate() {
                    let oy = 2 * ty + dy;
                    if oy < oh {
                        let row = &plane[oy * ow..][..ow];
                        let lo = s.load_partial(row, x0, cols);
                        let hi = if cols > l {
                            s.load_partial(row, x0 + l, cols - l)
                        } else {
                            zero
                        };
                        *pair = s.deinterleave(lo, hi);
                    }
                }
                let [(a, b), (c, d)] = pair;
                for (xi, value) in output_grad_transform(s, [a, b, c, d])
                    .into_iter()
                    .enumerate()
                {
                    s.store_partial(dm, (xi * MB + r) * TB + at + k, tn, value);
                }
            }
        }
    }
}

/// `(A γ Aᵀ)_ξ` for `ξ = 4i + j` of the 2×2 block `γ = [[a, b], [c, d]]` of an output
/// gradient, with `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`.
#[inline(always)]
pub(crate) fn output_grad_transform<S: Simd>(s: S, [a, b, c, d]: [S::F; 4]) -> [S::F; 16] {
    let zero = s.splat(0.0);
    // A γ: rows of two; then (A γ) Aᵀ.
    let rows = [
        (a, b),
        (s.add(a, c), s.add(b, d)),
        (s.sub(a, c), s.sub(b, d)),
        (s.sub(zero, c), s.sub(zero, d)),
    ];
    let mut out = [zero; 16];
    for (i, (p, q)) in rows.into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&[p, s.add(p, q), s.sub(p, q), s.sub(zero, q)]);
    }
    out
}

/// `du[(ξ·MB + r)·CB + c] += Σ_t dm[ξ][r][t] · vt[ξ][t][c]` over the block's `n` tiles, for
/// its `ob` output channels (rows) and `cb` input channels (lanes, `NV` vectors at a time).
#[inline(always)]
fn products<S: Simd, const NV: usize>(
    s: S,
    dm: &[f32],
    vt: &[f32],
    (ob, n, cb): (usize, usize, usize),
    du: &mut [f32],
) {
    let width = NV * S::LANES;
    for xi in 0..16 {
        let (dm, vt) = (&dm[xi * MB * TB..][..MB * TB], &vt[xi * TB * CB..]);
        let du = &mut du[xi * MB * CB..][..MB * CB];
        for r0 in (0..ob).step_by(MR) {
            let a = Rows::<MR>::new(dm, (r0, TB), ((ob - r0).min(MR), n), &ZEROS);
            for v0 in (0..cb).step_by(width) {
                let mut c = [[s.splat(0.0); NV]; MR];
                for (r, c) in c.iter_mut().enumerate() {
                    for (k, c) in c.iter_mut().enumerate() {
                        *c = s.load(du, (r0 + r) * CB + v0 + k * S::LANES);
                    }
                }
                micro(s, a, (&vt[v0..][..n * CB], CB), n, &mut c);
                for (r, c) in c.into_iter().enumerate() {
                    for (k, c) in c.into_iter().enumerate() {
                        s.store(du, (r0 + r) * CB + v0 + k * S::LANES, c);
                    }
                }
            }
        }
    }
}

/// `gw[o][c] += scale · Gᵀ du[o][c] G` for the block's kernels (output channels `o0..`,
/// input channels `c0..`), with `Gᵀ = [[1, ½, ½, 0], [0, ½, −½, 0], [0, ½, ½, 1]]`. The
/// input channels run along the lanes; each value is scaled and rounded, then added and
/// rounded, as a scalar `+=` would.
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the values in registers
#[inline(always)]
pub(crate) fn add_kernels<S: Simd>(
    s: S,
    geo: &ConvGeometry,
    du: &[f32],
    (o0, ob): (usize, usize),
    (c0, cb): (usize, usize),
    scale: f32,
    gw: &mut [f32],
) {
    let l = S::LANES;
    let half = s.splat(0.5);
    let sv = s.splat(scale);
    // The taps of a vector of kernels, `[tap][lane]`, and rows of zeros to a square; then
    // `[lane][tap]`.
    let rows = l.max(9);
    let (mut taps, mut kernels) = ([0.0f32; 16 * 16], [0.0f32; 16 * 16]);
    for r in 0..ob {
        for c in (0..cb).step_by(l) {
            let at = |xi: usize| (xi * MB + r) * CB + c;
            // Gᵀ down the columns: rows of 4.
            let mut z = [[s.splat(0.0); 4]; 3];
            for bb in 0..4 {
                let (u0, u1, u2, u3) = (
                    s.load(du, at(bb)),
                    s.load(du, at(4 + bb)),
                    s.load(du, at(8 + bb)),
                    s.load(du, at(12 + bb)),
                );
                z[0][bb] = s.add(u0, s.mul(half, s.add(u1, u2)));
                z[1][bb] = s.mul(half, s.sub(u1, u2));
                z[2][bb] = s.add(s.mul(half, s.add(u1, u2)), u3);
            }
            // Then along the rows.
            for (i, [z0, z1, z2, z3]) in z.into_iter().enumerate() {
                let row = [
                    s.add(z0, s.mul(half, s.add(z1, z2))),
                    s.mul(half, s.sub(z1, z2)),
                    s.add(s.mul(half, s.add(z1, z2)), z3),
                ];
                for (j, value) in row.into_iter().enumerate() {
                    s.store(&mut taps, (3 * i + j) * l, value);
                }
            }
            // Each lane's nine taps made contiguous (the taps' rows turned into columns),
            // then added to its kernel, which lies 9 values after the previous lane's.
            transpose(s, &taps, (rows, l, l), &mut kernels, rows);
            for lane in 0..l.min(cb - c) {
                let kernel = &mut gw[((o0 + r) * geo.c_in + c0 + c + lane) * 9..][..9];
                for u in (0..9).step_by(l) {
                    let t = s.load_partial(&kernels, lane * rows + u, 9 - u);
                    let w = s.add(s.load_partial(kernel, u, 9 - u), s.mul(sv, t));
                    s.store_partial(kernel, u, 9 - u, w);
                }
            }
        }
    }
}
