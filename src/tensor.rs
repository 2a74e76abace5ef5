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
    /// The dimensions, outermost first: `[N]` for a vector, `[H, W]` for a map, `[C, H, W]`
    /// for [`Maps`].
    const DIMS: &'static [usize] = &[Self::LEN];
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
    /// `flat` seen as this tensor, with no copy: `None` unless it holds exactly
    /// [`Tensor::LEN`] elements (or the tensor has an empty dimension).
    ///
    /// ```
    /// use constnet::{Maps, Tensor};
    /// let mut values = [0.0f32; 13];
    /// let maps = <Maps<f32, 2, 2, 3>>::from_flat_mut(&mut values[1..]).unwrap();
    /// maps[1][0][2] = 7.0;
    /// assert_eq!(values[1 + 6 + 2], 7.0);
    /// assert!(<Maps<f32, 2, 2, 3>>::from_flat(&values).is_none());
    /// ```
    fn from_flat(flat: &[Self::Scalar]) -> Option<&Self>;
    /// Mutable version of [`Tensor::from_flat`].
    fn from_flat_mut(flat: &mut [Self::Scalar]) -> Option<&mut Self>;
    /// `flat` seen as `N` of these tensors one after the other (the inverse of
    /// [`Tensor::flat_slice_mut`]), with no copy: `None` unless it holds exactly `N ·`
    /// [`Tensor::LEN`] elements.
    ///
    /// ```
    /// use constnet::Tensor;
    /// let mut values = [0.0f32; 6];
    /// let batch = <[f32; 3]>::batch_from_flat_mut::<2>(&mut values).unwrap();
    /// batch[1][0] = 7.0;
    /// assert_eq!(values[3], 7.0);
    /// assert!(<[f32; 3]>::batch_from_flat_mut::<3>(&mut values).is_none());
    /// ```
    fn batch_from_flat_mut<const N: usize>(flat: &mut [Self::Scalar]) -> Option<&mut [Self; N]>;
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
    fn from_flat(flat: &[T]) -> Option<&Self> {
        flat.try_into().ok()
    }
    fn from_flat_mut(flat: &mut [T]) -> Option<&mut Self> {
        flat.try_into().ok()
    }
    fn batch_from_flat_mut<const B: usize>(flat: &mut [T]) -> Option<&mut [Self; B]> {
        exact_chunks_mut::<_, N>(flat)?.try_into().ok()
    }
}

impl<T: Scalar, const W: usize, const H: usize> Tensor for [[T; W]; H] {
    type Scalar = T;
    const LEN: usize = H * W;
    const DIMS: &'static [usize] = &[H, W];
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
    fn from_flat(flat: &[T]) -> Option<&Self> {
        exact_chunks::<_, W>(flat)?.try_into().ok()
    }
    fn from_flat_mut(flat: &mut [T]) -> Option<&mut Self> {
        exact_chunks_mut::<_, W>(flat)?.try_into().ok()
    }
    fn batch_from_flat_mut<const B: usize>(flat: &mut [T]) -> Option<&mut [Self; B]> {
        exact_chunks_mut::<_, H>(exact_chunks_mut::<_, W>(flat)?)?
            .try_into()
            .ok()
    }
}

impl<T: Scalar, const W: usize, const H: usize, const C: usize> Tensor for [[[T; W]; H]; C] {
    type Scalar = T;
    const LEN: usize = C * H * W;
    const DIMS: &'static [usize] = &[C, H, W];
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
    fn from_flat(flat: &[T]) -> Option<&Self> {
        exact_chunks::<_, H>(exact_chunks::<_, W>(flat)?)?
            .try_into()
            .ok()
    }
    fn from_flat_mut(flat: &mut [T]) -> Option<&mut Self> {
        exact_chunks_mut::<_, H>(exact_chunks_mut::<_, W>(flat)?)?
            .try_into()
            .ok()
    }
    fn batch_from_flat_mut<const B: usize>(flat: &mut [T]) -> Option<&mut [Self; B]> {
        let maps = exact_chunks_mut::<_, H>(exact_chunks_mut::<_, W>(flat)?)?;
        exact_chunks_mut::<_, C>(maps)?.try_into().ok()
    }
}

