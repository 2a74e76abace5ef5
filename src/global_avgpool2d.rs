//! Global average pooling: each map to its mean.

use core::marker::PhantomData;

use rand::Rng;

use crate::layer::{Layer, no_such_param};
use crate::scalar::Scalar;
use crate::simd::{self, Kernel, Simd};
use crate::tensor::{Maps, Tensor};

/// The mean of each of `C` maps of `H`×`W`, from `C`×`H`×`W` to a vector of `C`: PyTorch's
/// `AdaptiveAvgPool2d(1)` followed by `flatten(1)`, the head of ResNet, GoogLeNet and
/// DenseNet (`GlobalAvgPool2d<T, 512, 7, 7>` in ResNet-18). The gradient of each mean goes
/// to every pixel of its map, divided by `H·W`.
///
/// In `f32` the sums run in SIMD vectors (several partial sums per map, added at the end),
/// so they may differ from [`GlobalAvgPool2d::forward_reference`]'s in the last bits.
///
/// ```
/// use constnet::{GlobalAvgPool2d, Layer};
/// let pool = GlobalAvgPool2d::<f32, 2, 2, 2>::new();
/// let x = [[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 1.0], [0.0, 8.0]]];
/// let mut y = [0.0; 2];
/// pool.forward(&x, &mut y, &mut ());
/// assert_eq!(y, [2.5, 2.0]);
/// ```
///
/// An empty map has no mean and does not compile:
/// ```compile_fail
/// use constnet::{GlobalAvgPool2d, Layer};
/// const _: () = <GlobalAvgPool2d<f32, 4, 0, 7> as Layer>::CHECK;
/// ```
/// ```
/// use constnet::{GlobalAvgPool2d, Layer};
/// const _: () = <GlobalAvgPool2d<f32, 4, 1, 7> as Layer>::CHECK;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GlobalAvgPool2d<T, const C: usize, const H: usize, const W: usize>(PhantomData<T>);

impl<T: Scalar, const C: usize, const H: usize, const W: usize> GlobalAvgPool2d<T, C, H, W> {
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(
        H > 0 && W > 0,
        "GlobalAvgPool2d: the maps must have at least one pixel (H ≥ 1 and W ≥ 1)"
    );

    /// The plain loops of [`Layer::forward`]: each map's sum, in reading order, over `H·W`.
    pub fn forward_reference(input: &Maps<T, C, H, W>, output: &mut [T; C]) {
        const { Self::SHAPE_OK };
        let n = T::from_f64((H * W) as f64);
        for (map, y) in input.iter().zip(output.iter_mut()) {
            *y = map.as_flattened().iter().fold(T::zero(), |s, &v| s + v) / n;
        }
    }

    /// The plain loops of [`Layer::backward`]: `grad_output[c] / (H·W)` at every pixel of
    /// map `c`.
    pub fn backward_reference(grad_output: &[T; C], gi: &mut Maps<T, C, H, W>) {
        const { Self::SHAPE_OK };
        let n = T::from_f64((H * W) as f64);
        for (&g, map) in grad_output.iter().zip(gi.iter_mut()) {
            map.as_flattened_mut().fill(g / n);
        }
    }

    /// The pooling layer (it has no parameters).
    pub const fn new() -> Self {
        const { Self::SHAPE_OK };
        Self(PhantomData)
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize> Layer
    for GlobalAvgPool2d<T, C, H, W>
{
    type Scalar = T;
    type Input = Maps<T, C, H, W>;
    type Output = [T; C];
    /// Nothing: the gradient does not depend on the input.
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 0;

    fn forward(&self, input: &Self::Input, output: &mut [T; C], _ws: &mut ()) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output)) {
            return simd::dispatch_within(Means::<H, W> { x, y }, H * W);
        }
        Self::forward_reference(input, output);
    }

    fn backward(
        &self,
        _input: &Self::Input,
        _ws: &mut (),
        grad_output: &[T; C],
        grad_input: Option<&mut Self::Input>,
        _grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if let Some(gi) = grad_input {
            Self::backward_reference(grad_output, gi);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        no_such_param("GlobalAvgPool2d", i)
    }
    fn param_mut(&mut self, i: usize) -> &mut [T] {
        no_such_param("GlobalAvgPool2d", i)
    }
    fn init<R: Rng + ?Sized>(&mut self, _rng: &mut R) {}
}

/// The `f32` means: each map summed a vector at a time (the last, partial vector one value
/// at a time), the lanes added at the end.
struct Means<'a, const H: usize, const W: usize> {
    x: &'a [f32],
    y: &'a mut [f32],
}

impl<const H: usize, const W: usize> Kernel for Means<'_, H, W> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let n = (H * W) as f32;
        for (map, y) in self.x.chunks_exact(H * W).zip(self.y.iter_mut()) {
            let whole = map.len() - map.len() % S::LANES;
            let mut acc = s.splat(0.0);
            for at in (0..whole).step_by(S::LANES) {
                acc = s.add(acc, s.load(map, at));
            }
            let sum = map[whole..].iter().fold(s.sum(acc), |a, &v| a + v);
            *y = sum / n;
        }
    }
}

crate::zeroable!(impl [T: Scalar, const C: usize, const H: usize, const W: usize]
    for GlobalAvgPool2d [T, C, H, W] (_0));

// In batches, sample by sample; the fused SGD step, just the backward pass.
crate::batch_by_sample::per_sample!(impl<T; const C: usize, const H: usize, const W: usize>
    for GlobalAvgPool2d<T, C, H, W>);
crate::fused::no_params!(impl<T; const C: usize, const H: usize, const W: usize>
    for GlobalAvgPool2d<T, C, H, W>);

#[cfg(test)]
mod tests {
    use super::*;

    /// Means of 1..=6 and of a map with a negative sum, and their gradients: a third of
    /// each output's gradient per pixel of a 1×3 map.
    #[test]
    fn forward_is_the_mean_and_backward_spreads_it_evenly() {
        let pool = GlobalAvgPool2d::<f64, 2, 1, 3>::new();
        let x = [[[1.0, 2.0, 3.0]], [[-4.0, 5.0, -10.0]]];
        let mut y = [0.0; 2];
        pool.forward(&x, &mut y, &mut ());
        assert_eq!(y, [2.0, -3.0]);
        let mut gi = [[[f64::NAN; 3]; 1]; 2];
        pool.backward(
            &x,
            &mut (),
            &[3.0, -6.0],
            Some(&mut gi),
            &mut GlobalAvgPool2d::new(),
        );
        assert_eq!(gi, [[[1.0; 3]], [[-2.0; 3]]]);
    }

    /// A 1×1 map is its own mean: the layer is the identity, values and gradients.
    #[test]
    fn one_pixel_maps_pass_through() {
        let pool = GlobalAvgPool2d::<f32, 3, 1, 1>::new();
        let mut y = [0.0; 3];
        pool.forward(&[[[0.5]], [[-7.0]], [[1e30]]], &mut y, &mut ());
        assert_eq!(y, [0.5, -7.0, 1e30]);
    }
}
