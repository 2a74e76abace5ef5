//! Grouped and depthwise 2-D convolution: AlexNet's two-group layers, MobileNet's
//! depthwise ones.
//!
//! # Shape errors
//! Each rule is a compile-time assertion naming the layer and the formula, shown here as a
//! `compile_fail` test beside a compiling twin that differs only in the wrong number.
//!
//! Groups must divide the channels: 3 groups of 7 input channels do not compile, of 6 do.
//! ```compile_fail,E0080
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 7, 9, 3, 2, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 6, 9, 3, 2, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: GroupedConv2d: groups G must divide the input channels: CI % G == 0
//! ```
//! And the output channels: 3 groups of 8 do not compile, of 9 do.
//! ```compile_fail,E0080
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 6, 8, 3, 2, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 6, 9, 3, 2, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: GroupedConv2d: groups G must divide the output channels: CO % G == 0
//! ```
//! `CIG` (spelled out, as stable Rust cannot compute `CI / G` in a type) must be `CI / G`:
//! 6 channels in 3 groups are 2 per group, not 3.
//! ```compile_fail,E0080
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 6, 9, 3, 3, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{GroupedConv2d, Layer};
//! const _: () = <GroupedConv2d<f32, 6, 9, 3, 2, 3, 1, 1, 8, 8, 8, 8> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: GroupedConv2d: input channels per group CIG must equal CI / G
//! ```
//! The output size is PyTorch's: a 3×3 depthwise convolution at stride 2 with padding 1
//! maps 7 to ⌊(7 + 2 − 3) / 2⌋ + 1 = 4, not 3.
//! ```compile_fail,E0080
//! use constnet::{DepthwiseConv2d, Layer};
//! const _: () = <DepthwiseConv2d<f32, 32, 3, 2, 1, 7, 7, 3, 4> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{DepthwiseConv2d, Layer};
//! const _: () = <DepthwiseConv2d<f32, 32, 3, 2, 1, 7, 7, 4, 4> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: GroupedConv2d: output height OH must equal ⌊(H + 2·P − K) / S⌋ + 1
//! ```

use rand::Rng;

use crate::conv_gemm::{self, ConvKernels};
use crate::conv_kernel::ConvGeometry;
use crate::conv_reference;
use crate::fused::SgdLayer;
use crate::layer::{Layer, Shape, TensorKind, no_such_param, torch_default_uniform};
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};

/// A grouped 2-D convolution: the `CI` input channels and the `CO` output channels are cut
/// into `G` groups, and output channel `o` sees only the `CIG = CI / G` input channels of its
/// group `o / (CO / G)`, through a `CIG`×`K`×`K` filter; stride `S`, zero padding `P`, from
/// `CI`×`H`×`W` maps to `CO`×`OH`×`OW` maps, plus one bias per output channel.
///
/// This is PyTorch's `Conv2d(CI, CO, K, S, P, groups=G)`: the weights are `[CO][CI / G][K][K]`,
/// so a state dict's `weight` and `bias` copy straight into the fields of those names.
/// `G = 1` is [`crate::Conv2d`] (equal in `f64` to the last bit); `G = CI = CO` is a
/// depthwise convolution ([`DepthwiseConv2d`]). `CIG` is spelled out, because stable Rust
/// cannot compute `CI / G` in a type, and checked at compile time with the other rules (`G`
/// divides `CI` and `CO`, PyTorch's output size; see the [module](self) for each error).
///
/// `f32` passes run the SIMD kernels of [`crate::conv_gemm`] (or, for a depthwise
/// convolution, [`crate::conv_kernel`]), on the best instruction set
/// of the CPU, for any shape; `f64` passes run the plain loops of
/// [`GroupedConv2d::forward_reference`] and [`GroupedConv2d::backward_reference`].
///
/// [`Layer::init`] is PyTorch's default, as [`crate::Conv2d`]'s: the weights, then the biases,
/// drawn from U(−1/√fan_in, 1/√fan_in) over the fan-in `CIG·K·K` (the distribution, not
/// PyTorch's numbers: load a state dict for those).
///
/// ```
/// use constnet::{GroupedConv2d, Layer, zeroed_box};
/// // AlexNet's second convolution, scaled down: 4 → 6 channels in 2 groups, 5×5, padding 2.
/// type Conv = GroupedConv2d<f32, 4, 6, 2, 2, 5, 1, 2, 9, 9, 9, 9>;
/// let mut conv = zeroed_box::<Conv>();
/// conv.weight[0][0][2][2] = 1.0; // output 0 copies input 0 (group 0's first channel)
/// conv.weight[3][1][2][2] = 2.0; // output 3 doubles input 3 (group 1's second channel)
/// conv.bias[5] = 0.5;
/// let mut x = [[[0.0f32; 9]; 9]; 4];
/// x[0][4][4] = 1.0;
/// x[3][0][0] = 3.0;
/// let mut y = [[[0.0f32; 9]; 9]; 6];
/// conv.forward(&x, &mut y, &mut ());
/// assert_eq!((y[0][4][4], y[3][0][0], y[5][8][8]), (1.0, 6.0, 0.5));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GroupedConv2d<
    T,
    const CI: usize,
    const CO: usize,
    const G: usize,
    const CIG: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> {
    /// Filters, `[out channel][input channel of its group][row][column]`.
    pub weight: [[[[T; K]; K]; CIG]; CO],
    /// One bias per output channel.
    pub bias: [T; CO],
}

