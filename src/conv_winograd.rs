//! The forward pass of a 3×3, stride-1 convolution in `f32` by Winograd's minimal filtering
//! F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
//! each 2×2 block of outputs ("tile") of each pair of channels costs 16 multiply-adds
//! instead of 36. [`crate::conv_gemm::forward`] runs it where it [`pays`]: VGG's, ResNet's
//! and DenseNet's 3×3 layers, except the widest on the smallest maps.
//!
//! With `d` the 4×4 input patch of a tile (zeros past the map's edge), `g` a 3×3 kernel and
//! `Bᵀ`, `G`, `Aᵀ` the constant matrices below, the tile's 2×2 outputs are
//! `Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A`: sixteen matrix products, one per position `ξ` of
//! the 4×4 transformed tile, of the transformed weights `U_ξ [c_out × c_in]` by the
//! transformed inputs `V_ξ [c_in × tiles]`. Every product runs through
//! [`crate::conv_gemm`]'s register-blocked microkernel, with the tiles along the vector lanes.
//!
//! Nothing is built whole: the weights of up to 64 output channels and 32 input channels
//! are transformed into a buffer, then for each block of up to 64 tiles the inputs of those
//! channels, and each block of 4 output channels' sums is transformed back and added to the
//! output as it is stored (so the sum over the input channels runs in blocks of 32). The
//! buffers are fixed-size (about 290 KB on the stack), whatever the layer. Every sum runs in
//! an order fixed by the geometry alone, so a result is the same, bit for bit, from one call
//! to the next and on one thread or two (split by output channels).
//!
//! The transforms mix a tile's 4×4 input patch, so a NaN or an infinity in it can reach all
//! four of the tile's outputs, where the direct sum confines it to the outputs whose windows
//! read it (as in any Winograd convolution, oneDNN's among them).
//!
//! The transforms add and subtract, and halve (exact in binary): the result differs from the
//! direct sum by a few units in the last place of the largest terms, like any other order of
//! summation (the tests bound it against the `f64` reference).
//!
//! ```
//! use constnet::{conv_gemm, conv_winograd};
//! use constnet::conv_kernel::{self, ConvGeometry};
//! const GEO: ConvGeometry = ConvGeometry {
//!     c_in: 16, c_out: 16, groups: 1, k: 3, stride: 1, pad: 1, h: 30, w: 30, oh: 30, ow: 30,
//! }
//! .checked();
//! assert!(conv_winograd::pays(&GEO));
//! let x: Vec<f32> = (0..GEO.input_len()).map(|i| (i % 5) as f32).collect();
//! let w: Vec<f32> = (0..GEO.weight_len()).map(|i| (i % 3) as f32 - 1.0).collect();
//! let (mut y, mut direct) = (vec![0.0; GEO.output_len()], vec![0.0; GEO.output_len()]);
//! conv_gemm::forward(&GEO, &x, &w, &[0.5; 16], &mut y); // runs F(2×2, 3×3)
//! conv_kernel::forward(&GEO, &x, &w, &[0.5; 16], &mut direct);
//! assert_eq!(y, direct); // small integers (and halves): every sum is exact in any order
//! ```

use core::ops::Range;

use crate::columns::ColumnsMut;
use crate::conv_gemm_micro::{After, blocks};
use crate::conv_kernel::ConvGeometry;
use crate::conv_winograd_tiles::{
    Aligned, Block, CB, MAX_TB, MAX_W, MB, MR, Prepared, ROW, Segment, Sum, Weights, add_to, grid,
    inputs, kernel_transform, kernels, products, segments, tiles, v_xi,
};
use crate::simd::Simd;

/// The fewest tiles (2×2 blocks of outputs) for which the transforms pay: 16, a map of 7×7
/// or 8×8 outputs, for layers of at most [`NARROW`] output channels; [`WIDE_MIN_TILES`] for
/// wider ones. The weights' transform is redone on every call, at a cost per pair of
/// channels of a few tiles' products; the product on the packed input (`conv_gemm`) runs
/// least efficiently on narrow layers, which share each packed panel among few channels.
/// Measured (`cargo bench --bench conv_gemm`, BENCHMARKS.md): 64 → 64 channels on 8×8
/// 1.10× faster, 128 → 32 on 7×7 1.16×, 256 → 256 on 14×14 1.26–1.40× and 512 → 512 1.15×
/// (their inputs transformed once for all the output channels), but 512 → 512 on 7×7
/// 0.85×.
const MIN_TILES: usize = 16;
/// See [`MIN_TILES`]: 49, a map of 13×13 or 14×14 outputs.
const WIDE_MIN_TILES: usize = 49;
/// See [`MIN_TILES`].
const NARROW: usize = 64;

