//! Fully connected layer, `y = W·x + b`.
//!
//! The layer, its reference loops and its passes are here; its `f32` kernels are apart, in
//! `linear_kernel` (samples one after the other) and `linear_lanes` (16 samples per vector).

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::fusion::Fusion;
use crate::lanes::{
    BlockOrder, CacheLines, LANES, LaneLayer, block_from_lanes, block_of, block_of_mut,
    check_lanes, lane_get, lane_put, relu_mask, transpose_blocks,
};
use crate::layer::{Layer, Shape, TensorKind, no_such_param, torch_default_uniform};
use crate::scalar::Scalar;
use crate::{linear_kernel, linear_lanes};

/// A fully connected layer from `IN` to `OUT` values: `y = W·x + b`.
///
/// The weight is stored `[out][in]`, PyTorch's layout.
///
/// ```
/// use constnet::{Layer, Linear, zeroed_box};
/// let mut fc = zeroed_box::<Linear<f64, 2, 3>>();
/// fc.weight = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// fc.bias = [0.0, 0.0, 0.5];
/// let mut y = [0.0; 3];
/// fc.forward(&[2.0, 3.0], &mut y, &mut ());
/// assert_eq!(y, [2.0, 3.0, 5.5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Linear<T, const IN: usize, const OUT: usize> {
    /// Weights, `[output][input]`.
    pub weight: [[T; IN]; OUT],
    /// One bias per output.
    pub bias: [T; OUT],
}

impl<T: Scalar, const IN: usize, const OUT: usize> Linear<T, IN, OUT> {
    /// The shape rule; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = assert!(IN > 0 && OUT > 0, "Linear: IN and OUT must be at least 1");

    /// The plain loops of [`Layer::forward`]: the definition the fast path is tested against,
    /// and the path for `f64`.
    pub fn forward_reference(&self, input: &[T; IN], output: &mut [T; OUT]) {
        const { Self::SHAPE_OK };
        for ((y, w), &b) in output.iter_mut().zip(&self.weight).zip(&self.bias) {
            *y = w.iter().zip(input).fold(b, |acc, (&w, &x)| acc + w * x);
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`Linear::forward_reference`]).
    pub fn backward_reference(
        &self,
        input: &[T; IN],
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        for ((gw, gb), &g) in grads
            .weight
            .iter_mut()
            .zip(&mut grads.bias)
            .zip(grad_output)
        {
            *gb = *gb + g;
            for (gw, &x) in gw.iter_mut().zip(input) {
                *gw = *gw + g * x;
            }
        }
        if let Some(gi) = grad_input {
            *gi = [T::zero(); IN];
            for (w, &g) in self.weight.iter().zip(grad_output) {
                for (gi, &w) in gi.iter_mut().zip(w) {
                    *gi = *gi + g * w;
                }
            }
        }
    }

    /// `f32` fast forward of `n = x.len() / IN` samples at once (rows of `x` and `y`).
    /// Returns `false`, touching nothing, if `T` is not `f32`.
    pub(crate) fn forward_fast(&self, x: &[T], y: &mut [T]) -> bool {
        let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(x),
            T::as_f32_mut(y),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
        ) else {
            return false;
        };
        linear_kernel::forward::<IN, OUT>(x, (w, b), y);
        true
    }

    /// The input gradient (with the current weights), then `w ← w − lr · g xᵀ` and
    /// `b ← b − lr · g`, with no gradient buffer (see [`crate::fused`]).
    pub(crate) fn backward_sgd_fused(
        &mut self,
        x: &[T; IN],
        g: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        lr: T,
    ) {
        if let (Some(xf), Some(gf)) = (T::as_f32(x), T::as_f32(g)) {
            let w = T::as_f32_mut(self.weight.as_flattened_mut()).expect("T is f32");
            let b = T::as_f32_mut(&mut self.bias).expect("T is f32");
            let gi = grad_input.map(|gi| T::as_f32_mut(gi).expect("T is f32"));
            linear_kernel::sgd_step(IN, (w, b), (xf, gf), lr.to_f64() as f32, gi);
            return;
        }
        // The reference loops' arithmetic, so that f64 matches backward + Sgd::step exactly.
        if let Some(gi) = grad_input {
            *gi = [T::zero(); IN];
            for (w, &g) in self.weight.iter().zip(g) {
                for (gi, &w) in gi.iter_mut().zip(w) {
                    *gi = *gi + g * w;
                }
            }
        }
        for ((w, b), &g) in self.weight.iter_mut().zip(&mut self.bias).zip(g) {
            *b = *b - lr * g;
            for (w, &x) in w.iter_mut().zip(x) {
                *w = *w - lr * (g * x);
            }
        }
    }

    /// `f32` fast backward of `n = x.len() / IN` samples at once: parameter gradients summed
    /// over the samples into `grads`, input gradients (if asked) written per sample.
    /// Returns `false`, touching nothing, if `T` is not `f32`.
    pub(crate) fn backward_fast(
        &self,
        x: &[T],
        g: &[T],
        grad_input: Option<&mut [T]>,
        grads: &mut Self,
    ) -> bool {
        let (Some(x), Some(g)) = (T::as_f32(x), T::as_f32(g)) else {
            return false;
        };
        let w = T::as_f32(self.weight.as_flattened()).expect("T is f32");
        let gw = T::as_f32_mut(grads.weight.as_flattened_mut()).expect("T is f32");
        let gb = T::as_f32_mut(&mut grads.bias).expect("T is f32");
        let gi = grad_input.map(|gi| T::as_f32_mut(gi).expect("T is f32"));
        linear_kernel::backward((IN, OUT), (x, g), w, (gw, gb), gi);
        true
    }
}

