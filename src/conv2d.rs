//! 2-D convolution with bias, zero padding and stride.

use rand::Rng;

use crate::batch::BatchLayer;
use crate::conv_kernel::{self, ConvGeometry};
use crate::fused::SgdLayer;
use crate::lanes::{
    BlockOrder, CacheLines, LANES, LaneLayer, block_of, block_of_mut, check_lanes, lane_get,
    lane_put,
};
use crate::layer::{Layer, Shape, TensorKind, he_uniform, no_such_param};
use crate::scalar::Scalar;
use crate::simd;
use crate::tensor::{Maps, Tensor};

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

    /// The shape as the kernels of [`crate::conv_kernel`] read it: the `f32` path of every
    /// geometry the LeNet-sized kernels below do not take.
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

    /// Whether the `f32` passes use the SIMD kernels of [`fast`]: stride 1, no padding, at
    /// least one 32-float vector block of output pixels, and buffers that fit on a thread's
    /// stack (the kernels of [`crate::conv_kernel`] take the rest).
    const FAST: bool = S == 1
        && P == 0
        && (OH - 1) * W + OW >= 32
        && OH * W + K + 16 <= 2 * OH * W
        && H * W >= 32
        && 4 * Self::FAST_STACK_FLOATS <= 256 * 1024;

    /// Floats the kernels of [`fast`] keep on the stack, bounded by every buffer of the
    /// largest pass: ResNet's 64-channel 1×1 convolution on 56×56 maps would need 3.2 MB
    /// in its input gradient alone, LeNet-5's convolutions need at most 71 KB.
    const FAST_STACK_FLOATS: usize = {
        let forward = 2 * CO * CI * K * K + CO * OH * W + OH * OW * CO;
        let input_grad = 2 * CO * OH * W + K * CO * K * CI + 2 * CI * H * W;
        let weight_grad = OH * OW * CO + 2 * CI * K * K * CO + 3 * CO * OH * W + 2 * CI * H * W;
        let most = if forward > input_grad {
            forward
        } else {
            input_grad
        };
        if most > weight_grad {
            most
        } else {
            weight_grad
        }
    };

    /// Whether the `f32` lane passes use the SIMD kernels of `lanes_fast`: stride 1, no
    /// padding, a kernel whose row of taps fits in registers, and at least two output rows.
    const LANES_FAST: bool = S == 1 && P == 0 && K <= 7 && OH >= 2;

    /// [`Layer::forward`], with the weights already packed for the fast kernel if a batch
    /// packed them once ([`ConvPacked`]).
    fn forward_packed(
        &self,
        input: &Maps<T, CI, H, W>,
        output: &mut Maps<T, CO, OH, OW>,
        packed: Option<&ConvPacked<T, CI, CO, K>>,
    ) {
        const { Self::SHAPE_OK };
        if Self::FAST
            && let (Some(x), Some(y)) = (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut()))
            && let (Some(w), Some(b)) = (T::as_f32(self.param(0)), T::as_f32(&self.bias))
        {
            let wt =
                packed.and_then(|p| T::as_f32(p.0.as_flattened().as_flattened().as_flattened()));
            simd::dispatch(fast::Forward::<CI, CO, K, H, W, OH, OW> { x, w, wt, b, y });
        } else if let (Some(x), Some(y)) =
            (T::as_f32(input.flat()), T::as_f32_mut(output.flat_mut()))
            && let (Some(w), Some(b)) = (T::as_f32(self.param(0)), T::as_f32(&self.bias))
        {
            // Any other geometry: one set of kernels for every shape.
            conv_kernel::forward(&Self::GEOMETRY, x, w, b, y);
        } else {
            self.forward_reference(input, output);
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
            return self.backward_any_geometry(input, grad_output, grad_input, grads, 1.0);
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
        simd::dispatch(fast::WeightGrad::<CI, CO, K, H, W, OH, OW> { x, g, gw, gb });
        if let Some(gi) = grad_input
            && let (Some(w), Some(gi)) = (T::as_f32(self.param(0)), T::as_f32_mut(gi.flat_mut()))
        {
            let packed =
                packed.and_then(|p| T::as_f32(p.1.as_flattened().as_flattened().as_flattened()));
            simd::dispatch(fast::InputGrad::<CI, CO, K, H, W, OH, OW> { w, packed, g, gi });
        }
    }

    /// The `f32` backward pass by the kernels of [`crate::conv_kernel`], for the geometries
    /// that are not [`Conv2d::FAST`]: the input gradient (with `self`'s weights), then
    /// `scale ·` the parameter gradients added to `grads`.
    fn backward_any_geometry(
        &self,
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
        grads: &mut Self,
        scale: f32,
    ) {
        self.input_grad_any_geometry(grad_output, grad_input);
        Self::param_grad_any_geometry(input, grad_output, grads, scale);
    }

    /// The input gradient of [`Conv2d::backward_any_geometry`].
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
            conv_kernel::input_grad(&Self::GEOMETRY, w, g, gi);
        }
    }

    /// `grads += scale · ∂E/∂parameters` by the kernel of [`crate::conv_kernel`] (`grads` may
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
            conv_kernel::weight_grad(&Self::GEOMETRY, x, g, gw, gb, scale);
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

    /// He uniform over fan-in `CI·K·K`; biases zero.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        he_uniform(self.param_mut(0), CI * K * K, rng);
        self.bias = [T::zero(); CO];
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
            fast::pack_channel_lanes::<CI, CO, K>(w, wt);
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
            fast::pack_input_grad::<CI, CO, K>(w, packed);
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

/// A convolution's weights with one value per lane (`[o][c][i][j][lane]`).
pub type LaneWeights<T, const CI: usize, const CO: usize, const K: usize> =
    [[[[[T; LANES]; K]; K]; CI]; CO];