/// Whether [`crate::conv_gemm::forward`] runs F(2×2, 3×3) for `geo`: a 3×3 kernel at stride
/// 1 with padding 0 or 1, one group, at least 16 channels in and out, a map at most 512
/// wide, and enough 2×2 tiles of outputs: 16 (a map of 7×7 or 8×8 outputs) for layers of
/// at most 64 output channels, 49 (14×14) for wider ones (the weights' transform, redone on
/// every call, costs as much per pair of channels as a few tiles' products). A `const fn`,
/// decided once per layer.
///
/// ```
/// use constnet::{conv_winograd, conv_kernel::ConvGeometry};
/// let vgg = ConvGeometry {
///     c_in: 64, c_out: 64, groups: 1, k: 3, stride: 1, pad: 1, h: 56, w: 56, oh: 56, ow: 56,
/// };
/// assert!(conv_winograd::pays(&vgg));
/// assert!(!conv_winograd::pays(&ConvGeometry { stride: 2, oh: 28, ow: 28, ..vgg }));
/// assert!(conv_winograd::pays(&ConvGeometry { h: 8, w: 8, oh: 8, ow: 8, ..vgg }));
/// let wide = ConvGeometry { c_in: 512, c_out: 512, ..vgg };
/// assert!(conv_winograd::pays(&ConvGeometry { h: 14, w: 14, oh: 14, ow: 14, ..wide }));
/// assert!(!conv_winograd::pays(&ConvGeometry { h: 7, w: 7, oh: 7, ow: 7, ..wide }));
/// ```
pub const fn pays(geo: &ConvGeometry) -> bool {
    fits(geo)
        && tiles(geo)
            >= if geo.c_out <= NARROW {
                MIN_TILES
            } else {
                WIDE_MIN_TILES
            }
}

/// Whether this module's kernels can run `geo`, whatever they cost: a 3×3 kernel at stride 1
/// with padding 0 or 1, one group, at least 16 channels in and out, a map at most 512 wide.
pub(crate) const fn fits(geo: &ConvGeometry) -> bool {
    geo.k == 3
        && geo.stride == 1
        && geo.pad <= 1
        && geo.groups == 1
        && geo.c_in >= 16
        && geo.c_out >= 16
        && geo.w <= MAX_W
}

/// Whether [`crate::conv_gemm::input_grad`] runs F(2×2, 3×3) for `geo`: the input gradient
/// of a 3×3 convolution at stride 1 with padding 1 is itself one (of the output gradient,
/// with the weights transposed and each kernel turned by 180°, padding 1), run where that
/// convolution [`pays`].
pub const fn pays_input_grad(geo: &ConvGeometry) -> bool {
    geo.pad == 1 && geo.stride == 1 && pays(&input_grad_geometry(geo))
}

/// The convolution that gives `geo`'s input gradient (for `geo` of stride 1 and a 3×3
/// kernel): from the `c_out` maps of the output gradient to the `c_in` of the input's.
pub(crate) const fn input_grad_geometry(geo: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        c_in: geo.c_out,
        c_out: geo.c_in,
        pad: geo.k - 1 - geo.pad,
        h: geo.oh,
        w: geo.ow,
        oh: geo.h,
        ow: geo.w,
        ..*geo
    }
}

