//! 2-D max pooling.

use core::marker::PhantomData;

use rand::Rng;

use crate::lanes::{
    LANES, LaneLayer, block_of, block_of_mut, check_lanes, lane_get, lane_put, relu_mask,
};
use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;
use crate::shape::pool_out;
use crate::simd;
use crate::tensor::{Maps, Tensor};

/// Max pooling over `K`×`K` windows with stride `S`, from `C`×`H`×`W` to `C`×`OH`×`OW`.
///
/// Optional `P` pads each side with −∞ (at most `K / 2`, as PyTorch requires), and `CEIL`
/// turns on PyTorch's ceil mode; both default to off, so `MaxPool2d<T, C, H, W, K, S, OH, OW>`
/// is the plain pool. `OH` and `OW` must equal [`crate::pool_out`]`(H, K, S, P, CEIL)`:
/// `⌊(H + 2·P − K) / S⌋ + 1`, rows and columns past the last window that fits unread, or in
/// ceil mode `⌈…⌉ + 1` as long as the last window starts inside the map or its left padding.
/// ResNet-18's `MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 1>` and GoogLeNet's
/// `MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 0, true>` are both 112 → 56. Padded, ceil-mode
/// and uncovered maps run the reference loops (SIMD for them is still to come).
///
/// The forward pass records which input won each window; the backward pass routes the gradient there (the first maximum on
/// ties, like PyTorch).
///
/// **NaN**: a NaN anywhere in a window makes that window's output NaN, as in PyTorch. Every
/// path follows this one rule ([`beats`]: NaN ranks above every number): the reference loops,
/// the SIMD passes of every instruction set, inference, batches and lanes. The gradient of
/// such a window goes to its first NaN (PyTorch picks its last; the output is the same).
///
/// ```
/// use constnet::{Layer, MaxPool2d};
/// let pool = MaxPool2d::<f32, 1, 4, 4, 2, 2, 2, 2>::new();
/// let x = [[[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 9.0], [0.0; 4], [0.0, 0.0, 0.0, -1.0]]];
/// let mut y = [[[0.0; 2]; 2]; 1];
/// pool.forward(&x, &mut y, &mut [[[0; 2]; 2]; 1]);
/// assert_eq!(y, [[[4.0, 9.0], [0.0, 0.0]]]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaxPool2d<
    T,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize = 0,
    const CEIL: bool = false,
>(PhantomData<T>);

pub use crate::simd::beats;

