//! 2-D convolution with bias, zero padding and stride.
//!
//! The layer, its shape rule, its reference loops and its passes are here. Which kernel
//! runs each `f32` pass, and the batch in vector lanes, is `conv2d_f32`; the kernels are
//! apart: LeNet-5's tuned ones in `conv_fast` and `conv_fast_backward`, their lane versions
//! (16 samples per vector) in `conv_lanes` and `conv_lanes_backward`, and every other
//! geometry's in [`crate::conv_gemm`] (or [`crate::conv_kernel`], where a matrix product
//! does not pay).

use core::slice;

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::fusion::Fusion;
use crate::layer::{Layer, Shape, TensorKind, no_such_param, torch_default_uniform};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};
use crate::{conv_fast, conv_fast_backward, conv_reference};

pub use crate::conv_lanes::{ConvLaneWorkspace, LaneWeights};
pub use crate::shape::conv_out;

/// A 2-D convolution: `CO` filters of `CI`×`K`×`K`, stride `S`, zero padding `P`, from
/// `CI`×`H`×`W` maps to `CO`×`OH`×`OW` maps, plus one bias per output channel.
///
/// `OH` and `OW` must equal `⌊(H + 2·P − K) / S⌋ + 1` (see [`conv_out`]), PyTorch's rule:
/// rows and columns past the last window that fits are not read; a mismatch does not compile. Weights use
/// PyTorch's layout `[out][in][kh][kw]`, so a state dict copies straight in.
///
/// ```
/// use constnet::{Conv2d, Layer, zeroed_box};
/// // 1×32×32 → 6×28×28, as in LeNet-5's first layer.
/// let mut conv = zeroed_box::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>>();
/// conv.bias = [0.5; 6];
/// let image = [[[1.0f32; 32]; 32]; 1];
/// let mut maps = [[[0.0f32; 28]; 28]; 6];
/// conv.forward(&image, &mut maps, &mut ());
/// assert_eq!(maps[5][27][27], 0.5); // zero weights: only the bias remains
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    /// Filters, `[out channel][in channel][row][column]`.
    pub weight: [[[[T; K]; K]; CI]; CO],
    /// One bias per output channel.
    pub bias: [T; CO],
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            CI > 0 && CO > 0,
            "Conv2d: channel counts CI and CO must be at least 1"
        );
        assert!(
            K > 0 && S > 0,
            "Conv2d: kernel K and stride S must be at least 1"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "Conv2d: kernel K is larger than the padded input (H + 2·P, W + 2·P)"
        );
        assert!(P < K, "Conv2d: padding P must be smaller than the kernel K");
        // PyTorch's rule: the last window that fits, rows and columns past it unread
        // (ResNet-18's stem: ⌊(224 + 6 − 7) / 2⌋ + 1 = 112).
        assert!(
            OH == (H + 2 * P - K) / S + 1,
            "Conv2d: output height OH must equal ⌊(H + 2·P − K) / S⌋ + 1"
        );
        assert!(
            OW == (W + 2 * P - K) / S + 1,
            "Conv2d: output width OW must equal ⌊(W + 2·P − K) / S⌋ + 1"
        );
    };

    /// Input pixel `(y·S + i − P, x·S + j − P)` for output `(y, x)` and tap `(i, j)`, or
    /// `None` when it falls in the zero padding.
    #[inline(always)]
    fn source(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }

    /// The plain loops of [`Layer::forward`]: the definition the fast paths are tested
    /// against, and the path for `f64`.
    pub fn forward_reference(&self, input: &Maps<T, CI, H, W>, output: &mut Maps<T, CO, OH, OW>) {
        let geo = &Self::GEOMETRY;
        conv_reference::forward(
            geo,
            input.flat(),
            self.param(0),
            &self.bias,
            output.flat_mut(),
        );
    }

    /// The plain loops of [`Layer::backward`] (see [`Conv2d::forward_reference`]).
    pub fn backward_reference(
        &self,
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
        grads: &mut Self,
    ) {
        let gi = grad_input.map(|gi| gi.flat_mut());
        let (x, w, gy) = (input.flat(), self.param(0), grad_output.flat());
        let Self { weight, bias } = grads;
        let gw = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        conv_reference::backward(&Self::GEOMETRY, (x, w, gy), gi, gw, bias);
    }
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Layer for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    type Scalar = T;
    type Input = Maps<T, CI, H, W>;
    type Output = Maps<T, CO, OH, OW>;
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &Self::Input, output: &mut Self::Output, _ws: &mut ()) {
        self.forward_packed(input, output, None);
    }

    /// On the `f32` matrix-product path, each block of sums is mapped in registers before
    /// it is stored (batch norm and a ReLU after the convolution cost no pass of their own).
    const APPLIES_CHANNEL_AFFINE: bool = true;

    /// On the same path, a ReLU after the convolution too (VGG's and AlexNet's). Not on
    /// LeNet-5's tuned kernels: a chain there keeps the convolution's output in its
    /// workspace, where `LeNet5::activations` reads it after `probabilities`.
    const APPLIES_EPILOGUES: bool = Self::APPLIES_MAPS;

    fn infer_fused(
        &self,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut (),
        f: Fusion<'_, T>,
    ) {
        let (x, y) = (slice::from_ref(input), slice::from_mut(output));
        if !self.infer_then_f32(x, y, (f.affine, f.epilogue), None) {
            self.infer(input, output, ws);
            f.apply(output.flat_mut());
        }
    }

    fn backward(
        &self,
        input: &Self::Input,
        _ws: &mut (),
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        self.backward_packed(input, grad_output, grad_input, grads, None);
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened().as_flattened().as_flattened(),
            1 => &self.bias,
            _ => no_such_param("Conv2d", i),
        }
    }

    fn param_mut(&mut self, i: usize) -> &mut [T] {
        match i {
            0 => self
                .weight
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
            1 => &mut self.bias,
            _ => no_such_param("Conv2d", i),
        }
    }

    /// PyTorch's layout: the weight is `[CO, CI, K, K]`.
    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        match (kind, i) {
            (TensorKind::Param, 0) => Shape::new(&[CO, CI, K, K]),
            (TensorKind::Param, 1) => Shape::new(&[self.param(1).len()]),
            _ => no_such_param("Conv2d", i),
        }
    }

    /// PyTorch's default (`nn.Conv2d.reset_parameters`): the weights, then the biases, drawn
    /// from U(−1/√fan_in, 1/√fan_in) over the fan-in `CI·K·K`.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        torch_default_uniform(self.param_mut(0), CI * K * K, rng);
        torch_default_uniform(&mut self.bias, CI * K * K, rng);
    }
}

