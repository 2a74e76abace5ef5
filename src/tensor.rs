//! Tensors are plain nested arrays: `[T; N]` for vectors, `[[[T; W]; H]; C]` for feature maps.

use num_traits::Zero;

use crate::scalar::Scalar;
use crate::zeroed::Zeroable;

/// A fixed-size array of scalars of rank 1, 2 or 3, seen as one flat row-major slice.
///
/// Users pass their own arrays with no conversion; the layers use [`Tensor::flat`] for
/// element-wise work. The shape is entirely in the type, so nothing is checked at run time.
pub trait Tensor: Copy + Zeroable + Send + Sync + 'static {
    /// The element type.
    type Scalar: Scalar;
    /// Number of elements.
    const LEN: usize;
    /// All elements in row-major order.
    fn flat(&self) -> &[Self::Scalar];
    /// All elements in row-major order, mutable.
    fn flat_mut(&mut self) -> &mut [Self::Scalar];
    /// Every element set to zero.
    fn fill_zero(&mut self) {
        self.flat_mut().fill(Self::Scalar::zero());
    }
    /// The elements of several tensors, one after the other (a batch as one flat slice).
    fn flat_slice(xs: &[Self]) -> &[Self::Scalar];
    /// Mutable version of [`Tensor::flat_slice`].
    fn flat_slice_mut(xs: &mut [Self]) -> &mut [Self::Scalar];
}

impl<T: Scalar, const N: usize> Tensor for [T; N] {
    type Scalar = T;
    const LEN: usize = N;
    fn flat(&self) -> &[T] {
        self
    }
    fn flat_mut(&mut self) -> &mut [T] {
        self
    }
    fn flat_slice(xs: &[Self]) -> &[T] {
        xs.as_flattened()
    }
    fn flat_slice_mut(xs: &mut [Self]) -> &mut [T] {
        xs.as_flattened_mut()
    }
}

impl<T: Scalar, const W: usize, const H: usize> Tensor for [[T; W]; H] {
    type Scalar = T;
    const LEN: usize = H * W;
    fn flat(&self) -> &[T] {
        self.as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [T] {
        self.as_flattened_mut()
    }
    fn flat_slice(xs: &[Self]) -> &[T] {
        xs.as_flattened().as_flattened()
    }
    fn flat_slice_mut(xs: &mut [Self]) -> &mut [T] {
        xs.as_flattened_mut().as_flattened_mut()
    }
}

impl<T: Scalar, const W: usize, const H: usize, const C: usize> Tensor for [[[T; W]; H]; C] {
    type Scalar = T;
    const LEN: usize = C * H * W;
    fn flat(&self) -> &[T] {
        self.as_flattened().as_flattened()
    }
    fn flat_mut(&mut self) -> &mut [T] {
        self.as_flattened_mut().as_flattened_mut()
    }
    fn flat_slice(xs: &[Self]) -> &[T] {
        xs.as_flattened().as_flattened().as_flattened()
    }
    fn flat_slice_mut(xs: &mut [Self]) -> &mut [T] {
        xs.as_flattened_mut().as_flattened_mut().as_flattened_mut()
    }
}

/// `C` feature maps of `H`×`W`: the tensor a convolution reads and writes.
pub type Maps<T, const C: usize, const H: usize, const W: usize> = [[[T; W]; H]; C];

/// Index of the largest element (the first one on ties; NaN never wins).
pub fn argmax<T: Scalar>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if values[best].is_nan() || v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_is_row_major() {
        let mut m: Maps<f32, 2, 2, 3> = [[[0.0; 3]; 2]; 2];
        m[1][0][2] = 7.0;
        // channel 1 starts at 6, row 0, column 2
        assert_eq!(m.flat()[6 + 2], 7.0);
        assert_eq!(<Maps<f32, 2, 2, 3> as Tensor>::LEN, 12);
        m.flat_mut()[11] = 5.0;
        assert_eq!(m[1][1][2], 5.0);
        m.fill_zero();
        assert!(m.flat().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0f64, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }
}
