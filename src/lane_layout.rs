//! How a batch lies in the vector lanes: 16 samples side by side in every element, and the
//! helpers that move samples in and out of that layout (see [`crate::lanes`] for why).
//!
//! Block `b` of a batch of `N` (`N` a multiple of [`LANES`]) holds samples `16·b .. 16·b + 16`
//! element by element: element `e` of sample `16·b + l` is at flat index `(b·LEN + e)·16 + l`.
//! This module sits with the kernels, below the layers: the layers' lane kernels read
//! [`LANES`] and keep their sums in [`CacheLines`], and the [`LaneLayer`](crate::LaneLayer)
//! passes convert with the functions here.

use crate::pairs::Pairs;
use crate::scalar::Scalar;
use crate::simd;
use crate::tensor::Tensor;
use crate::zeroed::Zeroable;

/// Samples per lane block: one AVX-512 vector of `f32` (two AVX2 vectors, four SSE2 ones).
pub const LANES: usize = 16;

/// Panics unless the batch `n` is a multiple of [`LANES`] (a constant test, folded away:
/// it is not a compile-time error only because [`Lanes`](crate::Lanes) instantiates the lane passes for
/// every batch size and calls them for multiples of 16 alone).
#[track_caller]
pub(crate) const fn check_lanes(n: usize) {
    assert!(
        n.is_multiple_of(LANES),
        "LaneLayer: the batch N must be a multiple of LANES (16)"
    );
}

/// Rearranges a batch of samples into lanes (see [`LaneLayer`](crate::LaneLayer)). Panics if `N` is not a
/// multiple of [`LANES`].
pub fn to_lanes<X: Tensor, const N: usize>(samples: &[X; N], lanes: &mut [X; N]) {
    check_lanes(N);
    transpose_blocks(
        X::flat_slice(samples),
        X::flat_slice_mut(lanes),
        (LANES, X::LEN),
    );
}

/// Rearranges a batch in lanes back into samples (the inverse of [`to_lanes`]).
pub fn from_lanes<X: Tensor, const N: usize>(lanes: &[X; N], samples: &mut [X; N]) {
    check_lanes(N);
    transpose_blocks(
        X::flat_slice(lanes),
        X::flat_slice_mut(samples),
        (X::LEN, LANES),
    );
}

/// [`to_lanes`] of block `b` alone.
pub(crate) fn block_to_lanes<X: Tensor, const N: usize>(
    samples: &[X; N],
    lanes: &mut [X; N],
    b: usize,
) {
    transpose_blocks(
        X::flat_slice(block_of(samples, b)),
        X::flat_slice_mut(block_of_mut(lanes, b)),
        (LANES, X::LEN),
    );
}

/// [`from_lanes`] of block `b` alone.
pub(crate) fn block_from_lanes<X: Tensor, const N: usize>(
    lanes: &[X; N],
    samples: &mut [X; N],
    b: usize,
) {
    block_from_lanes_to(lanes, b, block_of_mut(samples, b));
}

/// Block `b` of `lanes` to `samples`, its [`LANES`] samples wherever they are.
pub(crate) fn block_from_lanes_to<X: Tensor, const N: usize>(
    lanes: &[X; N],
    b: usize,
    samples: &mut [X],
) {
    transpose_blocks(
        X::flat_slice(block_of(lanes, b)),
        X::flat_slice_mut(samples),
        (X::LEN, LANES),
    );
}

/// Transposes each `rows × cols` block of `src` into `dst`.
pub(crate) fn transpose_blocks<T: Scalar>(src: &[T], dst: &mut [T], (rows, cols): (usize, usize)) {
    let block = rows * cols;
    if let (Some(src), Some(dst)) = (T::as_f32(src), T::as_f32_mut(dst)) {
        for (src, dst) in src.chunks_exact(block).pairs(dst.chunks_exact_mut(block)) {
            simd::dispatch(simd::Transposed {
                src,
                rows,
                cols,
                dst,
            });
        }
        return;
    }
    for (src, dst) in src.chunks_exact(block).pairs(dst.chunks_exact_mut(block)) {
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                dst[c * rows + r] = v;
            }
        }
    }
}

/// A ReLU's backward pass in place: `grad` zero where `input` is not positive (NaN
/// included), as [`Relu`](crate::Relu) does.
pub(crate) fn relu_mask<T: Scalar>(grad: &mut [T], input: &[T]) {
    for (g, &x) in grad.iter_mut().zip(input) {
        *g = if x > T::zero() { *g } else { T::zero() };
    }
}