/// Whether `K`×`K` windows at stride `S` reach the last row and column of an `H`×`W` map.
const fn covers(h: usize, w: usize, k: usize, s: usize) -> bool {
    (h - k).is_multiple_of(s) && (w - k).is_multiple_of(s)
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            K > 0 && S > 0,
            "MaxPool2d: window K and stride S must be at least 1"
        );
        assert!(
            2 * P <= K,
            "MaxPool2d: padding P must be at most half the window K (PyTorch's rule)"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "MaxPool2d: window K is larger than the padded map"
        );
        assert!(K * K <= u32::MAX as usize, "MaxPool2d: window too large");
        // PyTorch's rule: the last window that fits (floor), or in ceil mode one more if it
        // starts inside the map or its left padding; rows and columns past it unread.
        assert!(
            OH == pool_out(H, K, S, P, CEIL),
            "MaxPool2d: output height OH must equal pool_out(H, K, S, P, CEIL): ⌊(H + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
        assert!(
            OW == pool_out(W, K, S, P, CEIL),
            "MaxPool2d: output width OW must equal pool_out(W, K, S, P, CEIL): ⌊(W + 2·P − K) / S⌋ + 1, or ⌈…⌉ + 1 in ceil mode"
        );
    };

    /// Whether the windows cover the map exactly, without padding (`S` divides `H − K` and
    /// `W − K`): the tiled and SIMD passes need it; other maps run the reference loops.
    const COVERS: bool = P == 0 && !CEIL && covers(H, W, K, S);

    /// Input pixel of tap `(i, j)` of window `(y, x)`, or `None` in the padding or past the
    /// map (a ceil-mode window may reach past it).
    #[inline(always)]
    fn tap(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }

    /// The plain loops of [`Layer::forward`], for any window and stride: the definition the
    /// fast path is tested against.
    pub fn forward_reference(
        &self,
        input: &Maps<T, C, H, W>,
        output: &mut Maps<T, C, OH, OW>,
        ws: &mut [[[u32; OW]; OH]; C],
    ) {
        for c in 0..C {
            for y in 0..OH {
                for x in 0..OW {
                    // The padding is −∞, as in PyTorch: only taps on the map compete.
                    let mut best = T::neg_infinity();
                    let mut at = None;
                    for i in 0..K {
                        for j in 0..K {
                            let Some((r, s)) = Self::tap(y, x, i, j) else {
                                continue;
                            };
                            let v = input[c][r][s];
                            if at.is_none() || beats(v, best) {
                                best = v;
                                at = Some(i * K + j);
                            }
                        }
                    }
                    // Every window holds a tap of the map (P ≤ K/2, and a ceil-mode window
                    // starts inside the map or its left padding).
                    let at = at.unwrap_or(0);
                    output[c][y][x] = best;
                    ws[c][y][x] = at as u32;
                }
            }
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`MaxPool2d::forward_reference`]).
    pub fn backward_reference(
        _input: &Maps<T, C, H, W>,
        ws: &[[[u32; OW]; OH]; C],
        grad_output: &Maps<T, C, OH, OW>,
        gi: &mut Maps<T, C, H, W>,
    ) {
        // In place: a whole-tensor temporary would be built on the stack.
        gi.as_flattened_mut().as_flattened_mut().fill(T::zero());
        for c in 0..C {
            for y in 0..OH {
                for x in 0..OW {
                    let at = ws[c][y][x] as usize;
                    if let Some((r, s)) = Self::tap(y, x, at / K, at % K) {
                        gi[c][r][s] = gi[c][r][s] + grad_output[c][y][x];
                    }
                }
            }
        }
    }

    /// Forward pass for windows that tile the map (`S == K`), branch-free: with random data
    /// the winner is unpredictable, and a mispredicted branch per tap cost more than the rest.
    /// The loops keep a plain `v > best` (the max instruction's pattern, which [`beats`] is
    /// not: with it pool2 took 2–2.5× as long) and note whether any tap was NaN; only then
    /// do the reference loops redo the maps by [`beats`].
    fn forward_tiled(
        &self,
        input: &Maps<T, C, H, W>,
        output: &mut Maps<T, C, OH, OW>,
        ws: &mut [[[u32; OW]; OH]; C],
    ) {
        let mut nan = false;
        for ((x, y), at) in input.iter().zip(output.iter_mut()).zip(ws.iter_mut()) {
            for ((rows, y), at) in x.chunks_exact(K).zip(y.iter_mut()).zip(at.iter_mut()) {
                // One tap at a time across the whole output row: loops the compiler vectorises.
                for (ox, (y, at)) in y.iter_mut().zip(at.iter_mut()).enumerate() {
                    *y = rows[0][ox * K];
                    *at = 0;
                }
                for (i, row) in rows.iter().enumerate() {
                    for j in 0..K {
                        let tap = (i * K + j) as u32;
                        for ((y, at), window) in
                            y.iter_mut().zip(at.iter_mut()).zip(row.chunks_exact(K))
                        {
                            let v = window[j];
                            nan |= v.is_nan();
                            // `at` by mask arithmetic and `y` in the max instruction's
                            // pattern: the compiler turns a plain select into a branch.
                            let better = u32::from(v > *y).wrapping_neg();
                            *at ^= (*at ^ tap) & better;
                            *y = if v > *y { v } else { *y };
                        }
                    }
                }
            }
        }
        if nan {
            self.forward_reference(input, output, ws);
        }
    }

    /// Backward pass for tiling windows: every input pixel belongs to exactly one window, so
    /// each is *written* once (the gradient or zero), with no branch and no zero-fill.
    fn backward_tiled(
        ws: &[[[u32; OW]; OH]; C],
        grad_output: &Maps<T, C, OH, OW>,
        gi: &mut Maps<T, C, H, W>,
    ) {
        for ((gi, g), at) in gi.iter_mut().zip(grad_output).zip(ws) {
            for ((rows, g), at) in gi.chunks_exact_mut(K).zip(g).zip(at) {
                for (i, row) in rows.iter_mut().enumerate() {
                    for (ox, (&g, &at)) in g.iter().zip(at).enumerate() {
                        for (j, v) in row[ox * K..ox * K + K].iter_mut().enumerate() {
                            // An index, not a select, which the compiler may make a branch.
                            *v = [T::zero(), g][usize::from(at as usize == i * K + j)];
                        }
                    }
                }
            }
        }
    }

    /// The pooling layer (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> Layer for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = Maps<T, C, OH, OW>;
    /// For every output, the winning tap `i·K + j` inside its window.
    type Workspace = [[[u32; OW]; OH]; C];
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        const { Self::SHAPE_OK };
        if K == 2
            && S == 2
            && Self::COVERS
            && let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut()))
        {
            let at = ws.as_flattened_mut().as_flattened_mut();
            if !simd::dispatch(fast::Forward2x2::<C, H, W, OH, OW> { x, y, at }) {
                self.forward_tiled(input, output, ws);
            }
        } else if S == K && Self::COVERS {
            self.forward_tiled(input, output, ws);
        } else {
            self.forward_reference(input, output, ws);
        }
    }

    /// 2×2 windows with stride 2 in `f32`: only the maxima, in one SIMD pass (a third of
    /// the work of recording the winners too), columns before rows, so a window whose
    /// maximum is a zero of both signs may give `+0.0` where [`Layer::forward`] gives
    /// `-0.0`. Otherwise [`Layer::forward`].
    fn infer(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        const { Self::SHAPE_OK };
        if K == 2
            && S == 2
            && Self::COVERS
            && let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut()))
            && simd::dispatch_within(fast::Max2x2::<C, H, W, OH, OW> { x, y }, W.min(OH * OW))
        {
            return;
        }
        self.forward(input, output, ws);
    }

    fn backward(
        &self,
        input: &Self::Input,
        ws: &mut Self::Workspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        let Some(gi) = grad_input else { return };
        if S == K && Self::COVERS {
            Self::backward_tiled(ws, grad_output, gi);
        } else {
            Self::backward_reference(input, ws, grad_output, gi);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("MaxPool2d", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("MaxPool2d", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

/// The `f32` forward pass of 2×2 windows with stride 2, generic over the instruction set.
///
/// Two passes per map, each over contiguous memory: the better of each column pair of rows
/// `2y`, `2y + 1` (whole rows of `W` pixels), then the better of each pair of neighbours in
/// that result, which, `W` being even, is one flat run of pairs for the whole map, split
/// into even and odd lanes by a shuffle. The winner is the first maximum in reading order, with
/// NaN above every number, as in [`MaxPool2d::forward_reference`] (see [`super::beats`]).
mod fast {
    use crate::simd::{Kernel, Simd, spans};

    /// `y` and the winners `at` of 2×2 windows with stride 2 over the `C` maps `x`.
    pub(super) struct Forward2x2<
        'a,
        const C: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub y: &'a mut [f32],
        /// Winning tap `i·2 + j` of each window.
        pub at: &'a mut [u32],
    }

    /// 2²³: for an integer `0 ≤ i < 2²³`, the bits of `i + 2²³` are those of 2²³ plus `i`.
    const MAGIC: f32 = 8_388_608.0;

    /// `col[r][x] = max(x[2r][x], x[2r + 1][x])` for every row pair `r` of every map, and
    /// `row[r][x]` = 2 where the lower row won (strictly), else 0.
    #[inline(always)]
    fn columns<S: Simd>(s: S, x: &[f32], w: usize, col: &mut [f32], row: &mut [f32]) {
        let (zero, two) = (s.splat(0.0), s.splat(2.0));
        for (r, pair) in x.chunks_exact(2 * w).enumerate() {
            for at in spans(w, S::LANES) {
                let (top, bottom) = (s.load(pair, at), s.load(pair, w + at));
                s.store(col, r * w + at, s.select_gt_nan(bottom, top, bottom, top));
                s.store(row, r * w + at, s.select_gt_nan(bottom, top, two, zero));
            }
        }
    }

    /// `y[k]`, `at[k]` from the pairs `2k`, `2k + 1` of `col` and `row` (see [`columns`]).
    #[inline(always)]
    fn pairs<S: Simd>(s: S, col: &[f32], row: &[f32], y: &mut [f32], at: &mut [f32]) {
        let (zero, half, one) = (s.splat(0.0), s.splat(0.5), s.splat(1.0));
        let magic = s.splat(MAGIC);
        for k in spans(y.len(), S::LANES) {
            let (v0, v1) = s.deinterleave(s.load(col, 2 * k), s.load(col, 2 * k + S::LANES));
            let (r0, r1) = s.deinterleave(s.load(row, 2 * k), s.load(row, 2 * k + S::LANES));
            let (i0, i1) = (r0, s.add(r1, one));
            // The right column wins if it beats the left, or if neither beats the other (equal,
            // or both NaN) and its winner comes first.
            let right = s.select_gt_nan(
                v1,
                v0,
                one,
                s.select_gt_nan(v0, v1, zero, s.select_gt(i0, i1, one, zero)),
            );
            s.store(y, k, s.select_gt(right, half, v1, v0));
            // + 2²³: the float's low bits are then the integer (see `run`).
            s.store(at, k, s.add(s.select_gt(right, half, i1, i0), magic));
        }
    }

    /// `y` of 2×2 windows with stride 2 over the `C` maps `x`, without the winners.
    pub(super) struct Max2x2<
        'a,
        const C: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub y: &'a mut [f32],
    }

    impl<const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize> Kernel
        for Max2x2<'_, C, H, W, OH, OW>
    {
        /// `false`, doing nothing, when a row or a map is narrower than a vector (never with
        /// [`crate::simd::dispatch_within`] the row width).
        type Output = bool;
        #[inline(always)]
        fn run<S: Simd>(self, s: S) -> bool {
            if W < S::LANES || OH * OW < S::LANES {
                return false;
            }
            let mut col = [[0.0f32; W]; OH];
            let col = col.as_flattened_mut();
            for (x, y) in self
                .x
                .chunks_exact(H * W)
                .zip(self.y.chunks_exact_mut(OH * OW))
            {
                // The better of each column pair of rows 2r, 2r + 1 (the lower row only if it
                // beats the upper, as the reference scans it: a NaN in either is kept).
                for (r, pair) in x.chunks_exact(2 * W).enumerate() {
                    for at in spans(W, S::LANES) {
                        let (top, bottom) = (s.load(pair, at), s.load(pair, W + at));
                        let better = s.select_gt_nan(bottom, top, bottom, top);
                        s.store(col, r * W + at, better);
                    }
                }
                // Then the better of each pair of neighbours: W is even, so the pairs of the
                // whole map are one flat run, split into even and odd lanes by a shuffle.
                for k in spans(OH * OW, S::LANES) {
                    let (left, right) =
                        s.deinterleave(s.load(col, 2 * k), s.load(col, 2 * k + S::LANES));
                    s.store(y, k, s.select_gt_nan(right, left, right, left));
                }
            }
            true
        }
    }

    impl<const C: usize, const H: usize, const W: usize, const OH: usize, const OW: usize> Kernel
        for Forward2x2<'_, C, H, W, OH, OW>
    {
        /// `false`, doing nothing, when a row is narrower than a vector (LeNet's pool2 with
        /// 16 lanes): the branch-free scalar loop is faster there.
        type Output = bool;
        #[inline(always)]
        fn run<S: Simd>(self, s: S) -> bool {
            if W < S::LANES || OH * OW < S::LANES {
                return false;
            }
            // One map at a time, in buffers cleared once (clearing buffers for all maps
            // cost a third of the pass).
            let mut col = [[0.0f32; W]; OH];
            let mut row = [[0.0f32; W]; OH];
            let mut at = [[0.0f32; OW]; OH];
            let (col, row) = (col.as_flattened_mut(), row.as_flattened_mut());
            let at = at.as_flattened_mut();
            for ((x, y), out) in self
                .x
                .chunks_exact(H * W)
                .zip(self.y.chunks_exact_mut(OH * OW))
                .zip(self.at.chunks_exact_mut(OH * OW))
            {
                columns(s, x, W, col, row);
                pairs(s, col, row, y, at);
                // Not `a as u32`, which saturates and stays scalar.
                for (out, &a) in out.iter_mut().zip(at.iter()) {
                    *out = a.to_bits() - MAGIC.to_bits();
                }
            }
            true
        }
    }
}

/// The whole batch at once, 16 samples per vector (see [`crate::lanes`]): a window's
/// maximum is a vector `max`, and the backward pass finds each lane's winner again from the
/// input (the first maximum, as in [`Layer::forward`]) instead of keeping it.
impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const N: usize,
> LaneLayer<N> for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// One sample's input and input gradient, output and winners, for the reference loops.
    type LaneWorkspace = (
        (Maps<T, C, H, W>, Maps<T, C, H, W>),
        (Maps<T, C, OH, OW>, [[[u32; OW]; OH]; C]),
    );

    fn forward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let x = Maps::flat_slice(block_of(input, block));
        let y = Maps::flat_slice_mut(block_of_mut(output, block));
        // The lane kernels know no padding: padded and ceil-mode windows run the reference.
        if P == 0
            && !CEIL
            && let (Some(x), Some(y)) = (T::as_f32(x), T::as_f32_mut(y))
        {
            return simd::dispatch(lanes_fast::Forward::<C, H, W, K, S, OH, OW> { x, y });
        }
        let ((xs, _), (ys, at)) = ws;
        for n in 0..LANES {
            lane_get(x, n, xs.flat_mut());
            self.forward_reference(xs, ys, at);
            lane_put(ys.flat(), n, y);
        }
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let Some(gi) = grad_input else { return };
        self.backward_lanes_pool(block, (input, grad_output, gi), ws, false);
    }

    const MASKS_FOR_FREE: bool = true;
    const POOL_2X2: bool = K == 2 && S == 2 && Self::COVERS;

    /// The mask is the window's maximum, read anyway: `g` goes to the winner if it is
    /// positive.
    fn backward_lanes_masked(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: &mut [Self::Input; N],
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        self.backward_lanes_pool(block, (input, grad_output, grad_input), ws, true);
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// The lane backward pass of block `block`, with the input gradient zero where the input
    /// is not positive if `relu`.
    #[allow(clippy::type_complexity)]
    fn backward_lanes_pool<const N: usize>(
        &self,
        block: usize,
        (input, grad_output, gi): (
            &[Maps<T, C, H, W>; N],
            &[Maps<T, C, OH, OW>; N],
            &mut [Maps<T, C, H, W>; N],
        ),
        ws: &mut <Self as LaneLayer<N>>::LaneWorkspace,
        relu: bool,
    ) {
        let (x, g, gi) = (
            Maps::flat_slice(block_of(input, block)),
            Maps::flat_slice(block_of(grad_output, block)),
            Maps::flat_slice_mut(block_of_mut(gi, block)),
        );
        if P == 0
            && !CEIL
            && let (Some(x), Some(g), Some(gi)) = (T::as_f32(x), T::as_f32(g), T::as_f32_mut(gi))
        {
            if S != K || !Self::COVERS {
                // Overlapping windows add to the same input gradient; inputs past the last
                // window get none.
                gi.fill(0.0);
            }
            let kernel = lanes_fast::Backward::<C, H, W, K, S, OH, OW> { x, g, gi, relu };
            return simd::dispatch(kernel);
        }
        let ((xs, gxs), (gs, at)) = ws;
        for n in 0..LANES {
            lane_get(x, n, xs.flat_mut());
            self.forward_reference(xs, gs, at);
            lane_get(g, n, gs.flat_mut());
            Self::backward_reference(xs, at, gs, gxs);
            if relu {
                relu_mask(gxs.flat_mut(), xs.flat());
            }
            lane_put(gxs.flat(), n, gi);
        }
    }
}

/// `f32` kernels of the lane passes: one vector of lanes per window tap.
mod lanes_fast {
    use crate::lanes::LANES;
    use crate::simd::{Kernel, Simd};

    /// Where tap `t` of the window of output `(c, oy, ox)` lies, in elements of the input.
    #[inline(always)]
    fn tap<const H: usize, const W: usize, const K: usize, const S: usize>(
        (c, oy, ox): (usize, usize, usize),
        t: usize,
    ) -> usize {
        (c * H + oy * S + t / K) * W + ox * S + t % K
    }

    /// The maximum of each window, lane by lane.
    pub(super) struct Forward<
        'a,
        const C: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const S: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub y: &'a mut [f32],
    }

    impl<
        const C: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const S: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for Forward<'_, C, H, W, K, S, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<Sd: Simd>(self, s: Sd) {
            let blocks = self.x.chunks_exact(C * H * W * LANES);
            for (x, y) in blocks.zip(self.y.chunks_exact_mut(C * OH * OW * LANES)) {
                for c in 0..C {
                    for oy in 0..OH {
                        for ox in 0..OW {
                            let out = ((c * OH + oy) * OW + ox) * LANES;
                            for v0 in (0..LANES).step_by(Sd::LANES) {
                                let at = |t| tap::<H, W, K, S>((c, oy, ox), t) * LANES + v0;
                                let mut best = s.load(x, at(0));
                                for t in 1..K * K {
                                    let v = s.load(x, at(t));
                                    best = s.select_gt_nan(v, best, v, best);
                                }
                                s.store(y, out + v0, best);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Each window's gradient added to its first maximum, lane by lane (`gi` starts zero).
    pub(super) struct Backward<
        'a,
        const C: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const S: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub g: &'a [f32],
        pub gi: &'a mut [f32],
        /// Whether the gradient passes only where the winner is positive (a fused ReLU's).
        pub relu: bool,
    }

    impl<
        const C: usize,
        const H: usize,
        const W: usize,
        const K: usize,
        const S: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for Backward<'_, C, H, W, K, S, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<Sd: Simd>(self, s: Sd) {
            let blocks = self.x.chunks_exact(C * H * W * LANES);
            let blocks = blocks.zip(self.g.chunks_exact(C * OH * OW * LANES));
            for ((x, g), gi) in blocks.zip(self.gi.chunks_exact_mut(C * H * W * LANES)) {
                for c in 0..C {
                    for oy in 0..OH {
                        for ox in 0..OW {
                            let out = ((c * OH + oy) * OW + ox) * LANES;
                            for v0 in (0..LANES).step_by(Sd::LANES) {
                                let at = |t| tap::<H, W, K, S>((c, oy, ox), t) * LANES + v0;
                                // the winning tap's number, as a float, lane by lane
                                let (mut best, mut won) = (s.load(x, at(0)), s.splat(0.0));
                                for t in 1..K * K {
                                    let v = s.load(x, at(t));
                                    won = s.select_gt_nan(v, best, s.splat(t as f32), won);
                                    best = s.select_gt_nan(v, best, v, best);
                                }
                                let (mut gv, zero) = (s.load(g, out + v0), s.splat(0.0));
                                if self.relu {
                                    gv = s.select_gt(best, zero, gv, zero);
                                }
                                for t in 0..K * K {
                                    let (lo, hi) =
                                        (s.splat(t as f32 - 0.5), s.splat(t as f32 + 0.5));
                                    let mine =
                                        s.select_gt(won, lo, s.select_gt(hi, won, gv, zero), zero);
                                    // Tiled windows (S = K, covering the map) write each
                                    // input once.
                                    let v = if S == K && super::covers(H, W, K, S) {
                                        mine
                                    } else {
                                        s.add(s.load(gi, at(t)), mine)
                                    };
                                    s.store(gi, at(t), v);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize, const K: usize, const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool]
    for MaxPool2d [T, C, H, W, K, S, OH, OW, P, CEIL] (_0));

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch::per_sample!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool>
    for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize, const K: usize,
    const S: usize, const OH: usize, const OW: usize, const P: usize, const CEIL: bool>
    for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>);

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's `F.max_pool2d(x, 2, 2, padding=1)` of 1..9 in a 3×3 map: the padding never
    /// wins, and the gradient goes to the winners on the map.
    #[test]
    fn padding_is_minus_infinity() {
        let pool = MaxPool2d::<f64, 1, 3, 3, 2, 2, 2, 2, 1>::new();
        let x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
        let (mut y, mut at) = ([[[0.0; 2]; 2]; 1], [[[0; 2]; 2]; 1]);
        pool.forward(&x, &mut y, &mut at);
        assert_eq!(y, [[[1.0, 3.0], [7.0, 9.0]]]);
        let mut gi = [[[7.0; 3]; 3]; 1];
        let g = [[[1.0, 2.0], [3.0, 4.0]]];
        pool.backward(&x, &mut at, &g, Some(&mut gi), &mut MaxPool2d::new());
        assert_eq!(gi, [[[1.0, 0.0, 2.0], [0.0; 3], [3.0, 0.0, 4.0]]]);
        // all-negative maps: still a value of the map, never the −∞ of the padding
        let neg = x.map(|m| m.map(|r| r.map(|v: f64| -v)));
        pool.forward(&neg, &mut y, &mut at);
        assert_eq!(y, [[[-1.0, -2.0], [-4.0, -5.0]]]);
    }

    /// Ceil mode (`F.max_pool2d(x, 2, 2, ceil_mode=True)` over 0..24 in a 5×5 map): a third
    /// row and column of windows, clipped to the map's last row and column.
    #[test]
    fn ceil_mode_adds_the_clipped_last_windows() {
        let pool = MaxPool2d::<f32, 1, 5, 5, 2, 2, 3, 3, 0, true>::new();
        let mut x = [[[0.0f32; 5]; 5]; 1];
        for (i, v) in x[0].iter_mut().flatten().enumerate() {
            *v = i as f32;
        }
        for isa in [false, true] {
            let mut y = [[[0.0; 3]; 3]; 1];
            if isa {
                pool.infer(&x, &mut y, &mut [[[0; 3]; 3]; 1]);
            } else {
                pool.forward(&x, &mut y, &mut [[[0; 3]; 3]; 1]);
            }
            assert_eq!(
                y,
                [[[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]]]
            );
        }
    }

    #[test]
    fn backward_routes_to_the_winner_and_first_on_ties() {
        let pool = MaxPool2d::<f64, 1, 2, 4, 2, 2, 1, 2>::new();
        let x = [[[1.0, 5.0, 7.0, 7.0], [2.0, 3.0, 7.0, 0.0]]];
        let mut y = [[[0.0; 2]; 1]; 1];
        let mut ws = [[[0; 2]; 1]; 1];
        pool.forward(&x, &mut y, &mut ws);
        assert_eq!(y, [[[5.0, 7.0]]]);
        let mut gx = [[[9.0; 4]; 2]; 1];
        pool.backward(
            &x,
            &mut ws,
            &[[[10.0, 20.0]]],
            Some(&mut gx),
            &mut MaxPool2d::new(),
        );
        assert_eq!(gx, [[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]);
    }

    #[test]
    fn overlapping_windows_add_their_gradients() {
        // 3-wide window, stride 1: the centre max wins both windows.
        let pool = MaxPool2d::<f64, 1, 3, 4, 3, 1, 1, 2>::new();
        let x = [[
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 9.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]];
        let mut y = [[[0.0; 2]; 1]; 1];
        let mut ws = [[[0; 2]; 1]; 1];
        pool.forward(&x, &mut y, &mut ws);
        let mut gx = [[[0.0; 4]; 3]; 1];
        pool.backward(
            &x,
            &mut ws,
            &[[[1.0, 2.0]]],
            Some(&mut gx),
            &mut MaxPool2d::new(),
        );
        assert_eq!(gx[0][1][2], 3.0);
        assert_eq!(gx.iter().flatten().flatten().sum::<f64>(), 3.0);
    }
}