/// A depthwise convolution: each of the `C` channels convolved with its own `K`×`K` filter
/// (a [`GroupedConv2d`] of `C` groups of one channel; its errors name `GroupedConv2d`).
///
/// ```
/// use constnet::{DepthwiseConv2d, Layer, zeroed_box};
/// // MobileNet's stride-2 depthwise step on 3 channels of 7×7: 3×3, padding 1 → 4×4.
/// let mut dw = zeroed_box::<DepthwiseConv2d<f32, 3, 3, 2, 1, 7, 7, 4, 4>>();
/// dw.weight[1][0] = [[1.0; 3]; 3]; // channel 1 sums its windows
/// let x = [[[1.0f32; 7]; 7]; 3];
/// let mut y = [[[0.0f32; 4]; 4]; 3];
/// dw.forward(&x, &mut y, &mut ());
/// // a corner window has 2×2 taps on the map, an inner one 3×3; channel 0 has no weights
/// assert_eq!((y[1][0][0], y[1][1][1], y[0][1][1]), (4.0, 9.0, 0.0));
/// ```
pub type DepthwiseConv2d<
    T,
    const C: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> = GroupedConv2d<T, C, C, C, 1, K, S, P, H, W, OH, OW>;

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const G: usize,
    const CIG: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> GroupedConv2d<T, CI, CO, G, CIG, K, S, P, H, W, OH, OW>
{
    /// The shape rules; evaluated at compile time by every pass and by [`Layer::CHECK`].
    pub const SHAPE_OK: () = {
        assert!(
            CI > 0 && CO > 0 && G > 0,
            "GroupedConv2d: channel counts CI, CO and groups G must be at least 1"
        );
        assert!(
            CI.is_multiple_of(G),
            "GroupedConv2d: groups G must divide the input channels: CI % G == 0"
        );
        assert!(
            CO.is_multiple_of(G),
            "GroupedConv2d: groups G must divide the output channels: CO % G == 0"
        );
        assert!(
            CIG * G == CI,
            "GroupedConv2d: input channels per group CIG must equal CI / G"
        );
        assert!(
            K > 0 && S > 0,
            "GroupedConv2d: kernel K and stride S must be at least 1"
        );
        assert!(
            K <= H + 2 * P && K <= W + 2 * P,
            "GroupedConv2d: kernel K is larger than the padded input (H + 2·P, W + 2·P)"
        );
        assert!(
            P < K,
            "GroupedConv2d: padding P must be smaller than the kernel K"
        );
        assert!(
            OH == (H + 2 * P - K) / S + 1,
            "GroupedConv2d: output height OH must equal ⌊(H + 2·P − K) / S⌋ + 1"
        );
        assert!(
            OW == (W + 2 * P - K) / S + 1,
            "GroupedConv2d: output width OW must equal ⌊(W + 2·P − K) / S⌋ + 1"
        );
    };

    /// The shape as the `f32` kernels read it (one compiled kernel serves every shape).
    pub const GEOMETRY: ConvGeometry = {
        let () = Self::SHAPE_OK;
        ConvGeometry {
            c_in: CI,
            c_out: CO,
            groups: G,
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

    /// The `f32` kernels: the matrix product of [`crate::conv_gemm`] where it pays (a few
    /// output channels per group or more), the direct kernels of [`crate::conv_kernel`]
    /// otherwise (a depthwise convolution).
    const KERNELS: &'static ConvKernels = conv_gemm::kernels_for(&Self::GEOMETRY);

    /// Input pixel `(y·S + i − P, x·S + j − P)` for output `(y, x)` and tap `(i, j)`, or
    /// `None` when it falls in the zero padding.
    #[inline(always)]
    fn source(y: usize, x: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let r = (y * S + i).checked_sub(P)?;
        let c = (x * S + j).checked_sub(P)?;
        (r < H && c < W).then_some((r, c))
    }

    /// The input channel of channel `c` of output channel `o`'s group.
    #[inline(always)]
    fn input_channel(o: usize, c: usize) -> usize {
        o / (CO / G) * CIG + c
    }

    /// The plain loops of [`Layer::forward`]: the definition the `f32` kernels are tested
    /// against, and the `f64` path.
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

    /// The plain loops of [`Layer::backward`] (see [`GroupedConv2d::forward_reference`]),
    /// summing in [`crate::Conv2d::backward_reference`]'s order.
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

    /// The plain-SGD step of the reference loops, one parameter at a time (no gradient
    /// buffer): each gradient summed in [`GroupedConv2d::backward_reference`]'s order from
    /// zero, so the step equals `backward` into zeroed gradients then [`crate::Sgd::step`].
    fn sgd_reference(
        &mut self,
        input: &Maps<T, CI, H, W>,
        grad_output: &Maps<T, CO, OH, OW>,
        lr: T,
    ) {
        for (o, g_map) in grad_output.iter().enumerate() {
            let sum = g_map.flat().iter().fold(T::zero(), |sum, &g| sum + g);
            self.bias[o] = self.bias[o] - lr * sum;
            for c in 0..CIG {
                let map = &input[Self::input_channel(o, c)];
                for i in 0..K {
                    for j in 0..K {
                        let mut sum = T::zero();
                        for (y, g_row) in g_map.iter().enumerate() {
                            for (x, &g) in g_row.iter().enumerate() {
                                if let Some((r, s)) = Self::source(y, x, i, j) {
                                    sum = sum + g * map[r][s];
                                }
                            }
                        }
                        let w = &mut self.weight[o][c][i][j];
                        *w = *w - lr * sum;
                    }
                }
            }
        }
    }
}

/// `Some` of every slice if `T` is `f32`.
fn f32s<T: Scalar, const N: usize>(slices: [&[T]; N]) -> Option<[&[f32]; N]> {
    let mut out = [&[][..]; N];
    for (out, s) in out.iter_mut().zip(slices) {
        *out = T::as_f32(s)?;
    }
    Some(out)
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const G: usize,
    const CIG: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Layer for GroupedConv2d<T, CI, CO, G, CIG, K, S, P, H, W, OH, OW>
{
    type Scalar = T;
    type Input = Maps<T, CI, H, W>;
    type Output = Maps<T, CO, OH, OW>;
    type Workspace = ();
    const CHECK: () = Self::SHAPE_OK;
    const PARAM_TENSORS: usize = 2;

    fn forward(&self, input: &Self::Input, output: &mut Self::Output, _ws: &mut ()) {
        const { Self::SHAPE_OK };
        if let (Some([x, w, b]), Some(y)) = (
            f32s([input.flat(), self.param(0), &self.bias]),
            T::as_f32_mut(output.flat_mut()),
        ) {
            (Self::KERNELS.forward)(&Self::GEOMETRY, x, w, b, y);
        } else {
            self.forward_reference(input, output);
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
        const { Self::SHAPE_OK };
        let Some([x, w, g]) = f32s([input.flat(), self.param(0), grad_output.flat()]) else {
            return self.backward_reference(input, grad_output, grad_input, grads);
        };
        let GroupedConv2d { weight, bias } = grads;
        let weight = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        let (Some(gw), Some(gb)) = (T::as_f32_mut(weight), T::as_f32_mut(bias)) else {
            unreachable!("T is f32")
        };
        (Self::KERNELS.weight_grad)(&Self::GEOMETRY, x, g, gw, gb, 1.0);
        if let Some(gi) = grad_input.and_then(|gi| T::as_f32_mut(gi.flat_mut())) {
            (Self::KERNELS.input_grad)(&Self::GEOMETRY, w, g, gi);
        }
    }

    fn param(&self, i: usize) -> &[T] {
        match i {
            0 => self.weight.as_flattened().as_flattened().as_flattened(),
            1 => &self.bias,
            _ => no_such_param("GroupedConv2d", i),
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
            _ => no_such_param("GroupedConv2d", i),
        }
    }

    /// PyTorch's layout: the weight is `[CO, CI / G, K, K]`.
    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        match (kind, i) {
            (TensorKind::Param, 0) => Shape::new(&[CO, CIG, K, K]),
            (TensorKind::Param, 1) => Shape::new(&[CO]),
            _ => no_such_param("GroupedConv2d", i),
        }
    }

    /// PyTorch's default (`nn.Conv2d.reset_parameters` with `groups`): the weights, then the
    /// biases, drawn from U(−1/√fan_in, 1/√fan_in) over the fan-in `CIG·K·K`.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        torch_default_uniform(self.param_mut(0), CIG * K * K, rng);
        torch_default_uniform(&mut self.bias, CIG * K * K, rng);
    }
}

/// The step is applied in place, with no gradient buffer: the input gradient first (with the
/// weights from before the step), then each parameter moved by `−lr ·` its gradient (in
/// `f32`, the weight-gradient kernel adds `−lr ·` its sums straight into the weights).
impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const G: usize,
    const CIG: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> SgdLayer for GroupedConv2d<T, CI, CO, G, CIG, K, S, P, H, W, OH, OW>
{
    fn backward_sgd(
        &mut self,
        input: &Self::Input,
        _ws: &mut (),
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        lr: T,
    ) {
        const { Self::SHAPE_OK };
        let Some([x, g]) = f32s([input.flat(), grad_output.flat()]) else {
            if let Some(gi) = grad_input {
                let (w, gy) = (self.param(0), grad_output.flat());
                conv_reference::input_grad(&Self::GEOMETRY, w, gy, gi.flat_mut());
            }
            return self.sgd_reference(input, grad_output, lr);
        };
        if let (Some(gi), Some(w)) = (grad_input, T::as_f32(self.param(0))) {
            let gi = T::as_f32_mut(gi.flat_mut()).expect("T is f32");
            (Self::KERNELS.input_grad)(&Self::GEOMETRY, w, g, gi);
        }
        let lr = lr.to_f64() as f32;
        let GroupedConv2d { weight, bias } = self;
        let weight = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        let (Some(w), Some(b)) = (T::as_f32_mut(weight), T::as_f32_mut(bias)) else {
            unreachable!("T is f32")
        };
        (Self::KERNELS.weight_grad)(&Self::GEOMETRY, x, g, w, b, -lr);
    }
}

crate::zeroable!(impl [T: Scalar, const CI: usize, const CO: usize, const G: usize, const CIG: usize, const K: usize, const S: usize, const P: usize, const H: usize, const W: usize, const OH: usize, const OW: usize]
    for GroupedConv2d [T, CI, CO, G, CIG, K, S, P, H, W, OH, OW] { weight, bias });

// In batches, sample by sample (each sample's pass runs the kernels).
crate::batch_by_sample::per_sample!(impl<T; const CI: usize, const CO: usize, const G: usize, const CIG: usize,
    const K: usize, const S: usize, const P: usize, const H: usize, const W: usize, const OH: usize,
    const OW: usize> for GroupedConv2d<T, CI, CO, G, CIG, K, S, P, H, W, OH, OW>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeroed_box;

    /// Two groups of one channel: each output sees only its own input.
    #[test]
    fn each_group_reads_only_its_own_channels() {
        let mut conv = zeroed_box::<GroupedConv2d<f64, 2, 2, 2, 1, 1, 1, 0, 1, 2, 1, 2>>();
        conv.weight = [[[[2.0]]], [[[10.0]]]];
        conv.bias = [0.5, 0.0];
        let mut y = [[[0.0; 2]; 1]; 2];
        conv.forward(&[[[1.0, 2.0]], [[3.0, 4.0]]], &mut y, &mut ());
        assert_eq!(y, [[[2.5, 4.5]], [[30.0, 40.0]]]);
    }

    #[test]
    fn init_is_pytorchs_default_over_the_group_fan_in() {
        use rand::SeedableRng;
        let mut conv = zeroed_box::<DepthwiseConv2d<f32, 64, 3, 1, 1, 4, 4, 4, 4>>();
        conv.bias = [1.0; 64];
        conv.init(&mut rand::rngs::StdRng::seed_from_u64(1));
        let bound = (1.0 / 9f64.sqrt()) as f32; // fan-in 1·3·3
        let w = conv.param(0);
        assert!(w.iter().chain(&conv.bias).all(|v| v.abs() <= bound));
        assert!(w.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.95 * bound);
        assert!(conv.bias.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 0.8 * bound);
    }
}