impl<T: Scalar, const IN: usize, const OUT: usize> Layer for Linear<T, IN, OUT> {
    type Scalar = T;
    type Input = [T; IN];
    type Output = [T; OUT];
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &[T; IN], output: &mut [T; OUT], _ws: &mut ()) {
        const { Self::SHAPE_OK };
        if !self.forward_fast(input.as_slice(), output.as_mut_slice()) {
            self.forward_reference(input, output);
        }
    }

    fn backward(
        &self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if T::as_f32(&self.bias).is_some() {
            let gi = grad_input.map(|gi| gi.as_mut_slice());
            self.backward_fast(input.as_slice(), grad_output.as_slice(), gi, grads);
        } else {
            self.backward_reference(input, grad_output, grad_input, grads);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened(),
            1 => &self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => self.weight.as_flattened_mut(),
            1 => &mut self.bias,
            _ => no_such_param("Linear", i),
        }
    }

    /// PyTorch's layout: the weight is `[OUT, IN]`.
    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        match (kind, i) {
            (TensorKind::Param, 0) => Shape::new(&[OUT, IN]),
            (TensorKind::Param, 1) => Shape::new(&[self.param(1).len()]),
            _ => no_such_param("Linear", i),
        }
    }

    /// PyTorch's default (`nn.Linear.reset_parameters`): the weights, then the biases, drawn
    /// from U(−1/√fan_in, 1/√fan_in) over the fan-in `IN`.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        torch_default_uniform(self.weight.as_flattened_mut(), IN, rng);
        torch_default_uniform(&mut self.bias, IN, rng);
    }
}

