//! One matrix written by two threads, each its own columns of every row: the audited
//! `unsafe` that lets a layer's output be split by pixels.
//!
//! A convolution's output is `[channel][pixel]`. Split by channels, the two threads' parts
//! are two slices (`split_at_mut`); split by pixels, each thread owns a range of columns in
//! every row, which no safe slice split expresses. Splitting by pixels is what lets each
//! thread pack only its own pixels' inputs (`conv_gemm::forward`): split by channels, both
//! threads packed the whole input. [`ColumnsMut::split`] hands out the two column ranges;
//! each hands out one row of its columns at a time.

use core::marker::PhantomData;
use core::ops::Range;

/// Columns `cols` of every row of a row-major matrix of `rows` rows `stride` apart,
/// borrowed mutably; the other columns may belong to another `ColumnsMut` on another thread.
#[derive(Debug)]
pub(crate) struct ColumnsMut<'a> {
    ptr: *mut f32,
    rows: usize,
    stride: usize,
    cols: Range<usize>,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `ColumnsMut` is a unique borrow of its elements (no other `ColumnsMut` from the
// same `split` reaches them, and the matrix itself stays mutably borrowed for `'a`), like
// a `&mut [f32]`, which is `Send`.
unsafe impl Send for ColumnsMut<'_> {}

impl<'a> ColumnsMut<'a> {
    /// All of `m`, rows of `stride` values.
    #[inline]
    pub(crate) fn whole(m: &'a mut [f32], stride: usize) -> Self {
        Self::split(m, stride, stride).0
    }

    /// Columns `..mid` and `mid..` of `m`, rows of `stride` values. Panics unless
    /// `stride > 0`, `m` holds whole rows and `mid ≤ stride`.
    #[inline]
    pub(crate) fn split(m: &'a mut [f32], stride: usize, mid: usize) -> (Self, Self) {
        assert!(stride > 0 && m.len().is_multiple_of(stride) && mid <= stride);
        let (ptr, rows) = (m.as_mut_ptr(), m.len() / stride);
        let part = |cols| ColumnsMut {
            ptr,
            rows,
            stride,
            cols,
            _borrow: PhantomData,
        };
        (part(0..mid), part(mid..stride))
    }

    /// The columns this value owns, of every row.
    /// The whole matrix, which must be whole rows (every column).
    #[inline]
    pub(crate) fn into_whole(self) -> &'a mut [f32] {
        assert!(self.cols == (0..self.stride));
        // SAFETY: `ptr` and `rows · stride` values are the slice `split` was given, borrowed
        // for `'a`; with every column, `self` is the only part of it (`split`'s other part
        // holds no column).
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.rows * self.stride) }
    }

    #[inline]
    pub(crate) fn cols(&self) -> Range<usize> {
        self.cols.clone()
    }

    /// Row `r`'s columns `cols`, column `cols.start` at index 0. Panics unless `r < rows`.
    #[inline(always)]
    pub(crate) fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows);
        // SAFETY: `ptr` is the start of a live `&'a mut [f32]` of `rows · stride` values
        // (`split`), and `r < rows`, `cols.end ≤ stride`: the row's columns are inside it.
        // They are borrowed from no one else: the matrix is borrowed for `'a` by the two
        // parts of `split` alone, whose column ranges are disjoint, and `&mut self` keeps
        // this part from handing out a second row while one lives.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.ptr.add(r * self.stride + self.cols.start),
                self.cols.len(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parts_reach_their_own_columns_of_every_row() {
        let mut m: Vec<f32> = (0..5 * 7).map(|i| i as f32).collect();
        let (mut a, mut b) = ColumnsMut::split(&mut m, 7, 3);
        assert_eq!((a.cols(), b.cols()), (0..3, 3..7));
        for r in 0..5 {
            let base = (r * 7) as f32;
            assert_eq!(a.row(r), &[base, base + 1.0, base + 2.0]);
            assert_eq!(b.row(r), &[base + 3.0, base + 4.0, base + 5.0, base + 6.0]);
        }
        let whole = ColumnsMut::whole(&mut m, 7).row(4).to_vec();
        assert_eq!(whole, (28..35).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[cfg(feature = "std")]
    #[test]
    fn two_threads_write_their_columns_and_nothing_else() {
        let (rows, stride, mid) = (64, 193, 96);
        let mut m = vec![-1.0f32; rows * stride];
        let (mut a, mut b) = ColumnsMut::split(&mut m, stride, mid);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for r in 0..rows {
                    a.row(r).fill(r as f32);
                }
            });
            scope.spawn(move || {
                for r in 0..rows {
                    for (c, v) in b.row(r).iter_mut().enumerate() {
                        *v = 1000.0 + (mid + c) as f32;
                    }
                }
            });
        });
        for (r, row) in m.chunks_exact(stride).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let want = if c < mid { r as f32 } else { 1000.0 + c as f32 };
                assert_eq!(v, want, "row {r}, column {c}");
            }
        }
    }

    #[test]
    #[should_panic]
    fn a_row_past_the_last_panics() {
        let mut m = vec![0.0f32; 12];
        ColumnsMut::split(&mut m, 4, 2).1.row(3);
    }

    #[test]
    #[should_panic]
    fn a_matrix_of_partial_rows_is_refused() {
        let mut m = vec![0.0f32; 10];
        let _ = ColumnsMut::split(&mut m, 4, 2);
    }
}