/// A convolution's weights rearranged for the fast kernels: `[c][i][j][o]` for the forward
/// pass, `[i][o][j][c]` for the input gradient. A batch packs them once for all its samples
/// (the batch workspace of [`Conv2d`]); a single pass packs them on the stack. A 3×3 layer
/// that runs Winograd's F(2×2, 3×3) in `f32` (`conv_winograd`) keeps its transformed
/// weights here instead, 16 matrices of `c_out × c_in` across the two arrays; a strided
/// layer that runs `conv_channels` its `[c][i][j][o]` weights in the first.
pub type ConvPacked<T, const CI: usize, const CO: usize, const K: usize> =
    ([[[[T; CO]; K]; K]; CI], [[[[T; CI]; K]; CO]; K]);

/// A batch runs sample by sample, with the weights packed once per batch.
impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
    const N: usize,
> BatchLayer<N> for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    type BatchWorkspace = ConvPacked<T, CI, CO, K>;

    /// Where one sample's tiles fill a fraction of the matrix product's blocks (ResNet-20's
    /// 64 → 64 on 8×8), inference runs the whole batch in one call.
    const INFER_WHOLE_BATCH: bool = Self::infers_whole_batch(N);

    /// [`Layer::infer_fused`] on the matrix product's path (the maps applied to its sums);
    /// elsewhere the sample's pass (with the weights a batch packed), then the maps.
    fn infer_sample_fused(
        &self,
        n: usize,
        x: &Self::Input,
        y: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, T>,
    ) {
        let maps = (f.affine, f.epilogue);
        if !self.infer_then_f32(slice::from_ref(x), slice::from_mut(y), maps, Some(ws)) {
            BatchLayer::<N>::infer_sample(self, n, x, y, ws);
            f.apply(y.flat_mut());
        }
    }

    /// The whole batch in one call of the matrix product's kernels, the maps applied to its
    /// sums (F(2×2, 3×3)'s tiles of all samples in the same blocks); elsewhere
    /// [`BatchLayer::infer_batch`], then the maps.
    fn infer_batch_fused(
        &self,
        x: &[Self::Input; N],
        y: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
        f: Fusion<'_, T>,
    ) {
        self.prepare_weights(ws);
        if !self.infer_then_f32(x, y, (f.affine, f.epilogue), Some(ws)) {
            BatchLayer::<N>::infer_batch(self, x, y, ws);
            y.iter_mut().for_each(|y| f.apply(y.flat_mut()));
        }
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        if let (true, Some(w), Some(wt)) = (
            Self::FAST,
            T::as_f32(self.param(0)),
            T::as_f32_mut(
                ws.0.as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut(),
            ),
        ) {
            conv_fast::pack_channel_lanes::<CI, CO, K>(w, wt);
        }
        self.prepare_weights(ws);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        if let (true, Some(w), Some(packed)) = (
            Self::FAST,
            T::as_f32(self.param(0)),
            T::as_f32_mut(
                ws.1.as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut(),
            ),
        ) {
            conv_fast_backward::pack_input_grad::<CI, CO, K>(w, packed);
        }
    }

    fn forward_batch(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        BatchLayer::<N>::prepare_forward(self, ws);
        if self.forward_batch_any_geometry(input, output, ws) {
            return;
        }
        for (x, y) in input.iter().zip(output.iter_mut()) {
            self.forward_packed(x, y, Some(ws));
        }
    }

    fn backward_batch(
        &self,
        input: &[Self::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[Self::Output; N],
        mut grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
        if self.backward_batch_any_geometry(input, grad_output, grad_input.as_deref_mut(), grads) {
            return;
        }
        BatchLayer::<N>::prepare_backward(self, ws);
        match grad_input {
            Some(gi) => {
                for ((x, g), gi) in input.iter().zip(grad_output).zip(gi) {
                    self.backward_packed(x, g, Some(gi), grads, Some(ws));
                }
            }
            None => {
                for (x, g) in input.iter().zip(grad_output) {
                    self.backward_packed(x, g, None, grads, Some(ws));
                }
            }
        }
    }

    fn forward_sample(
        &self,
        _n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_packed(input, output, Some(ws));
    }

    fn backward_sample(
        &self,
        _n: usize,
        input: &Self::Input,
        ws: &mut Self::BatchWorkspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    ) {
        self.backward_packed(input, grad_output, grad_input, grads, Some(ws));
    }
}

