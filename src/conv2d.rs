//! 2-D convolution with bias, zero padding and stride.
//!
//! The layer, its reference loops and its passes are here; its `f32` kernels are apart:
//! LeNet-5's tuned ones in `conv_fast` and `conv_fast_backward`, their lane versions (16
//! samples per vector) in `conv_lanes` and `conv_lanes_backward`, and every other geometry's
//! in [`crate::conv_gemm`] (or [`crate::conv_kernel`], where a matrix product does not pay).

use rand::Rng;

use crate::batch::BatchLayer;
use crate::conv_gemm::{self, ConvKernels};
use crate::conv_kernel::ConvGeometry;
use crate::fused::SgdLayer;
use crate::lanes::{LANES, LaneLayer, block_of, block_of_mut, check_lanes, lane_get, lane_put};
use crate::layer::{Layer, Shape, TensorKind, no_such_param, torch_default_uniform};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};
use crate::{conv_fast, conv_fast_backward, conv_lanes, conv_lanes_backward};

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

    /// The shape as the kernels read it as numbers: what decides which kernels take it, and
    /// the geometry of the kernels of [`crate::conv_kernel`] (the `f32` path of every shape
    /// LeNet's tuned kernels do not take).
    const GEOMETRY: ConvGeometry = {
        let () = Self::SHAPE_OK;
        ConvGeometry {
            c_in: CI,
            c_out: CO,
            groups: 1,
            k: K,
            stride: S,
            pad: P,
            h: H,
            w: W,
            oh: OH,
            ow: OW,
        }
        .checked()
    };

    /// Input pixel `(y·S + i − P, x·S + j − P)` for output `(y, x)` and tap `(i, j)`, or
    /// `None` when it falls in the zero padding.
    #[inline(always)]
    fn source(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }

    /// The kernels of the geometries that are not [`Conv2d::FAST`]: the matrix product of
    /// [`crate::conv_gemm`] where it pays, the direct kernels of [`crate::conv_kernel`]
    /// otherwise.
    const KERNELS: &'static ConvKernels = conv_gemm::kernels_for(&Self::GEOMETRY);

    /// Whether the `f32` passes use LeNet's tuned kernels (`conv_fast`): stride 1, no
    /// padding, and buffers that fit on a thread's stack; [`crate::conv_kernel`] takes the rest.
    const FAST: bool = conv_fast::takes(&Self::GEOMETRY);

    /// Whether the `f32` lane passes use the lane kernels (`conv_lanes`): stride 1, no
    /// padding, a kernel whose row of taps fits in registers, and at least two output rows.
    const LANES_FAST: bool = conv_lanes::takes(&Self::GEOMETRY);

    /// [`Layer::forward`], with the weights already packed for the fast kernel if a batch
    /// packed them once ([`ConvPacked`]).
    fn forward_packed(
        &self,
        input: &Maps<T, CI, H, W>,
        output: &mut Maps<T, CO, OH, OW>,
        packed: Option<&ConvPacked<T, CI, CO, K>>,
    ) {
        const { Self::SHAPE_OK };
        let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(input.flat()),
            T::as_f32_mut(output.flat_mut()),
            T::as_f32(self.param(0)),
            T::as_f32(&self.bias),
        ) else {
            return self.forward_reference(input, output);
        };
        if Self::FAST {
            let wt =
                packed.and_then(|p| T::as_f32(p.0.as_flattened().as_flattened().as_flattened()));
            conv_fast::forward::<CI, CO, K, H, W, OH, OW>(x, (w, wt), b, y);
        } else {
            // Any other geometry: one set of kernels for every shape.
            (Self::KERNELS.forward)(&Self::GEOMETRY, x, w, b, y);
        }
    }

    /// [`Layer::backward`], with the weights already packed (see [`Conv2d::forward_packed`]).
    fn backward_packed(
        &self,
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
        grads: &mut Self,
        packed: Option<&ConvPacked<T, CI, CO, K>>,
    ) {
        const { Self::SHAPE_OK };
        if T::as_f32(&self.bias).is_none() {
            return self.backward_reference(input, grad_output, grad_input, grads);
        }
        if !Self::FAST {
            // Any other geometry: the input gradient, then the parameter gradients.
            self.input_grad_any_geometry(grad_output, grad_input);
            return Self::param_grad_any_geometry(input, grad_output, grads, 1.0);
        }
        let Conv2d { weight, bias } = grads;
        let (Some(x), Some(g), Some(gw), Some(gb)) = (
            T::as_f32(input.flat()),
            T::as_f32(grad_output.flat()),
            T::as_f32_mut(
                weight
                    .as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut(),
            ),
            T::as_f32_mut(bias),
        ) else {
            unreachable!("T is f32")
        };
        conv_fast_backward::weight_grad::<CI, CO, K, H, W, OH, OW>(x, g, gw, gb);
        if let Some(gi) = grad_input
            && let (Some(w), Some(gi)) = (T::as_f32(self.param(0)), T::as_f32_mut(gi.flat_mut()))
        {
            let packed =
                packed.and_then(|p| T::as_f32(p.1.as_flattened().as_flattened().as_flattened()));
            conv_fast_backward::input_grad::<CI, CO, K, H, W, OH, OW>((w, packed), g, gi);
        }
    }

    /// The input gradient by [`Conv2d::KERNELS`], for the `f32` geometries
    /// that are not [`Conv2d::FAST`], with `self`'s weights.
    fn input_grad_any_geometry(
        &self,
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
    ) {
        if let Some(gi) = grad_input
            && let (Some(w), Some(g), Some(gi)) = (
                T::as_f32(self.param(0)),
                T::as_f32(grad_output.flat()),
                T::as_f32_mut(gi.flat_mut()),
            )
        {
            (Self::KERNELS.input_grad)(&Self::GEOMETRY, w, g, gi);
        }
    }

    /// `grads += scale · ∂E/∂parameters` by [`Conv2d::KERNELS`] (`grads` may
    /// be the layer itself: `scale = −lr` is an SGD step).
    fn param_grad_any_geometry(
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        grads: &mut Self,
        scale: f32,
    ) {
        let Conv2d { weight, bias } = grads;
        let weight = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        if let (Some(x), Some(g), Some(gw), Some(gb)) = (
            T::as_f32(input.flat()),
            T::as_f32(grad_output.flat()),
            T::as_f32_mut(weight),
            T::as_f32_mut(bias),
        ) {
            (Self::KERNELS.weight_grad)(&Self::GEOMETRY, x, g, gw, gb, scale);
        }
    }

    /// The plain loops of [`Layer::forward`]: the definition the fast paths are tested
    /// against, and the path for `f64`.
    pub fn forward_reference(&self, input: &Maps<T, CI, H, W>, output: &mut Maps<T, CO, OH, OW>) {
        const { Self::SHAPE_OK };
        for (o, out) in output.iter_mut().enumerate() {
            for (y, row) in out.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    let mut acc = self.bias[o];
                    for (c, filter) in self.weight[o].iter().enumerate() {
                        for (i, taps) in filter.iter().enumerate() {
                            for (j, &w) in taps.iter().enumerate() {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    acc = acc + w * input[c][r][s];
                                }
                            }
                        }
                    }
                    *v = acc;
                }
            }
        }
    }

    /// The plain loops of [`Layer::backward`] (see [`Conv2d::forward_reference`]).
    pub fn backward_reference(
        &self,
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        mut grad_input: Option<&mut Maps<T, CI, H, W>>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        if let Some(gi) = grad_input.as_deref_mut() {
            // In place: a whole-tensor temporary would be built on the stack.
            gi.as_flattened_mut().as_flattened_mut().fill(T::zero());
        }
        for (o, g_map) in grad_output.iter().enumerate() {
            for (y, g_row) in g_map.iter().enumerate() {
                for (x, &g) in g_row.iter().enumerate() {
                    grads.bias[o] = grads.bias[o] + g;
                    for c in 0..CI {
                        for i in 0..K {
                            for j in 0..K {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    let gw = &mut grads.weight[o][c][i][j];
                                    *gw = *gw + g * input[c][r][s];
                                    if let Some(gi) = grad_input.as_deref_mut() {
                                        gi[c][r][s] = gi[c][r][s] + g * self.weight[o][c][i][j];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The lane forward pass of one block by the SIMD kernels (then a ReLU if `relu`, then
    /// a 2×2 max pooling with `Some(scratch)`), or `false` if they do not apply.
    fn forward_lanes_fast(&self, x: &[T], y: &mut [T], relu: bool, pool: Option<&mut [T]>) -> bool {
        let params = (self.param(0), &self.bias[..]);
        Self::LANES_FAST
            && conv_lanes::forward::<T, CI, CO, K, H, W, OH, OW>(x, params, y, relu, pool)
    }

    /// The lane backward pass of block `block` (of `N / LANES`) by the SIMD kernels, or
    /// `false` if they do not apply. With `relu_output`, `g` is the gradient of the ReLU of
    /// this layer's output, and passes where `relu_output > 0`.
    fn backward_lanes_fast<const N: usize>(
        &self,
        block: usize,
        data: (&[T], &[T], Option<&[T]>),
        ws: &mut ConvLaneWorkspace<T, CI, CO, K, H, W, OH, OW>,
        grad_input: Option<&mut [T]>,
        grads: &mut Self,
    ) -> bool {
        if !Self::LANES_FAST {
            return false;
        }
        let Conv2d { weight, bias } = grads;
        let gw = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        let blocks = (block == 0, block + 1 == N / LANES);
        let w = self.param(0);
        conv_lanes_backward::backward(blocks, data, w, ws, grad_input, (gw, bias))
    }

    /// The fused step on LeNet-5's f32 kernels (`FAST`), whose gradient is a few KiB. A
    /// function of its own, never inlined: its gradient value must not be part of the
    /// caller's stack frame, which a large f64 layer also takes.
    #[inline(never)]
    fn fast_sgd(
        &mut self,
        input: &Maps<T, CI, H, W>,
        ws: &mut (),
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
        lr: T,
    ) {
        let mut grads = <Self as crate::zeroed::Zeroable>::zeroed();
        self.backward(input, ws, grad_output, grad_input, &mut grads);
        for i in 0..Self::PARAM_TENSORS {
            for (w, &g) in self.param_mut(i).iter_mut().zip(grads.param(i)) {
                *w = *w - lr * g;
            }
        }
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
/// (the batch workspace of [`Conv2d`]); a single pass packs them on the stack.
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
        for (x, y) in input.iter().zip(output.iter_mut()) {
            self.forward_packed(x, y, Some(ws));
        }
    }

    fn backward_batch(
        &self,
        input: &[Self::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
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

/// The whole batch at once: 16 samples per vector, weights broadcast (see [`crate::lanes`]).
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
> LaneLayer<N> for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    type LaneWorkspace = ConvLaneWorkspace<T, CI, CO, K, H, W, OH, OW>;

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
        if self.forward_lanes_fast(x, y, false, None) {
            return;
        }
        // Other geometries sample by sample, on the `f32` kernels (or the `f64` loops).
        for n in 0..LANES {
            lane_get(x, n, ws.x.flat_mut());
            self.forward_packed(&ws.x, &mut ws.y, None);
            lane_put(ws.y.flat(), n, y);
        }
    }

    /// Gathers the weight and bias gradients lane by lane over the blocks, and adds their
    /// sums to `grads` after the last block.
    fn backward_lanes(
        &self,
        block: usize,
        input: &[Self::Input; N],
        _output: &[Self::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) {
        const { Self::SHAPE_OK };
        check_lanes(N);
        ws.order.take(block, N / LANES);
        let x = Maps::flat_slice(block_of(input, block));
        let g = Maps::flat_slice(block_of(grad_output, block));
        let mut grad_input = grad_input.map(|gi| Maps::flat_slice_mut(block_of_mut(gi, block)));
        let gi = grad_input.as_deref_mut();
        if self.backward_lanes_fast::<N>(block, (x, g, None), ws, gi, grads) {
            return;
        }
        for n in 0..LANES {
            lane_get(x, n, ws.x.flat_mut());
            lane_get(g, n, ws.y.flat_mut());
            let gx = grad_input.is_some().then_some(&mut ws.gx);
            self.backward_packed(&ws.x, &ws.y, gx, grads, None);
            if let Some(gi) = grad_input.as_deref_mut() {
                lane_put(ws.gx.flat(), n, gi);
            }
        }
    }

    fn fuses_relu(&self) -> bool {
        Self::LANES_FAST && T::as_f32(&self.bias).is_some()
    }

    /// The SIMD kernels apply the ReLU as they store the output.
    fn forward_lanes_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [T],
        _ws: &mut Self::LaneWorkspace,
    ) -> bool {
        check_lanes(N);
        let len = CO * OH * OW * LANES;
        let x = Maps::flat_slice(block_of(input, block));
        self.forward_lanes_fast(x, &mut output[block * len..][..len], true, None)
    }

    fn fuses_relu_pool(&self) -> bool {
        <Self as LaneLayer<N>>::fuses_relu(self) && OH.is_multiple_of(2) && OW.is_multiple_of(2)
    }

    /// Two output rows at a time go to a scratch buffer still in L1, and are pooled from
    /// there: the maps before pooling are never written out.
    fn infer_lanes_relu_pool(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [T],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses_relu_pool(self) {
            return false;
        }
        let len = CO * (OH / 2) * (OW / 2) * LANES;
        let x = Maps::flat_slice(block_of(input, block));
        let y = &mut output[block * len..][..len];
        // The backward pass's scratch for one block's maps; inference has no backward pass.
        let scratch = &mut Maps::flat_slice_mut(&mut ws.g.0)[..CO * 2 * OW * LANES];
        self.forward_lanes_fast(x, y, true, Some(scratch))
    }

    /// The ReLU's gradient is applied where the weight gradient loads the output gradient
    /// (or once for the block, when the input gradient reads it too).
    fn backward_lanes_relu(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: Option<&[T]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[T],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses_relu(self) {
            return false;
        }
        ws.order.take(block, N / LANES);
        let len = CO * OH * OW * LANES;
        let x = Maps::flat_slice(block_of(input, block));
        let y = output.map(|y| &y[block * len..][..len]);
        let g = &grad_output[block * len..][..len];
        let gi = grad_input.map(|gi| Maps::flat_slice_mut(block_of_mut(gi, block)));
        self.backward_lanes_fast::<N>(block, (x, g, y), ws, gi, grads)
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
        if !Self::FAST && T::as_f32(&self.bias).is_some() {
            // The input gradient first, with the weights from before the step.
            self.input_grad_any_geometry(grad_output, grad_input);
            let scale = -(lr.to_f64() as f32);
            return Self::param_grad_any_geometry(input, grad_output, self, scale);
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
