//! The element types a network computes in.

use core::fmt::Debug;
use num_traits::Float;

use crate::zeroed::Zeroable;

/// A floating-point element type: `f32` or `f64`.
///
/// All arithmetic goes through [`num_traits::Float`], which uses `std` when the `std` feature
/// is on and `libm` otherwise, so the same layer code runs on servers and in firmware.
/// The trait is sealed: its all-zero bit pattern must be the number zero (see
/// [`Zeroable`]), which holds for IEEE-754 floats.
pub trait Scalar:
    Float + Zeroable + Debug + Default + Send + Sync + 'static + sealed::Sealed
{
    /// Converts an `f64` (a constant, or a number from a random generator) to this type,
    /// rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// Widens (or keeps) this value as an `f64`.
    fn to_f64(self) -> f64;
    /// `Some(s)` if `Self` is `f32`: the layers' SIMD fast paths are `f32`-only, and `f64`
    /// keeps the exact summation order of the reference loops.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// Mutable version of [`Scalar::as_f32`].
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

// `#[inline]`: one instruction or none, called in every loop that converts; without it
// a crate that calls them (the tests', without LTO) made a call per value.
impl Scalar for f32 {
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    #[inline]
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Scalar for f64 {
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn as_f32(_: &[f64]) -> Option<&[f32]> {
        None
    }
    #[inline]
    fn as_f32_mut(_: &mut [f64]) -> Option<&mut [f32]> {
        None
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}