/// `xs` as arrays of `N`, if it is a whole number of them (and `N` is not 0).
fn exact_chunks<T, const N: usize>(xs: &[T]) -> Option<&[[T; N]]> {
    if N == 0 {
        return None;
    }
    let (chunks, rest) = xs.as_chunks::<N>();
    rest.is_empty().then_some(chunks)
}

/// Mutable version of [`exact_chunks`].
fn exact_chunks_mut<T, const N: usize>(xs: &mut [T]) -> Option<&mut [[T; N]]> {
    if N == 0 {
        return None;
    }
    let (chunks, rest) = xs.as_chunks_mut::<N>();
    rest.is_empty().then_some(chunks)
}

/// `C` feature maps of `H`×`W`: the tensor a convolution reads and writes.
pub type Maps<T, const C: usize, const H: usize, const W: usize> = [[[T; W]; H]; C];

/// The channel count and map size of a [`Maps`] tensor, as constants, so that a layer can
/// state rules between the shapes of other layers' outputs (a channel concatenation's
/// channels are the sum of its branches').
pub trait MapsShape: Tensor {
    /// Channels.
    const C: usize;
    /// Height of each map.
    const H: usize;
    /// Width of each map.
    const W: usize;
}

impl<T: Scalar, const W: usize, const H: usize, const C: usize> MapsShape for [[[T; W]; H]; C] {
    const C: usize = C;
    const H: usize = H;
    const W: usize = W;
}

/// Index of the largest element (the first one on ties), or `None` if `values` is empty or
/// holds a NaN: a NaN has no place in the order, so no element can be called the largest.
/// (A softmax's probabilities are all NaN once any logit is NaN or two are infinite.)
///
/// ```
/// use constnet::argmax;
/// assert_eq!(argmax(&[0.1f32, 0.7, 0.7, 0.2]), Some(1));
/// assert_eq!(argmax(&[0.1f32, f32::NAN, 0.9]), None);
/// assert_eq!(argmax::<f64>(&[]), None);
/// ```
pub fn argmax<T: Scalar>(values: &[T]) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > values[best] {
            best = i;
        }
    }
    (!values.is_empty()).then_some(best)
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
    fn from_flat_is_the_inverse_of_flat_for_exact_lengths_only() {
        let values: Vec<f64> = (0..24).map(f64::from).collect();
        let v = <[f64; 24]>::from_flat(&values).unwrap();
        let m = <[[f64; 6]; 4]>::from_flat(&values).unwrap();
        let c = <Maps<f64, 2, 3, 4>>::from_flat(&values).unwrap();
        assert_eq!((v[13], m[2][1], c[1][0][1]), (13.0, 13.0, 13.0));
        assert_eq!(
            (v.flat(), m.flat(), c.flat()),
            (&values[..], &values[..], &values[..])
        );
        for len in [0, 23, 25] {
            let other: Vec<f64> = vec![0.0; len];
            assert!(<[f64; 24]>::from_flat(&other).is_none());
            assert!(<[[f64; 6]; 4]>::from_flat(&other).is_none());
            assert!(<Maps<f64, 2, 3, 4>>::from_flat(&other).is_none());
        }
        let mut values = values;
        <Maps<f64, 2, 3, 4>>::from_flat_mut(&mut values).unwrap()[1][2][3] = -1.0;
        assert_eq!(values[23], -1.0);
        assert!(<[[f64; 0]; 4]>::from_flat(&[]).is_none());
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0f64, 3.0, 3.0, -1.0]), Some(1));
        assert_eq!(argmax(&[-1.0f32, f32::INFINITY, 2.0]), Some(1));
    }

    #[test]
    fn argmax_of_a_nan_anywhere_is_none() {
        for at in 0..4 {
            let mut v = [0.25f32; 4];
            v[at] = f32::NAN;
            assert_eq!(argmax(&v), None, "NaN at {at}");
        }
        assert_eq!(argmax(&[f64::NAN; 10]), None);
        assert_eq!(argmax::<f32>(&[]), None);
    }
}