/// The batch as one matrix product: each weight is read once per batch, not once per sample.
impl<T: Scalar, const IN: usize, const OUT: usize, const N: usize> BatchLayer<N>
    for Linear<T, IN, OUT>
{
    /// The batch's inputs and outputs transposed, `[input][sample]` and `[output][sample]`,
    /// for the forward kernel with the samples in the vector lanes.
    type BatchWorkspace = ([[T; N]; IN], [[T; N]; OUT]);
    const WHOLE_BATCH: bool = true;

    fn forward_sample(
        &self,
        _n: usize,
        input: &[T; IN],
        output: &mut [T; OUT],
        _ws: &mut Self::BatchWorkspace,
    ) {
        self.forward(input, output, &mut ());
    }

    fn backward_sample(
        &self,
        _n: usize,
        input: &[T; IN],
        _ws: &mut Self::BatchWorkspace,
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        grads: &mut Self,
    ) {
        self.backward(input, &mut (), grad_output, grad_input, grads);
    }

    /// With `N` a multiple of the lane count (16, 32, 64 with AVX-512), the samples run in
    /// the vector lanes: each weight is broadcast once per vector of samples and no sum is
    /// horizontal. Otherwise blocks of dot products, as for one sample.
    fn forward_batch(
        &self,
        input: &[[T; IN]; N],
        output: &mut [[T; OUT]; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        const { Self::SHAPE_OK };
        if let (Some(x), Some(y), Some(w), Some(b), Some(xt), Some(yt)) = (
            T::as_f32(input.as_flattened()),
            T::as_f32_mut(output.as_flattened_mut()),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
            T::as_f32_mut(ws.0.as_flattened_mut()),
            T::as_f32_mut(ws.1.as_flattened_mut()),
        ) && linear_kernel::forward_samples((IN, OUT), x, (w, b), y, (xt, yt))
        {
            return;
        }
        if !self.forward_fast(input.as_flattened(), output.as_flattened_mut()) {
            for (x, y) in input.iter().zip(output.iter_mut()) {
                self.forward_reference(x, y);
            }
        }
    }

    fn backward_batch(
        &self,
        input: &[[T; IN]; N],
        _ws: &mut Self::BatchWorkspace,
        grad_output: &[[T; OUT]; N],
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if T::as_f32(&self.bias).is_some() {
            let gi = grad_input.map(|gi| gi.as_flattened_mut());
            self.backward_fast(input.as_flattened(), grad_output.as_flattened(), gi, grads);
        } else {
            match grad_input {
                Some(gi) => {
                    for ((x, g), gi) in input.iter().zip(grad_output).zip(gi) {
                        self.backward_reference(x, g, Some(gi), grads);
                    }
                }
                None => {
                    for (x, g) in input.iter().zip(grad_output) {
                        self.backward_reference(x, g, None, grads);
                    }
                }
            }
        }
    }
}

/// Where a fully connected layer's lane backward pass gathers the batch's inputs and output
/// gradients sample by sample, block by block, for the weight gradient (a matrix product
/// over the samples, after the last block; `f32` only).
pub struct LinearLaneWorkspace<T, const IN: usize, const OUT: usize, const N: usize> {
    /// The batch's inputs, `[sample][input]`, gathered block by block in the backward pass.
    pub x: CacheLines<[[T; IN]; N]>,
    /// The batch's output gradients (through the fused ReLU), `[sample][output]`.
    pub g: CacheLines<[[T; OUT]; N]>,
    /// One block's output gradient through a fused ReLU, in lanes.
    pub masked: CacheLines<[[T; OUT]; LANES]>,
    /// The block the backward pass expects next: the weight gradient waits for the last.
    pub order: BlockOrder,
}

/// 16 samples per vector: each weight is broadcast once per block and multiplies 16 samples;
/// the weight gradient, a sum over the samples, runs once per batch on the samples
/// transposed back.
impl<T: Scalar, const IN: usize, const OUT: usize, const N: usize> LaneLayer<N>
    for Linear<T, IN, OUT>
{
    type LaneWorkspace = LinearLaneWorkspace<T, IN, OUT, N>;

    fn forward_lanes(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: &mut [[T; OUT]; N],
        _ws: &mut Self::LaneWorkspace,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        let y = block_of_mut(output, block).as_flattened_mut();
        self.forward_lanes_any(block_of(input, block).as_flattened(), y, false);
    }

    /// A ReLU, in `f32`.
    fn fuses(&self, epilogue: Fusion<'_, T>) -> bool {
        epilogue.is_relu() && T::as_f32(&self.bias).is_some()
    }

    /// The SIMD kernel applies the ReLU as it stores the output.
    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: &mut [T],
        _ws: &mut Self::LaneWorkspace,
        epilogue: Fusion<'_, T>,
        _infer: bool,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses(self, epilogue) {
            return false;
        }
        let y = &mut output[block * OUT * LANES..][..OUT * LANES];
        self.forward_lanes_any(block_of(input, block).as_flattened(), y, true);
        true
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        _output: &[[T; OUT]; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[[T; OUT]; N],
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        ws.order.take(block, N / LANES);
        let g = block_of(grad_output, block).as_flattened();
        let samples = (&mut ws.x.0, &mut ws.g.0);
        self.backward_lanes_any::<N>(block, input, g, samples, grad_input, grads);
    }

    /// The ReLU's gradient is applied to the block's output gradient once, before both
    /// gradients read it.
    fn backward_lanes_then(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        output: Option<&[T]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[T],
        epilogue: Fusion<'_, T>,
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses(self, epilogue) {
            return false;
        }
        let len = OUT * LANES;
        let LinearLaneWorkspace {
            x,
            g,
            masked,
            order,
        } = ws;
        order.take(block, N / LANES);
        let masked = masked.0.as_flattened_mut();
        masked.copy_from_slice(&grad_output[block * len..][..len]);
        if let Some(y) = output {
            relu_mask(masked, &y[block * len..][..len]);
        }
        self.backward_lanes_any::<N>(
            block,
            input,
            masked,
            (&mut x.0, &mut g.0),
            grad_input,
            grads,
        );
        true
    }
}

impl<T: Scalar, const IN: usize, const OUT: usize> Linear<T, IN, OUT> {
    /// One block's forward pass in lanes (`x` is `[in][16]`, `y` `[out][16]`), then a ReLU
    /// if `relu`: the SIMD kernel in `f32`, else the reference loops sample by sample.
    fn forward_lanes_any(&self, x: &[T], y: &mut [T], relu: bool) {
        if let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(x),
            T::as_f32_mut(y),
            T::as_f32(self.weight.as_flattened()),
            T::as_f32(&self.bias),
        ) {
            linear_lanes::forward::<IN, OUT>(x, (w, b), y, relu);
            return;
        }
        let (mut xs, mut ys) = ([T::zero(); IN], [T::zero(); OUT]);
        for n in 0..LANES {
            lane_get(x, n, &mut xs);
            self.forward_reference(&xs, &mut ys);
            if relu {
                ys = ys.map(|v| if v <= T::zero() { T::zero() } else { v });
            }
            lane_put(&ys, n, y);
        }
    }

    /// One block's backward pass in lanes from its output gradient `g` (`[out][16]`): the
    /// input gradient in lanes, and the block's inputs and gradients kept sample by sample
    /// in `samples`, for the parameter gradients of the whole batch after the last block
    /// (in `f32`; otherwise the reference loops, sample by sample).
    fn backward_lanes_any<const N: usize>(
        &self,
        block: usize,
        input: &[[T; IN]; N],
        g: &[T],
        (xs, gs): (&mut [[T; IN]; N], &mut [[T; OUT]; N]),
        grad_input: Option<&mut [[T; IN]; N]>,
        grads: &mut Self,
    ) {
        let mut gi = grad_input.map(|gi| block_of_mut(gi, block).as_flattened_mut());
        let Some(gf) = T::as_f32(g) else {
            let x = block_of(input, block).as_flattened();
            let (mut xn, mut gn, mut gx) = ([T::zero(); IN], [T::zero(); OUT], [T::zero(); IN]);
            for n in 0..LANES {
                lane_get(x, n, &mut xn);
                lane_get(g, n, &mut gn);
                let want = gi.is_some().then_some(&mut gx);
                self.backward_reference(&xn, &gn, want, grads);
                if let Some(gi) = gi.as_deref_mut() {
                    lane_put(&gx, n, gi);
                }
            }
            return;
        };
        if let Some(gi) = gi {
            let w = T::as_f32(self.weight.as_flattened()).expect("T is f32");
            let gi = T::as_f32_mut(gi).expect("T is f32");
            linear_lanes::input_grad::<IN, OUT>(w, gf, gi);
        }
        block_from_lanes(input, xs, block);
        transpose_blocks(g, block_of_mut(gs, block).as_flattened_mut(), (OUT, LANES));
        if block + 1 == N / LANES {
            self.backward_fast(xs.as_flattened(), gs.as_flattened(), None, grads);
        }
    }
}