/// What a convolution's lane passes keep: one sample for the reference loops, and the
/// weight and bias gradients per lane, summed over the lanes once per batch.
pub struct ConvLaneWorkspace<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    /// One sample's input.
    pub x: Maps<T, CI, H, W>,
    /// One sample's output, or its gradient.
    pub y: Maps<T, CO, OH, OW>,
    /// One sample's input gradient.
    pub gx: Maps<T, CI, H, W>,
    /// Weight gradient, lane by lane.
    pub gw: CacheLines<LaneWeights<T, CI, CO, K>>,
    /// Bias gradient, lane by lane.
    pub gb: CacheLines<[[T; LANES]; CO]>,
    /// One block's output gradient through a fused ReLU; in inference, the scratch rows of
    /// a pooling done in the kernel (a backward pass writes it before reading it).
    pub g: CacheLines<[Maps<T, CO, OH, OW>; LANES]>,
    /// The block the backward pass expects next: the gradient sums above span the blocks.
    pub order: BlockOrder,
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
    /// The lane forward pass of one block by the SIMD kernels (then a ReLU if `relu`, then
    /// a 2×2 max pooling with `Some(scratch)`), or `false` if they do not apply.
    fn forward_lanes_fast(&self, x: &[T], y: &mut [T], relu: bool, pool: Option<&mut [T]>) -> bool {
        if Self::LANES_FAST
            && let (Some(x), Some(y)) = (T::as_f32(x), T::as_f32_mut(y))
            && let (Some(w), Some(b)) = (T::as_f32(self.param(0)), T::as_f32(&self.bias))
        {
            let pool = pool.map(|scratch| T::as_f32_mut(scratch).expect("T is f32"));
            let kernel = lanes_fast::Forward::<CI, CO, K, H, W, OH, OW> {
                x,
                w,
                b,
                y,
                relu,
                pool,
            };
            simd::dispatch(kernel);
            return true;
        }
        false
    }

    /// The lane backward pass of block `block` (of `N / LANES`) by the SIMD kernels, or
    /// `false` if they do not apply. With `relu_output`, `g` is the gradient of the ReLU of
    /// this layer's output, and passes where `relu_output > 0`.
    fn backward_lanes_fast<const N: usize>(
        &self,
        block: usize,
        (x, g, relu_output): (&[T], &[T], Option<&[T]>),
        ws: &mut ConvLaneWorkspace<T, CI, CO, K, H, W, OH, OW>,
        grad_input: Option<&mut [T]>,
        grads: &mut Self,
    ) -> bool {
        if !Self::LANES_FAST || T::as_f32(x).is_none() {
            return false;
        }
        let (first, last) = (block == 0, block + 1 == N / LANES);
        let ConvLaneWorkspace {
            gw: CacheLines(gwl),
            gb: CacheLines(gbl),
            g: CacheLines(masked),
            ..
        } = ws;
        let gwl = gwl.as_flattened_mut().as_flattened_mut().as_flattened_mut();
        let masked = Maps::flat_slice_mut(masked);
        let Conv2d { weight, bias } = grads;
        let weight = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        let (Some(x), Some(g), Some(gwl), Some(gbl), Some(gw), Some(gb), Some(masked)) = (
            T::as_f32(x),
            T::as_f32(g),
            T::as_f32_mut(gwl.as_flattened_mut()),
            T::as_f32_mut(gbl.as_flattened_mut()),
            T::as_f32_mut(weight),
            T::as_f32_mut(bias),
            T::as_f32_mut(masked),
        ) else {
            unreachable!("T is f32")
        };
        let mut mask = relu_output.map(|y| T::as_f32(y).expect("T is f32"));
        let mut g = g;
        if let (Some(y), true) = (mask, grad_input.is_some()) {
            // Both kernels read the gradient: mask it once.
            for ((m, &g), &y) in masked.iter_mut().zip(g).zip(y) {
                *m = if y > 0.0 { g } else { 0.0 };
            }
            (g, mask) = (&*masked, None);
        }
        if first {
            gwl.fill(0.0);
            gbl.fill(0.0);
        }
        let kernel = lanes_fast::WeightGrad::<CI, CO, K, H, W, OH, OW> {
            x,
            g,
            mask,
            gwl,
            gbl,
            sums: last.then_some((gw, gb)),
        };
        simd::dispatch(kernel);
        if let Some(gi) = grad_input
            && let (Some(w), Some(gi)) = (T::as_f32(self.param(0)), T::as_f32_mut(gi))
        {
            simd::dispatch(lanes_fast::InputGrad::<CI, CO, K, H, W, OH, OW> { w, g, gi });
        }
        true
    }
}

/// `f32` kernels for stride 1 and no padding, generic over the instruction set ([`Simd`]).
///
/// The trick that makes a 5×5 convolution vector-friendly: index output pixel `(y, x)` as
/// `p = y·W + x`, with the *input's* row width `W`. Then input pixel `(y + i, x + j)` is
/// `p + i·W + j` for every output pixel, so each kernel tap multiplies one contiguous run of
/// input by one weight and adds it to one contiguous run of output ("wide" rows; the
/// `W − OW` columns past the right edge are computed and dropped). A block of output channels
/// × a few vectors of pixels stays in registers for all `CI·K·K` taps.
///
/// [`Simd`]: crate::simd::Simd
pub(crate) mod fast {
    use crate::lanes::CacheLines;
    use crate::simd::{self, Kernel, Simd, for_blocks, transpose_matrix};