/// Copies sample `n` of a batch in lanes (of `sample.len()` elements each) into `sample`:
/// the reference lane passes run the per-sample loops on it.
pub(crate) fn lane_get<T: Copy>(lanes: &[T], n: usize, sample: &mut [T]) {
    let (block, lane, len) = (n / LANES, n % LANES, sample.len());
    let lanes = &lanes[block * len * LANES..][..len * LANES];
    for (v, chunk) in sample.iter_mut().pairs(lanes.chunks_exact(LANES)) {
        *v = chunk[lane];
    }
}

/// Writes `sample` as sample `n` of a batch in lanes (the inverse of [`lane_get`]).
pub(crate) fn lane_put<T: Copy>(sample: &[T], n: usize, lanes: &mut [T]) {
    let (block, lane, len) = (n / LANES, n % LANES, sample.len());
    let lanes = &mut lanes[block * len * LANES..][..len * LANES];
    for (&v, chunk) in sample.iter().pairs(lanes.chunks_exact_mut(LANES)) {
        chunk[lane] = v;
    }
}

/// The samples of block `block`: in lanes, the same slots hold the same block.
pub(crate) fn block_of<X, const N: usize>(x: &[X; N], block: usize) -> &[X] {
    &x[block * LANES..][..LANES]
}

/// Mutable version of [`block_of`].
pub(crate) fn block_of_mut<X, const N: usize>(x: &mut [X; N], block: usize) -> &mut [X] {
    &mut x[block * LANES..][..LANES]
}

/// The block a layer's lane backward pass expects next, kept in its lane workspace by the
/// layers that gather parameter gradients over the blocks ([`crate::Conv2d`] and
/// [`crate::Linear`]): they clear their sums at block 0 and add them to `grads` after the last,
/// so blocks out of order, repeated or skipped would give wrong gradients without a sound.
/// Instead the pass panics, naming the block it got and the one it expected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockOrder(usize);

impl BlockOrder {
    /// The block expected next (0 before the first backward pass and after the last block).
    pub fn expected(self) -> usize {
        self.0
    }

    /// Records that the backward pass of `block` (of `blocks`) runs now.
    ///
    /// # Panics
    /// If `block` is not the expected one: blocks run `0, 1, …, blocks − 1`, in that order.
    #[track_caller]
    pub fn take(&mut self, block: usize, blocks: usize) {
        assert!(
            block == self.0 && block < blocks,
            "backward_lanes: got block {block}, expected block {} (the {blocks} blocks of a \
             batch run 0, 1, …, {} in order: the parameter gradients are gathered over them)",
            self.0,
            blocks.saturating_sub(1),
        );
        self.0 = if block + 1 == blocks { 0 } else { block + 1 };
    }
}

/// A value aligned to a 64-byte cache line. In lanes every vector load reads one whole
/// line, so a buffer that starts mid-line would split every one of them in two.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(64))]
pub struct CacheLines<X>(pub X);

crate::zeroable!(impl [X: Zeroable] for CacheLines [X] (_0));

crate::zeroable!(impl [] for BlockOrder [] (_0));

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn to_lanes_puts_sample_l_in_lane_l_and_from_lanes_undoes_it() {
        let mut samples = [[0.0f32; 20]; 32];
        for (n, s) in samples.iter_mut().enumerate() {
            for (e, v) in s.iter_mut().enumerate() {
                *v = (n * 100 + e) as f32;
            }
        }
        let mut lanes = [[0.0f32; 20]; 32];
        to_lanes(&samples, &mut lanes);
        let flat = lanes.as_flattened();
        // sample 16·b + l, element e at (b·20 + e)·16 + l
        assert_eq!(flat[(20 + 7) * 16 + 3], samples[19][7]);
        assert_eq!(flat[5 * 16 + 15], samples[15][5]);
        let mut back = [[0.0f32; 20]; 32];
        from_lanes(&lanes, &mut back);
        assert_eq!(back, samples);
        // f64 goes through the plain loops, to the same places
        let samples64 = samples.map(|s| s.map(f64::from));
        let mut lanes64 = [[0.0f64; 20]; 32];
        to_lanes(&samples64, &mut lanes64);
        assert!(
            lanes64
                .as_flattened()
                .iter()
                .pairs(flat)
                .all(|(&a, &b)| a == f64::from(b))
        );
    }
}