crate::zeroable!(impl [T: Scalar, const IN: usize, const OUT: usize] for Linear [T, IN, OUT] { weight, bias });
crate::zeroable!(impl [T: Scalar, const IN: usize, const OUT: usize, const N: usize]
    for LinearLaneWorkspace [T, IN, OUT, N] { x, g, masked, order });

/// A fully connected layer's gradient is as big as its weights: the update is the weight
/// gradient's outer product, added straight to the weights.
impl<T: Scalar, const IN: usize, const OUT: usize> SgdLayer for Linear<T, IN, OUT> {
    fn backward_sgd(
        &mut self,
        input: &[T; IN],
        _ws: &mut (),
        grad_output: &[T; OUT],
        grad_input: Option<&mut [T; IN]>,
        lr: T,
    ) {
        self.backward_sgd_fused(input, grad_output, grad_input, lr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    #[test]
    fn backward_gives_outer_product_and_transpose() {
        let mut fc = zeroed_box::<Linear<f64, 2, 2>>();
        fc.weight = [[1.0, 2.0], [3.0, 4.0]];
        let mut grads = zeroed_box::<Linear<f64, 2, 2>>();
        let mut gx = [0.0; 2];
        fc.backward(
            &[5.0, 6.0],
            &mut (),
            &[1.0, -1.0],
            Some(&mut gx),
            &mut grads,
        );
        assert_eq!(gx, [1.0 - 3.0, 2.0 - 4.0]);
        assert_eq!(grads.weight, [[5.0, 6.0], [-5.0, -6.0]]);
        assert_eq!(grads.bias, [1.0, -1.0]);
        // A second sample accumulates.
        fc.backward(&[5.0, 6.0], &mut (), &[1.0, -1.0], None, &mut grads);
        assert_eq!(grads.bias, [2.0, -2.0]);
    }

    /// PyTorch's default over the fan-in 400 (LeNet's fc1), weights and biases.
    #[test]
    fn init_is_pytorchs_default_over_the_inputs() {
        use rand::SeedableRng;
        let mut fc = zeroed_box::<Linear<f32, 400, 120>>();
        fc.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        let bound = (1.0 / 400f64.sqrt()) as f32;
        let w = fc.weight.as_flattened();
        assert!(w.iter().chain(&fc.bias).all(|v| v.abs() <= bound));
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.99 * bound);
        assert!(fc.bias.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.9 * bound);
    }
}