    /// `out[a][p] = init[a] + Σ_r Σ_t packed[r][t][a] · src[r·src_stride + p + taps[t]]` for
    /// `a < OB`, `p < span`: `NV` vectors of pixels at a time, the last block shifted back
    /// to end at `span` (recomputing a few pixels, which only rewrites the same values).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn correlate<S: Simd, const OB: usize, const NV: usize>(
        s: S,
        src: &[f32],
        src_stride: usize,
        taps: &[usize],
        packed: &[f32],
        init: &[f32],
        out: &mut [f32],
        out_stride: usize,
        span: usize,
    ) {
        let step = NV * S::LANES;
        let rows = packed.len() / (taps.len() * OB);
        let init: &[f32; OB] = init[..OB].try_into().expect("OB initial values");
        let mut p0 = 0;
        while p0 < span {
            let p = p0.min(span - step);
            let mut acc = [[s.splat(0.0); NV]; OB];
            for (row, &b) in acc.iter_mut().zip(init) {
                *row = [s.splat(b); NV];
            }
            let mut weights = packed.chunks_exact(OB);
            for r in 0..rows {
                let base = r * src_stride + p;
                for &tap in taps {
                    let w: &[f32; OB] = weights
                        .next()
                        .and_then(|w| w.try_into().ok())
                        .expect("packed weights");
                    let mut xs = [s.splat(0.0); NV];
                    for (v, x) in xs.iter_mut().enumerate() {
                        *x = s.load(src, base + tap + v * S::LANES);
                    }
                    for (row, &wa) in acc.iter_mut().zip(w) {
                        let wa = s.splat(wa);
                        for (a, &x) in row.iter_mut().zip(&xs) {
                            *a = s.mul_add(wa, x, *a);
                        }
                    }
                }
            }
            for (a, row) in acc.iter().enumerate() {
                for (v, &acc) in row.iter().enumerate() {
                    s.store(out, a * out_stride + p + v * S::LANES, acc);
                }
            }
            p0 += step;
        }
    }

    /// `correlate` for output rows of more than one and at most two vectors: for each output
    /// row `y`, the vectors at `x = 0` and `x = OW − LANES` (overlapping in the middle);
    /// `RB` rows at a time share each broadcast weight.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn correlate_rows<S: Simd, const OB: usize, const RB: usize>(
        s: S,
        src: &[f32],
        (src_stride, width): (usize, usize),
        taps: &[usize],
        packed: &[f32],
        init: &[f32],
        out: &mut [f32],
        (oh, ow): (usize, usize),
    ) {
        let rows = packed.len() / (taps.len() * OB);
        let init: &[f32; OB] = init[..OB].try_into().expect("OB initial values");
        let starts = [0, ow - S::LANES];
        let mut y0 = 0;
        while y0 < oh {
            // The last block moves back to end at the last row (recomputing a row).
            let y0c = y0.min(oh - RB);
            let mut acc = [[[s.splat(0.0); 2]; RB]; OB];
            for (row, &b) in acc.iter_mut().zip(init) {
                *row = [[s.splat(b); 2]; RB];
            }
            let mut weights = packed.chunks_exact(OB);
            for r in 0..rows {
                let base = r * src_stride + y0c * width;
                for &tap in taps {
                    let w: &[f32; OB] = weights
                        .next()
                        .and_then(|w| w.try_into().ok())
                        .expect("packed weights");
                    let xs: [[S::F; 2]; RB] = core::array::from_fn(|dy| {
                        starts.map(|x| s.load(src, base + dy * width + tap + x))
                    });
                    for (row, &wa) in acc.iter_mut().zip(w) {
                        let wa = s.splat(wa);
                        for (a, x) in row.iter_mut().zip(&xs) {
                            for (a, &x) in a.iter_mut().zip(x) {
                                *a = s.mul_add(wa, x, *a);
                            }
                        }
                    }
                }
            }
            for (a, row) in acc.iter().enumerate() {
                for (dy, row) in row.iter().enumerate() {
                    for (&x, &acc) in starts.iter().zip(row) {
                        s.store(out, (a * oh + y0c + dy) * ow + x, acc);
                    }
                }
            }
            y0 += RB;
        }
    }

    /// Offsets `i·W + j` of the `K×K` taps in a map of row width `W`.
    fn tap_offsets<const K: usize, const W: usize>() -> [[usize; K]; K] {
        core::array::from_fn(|i| core::array::from_fn(|j| i * W + j))
    }

    /// `wt[c][i][j][o] = w[o][c][i][j]`: the weights of the channel-lane kernels (a SIMD
    /// transpose, once per batch or once per single pass).
    pub(crate) fn pack_channel_lanes<const CI: usize, const CO: usize, const K: usize>(
        w: &[f32],
        wt: &mut [f32],
    ) {
        let (rows, cols) = (CO, CI * K * K);
        simd::dispatch(simd::Transposed {
            src: w,
            rows,
            cols,
            dst: wt,
        });
    }

    /// `packed[i][o][j][c] = w[o][c][i][j]`: the weights of [`InputGrad`].
    pub(crate) fn pack_input_grad<const CI: usize, const CO: usize, const K: usize>(
        w: &[f32],
        packed: &mut [f32],
    ) {
        let mut at = 0;
        for i in 0..K {
            for o in 0..CO {
                for j in 0..K {
                    for c in 0..CI {
                        packed[at] = w[((o * CI + c) * K + i) * K + j];
                        at += 1;
                    }
                }
            }
        }
    }

    /// Forward pass: `y = conv(x, w) + b`.
    pub(crate) struct Forward<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub w: &'a [f32],
        /// The weights already in `[c][i][j][o]` order ([`pack_channel_lanes`]), if a batch
        /// packed them once for all its samples.
        pub wt: Option<&'a [f32]>,
        pub b: &'a [f32],
        pub y: &'a mut [f32],
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for Forward<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            if CO.is_multiple_of(S::LANES) && S::LANES > 1 {
                return self.by_channel_lanes(s);
            }
            let taps = tap_offsets::<K, W>();
            let taps = taps.as_flattened();
            let kk = K * K;
            let mut packed = [[[[0.0f32; K]; K]; CI]; CO];
            let packed = packed
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut();
            // packed[o0..][c][t][a] = w[o0 + a][c][t] for each block of channels o0..o0 + OB
            let pack = |packed: &mut [f32], o0: usize, ob: usize| {
                for (ct, chunk) in packed.chunks_exact_mut(ob).enumerate() {
                    for (a, v) in chunk.iter_mut().enumerate() {
                        *v = self.w[(o0 + a) * CI * kk + ct];
                    }
                }
            };
            if S::LANES < OW && OW <= 2 * S::LANES {
                // Rows of two vectors (the second ending at the row's end): the sums go
                // straight to the output, with no wide buffer to clear and compact.
                for_blocks!(CO, [6, 4, 2, 1], |o0, OB| {
                    let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                    pack(w, o0, OB);
                    let (src, dims, b) = (self.x, (H * W, W), &self.b[o0..]);
                    let (out, out_dims) = (&mut self.y[o0 * OH * OW..], (OH, OW));
                    if S::LANES >= 16 && OH >= 2 {
                        // 32 registers: two rows × OB channels × two vectors.
                        correlate_rows::<S, OB, 2>(s, src, dims, taps, w, b, out, out_dims);
                    } else {
                        correlate_rows::<S, OB, 1>(s, src, dims, taps, w, b, out, out_dims);
                    }
                });
                return;
            }
            let mut wide = [[[0.0f32; W]; OH]; CO];
            let wide = wide.as_flattened_mut().as_flattened_mut();
            let (span, stride) = ((OH - 1) * W + OW, OH * W);
            if S::LANES >= 16 {
                for_blocks!(CO, [8, 6, 4, 2, 1], |o0, OB| {
                    let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                    pack(w, o0, OB);
                    correlate::<S, OB, 2>(
                        s,
                        self.x,
                        H * W,
                        taps,
                        w,
                        &self.b[o0..],
                        &mut wide[o0 * stride..],
                        stride,
                        span,
                    );
                });
            } else {
                for_blocks!(CO, [4, 2, 1], |o0, OB| {
                    let w = &mut packed[o0 * CI * kk..(o0 + OB) * CI * kk];
                    pack(w, o0, OB);
                    correlate::<S, OB, 2>(
                        s,
                        self.x,
                        H * W,
                        taps,
                        w,
                        &self.b[o0..],
                        &mut wide[o0 * stride..],
                        stride,
                        span,
                    );
                });
            }
            for (out_row, wide_row) in self.y.chunks_exact_mut(OW).zip(wide.chunks_exact(W)) {
                out_row.copy_from_slice(&wide_row[..OW]);
            }
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Forward<'_, CI, CO, K, H, W, OH, OW>
    {
        /// When the output channels fill whole vectors (LeNet's 16): lanes over output
        /// channels, one broadcast input pixel per multiply-add, no wasted lane (the wide-row
        /// form wastes 60% on conv2's 10×10 maps). Weights are transposed to `[c][i][j][o]`,
        /// the result back to `[o][y][x]` at the end.
        #[inline(always)]
        fn by_channel_lanes<S: Simd>(self, s: S) {
            // Cleared only when used: a batch passes its packed weights.
            let mut local;
            let wt = match self.wt {
                Some(wt) => wt,
                None => {
                    local = [[[[0.0f32; CO]; K]; K]; CI];
                    let local = local
                        .as_flattened_mut()
                        .as_flattened_mut()
                        .as_flattened_mut();
                    pack_channel_lanes::<CI, CO, K>(self.w, local);
                    &*local
                }
            };
            let mut yt = [[[0.0f32; CO]; OW]; OH];
            let yt = yt.as_flattened_mut().as_flattened_mut();
            let dims = (CI, CO, H * W, W, OW);
            for y in 0..OH {
                if S::LANES >= 16 {
                    for_blocks!(CO / S::LANES, [1], |v0, VB| {
                        for_blocks!(OW, [10, 8, 4, 1], |x0, PB| {
                            channel_lanes_block::<S, PB, VB, K>(
                                s,
                                self.x,
                                wt,
                                self.b,
                                yt,
                                (v0, y, x0),
                                dims,
                            );
                        });
                    });
                } else {
                    for_blocks!(CO / S::LANES, [2, 1], |v0, VB| {
                        for_blocks!(OW, [6, 4, 2, 1], |x0, PB| {
                            channel_lanes_block::<S, PB, VB, K>(
                                s,
                                self.x,
                                wt,
                                self.b,
                                yt,
                                (v0, y, x0),
                                dims,
                            );
                        });
                    });
                }
            }
            transpose_matrix(s, yt, (OH * OW, CO), self.y);
        }
    }

    /// Output pixels `(y, x0..x0 + PB)` × `VB` vectors of output channels from vector `v0`:
    /// `yt[y][x][o] = b[o] + Σ_{c,i,j} x[c][y + i][x + j] · wt[c][i][j][o]`.
    #[inline(always)]
    fn channel_lanes_block<S: Simd, const PB: usize, const VB: usize, const K: usize>(
        s: S,
        x: &[f32],
        wt: &[f32],
        b: &[f32],
        yt: &mut [f32],
        (v0, y, x0): (usize, usize, usize),
        (ci, co, hw, w, ow): (usize, usize, usize, usize, usize),
    ) {
        let o0 = v0 * S::LANES;
        let bias: [S::F; VB] = core::array::from_fn(|v| s.load(b, o0 + v * S::LANES));
        let mut acc = [bias; PB];
        for c in 0..ci {
            for i in 0..K {
                let row = &x[c * hw + (y + i) * w + x0..][..PB + K - 1];
                for j in 0..K {
                    let at = ((c * K + i) * K + j) * co + o0;
                    let wv: [S::F; VB] = core::array::from_fn(|v| s.load(wt, at + v * S::LANES));
                    for (q, acc) in acc.iter_mut().enumerate() {
                        let xb = s.splat(row[q + j]);
                        for (a, &wv) in acc.iter_mut().zip(&wv) {
                            *a = s.mul_add(xb, wv, *a);
                        }
                    }
                }
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                s.store(yt, (y * ow + x0 + q) * co + o0 + v * S::LANES, a);
            }
        }
    }

    /// Input gradient: `gi[c][y + i][x + j] += w[o][c][i][j] · g[o][y][x]`.
    ///
    /// In wide rows (the output gradient laid out with the input's row width `W`, zeros in
    /// the dropped columns), kernel row `i` adds to input-gradient rows `i..i + OH` the sum
    /// over `o` and `j` of `w[o][c][i][j] · g[o][q − j]`: a *gather* along the row (shifted
    /// loads of `g`, accumulators in registers for a block of input channels × pixel vectors)
    /// and one add to memory per kernel row. (Scattering each tap to memory instead stalled
    /// on store forwarding: five overlapping read-modify-writes per block.)
    pub(crate) struct InputGrad<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub w: &'a [f32],
        /// The weights already packed by [`pack_input_grad`], if a batch did it once.
        pub packed: Option<&'a [f32]>,
        pub g: &'a [f32],
        pub gi: &'a mut [f32],
    }

    /// Kernel row `i`, input channels `c0..c0 + CB`, wide pixels `p0..p0 + PV·LANES`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn input_grad_block<S: Simd, const CB: usize, const PV: usize, const K: usize>(
        s: S,
        g: &[f32],
        (g_stride, g_pad): (usize, usize),
        packed: &[f32],
        (i, c0, ci, co): (usize, usize, usize, usize),
        out: &mut [f32],
        (out_stride, p0, width): (usize, usize, usize),
    ) {
        let mut acc = [[s.splat(0.0); PV]; CB];
        for o in 0..co {
            for j in 0..K {
                let at = o * g_stride + g_pad + p0 - j;
                let gv: [S::F; PV] = core::array::from_fn(|v| s.load(g, at + v * S::LANES));
                let w: &[f32; CB] = packed[((i * co + o) * K + j) * ci + c0..][..CB]
                    .try_into()
                    .expect("CB weights");
                for (acc, &w) in acc.iter_mut().zip(w) {
                    let w = s.splat(w);
                    for (a, &gv) in acc.iter_mut().zip(&gv) {
                        *a = s.mul_add(w, gv, *a);
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                let at = (c0 + c) * out_stride + i * width + p0 + v * S::LANES;
                s.store(out, at, s.add(s.load(out, at), a));
            }
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for InputGrad<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            // The gradient in wide rows after `K − 1` zeros, zero in the dropped columns and
            // past the last pixel: each channel gets 2·OH·W floats.
            let mut wide = [[[[0.0f32; W]; OH]; CO]; 2];
            let wide = wide
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut();
            let (g_stride, g_pad) = (2 * OH * W, K - 1);
            for (o, g) in self.g.chunks_exact(OH * OW).enumerate() {
                for (y, g_row) in g.chunks_exact(OW).enumerate() {
                    wide[o * g_stride + g_pad + y * W..][..OW].copy_from_slice(g_row);
                }
            }
            let wide = &*wide;
            // Cleared only when used: a batch passes its packed weights.
            let mut local;
            let packed = match self.packed {
                Some(packed) => packed,
                None => {
                    local = [[[[0.0f32; CI]; K]; CO]; K];
                    let local = local
                        .as_flattened_mut()
                        .as_flattened_mut()
                        .as_flattened_mut();
                    pack_input_grad::<CI, CO, K>(self.w, local);
                    &*local
                }
            };

            // Input-gradient maps of 2·H·W floats: the last vector may run past H·W.
            let mut out = [[[[0.0f32; W]; H]; CI]; 2];
            let out = out.as_flattened_mut().as_flattened_mut().as_flattened_mut();
            let out_at = (2 * H * W, W);
            let vectors = (OH * W).div_ceil(S::LANES);
            for i in 0..K {
                if S::LANES >= 16 {
                    for_blocks!(CI, [6, 4, 2, 1], |c0, CB| {
                        for_blocks!(vectors, [3, 1], |v0, PV| {
                            input_grad_block::<S, CB, PV, K>(
                                s,
                                wide,
                                (g_stride, g_pad),
                                packed,
                                (i, c0, CI, CO),
                                out,
                                (out_at.0, v0 * S::LANES, out_at.1),
                            );
                        });
                    });
                } else {
                    for_blocks!(CI, [4, 2, 1], |c0, CB| {
                        for_blocks!(vectors, [2, 1], |v0, PV| {
                            input_grad_block::<S, CB, PV, K>(
                                s,
                                wide,
                                (g_stride, g_pad),
                                packed,
                                (i, c0, CI, CO),
                                out,
                                (out_at.0, v0 * S::LANES, out_at.1),
                            );
                        });
                    });
                }
            }
            for (gi, out) in self
                .gi
                .chunks_exact_mut(H * W)
                .zip(out.chunks_exact(2 * H * W))
            {
                gi.copy_from_slice(&out[..H * W]);
            }
        }
    }

    /// Weight gradient: `gw[o][c][i][j] += Σ_p g[o][p] · x[c][p + i·W + j]`.
    ///
    /// When the output channels fill whole vectors (`CO` a multiple of the lane count, as
    /// LeNet's 16), the lanes run over output channels: the gradient is transposed to
    /// `[pixel][channel]` and each input pixel is broadcast, so there is no horizontal sum and
    /// no wasted lane. Otherwise the lanes run over wide rows of pixels (see the module).
    pub(crate) struct WeightGrad<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub g: &'a [f32],
        pub gw: &'a mut [f32],
        /// Bias gradient: `gb[o] += Σ_p g[o][p]`.
        pub gb: &'a mut [f32],
    }

    /// `Σ v`, in `LANES` × 4 partial sums.
    #[inline(always)]
    fn sum<S: Simd>(s: S, v: &[f32]) -> f32 {
        let mut acc = [s.splat(0.0); 4];
        let mut chunks = v.chunks_exact(4 * S::LANES);
        for chunk in &mut chunks {
            for (l, a) in acc.iter_mut().enumerate() {
                *a = s.add(*a, s.load(chunk, l * S::LANES));
            }
        }
        let total = s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3]));
        chunks.remainder().iter().fold(s.sum(total), |t, &v| t + v)
    }

    /// Wide-row weight gradient of `OB` output channels × the `K` taps of each kernel row,
    /// over `vectors` whole vectors of pixels (`g` is zero past the real pixels, and `x` is
    /// long enough for the last vector).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn weight_grad_rows<S: Simd, const OB: usize, const K: usize>(
        s: S,
        g: &[f32],
        g_stride: usize,
        x: &[f32],
        (x_stride, width, vectors): (usize, usize, usize),
        gw: &mut [f32],
        gw_stride: usize,
        kernel_rows: usize,
    ) {
        for row in 0..kernel_rows {
            let (c, i) = (row / K, row % K);
            let x_base = c * x_stride + i * width;
            let mut acc = [[s.splat(0.0); K]; OB];
            for p in (0..vectors * S::LANES).step_by(S::LANES) {
                let gv: [S::F; OB] = core::array::from_fn(|a| s.load(g, a * g_stride + p));
                for j in 0..K {
                    let xv = s.load(x, x_base + j + p);
                    for (acc, &gv) in acc.iter_mut().zip(&gv) {
                        acc[j] = s.mul_add(gv, xv, acc[j]);
                    }
                }
            }
            for (a, acc) in acc.iter().enumerate() {
                for (j, &acc) in acc.iter().enumerate() {
                    gw[a * gw_stride + row * K + j] += s.sum(acc);
                }
            }
        }
    }

    /// Channel-lane weight gradient of output channels `o0..o0 + VB·LANES`: `gt` is the
    /// gradient as `[pixel][channel]`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn weight_grad_lanes<S: Simd, const VB: usize, const K: usize>(
        s: S,
        gt: &[f32],
        (co, o0): (usize, usize),
        x: &[f32],
        (ci, h, w, oh, ow): (usize, usize, usize, usize, usize),
        gwt: &mut [f32],
    ) {
        for c in 0..ci {
            for i in 0..K {
                let mut acc = [[s.splat(0.0); VB]; K];
                for y in 0..oh {
                    let x_row = &x[c * h * w + (y + i) * w..][..ow + K - 1];
                    for (xx, g_at) in (0..ow).zip((y * ow * co..).step_by(co)) {
                        let gv: [S::F; VB] =
                            core::array::from_fn(|b| s.load(gt, g_at + o0 + b * S::LANES));
                        for (j, acc) in acc.iter_mut().enumerate() {
                            let xb = s.splat(x_row[xx + j]);
                            for (a, &gv) in acc.iter_mut().zip(&gv) {
                                *a = s.mul_add(gv, xb, *a);
                            }
                        }
                    }
                }
                for (j, acc) in acc.iter().enumerate() {
                    for (b, &a) in acc.iter().enumerate() {
                        s.store(gwt, ((c * K + i) * K + j) * co + o0 + b * S::LANES, a);
                    }
                }
            }
        }
    }

    /// [`weight_grad_lanes`] for one vector of output channels from `o0` and kernel rows
    /// `i0..i0 + IB`, two pixels at a time: the `K + 1` input pixels of a pair serve both,
    /// so each broadcast feeds almost two multiply-adds (0.67 loads per multiply-add with
    /// `IB = 3`, against 1.04 for one pixel at a time with `IB = 5`: the loads bound this
    /// kernel, not the multiply-adds). An odd last pixel of a row goes alone.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn weight_grad_lane_pairs<S: Simd, const IB: usize, const K: usize>(
        s: S,
        gt: &[f32],
        (co, o0, i0): (usize, usize, usize),
        x: &[f32],
        (ci, h, w, oh, ow): (usize, usize, usize, usize, usize),
        gwt: &mut [f32],
    ) {
        for c in 0..ci {
            let mut acc = [[s.splat(0.0); K]; IB];
            for y in 0..oh {
                for xx in (0..ow - ow % 2).step_by(2) {
                    let g_at = (y * ow + xx) * co + o0;
                    let (g0, g1) = (s.load(gt, g_at), s.load(gt, g_at + co));
                    for i in 0..IB {
                        let row = &x[c * h * w + (y + i0 + i) * w + xx..][..K + 1];
                        for j in 0..K {
                            acc[i][j] = s.mul_add(g0, s.splat(row[j]), acc[i][j]);
                            acc[i][j] = s.mul_add(g1, s.splat(row[j + 1]), acc[i][j]);
                        }
                    }
                }
                if ow % 2 == 1 {
                    let g0 = s.load(gt, (y * ow + ow - 1) * co + o0);
                    for i in 0..IB {
                        let row = &x[c * h * w + (y + i0 + i) * w + ow - 1..][..K];
                        for j in 0..K {
                            acc[i][j] = s.mul_add(g0, s.splat(row[j]), acc[i][j]);
                        }
                    }
                }
            }
            for i in 0..IB {
                for j in 0..K {
                    s.store(gwt, ((c * K + i0 + i) * K + j) * co + o0, acc[i][j]);
                }
            }
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for WeightGrad<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            for (gb, g) in self.gb.iter_mut().zip(self.g.chunks_exact(OH * OW)) {
                *gb += sum(s, g);
            }
            if CO.is_multiple_of(S::LANES) && S::LANES <= 16 {
                // The gradient as [pixel][channel] in, the result as [c][i][j][o] out, both
                // by SIMD transposes.
                let mut gt = [[[0.0f32; CO]; OW]; OH];
                let gt = gt.as_flattened_mut().as_flattened_mut();
                transpose_matrix(s, self.g, (CO, OH * OW), gt);
                let mut gwt = [[[[0.0f32; CO]; K]; K]; CI];
                let gwt = gwt.as_flattened_mut().as_flattened_mut().as_flattened_mut();
                let dims = (CI, H, W, OH, OW);
                if S::LANES >= 16 {
                    // 32 registers: one vector of channels × up to 5 kernel rows × K taps.
                    for v0 in 0..CO / S::LANES {
                        for_blocks!(K, [3, 2, 1], |i0, IB| {
                            weight_grad_lane_pairs::<S, IB, K>(
                                s,
                                gt,
                                (CO, v0 * S::LANES, i0),
                                self.x,
                                dims,
                                gwt,
                            );
                        });
                    }
                } else {
                    for_blocks!(CO / S::LANES, [2, 1], |v0, VB| {
                        weight_grad_lanes::<S, VB, K>(
                            s,
                            gt,
                            (CO, v0 * S::LANES),
                            self.x,
                            dims,
                            gwt,
                        );
                    });
                }
                let mut back = [[[[0.0f32; K]; K]; CI]; CO];
                let back = back
                    .as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut();
                transpose_matrix(s, gwt, (CI * K * K, CO), back);
                for (v, &b) in self.gw.iter_mut().zip(back.iter()) {
                    *v += b;
                }
                return;
            }
            // Wide rows, `g` with zeros in the dropped columns and past the last pixel, and
            // `x` copied with room for the last vector. When the whole vectors fit in OH·W
            // (LeNet's conv1: 56 × 16 = 28 × 32) each channel gets OH·W floats, else 2·OH·W.
            let span = (OH - 1) * W + OW;
            let fits = span.div_ceil(S::LANES) * S::LANES <= OH * W;
            let mut small;
            let mut big;
            let (wide, g_stride) = if fits {
                small = CacheLines([[[0.0f32; W]; OH]; CO]);
                for (wide, g) in small.0.iter_mut().flatten().zip(self.g.chunks_exact(OW)) {
                    wide[..OW].copy_from_slice(g);
                }
                (small.0.as_flattened().as_flattened(), OH * W)
            } else {
                big = CacheLines([[[[0.0f32; W]; OH]; CO]; 2]);
                let big = big
                    .0
                    .as_flattened_mut()
                    .as_flattened_mut()
                    .as_flattened_mut();
                for (o, g) in self.g.chunks_exact(OH * OW).enumerate() {
                    for (y, g_row) in g.chunks_exact(OW).enumerate() {
                        big[(2 * o * OH + y) * W..][..OW].copy_from_slice(g_row);
                    }
                }
                (&*big, 2 * OH * W)
            };
            let mut x = CacheLines([[[[0.0f32; W]; H]; CI]; 2]);
            let x = x.0.as_flattened_mut().as_flattened_mut().as_flattened_mut();
            x[..CI * H * W].copy_from_slice(self.x);
            let rows = (H * W, W, span.div_ceil(S::LANES));
            let gw_stride = CI * K * K;
            if S::LANES >= 16 {
                for_blocks!(CO, [3, 2, 1], |o0, OB| {
                    weight_grad_rows::<S, OB, K>(
                        s,
                        &wide[o0 * g_stride..],
                        g_stride,
                        x,
                        rows,
                        &mut self.gw[o0 * gw_stride..],
                        gw_stride,
                        CI * K,
                    );
                });
            } else {
                for_blocks!(CO, [2, 1], |o0, OB| {
                    weight_grad_rows::<S, OB, K>(
                        s,
                        &wide[o0 * g_stride..],
                        g_stride,
                        x,
                        rows,
                        &mut self.gw[o0 * gw_stride..],
                        gw_stride,
                        CI * K,
                    );
                });
            }
        }
    }
}