/// The output channels `chans` (rows of `y`, channel `chans.start` in row 0) of the
/// convolution `geo` of `x` by `w`, at `y`'s columns (pixels), which must be whole rows of
/// tiles (2 rows of outputs each, the last row of the map may be the last of them), from the
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
    prepared: Option<Prepared>,
) {
    let samples = geo.samples_of_inputs(x.len());
    debug_assert!(fits(geo));
    let tb = NV * S::LANES;
    // The tiles of `y`'s columns: whole rows of tiles (2 rows of outputs each); of several
    // samples, all of their tiles, one sample after the other.
    let (tw, tile_row) = (geo.ow.div_ceil(2), 2 * geo.ow);
    let cols = y.cols();
    debug_assert!(
        cols.start.is_multiple_of(tile_row)
            && (cols.end.is_multiple_of(tile_row) || cols.end == geo.oh * geo.ow)
            && (samples == 1 || cols == (0..geo.oh * geo.ow))
    );
    let tiles = match samples {
        1 => cols.start / tile_row * tw..cols.end.div_ceil(tile_row) * tw,
        _ => 0..samples * tiles(geo),
    };
    // The weights' transform of one block, only where a batch did not transform them all:
    // zeroing its 128 KiB at every call was 2–3% of ResNet-20's batch inference, whose
    // first stages run sample by sample.
    let mut u_block;
    let u: &mut [f32] = match prepared {
        Some(_) => &mut [],
        None => {
            u_block = Aligned([0.0f32; 16 * MB * CB]);
            &mut u_block.0
        }
    };
    let mut v = Aligned([0.0f32; 16 * v_xi(MAX_TB)]);
    // One vector more: the last row's last tiles are read as a whole vector.
    let mut m = Aligned([0.0f32; 16 * MR * MAX_TB + 16]);
    // Padded input rows: zeros left of the map and right of it, written once.
    let mut rows = Aligned([[[0.0f32; ROW]; 4]; 2]);
    let b = b.map(|b| &b[chans.start..]);
    let after = after.map(|a| a.from(chans.start));
    let weights_of =
        |o0: usize, c0: usize| prepared.map(|p| Weights::Prepared(p, (o0, c0, geo.c_in)));
    let sum = |c0: usize, cb: usize| Sum {
        first: c0 == 0,
        last: c0 + cb == geo.c_in,
    };
    // A map of one block of tiles (at most 64: 16×16 and smaller) runs the blocks of output
    // channels inside those of input channels: its inputs are transformed once per block of
    // input channels, for every block of output channels, rather than once per block of
    // output channels. (One loop nest for both orders: each kernel is inlined once.)
    let one_block = tiles.len() <= tb;
    let (outer, inner) = match one_block {
        true => ((geo.c_in, CB), (chans.len(), MB)),
        false => ((chans.len(), MB), (geo.c_in, CB)),
    };
    for first in blocks(outer.0, outer.1) {
        for second in blocks(inner.0, inner.1) {
            let ((o0, ob), (c0, cb)) = match one_block {
                true => (second, first),
                false => (first, second),
            };
            let o0 = chans.start + o0;
            let a = match weights_of(o0, c0) {
                Some(a) => a,
                None => {
                    weights::<S, FLIPPED>(s, geo, w, (o0, ob), (c0, cb), u);
                    Weights::Block(u)
                }
            };
            for t0 in tiles.clone().step_by(tb) {
                let n = tb.min(tiles.end - t0);
                if !one_block || o0 == chans.start {
                    inputs(s, geo, x, (c0, cb), (t0, n, tb), &mut v.0, &mut rows.0);
                }
                let block = Block { t0, n, tb, cb };
                let out = (o0 - chans.start, ob);
                let sums = (b, after, sum(c0, cb));
                block_of::<S, NV>(s, (geo, a, &v.0, &mut m.0), block, out, sums, &mut y);
            }
        }
    }
}

/// The products of a block of tiles and of `ob` output channels from row `y0` of `y` on, in
/// blocks of [`MR`], each transformed back and added to `y` as it is done.
#[inline(always)]
fn block_of<S: Simd, const NV: usize>(
    s: S,
    (geo, a, v, m): (&ConvGeometry, Weights, &[f32], &mut [f32]),
    block: Block,
    (y0, ob): (usize, usize),
    sums: (Option<&[f32]>, Option<After>, Sum),
    y: &mut ColumnsMut,
) {
    let col0 = y.cols().start;
    for r0 in (0..ob).step_by(MR) {
        let mr = MR.min(ob - r0);
        let rows = (r0, mr);
        match block.n.div_ceil(S::LANES) {
            k if k >= NV => products::<S, NV, 16>(s, a, v, block, rows, m),
            1 => products::<S, 1, 16>(s, a, v, block, rows, m),
            2 => products::<S, 2, 16>(s, a, v, block, rows, m),
            _ => products::<S, 3, 16>(s, a, v, block, rows, m),
        }
        outputs(s, geo, m, block, (y0 + r0, mr), sums, (y, col0));
    }
}