crate::zeroable!(impl [T: Scalar, const CI: usize, const CO: usize, const K: usize, const S: usize, const P: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for Conv2d [T, CI, CO, K, S, P, H, W, OH, OW] { weight, bias });

/// A LeNet-sized convolution's gradient is small (2,416 numbers for LeNet's conv2): it is
/// computed on the stack, then applied. Other `f32` geometries apply the step in place, with
/// no gradient buffer (the weight-gradient kernel adds `−lr ·` its sums to the weights).
impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> SgdLayer for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    #[allow(clippy::needless_range_loop)] // the loop nest of `backward_reference`, for its sums' order
    fn backward_sgd(
        &mut self,
        input: &Self::Input,
        ws: &mut (),
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        lr: T,
    ) {
        if const { !Self::FAST } && T::as_f32(&self.bias).is_some() {
            // The input gradient first, with the weights from before the step.
            self.input_grad_any_geometry(grad_output, grad_input);
            let scale = -(lr.to_f64() as f32);
            let (x, g) = (
                core::slice::from_ref(input),
                core::slice::from_ref(grad_output),
            );
            return Self::param_grad_any_geometry(x, g, self, scale);
        }
        if T::as_f32(&self.bias).is_some() {
            return self.fast_sgd(input, ws, grad_output, grad_input, lr);
        }
        // The reference (f64): the layer's gradient would be a layer-sized value on the
        // stack (19 MB for ResNet-18's last convolution), so the input gradient comes first,
        // with the weights from before the step, then each output channel's gradient and
        // step. Every sum runs in `backward_reference`'s order: the same result, bit for bit.
        if let Some(gi) = grad_input {
            gi.as_flattened_mut().as_flattened_mut().fill(T::zero());
            for (o, g_map) in grad_output.iter().enumerate() {
                for (y, g_row) in g_map.iter().enumerate() {
                    for (x, &g) in g_row.iter().enumerate() {
                        for c in 0..CI {
                            for i in 0..K {
                                for j in 0..K {
                                    if let Some((r, s)) = Self::source(y, x, i, j) {
                                        gi[c][r][s] = gi[c][r][s] + g * self.weight[o][c][i][j];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for (o, g_map) in grad_output.iter().enumerate() {
            let mut gw = [[[T::zero(); K]; K]; CI];
            let mut gb = T::zero();
            for (y, g_row) in g_map.iter().enumerate() {
                for (x, &g) in g_row.iter().enumerate() {
                    gb = gb + g;
                    for (c, gw) in gw.iter_mut().enumerate() {
                        for i in 0..K {
                            for j in 0..K {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    gw[i][j] = gw[i][j] + g * input[c][r][s];
                                }
                            }
                        }
                    }
                }
            }
            let weights = self.weight[o].as_flattened_mut().as_flattened_mut();
            for (w, &g) in weights.iter_mut().zip(gw.as_flattened().as_flattened()) {
                *w = *w - lr * g;
            }
            self.bias[o] = self.bias[o] - lr * gb;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    /// A hand-computed 1×3×3 → 1×2×2 convolution with a 2×2 kernel.
    #[test]
    fn forward_matches_hand_computation() {
        let mut conv = zeroed_box::<Conv2d<f64, 1, 1, 2, 1, 0, 3, 3, 2, 2>>();
        conv.weight = [[[[1.0, 2.0], [3.0, 4.0]]]];
        conv.bias = [10.0];
        let input = [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]];
        let mut out = [[[0.0; 2]; 2]; 1];
        conv.forward(&input, &mut out, &mut ());
        // top-left: 1·1 + 2·2 + 3·4 + 4·5 + bias 10 = 47
        assert_eq!(out, [[[47.0, 57.0], [77.0, 87.0]]]);
    }

    /// Padding 1, stride 2: the corner output sees only the bottom-right 2×2 of its kernel.
    #[test]
    fn padding_and_stride_skip_the_border() {
        let mut conv = zeroed_box::<Conv2d<f64, 1, 1, 3, 2, 1, 3, 3, 2, 2>>();
        conv.weight = [[[[1.0, 1.0, 1.0], [1.0, 100.0, 1.0], [1.0, 1.0, 1.0]]]];
        let input = [[[1.0; 3]; 3]];
        let mut out = [[[0.0; 2]; 2]; 1];
        conv.forward(&input, &mut out, &mut ());
        // output (0,0) centres on input (0,0): 4 real taps, one of them the 100.
        assert_eq!(out[0][0][0], 103.0);
        // output (1,1) centres on input (2,2): same by symmetry.
        assert_eq!(out[0][1][1], 103.0);
    }

    /// PyTorch's default over the fan-in 6·5·5 = 150, weights and biases (the statistics of
    /// the draws are tested with `torch_default_uniform`).
    #[test]
    fn init_is_pytorchs_default_and_seeded() {
        use rand::SeedableRng;
        let mut a = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        let mut b = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        a.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        b.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        let bound = (1.0 / 150f64.sqrt()) as f32;
        let w = a.param(0);
        assert!(w.iter().chain(&a.bias).all(|v| v.abs() <= bound));
        // 2400 uniform draws: the largest is near the bound, the mean near zero.
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.95 * bound);
        assert!((w.iter().sum::<f32>() / 2400.0).abs() < 0.005);
        assert!(a.bias.iter().all(|&b| b != 0.0));
    }
}