/// `f32` kernels of the lane passes (stride 1, no padding): every multiply-add is a vector
/// of lanes (samples) times one broadcast weight, so no lane is wasted at the maps' edges.
/// An element is `LANES / S::LANES` vectors (one with AVX-512); vector `v0` of element `e`
/// of block `b` is at `(b·LEN + e)·LANES + v0`, and each block is computed on its own.
pub(crate) mod lanes_fast {
    use crate::lanes::LANES;
    use crate::simd::{Kernel, Simd, for_blocks, spans};

    /// `y = b + w ⋆ x` for a batch in lanes.
    pub(crate) struct Forward<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub w: &'a [f32],
        pub b: &'a [f32],
        pub y: &'a mut [f32],
        /// Whether to store `max(y, 0)` (NaN passing) instead of `y`.
        pub relu: bool,
        /// With `Some(scratch)` (room for two output rows of every channel), `y` receives
        /// the 2×2, stride-2 max pooling of the output: two rows at a time are computed into
        /// `scratch`, still in L1 when they are pooled (`OH` and `OW` even).
        pub pool: Option<&'a mut [f32]>,
    }

    /// Output channels `o0..o0 + OB` × pixels `px0..px0 + PB` of row `py`, written to row
    /// `y_row` of `y` (which has `oh` rows): each tap row's `PB + K − 1` input vectors are
    /// loaded once and serve all `OB·K` weights.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn forward_block<S: Simd, const OB: usize, const PB: usize, const K: usize>(
        s: S,
        (x, w, b): (&[f32], &[f32], &[f32]),
        (o0, py, px0, v0): (usize, usize, usize, usize),
        (ci, h, wd, oh, ow): (usize, usize, usize, usize, usize),
        (y, y_row): (&mut [f32], usize),
    ) {
        let mut acc = [[s.splat(0.0); PB]; OB];
        for o in 0..OB {
            acc[o] = [s.splat(b[o0 + o]); PB];
        }
        for c in 0..ci {
            for i in 0..K {
                let at = ((c * h + py + i) * wd + px0) * LANES + v0;
                let mut xs = [s.splat(0.0); 16];
                for t in 0..PB + K - 1 {
                    xs[t] = s.load(x, at + t * LANES);
                }
                for o in 0..OB {
                    let taps = &w[((o0 + o) * ci + c) * K * K + i * K..][..K];
                    for j in 0..K {
                        let wv = s.splat(taps[j]);
                        for p in 0..PB {
                            acc[o][p] = s.mul_add(wv, xs[p + j], acc[o][p]);
                        }
                    }
                }
            }
        }
        for o in 0..OB {
            for p in 0..PB {
                let at = (((o0 + o) * oh + y_row) * ow + px0 + p) * LANES + v0;
                s.store(y, at, acc[o][p]);
            }
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for Forward<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            const { assert!(K <= 12, "lane kernels: K too large") };
            let Forward {
                x,
                w,
                b,
                y,
                relu,
                mut pool,
            } = self;
            let blocks = x.chunks_exact(CI * H * W * LANES);
            let y_len = if pool.is_some() {
                CO * (OH / 2) * (OW / 2) * LANES
            } else {
                CO * OH * OW * LANES
            };
            // Two output rows at a time, the last pair moved back to end at `OH` (`OH ≥ 2`),
            // then the ReLU over them while they are in L1. With pooling they go to the
            // scratch buffer and the ReLU comes after the pooling: a quarter of the work, and
            // the same maxima (it keeps order, and a NaN only in the first tap wins). One
            // call site and no ReLU inside the block kernel: it is compiled once (a ReLU
            // chosen per store cost pooled inference 4%, two call sites 5 s of compile time).

            for (x, y) in blocks.zip(y.chunks_exact_mut(y_len)) {
                for v0 in (0..LANES).step_by(S::LANES) {
                    for py in spans(OH, 2) {
                        let out = match pool.as_deref_mut() {
                            Some(scratch) => (scratch, 2, 0),
                            None => (&mut *y, OH, py),
                        };
                        forward_rows::<S, CI, CO, K, H, W, OW>(s, ((x, w, b), v0), py, out);
                        if let Some(scratch) = pool.as_deref() {
                            let y = (&mut *y, py / 2, OH / 2);
                            pool_rows::<S, CO, OW>(s, scratch, y, (v0, relu));
                        } else if relu {
                            relu_rows::<S, CO, OH, OW>(s, y, py, v0);
                        }
                    }
                }
            }
        }
    }

    /// Output rows `py` and `py + 1` of every channel, lanes `v0..v0 + S::LANES`, into rows
    /// `row0` and `row0 + 1` of `out` (which has `oh` rows).
    #[inline(always)]
    #[allow(clippy::type_complexity)]
    fn forward_rows<
        S: Simd,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OW: usize,
    >(
        s: S,
        (params, v0): ((&[f32], &[f32], &[f32]), usize),
        py: usize,
        (out, oh, row0): (&mut [f32], usize, usize),
    ) {
        macro_rules! blocks {
            ([$($ob:literal),*], [$($pb:literal),*]) => {
                for_blocks!(CO, [$($ob),*], |o0, OB| {
                    for r in 0..2 {
                        for_blocks!(OW, [$($pb),*], |px0, PB| {
                            forward_block::<S, OB, PB, K>(
                                s,
                                params,
                                (o0, py + r, px0, v0),
                                (CI, H, W, oh, OW),
                                (out, row0 + r),
                            );
                        });
                    }
                });
            };
        }
        if S::LANES >= 16 {
            blocks!([4, 2, 1], [5, 4, 3, 2, 1]);
        } else {
            blocks!([2, 1], [3, 2, 1]);
        }
    }

    /// The ReLU, in place, over output rows `py` and `py + 1` of every channel of `y`, lanes
    /// `v0..v0 + S::LANES`.
    #[inline(always)]
    fn relu_rows<S: Simd, const C: usize, const OH: usize, const OW: usize>(
        s: S,
        y: &mut [f32],
        py: usize,
        v0: usize,
    ) {
        for c in 0..C {
            for at in ((c * OH + py) * OW..(c * OH + py + 2) * OW).map(|p| p * LANES + v0) {
                s.store(y, at, s.relu(s.load(y, at)));
            }
        }
    }

    /// Row `qy` of the 2×2, stride-2 max pooling of `rows` (two rows of `OW` pixels per
    /// channel), then a ReLU if `relu`, into `y` (of `oh` rows of `OW / 2`), lanes
    /// `v0..v0 + S::LANES`: the taps in [`crate::MaxPool2d`]'s order, the first maximum kept,
    /// a NaN above every number (its rule, [`crate::maxpool2d::beats`]).
    #[inline(always)]
    fn pool_rows<S: Simd, const C: usize, const OW: usize>(
        s: S,
        rows: &[f32],
        (y, qy, oh): (&mut [f32], usize, usize),
        (v0, relu): (usize, bool),
    ) {
        for c in 0..C {
            for qx in 0..OW / 2 {
                let at = |r: usize, x: usize| ((c * 2 + r) * OW + 2 * qx + x) * LANES + v0;
                let mut best = s.load(rows, at(0, 0));
                for (r, x) in [(0, 1), (1, 0), (1, 1)] {
                    let v = s.load(rows, at(r, x));
                    best = s.select_gt_nan(v, best, v, best);
                }
                if relu {
                    best = s.relu(best);
                }
                s.store(y, ((c * oh + qy) * (OW / 2) + qx) * LANES + v0, best);
            }
        }
    }

    /// Weight and bias gradients of a batch in lanes, per lane: `gwl[o][c][i][j][l] +=
    /// Σ_p g[o][p][l] · x[c][p + (i, j)][l]`, `gbl[o][l] += Σ_p g[o][p][l]`.
    pub(crate) struct WeightGrad<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub x: &'a [f32],
        pub g: &'a [f32],
        /// A ReLU's output: `g` passes where it is positive.
        pub mask: Option<&'a [f32]>,
        pub gwl: &'a mut [f32],
        pub gbl: &'a mut [f32],
        /// Where the lanes' sums are added, after the batch's last block.
        pub sums: Option<(&'a mut [f32], &'a mut [f32])>,
    }

    /// Output channels `o0..o0 + OB` × the `K` taps of kernel row `i` of input channel `c`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn weight_grad_block<S: Simd, const OB: usize, const K: usize, const MASK: bool>(
        s: S,
        (x, g, mask): (&[f32], &[f32], &[f32]),
        (o0, c, i, v0): (usize, usize, usize, usize),
        (ci, h, wd, oh, ow): (usize, usize, usize, usize, usize),
        rows: core::ops::Range<usize>,
        gwl: &mut [f32],
    ) {
        let mut acc = [[s.splat(0.0); K]; OB];
        for py in rows {
            for px in 0..ow {
                let mut gv = [s.splat(0.0); OB];
                for o in 0..OB {
                    let at = (((o0 + o) * oh + py) * ow + px) * LANES + v0;
                    gv[o] = s.load(g, at);
                    if MASK {
                        let zero = s.splat(0.0);
                        gv[o] = s.select_gt(s.load(mask, at), zero, gv[o], zero);
                    }
                }
                let at = ((c * h + py + i) * wd + px) * LANES + v0;
                for j in 0..K {
                    let xv = s.load(x, at + j * LANES);
                    for o in 0..OB {
                        acc[o][j] = s.mul_add(gv[o], xv, acc[o][j]);
                    }
                }
            }
        }
        for o in 0..OB {
            for j in 0..K {
                let at = ((((o0 + o) * ci + c) * K + i) * K + j) * LANES + v0;
                s.store(gwl, at, s.add(s.load(gwl, at), acc[o][j]));
            }
        }
    }

    /// [`weight_grad_block`] over all weights for vector `v0` of a block, in bands of output
    /// rows whose gradient and input stay in L1 across all the weights (a whole map's
    /// gradient would be read from L2 once per kernel row).
    #[inline(always)]
    fn weight_grad_bands<S: Simd, const K: usize, const MASK: bool>(
        s: S,
        data: (&[f32], &[f32], &[f32]),
        v0: usize,
        dims: (usize, usize, usize, usize, usize),
        co: usize,
        gwl: &mut [f32],
    ) {
        let (ci, oh, ow) = (dims.0, dims.3, dims.4);
        // Rows per band: 4 channels' gradient rows in ~24 KiB, the bands even.
        let band = {
            let rows = (384 / (4 * ow)).max(1);
            oh.div_ceil(oh.div_ceil(rows))
        };
        for py0 in (0..oh).step_by(band) {
            let rows = py0..(py0 + band).min(oh);
            if S::LANES >= 16 {
                for_blocks!(co, [4, 2, 1], |o0, OB| {
                    for c in 0..ci {
                        for i in 0..K {
                            let (at, rows) = ((o0, c, i, v0), rows.clone());
                            weight_grad_block::<S, OB, K, MASK>(s, data, at, dims, rows, gwl);
                        }
                    }
                });
            } else {
                for_blocks!(co, [2, 1], |o0, OB| {
                    for c in 0..ci {
                        for i in 0..K {
                            let (at, rows) = ((o0, c, i, v0), rows.clone());
                            weight_grad_block::<S, OB, K, MASK>(s, data, at, dims, rows, gwl);
                        }
                    }
                });
            }
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for WeightGrad<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let dims = (CI, H, W, OH, OW);
            let blocks = self.x.chunks_exact(CI * H * W * LANES);
            let mask = self.mask.unwrap_or(&[]);
            let masks = mask.chunks_exact(CO * OH * OW * LANES);
            let g_len = CO * OH * OW * LANES;
            for (k, (x, g)) in blocks.zip(self.g.chunks_exact(g_len)).enumerate() {
                let mask = match self.mask {
                    Some(_) => masks.clone().nth(k).expect("a mask per block"),
                    None => &[][..],
                };
                for v0 in (0..LANES).step_by(S::LANES) {
                    for o in 0..CO {
                        let mut acc = s.load(self.gbl, o * LANES + v0);
                        for p in 0..OH * OW {
                            let at = (o * OH * OW + p) * LANES + v0;
                            let mut gv = s.load(g, at);
                            if self.mask.is_some() {
                                let zero = s.splat(0.0);
                                gv = s.select_gt(s.load(mask, at), zero, gv, zero);
                            }
                            acc = s.add(acc, gv);
                        }
                        s.store(self.gbl, o * LANES + v0, acc);
                    }
                    if self.mask.is_some() {
                        weight_grad_bands::<S, K, true>(s, (x, g, mask), v0, dims, CO, self.gwl);
                    } else {
                        weight_grad_bands::<S, K, false>(s, (x, g, mask), v0, dims, CO, self.gwl);
                    }
                }
            }
            let lane_sum = |lanes: &[f32]| {
                let mut acc = s.load(lanes, 0);
                for v0 in (S::LANES..LANES).step_by(S::LANES) {
                    acc = s.add(acc, s.load(lanes, v0));
                }
                s.sum(acc)
            };
            let Some((gw, gb)) = self.sums else { return };
            for (gw, lanes) in gw.iter_mut().zip(self.gwl.chunks_exact(LANES)) {
                *gw += lane_sum(lanes);
            }
            for (gb, lanes) in gb.iter_mut().zip(self.gbl.chunks_exact(LANES)) {
                *gb += lane_sum(lanes);
            }
        }
    }

    /// Input gradient of a batch in lanes: `gi[c][y][x] = Σ_o Σ_(i,j) w[o][c][i][j] ·
    /// g[o][y − i][x − j]` over the taps that land inside `g`.
    pub(crate) struct InputGrad<
        'a,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > {
        pub w: &'a [f32],
        pub g: &'a [f32],
        pub gi: &'a mut [f32],
    }

    /// Input gradient of pixels `x0..x0 + XB` of row `y` of channel `c`, in registers: each
    /// gradient pixel is loaded once per kernel row and scattered to the `K` outputs it
    /// reaches, so the maps' edges cost nothing (the edge tests are constant after
    /// unrolling, except whether a gradient pixel exists).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn input_grad_block<S: Simd, const XB: usize, const K: usize>(
        s: S,
        (w, g): (&[f32], &[f32]),
        (c, y, x0, v0): (usize, usize, usize, usize),
        (ci, co, h, wd, oh, ow): (usize, usize, usize, usize, usize, usize),
        gi: &mut [f32],
    ) {
        let mut acc = [s.splat(0.0); XB];
        for o in 0..co {
            for i in 0..K {
                if y < i || y - i >= oh {
                    continue;
                }
                let g_row = (o * oh + y - i) * ow;
                let taps = &w[((o * ci + c) * K + i) * K..][..K];
                let mut wv = [s.splat(0.0); K];
                for j in 0..K {
                    wv[j] = s.splat(taps[j]);
                }
                for q in 0..XB + K - 1 {
                    // gradient pixel x0 + q − (K − 1), which reaches outputs t = q + j − (K − 1)
                    let px = (x0 + q).wrapping_sub(K - 1);
                    if px >= ow {
                        continue;
                    }
                    let gv = s.load(g, (g_row + px) * LANES + v0);
                    for j in 0..K {
                        let t = (q + j).wrapping_sub(K - 1);
                        if t < XB {
                            acc[t] = s.mul_add(wv[j], gv, acc[t]);
                        }
                    }
                }
            }
        }
        for t in 0..XB {
            s.store(gi, ((c * h + y) * wd + x0 + t) * LANES + v0, acc[t]);
        }
    }

    /// [`input_grad_block`] for a whole row (`W = OW + K − 1` outputs in registers): every
    /// multiply-add is a real one, and the loops have constant trips.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // constant-trip index loops keep the sums in registers
    fn input_grad_row<S: Simd, const W: usize, const OW: usize, const K: usize>(
        s: S,
        (w, g): (&[f32], &[f32]),
        (c, y, v0): (usize, usize, usize),
        (ci, h, oh): (usize, usize, usize),
        outputs: core::ops::Range<usize>,
        gi: &mut [f32],
    ) {
        let at = |t: usize| ((c * h + y) * W + t) * LANES + v0;
        let mut acc = [s.splat(0.0); W];
        if outputs.start > 0 {
            for t in 0..W {
                acc[t] = s.load(gi, at(t));
            }
        }
        for o in outputs {
            for i in 0..K {
                if y < i || y - i >= oh {
                    continue;
                }
                let g_row = (o * oh + y - i) * OW;
                let taps = &w[((o * ci + c) * K + i) * K..][..K];
                let mut wv = [s.splat(0.0); K];
                for j in 0..K {
                    wv[j] = s.splat(taps[j]);
                }
                for px in 0..OW {
                    let gv = s.load(g, (g_row + px) * LANES + v0);
                    for j in 0..K {
                        acc[px + j] = s.mul_add(wv[j], gv, acc[px + j]);
                    }
                }
            }
        }
        for t in 0..W {
            s.store(gi, at(t), acc[t]);
        }
    }

    impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const H: usize,
        const W: usize,
        const OH: usize,
        const OW: usize,
    > Kernel for InputGrad<'_, CI, CO, K, H, W, OH, OW>
    {
        type Output = ();
        #[inline(always)]
        fn run<S: Simd>(self, s: S) {
            let dims = (CI, CO, H, W, OH, OW);
            // A whole row in registers, with room for the taps and a gradient vector.
            let whole_rows = W + K + 2 <= if S::LANES >= 16 { 32 } else { 16 };
            let blocks = self.g.chunks_exact(CO * OH * OW * LANES);
            for (g, gi) in blocks.zip(self.gi.chunks_exact_mut(CI * H * W * LANES)) {
                for v0 in (0..LANES).step_by(S::LANES) {
                    if whole_rows {
                        // Output channels in chunks whose gradient rows stay in L1 while
                        // every input channel reads them.
                        for o0 in (0..CO).step_by(8) {
                            for y in 0..H {
                                for c in 0..CI {
                                    let (at, dims) = ((c, y, v0), (CI, H, OH));
                                    let outputs = o0..(o0 + 8).min(CO);
                                    input_grad_row::<S, W, OW, K>(
                                        s,
                                        (self.w, g),
                                        at,
                                        dims,
                                        outputs,
                                        gi,
                                    );
                                }
                            }
                        }
                        continue;
                    }
                    for y in 0..H {
                        for c in 0..CI {
                            if S::LANES >= 16 {
                                for_blocks!(W, [16, 14, 12, 8, 4, 2, 1], |x0, XB| {
                                    let at = (c, y, x0, v0);
                                    input_grad_block::<S, XB, K>(s, (self.w, g), at, dims, gi);
                                });
                            } else {
                                for_blocks!(W, [8, 4, 2, 1], |x0, XB| {
                                    let at = (c, y, x0, v0);
                                    input_grad_block::<S, XB, K>(s, (self.w, g), at, dims, gi);
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

crate::zeroable!(impl [T: Scalar, const CI: usize, const CO: usize, const K: usize, const S: usize, const P: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for Conv2d [T, CI, CO, K, S, P, H, W, OH, OW] { weight, bias });
crate::zeroable!(impl [T: Scalar, const CI: usize, const CO: usize, const K: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for ConvLaneWorkspace [T, CI, CO, K, H, W, OH, OW] { x, y, gx, gw, gb, g, order });

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
> Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
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

    /// LeNet-5's convolutions stay on their kernels; a ResNet-sized 1×1 convolution, whose
    /// buffers would not fit on the stack, and strided or padded ones go to `conv_kernel`.
    /// (Checked at compile time.)
    #[test]
    fn lenet_convolutions_keep_their_fast_path() {
        const {
            assert!(Conv2d::<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>::FAST);
            assert!(Conv2d::<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>::FAST);
            assert!(!Conv2d::<f32, 64, 64, 1, 1, 0, 56, 56, 56, 56>::FAST);
            assert!(!Conv2d::<f32, 6, 16, 5, 1, 2, 14, 14, 14, 14>::FAST);
            assert!(!Conv2d::<f32, 6, 16, 5, 2, 0, 15, 15, 6, 6>::FAST);
        }
    }

    #[test]
    fn init_is_he_uniform_and_seeded() {
        use rand::SeedableRng;
        let mut a = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        let mut b = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        a.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        b.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
        let bound = (6.0f32 / 150.0).sqrt();
        let w = a.param(0);
        assert!(w.iter().all(|v| v.abs() <= bound));
        // 2400 uniform draws: the largest is near the bound, the mean near zero.
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.95 * bound);
        assert!((w.iter().sum::<f32>() / 2400.0).abs() < 0.02);
        assert!(a.bias.iter().all(|&b| b == 0.0));
    }
}
