//! A convolution's `f32` kernels in lanes (stride 1, no padding), forward pass: every
//! multiply-add is a vector of lanes (samples) times one broadcast weight, so no lane is
//! wasted at the maps' edges. An element is `LANES / S::LANES` vectors (one with AVX-512);
//! vector `v0` of element `e` of block `b` is at `(b·LEN + e)·LANES + v0`, and each block is
//! computed on its own. The backward kernels are in `conv_lanes_backward`; [`ConvLaneWorkspace`]
//! is what both keep.

use crate::conv_kernel::ConvGeometry;
use crate::lane_layout::{BlockOrder, CacheLines, LANES};
use crate::pairs::Pairs;
use crate::scalar::Scalar;
use crate::simd::{self, Kernel, Simd, for_blocks, spans};
use crate::tensor::Maps;

/// Whether the lane kernels take `geo`: one group, stride 1, no padding, a kernel whose row
/// of taps fits in registers, and at least two output rows.
pub(crate) const fn takes(geo: &ConvGeometry) -> bool {
    geo.groups == 1 && geo.stride == 1 && geo.pad == 0 && geo.k <= 7 && geo.oh >= 2
}

/// A convolution's weights with one value per lane (`[o][c][i][j][lane]`).
pub type LaneWeights<T, const CI: usize, const CO: usize, const K: usize> =
    [[[[[T; LANES]; K]; K]; CI]; CO];

/// What a convolution's lane passes keep: one sample for the reference loops, and the
/// weight and bias gradients per lane, summed over the lanes once per batch.
pub struct ConvLaneWorkspace<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    /// One sample's input.
    pub x: Maps<T, CI, H, W>,
    /// One sample's output, or its gradient.
    pub y: Maps<T, CO, OH, OW>,
    /// One sample's input gradient.
    pub gx: Maps<T, CI, H, W>,
    /// Weight gradient, lane by lane.
    pub gw: CacheLines<LaneWeights<T, CI, CO, K>>,
    /// Bias gradient, lane by lane.
    pub gb: CacheLines<[[T; LANES]; CO]>,
    /// One block's output gradient through a fused ReLU; in inference, the scratch rows of
    /// a pooling done in the kernel (a backward pass writes it before reading it).
    pub g: CacheLines<[Maps<T, CO, OH, OW>; LANES]>,
    /// The block the backward pass expects next: the gradient sums above span the blocks.
    pub order: BlockOrder,
}

/// The forward pass of the blocks of `x` (`[CI][H][W]` per block, in lanes) into `y`
/// (`[CO][OH][OW]`) by the kernels, with the weights `w` (`[CO][CI][K][K]`) and biases `b`;
/// then a ReLU if `relu`, then with `Some(scratch)` (two output rows of every channel, in
/// lanes) a 2×2, stride-2 max pooling, `y` then `[CO][OH / 2][OW / 2]`. Returns `false`,
/// doing nothing, unless `T` is `f32`.
#[inline]
pub(crate) fn forward<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    x: &[T],
    (w, b): (&[T], &[T]),
    y: &mut [T],
    relu: bool,
    pool: Option<&mut [T]>,
) -> bool {
    let (Some(x), Some(y), Some(w), Some(b)) =
        (T::as_f32(x), T::as_f32_mut(y), T::as_f32(w), T::as_f32(b))
    else {
        return false;
    };
    let pool = pool.map(|scratch| T::as_f32_mut(scratch).expect("T is f32"));
    let kernel = Forward::<CI, CO, K, H, W, OH, OW> {
        x,
        w,
        b,
        y,
        relu,
        pool,
    };
    simd::dispatch(kernel);
    true
}

/// `y = b + w ⋆ x` for a batch in lanes.
struct Forward<
    'a,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    y: &'a mut [f32],
    /// Whether to store `max(y, 0)` (NaN passing) instead of `y`.
    relu: bool,
    /// With `Some(scratch)` (room for two output rows of every channel), `y` receives
    /// the 2×2, stride-2 max pooling of the output: two rows at a time are computed into
    /// `scratch`, still in L1 when they are pooled (`OH` and `OW` even).
    pool: Option<&'a mut [f32]>,
}

/// Output channels `o0..o0 + OB` × pixels `px0..px0 + PB` of row `py`, written to row
/// `y_row` of `y` (which has `oh` rows): each tap row's `PB + K − 1` input vectors are
/// loaded once and serve all `OB·K` weights.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
fn forward_block<S: Simd, const OB: usize, const PB: usize, const K: usize>(
    s: S,
    (x, w, b): (&[f32], &[f32], &[f32]),
    (o0, py, px0, v0): (usize, usize, usize, usize),
    (ci, h, wd, oh, ow): (usize, usize, usize, usize, usize),
    (y, y_row): (&mut [f32], usize),
) {
    let mut acc = [[s.splat(0.0); PB]; OB];
    for o in 0..OB {
        acc[o] = [s.splat(b[o0 + o]); PB];
    }
    for c in 0..ci {
        for i in 0..K {
            let at = ((c * h + py + i) * wd + px0) * LANES + v0;
            let mut xs = [s.splat(0.0); 16];
            for t in 0..PB + K - 1 {
                xs[t] = s.load(x, at + t * LANES);
            }
            for o in 0..OB {
                let taps = &w[((o0 + o) * ci + c) * K * K + i * K..][..K];
                for j in 0..K {
                    let wv = s.splat(taps[j]);
                    for p in 0..PB {
                        acc[o][p] = s.mul_add(wv, xs[p + j], acc[o][p]);
                    }
                }
            }
        }
    }
    for o in 0..OB {
        for p in 0..PB {
            let at = (((o0 + o) * oh + y_row) * ow + px0 + p) * LANES + v0;
            s.store(y, at, acc[o][p]);
        }
    }
}