/// Transforms the weights `w` of `geo` (a layer F(2×2, 3×3) [`pays`] for) once, into `lo`
/// and `hi` as [`Prepared`] reads them: the same values, bit for bit, as each pass would
/// compute, so a pass on them gives the same result.
#[inline]
pub(crate) fn prepare(geo: &ConvGeometry, w: &[f32], lo: &mut [f32], hi: &mut [f32]) {
    assert!(pays(geo) && w.len() == geo.weight_len());
    let len = geo.c_out * geo.c_in;
    assert!(lo.len() >= 9 * len && hi.len() >= 7 * len);
    crate::simd::dispatch(Prepare { geo, w, lo, hi });
}

struct Prepare<'a> {
    geo: &'a ConvGeometry,
    w: &'a [f32],
    lo: &'a mut [f32],
    hi: &'a mut [f32],
}

impl crate::simd::Kernel for Prepare<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Prepare { geo, w, lo, hi } = self;
        let (c_in, len) = (geo.c_in, geo.c_out * geo.c_in);
        let mut u = Aligned([0.0f32; 16 * MB * CB]);
        for (o0, ob) in blocks(geo.c_out, MB) {
            for (c0, cb) in blocks(c_in, CB) {
                weights::<S, false>(s, geo, w, (o0, ob), (c0, cb), &mut u.0);
                for xi in 0..16 {
                    let dst = match xi {
                        0..9 => &mut lo[xi * len..][..len],
                        _ => &mut hi[(xi - 9) * len..][..len],
                    };
                    for r in 0..ob {
                        let src = &u.0[(xi * MB + r) * CB..][..cb];
                        dst[(o0 + r) * c_in + c0..][..cb].copy_from_slice(src);
                    }
                }
            }
        }
    }
}

/// `u[(ξ·MB + r)·CB + c] = (G g Gᵀ)_ξ` for the kernel `g` of output channel `o0 + r` and
/// input channel `c0 + c` (`r < ob`, `c < cb`), with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`. The input channels run along the
/// lanes: a vector's kernels are gathered tap by tap into `taps` first (they lie 9 apart).
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
            for (xi, value) in kernel_transform(s, g).into_iter().enumerate() {
                s.store_partial(u, (xi * MB + r) * CB + c, n, value);
            }
        }
    }
}

/// Transforms rows `0..mr` of `m` back (`Aᵀ M A`, `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`)
/// and adds them to rows `out.0..out.0 + mr` of `y` (whose columns start at pixel `col0`):
/// to the biases for the first block of input channels, to the sums so far for the others,
/// `after` applied after the last.
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
    for r in 0..mr {
        let bias = s.splat(b.map_or(0.0, |b| b[y0 + r]));
        for Segment {
            sample,
            ty,
            tx0,
            count,
            at,
        } in segments(grid(geo), (t0, n))
        {
            // Each sample's output channels are rows of `y` one sample after the other.
            let yr = y.row(sample * geo.c_out + y0 + r);
            for k in (0..count).step_by(l) {
                let at = |xi: usize| (xi * MR + r) * tb + at + k;
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
                let mut pairs = [(s.splat(0.0), s.splat(0.0)); 2];
                for (pair, s_) in pairs.iter_mut().zip(sums) {
                    let left = s.add(s.add(s_[0], s_[1]), s_[2]);
                    let right = s.sub(s.sub(s_[1], s_[2]), s_[3]);
                    *pair = s.interleave(left, right);
                }
                // Output rows 2ty and 2ty + 1 (if on the map), columns 2tx.. of these tiles.
                let (x0, cols) = (2 * (tx0 + k), (2 * (count - k)).min(ow - 2 * (tx0 + k)));
                for (dy, (lo, hi)) in pairs.into_iter().enumerate() {
                    let oy = 2 * ty + dy;
                    if oy >= oh {
                        continue;
                    }
                    let base = oy * ow + x0 - col0;
                    for (half, value) in [(0, lo), (l, hi)] {
                        if half < cols {
                            let to = (base + half, cols - half);
                            add_to(s, yr, to, value, (bias, sum, after.as_ref(), y0 + r));
                        }
                    }
                }
            }
        }
    }
}