impl<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Kernel for Forward<'_, CI, CO, K, H, W, OH, OW>
{
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        const { assert!(K <= 12, "lane kernels: K too large") };
        let Forward {
            x,
            w,
            b,
            y,
            relu,
            mut pool,
        } = self;
        let blocks = x.chunks_exact(CI * H * W * LANES);
        let y_len = if pool.is_some() {
            CO * (OH / 2) * (OW / 2) * LANES
        } else {
            CO * OH * OW * LANES
        };
        // Two output rows at a time, the last pair moved back to end at `OH` (`OH ≥ 2`),
        // then the ReLU over them while they are in L1. With pooling they go to the
        // scratch buffer and the ReLU comes after the pooling: a quarter of the work, and
        // the same maxima (it keeps order, and a NaN only in the first tap wins). One
        // call site and no ReLU inside the block kernel: it is compiled once (a ReLU
        // chosen per store cost pooled inference 4%, two call sites 5 s of compile time).

        for (x, y) in blocks.pairs(y.chunks_exact_mut(y_len)) {
            for v0 in (0..LANES).step_by(S::LANES) {
                for py in spans(OH, 2) {
                    let out = match pool.as_deref_mut() {
                        Some(scratch) => (scratch, 2, 0),
                        None => (&mut *y, OH, py),
                    };
                    forward_rows::<S, CI, CO, K, H, W, OW>(s, ((x, w, b), v0), py, out);
                    if let Some(scratch) = pool.as_deref() {
                        let y = (&mut *y, py / 2, OH / 2);
                        pool_rows::<S, CO, OW>(s, scratch, y, (v0, relu));
                    } else if relu {
                        relu_rows::<S, CO, OH, OW>(s, y, py, v0);
                    }
                }
            }
        }
    }
}

/// Output rows `py` and `py + 1` of every channel, lanes `v0..v0 + S::LANES`, into rows
/// `row0` and `row0 + 1` of `out` (which has `oh` rows).
#[inline(always)]
#[allow(clippy::type_complexity)]
fn forward_rows<
    S: Simd,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OW: usize,
>(
    s: S,
    (params, v0): ((&[f32], &[f32], &[f32]), usize),
    py: usize,
    (out, oh, row0): (&mut [f32], usize, usize),
) {
    macro_rules! blocks {
        ([$($ob:literal),*], [$($pb:literal),*]) => {
            for_blocks!(const CO, [$($ob),*], |o0, OB| {
                for r in 0..2 {
                    for_blocks!(const OW, [$($pb),*], |px0, PB| {
                        forward_block::<S, OB, PB, K>(
                            s,
                            params,
                            (o0, py + r, px0, v0),
                            (CI, H, W, oh, OW),
                            (out, row0 + r),
                        );
                    });
                }
            });
        };
    }
    if const { S::LANES >= 16 } {
        blocks!([4, 2, 1], [5, 4, 3, 2, 1]);
    } else {
        blocks!([2, 1], [3, 2, 1]);
    }
}

/// The ReLU, in place, over output rows `py` and `py + 1` of every channel of `y`, lanes
/// `v0..v0 + S::LANES`.
#[inline(always)]
fn relu_rows<S: Simd, const C: usize, const OH: usize, const OW: usize>(
    s: S,
    y: &mut [f32],
    py: usize,
    v0: usize,
) {
    for c in 0..C {
        for at in ((c * OH + py) * OW..(c * OH + py + 2) * OW).map(|p| p * LANES + v0) {
            s.store(y, at, s.relu(s.load(y, at)));
        }
    }
}

/// Row `qy` of the 2×2, stride-2 max pooling of `rows` (two rows of `OW` pixels per
/// channel), then a ReLU if `relu`, into `y` (of `oh` rows of `OW / 2`), lanes
/// `v0..v0 + S::LANES`: the taps in [`crate::MaxPool2d`]'s order, the first maximum kept,
/// a NaN above every number (its rule, [`crate::maxpool2d::beats`]).
#[inline(always)]
fn pool_rows<S: Simd, const C: usize, const OW: usize>(
    s: S,
    rows: &[f32],
    (y, qy, oh): (&mut [f32], usize, usize),
    (v0, relu): (usize, bool),
) {
    for c in 0..C {
        for qx in 0..OW / 2 {
            let at = |r: usize, x: usize| ((c * 2 + r) * OW + 2 * qx + x) * LANES + v0;
            let mut best = s.load(rows, at(0, 0));
            for (r, x) in [(0, 1), (1, 0), (1, 1)] {
                let v = s.load(rows, at(r, x));
                best = s.select_gt_nan(v, best, v, best);
            }
            if relu {
                best = s.relu(best);
            }
            s.store(y, ((c * oh + qy) * (OW / 2) + qx) * LANES + v0, best);
        }
    }
}

crate::zeroable!(impl [T: Scalar, const CI: usize, const CO: usize, const K: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for ConvLaneWorkspace [T, CI, CO, K, H, W, OH, OW] { x, y, gx, gw, gb, g, order });
