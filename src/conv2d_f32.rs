//! Which kernel runs each of [`Conv2d`]'s `f32` passes: LeNet-5's tuned kernels
//! (`conv_fast`, `conv_fast_backward`) where they take the shape, the matrix product or
//! direct kernels of every other shape ([`crate::conv_gemm`], [`crate::conv_kernel`]), and a
//! batch in lanes (`conv_lanes`, `conv_lanes_backward`, else sample by sample). The layer
//! itself, its shape rule and its reference loops are in [`crate::conv2d`]; `f64` takes the
//! reference loops everywhere.

use crate::conv_gemm::{self, ConvKernels};
use crate::conv_kernel::ConvGeometry;
use crate::conv2d::{Conv2d, ConvLaneWorkspace, ConvPacked};
use crate::fusion::{ChannelAffine, Epilogue, Fusion};
use crate::lanes::{LANES, LaneLayer, block_of, block_of_mut, check_lanes, lane_get, lane_put};
use crate::layer::Layer;
use crate::scalar::Scalar;
use crate::tensor::{Maps, Tensor};
use crate::{conv_fast, conv_fast_backward, conv_lanes, conv_lanes_backward, conv_winograd};
use core::slice;

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
    /// The shape as the kernels read it as numbers: what decides which kernels take it, and
    /// the geometry of the kernels of [`crate::conv_kernel`] (the `f32` path of every shape
    /// LeNet's tuned kernels do not take).
    pub(crate) const GEOMETRY: ConvGeometry = {
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

    /// The kernels of the geometries that are not [`Conv2d::FAST`]: the matrix product of
    /// [`crate::conv_gemm`] where it pays, the direct kernels of [`crate::conv_kernel`]
    /// otherwise.
    pub(crate) const KERNELS: &'static ConvKernels = conv_gemm::kernels_for(&Self::GEOMETRY);

    /// Whether the `f32` passes use LeNet's tuned kernels (`conv_fast`): stride 1, no
    /// padding, and buffers that fit on a thread's stack; [`crate::conv_kernel`] takes the rest.
    pub(crate) const FAST: bool = conv_fast::takes(&Self::GEOMETRY);

    /// Whether the `f32` lane passes use the lane kernels (`conv_lanes`): stride 1, no
    /// padding, a kernel whose row of taps fits in registers, and at least two output rows.
    pub(crate) const LANES_FAST: bool = conv_lanes::takes(&Self::GEOMETRY);

    /// [`Layer::forward`], with the weights already packed for the fast kernel if a batch
    /// packed them once ([`ConvPacked`]).
    pub(crate) fn forward_packed(
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
        // `if const`: a shape's build compiles only the branch it takes (LeNet-5's does not
        // compile the other networks' kernels).
        if const { Self::FAST } {
            let wt =
                packed.and_then(|p| T::as_f32(p.0.as_flattened().as_flattened().as_flattened()));
            conv_fast::forward::<CI, CO, K, H, W, OH, OW>(x, (w, wt), b, y);
        } else if let Some(p) = packed.and_then(Self::prepared) {
            conv_gemm::forward_prepared(&Self::GEOMETRY, (x, w, b), y, None, p);
        } else {
            // Any other geometry: one set of kernels for every shape.
            (Self::KERNELS.forward)(&Self::GEOMETRY, x, w, b, y);
        }
    }

    /// Whether the `f32` inference runs [`conv_gemm`] and so applies a map after the
    /// convolution to its sums ([`Conv2d::infer_then_f32`]).
    pub(crate) const APPLIES_MAPS: bool = !Self::FAST && conv_gemm::pays(&Self::GEOMETRY);

    /// Whether inference of a batch of `samples` runs faster on the whole batch in one call
    /// than sample by sample: where the samples' tiles share the blocks of F(2×2, 3×3) with
    /// the output channels along the lanes (`conv_winograd_channels::fills_more_with`).
    pub(crate) const fn infers_whole_batch(samples: usize) -> bool {
        Self::APPLIES_MAPS
            && crate::conv_winograd_channels::fills_more_with(&Self::GEOMETRY, samples)
    }

    /// Whether the `f32` forward pass runs F(2×2, 3×3) (`conv_winograd`), whose transformed
    /// weights a batch keeps in its [`ConvPacked`] (which only LeNet's kernels use else). Not
    /// where F(4×4, 3×3) (`conv_winograd4`) runs instead, with its weights transformed for
    /// each sample (ResNet-18's batch-8 training step measured the same either way), nor
    /// where F(2×2, 3×3) with the output channels along the lanes (`conv_winograd_channels`)
    /// does for one sample (so for any batch), which transforms them block by block.
    pub(crate) const WINOGRAD: bool = Self::APPLIES_MAPS
        && K == 3
        && conv_winograd::pays(&Self::GEOMETRY)
        && !crate::conv_winograd4::pays(&Self::GEOMETRY)
        && !crate::conv_winograd_channels::pays_for(&Self::GEOMETRY, 1);

    /// Whether the `f32` forward pass runs the direct kernel with the output channels along
    /// the lanes (`conv_channels`), whose transposed weights a batch keeps in its
    /// [`ConvPacked`].
    pub(crate) const CHANNELS: bool =
        Self::APPLIES_MAPS && crate::conv_channels::pays(&Self::GEOMETRY);

    /// Rearranges the weights once for a batch's passes, into `packed`: transformed for
    /// F(2×2, 3×3) where the layer runs it ([`Conv2d::WINOGRAD`]), transposed for the
    /// channels along the lanes where it runs that ([`Conv2d::CHANNELS`]).
    pub(crate) fn prepare_weights(&self, packed: &mut ConvPacked<T, CI, CO, K>) {
        let (lo, hi) = (
            packed
                .0
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
            packed
                .1
                .as_flattened_mut()
                .as_flattened_mut()
                .as_flattened_mut(),
        );
        let (Some(w), Some(lo), Some(hi)) = (
            T::as_f32(self.param(0)),
            T::as_f32_mut(lo),
            T::as_f32_mut(hi),
        ) else {
            return;
        };
        if const { Self::WINOGRAD } {
            conv_winograd::prepare(&Self::GEOMETRY, w, lo, hi);
        } else if const { Self::CHANNELS } {
            crate::conv_channels::prepare(&Self::GEOMETRY, w, lo);
        }
    }

    /// The weights [`Conv2d::prepare_weights`] rearranged into `packed`, if the layer runs
    /// F(2×2, 3×3) or the channels along the lanes in `f32`.
    fn prepared(packed: &ConvPacked<T, CI, CO, K>) -> Option<conv_gemm::Ready<'_>> {
        if const { !Self::WINOGRAD && !Self::CHANNELS } {
            return None;
        }
        let lo = T::as_f32(packed.0.as_flattened().as_flattened().as_flattened())?;
        if Self::CHANNELS {
            return Some(conv_gemm::Ready::Channels(lo));
        }
        let hi = T::as_f32(packed.1.as_flattened().as_flattened().as_flattened())?;
        Some(conv_gemm::Ready::Winograd(
            crate::conv_winograd_tiles::Prepared::new(&Self::GEOMETRY, lo, hi),
        ))
    }

    /// [`Layer::infer_fused`] (with or without `affine`) of the samples `input` (one or a
    /// batch, whose tiles may share blocks of products as in [`conv_gemm::forward`]) on the
    /// matrix product's `f32` path
    /// ([`conv_gemm::forward_then`]: the maps applied to the sums as they are stored), with the
    /// weights a batch transformed in `packed` for F(2×2, 3×3) if given; `false`, with nothing
    /// written, where the layer takes another path.
    pub(crate) fn infer_then_f32(
        &self,
        input: &[Maps<T, CI, H, W>],
        output: &mut [Maps<T, CO, OH, OW>],
        (affine, e): (Option<ChannelAffine<'_, T>>, Epilogue),
        packed: Option<&ConvPacked<T, CI, CO, K>>,
    ) -> bool {
        if const { !Self::APPLIES_MAPS } {
            return false;
        }
        let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(Tensor::flat_slice(input)),
            T::as_f32_mut(Tensor::flat_slice_mut(output)),
            T::as_f32(self.param(0)),
            T::as_f32(&self.bias),
        ) else {
            return false;
        };
        let affine = match affine {
            None => None,
            Some(a) => match (T::as_f32(a.mean), T::as_f32(a.scale), T::as_f32(a.shift)) {
                (Some(mean), Some(scale), Some(shift)) => {
                    Some(ChannelAffine { mean, scale, shift })
                }
                _ => return false,
            },
        };
        match packed.and_then(Self::prepared) {
            Some(p) => {
                conv_gemm::forward_prepared(&Self::GEOMETRY, (x, w, b), y, Some((affine, e)), p)
            }
            None => conv_gemm::forward_then(&Self::GEOMETRY, x, w, b, y, affine, e),
        }
        true
    }

    /// [`Layer::backward`], with the weights already packed (see [`Conv2d::forward_packed`]).
    pub(crate) fn backward_packed(
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
        if const { !Self::FAST } {
            // Any other geometry: the input gradient, then the parameter gradients.
            self.input_grad_any_geometry(grad_output, grad_input);
            let (x, g) = (slice::from_ref(input), slice::from_ref(grad_output));
            return Self::param_grad_any_geometry(x, g, grads, 1.0);
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

    /// The forward pass of a batch of the `f32` geometries that are not [`Conv2d::FAST`], in
    /// one call of their kernels (with the weights a batch transformed in `packed` if
    /// given), which may run the samples' tiles of F(2×2, 3×3) in the same blocks
    /// ([`conv_gemm::forward`]). `false`, having done nothing, for other layers.
    pub(crate) fn forward_batch_any_geometry(
        &self,
        input: &[Maps<T, CI, H, W>],
        output: &mut [Maps<T, CO, OH, OW>],
        packed: &ConvPacked<T, CI, CO, K>,
    ) -> bool {
        if const { Self::FAST } {
            return false;
        }
        let (Some(x), Some(y), Some(w), Some(b)) = (
            T::as_f32(Tensor::flat_slice(input)),
            T::as_f32_mut(Tensor::flat_slice_mut(output)),
            T::as_f32(self.param(0)),
            T::as_f32(&self.bias),
        ) else {
            return false;
        };
        match Self::prepared(packed) {
            Some(p) => conv_gemm::forward_prepared(&Self::GEOMETRY, (x, w, b), y, None, p),
            None => (Self::KERNELS.forward)(&Self::GEOMETRY, x, w, b, y),
        }
        true
    }

    /// The input gradient by [`Conv2d::KERNELS`], for the `f32` geometries
    /// that are not [`Conv2d::FAST`], with `self`'s weights.
    pub(crate) fn input_grad_any_geometry(
        &self,
        grad_output: &Maps<T, CO, OH, OW>,
        grad_input: Option<&mut Maps<T, CI, H, W>>,
    ) {
        if const { Self::FAST } {
            unreachable!("LeNet's kernels take this shape");
        }
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

    /// The batched backward pass of the `f32` geometries that are not [`Conv2d::FAST`]:
    /// the input gradients of the whole batch in one call of [`Conv2d::KERNELS`] (as
    /// [`Conv2d::forward_batch_any_geometry`]), then the parameter gradients in one call,
    /// which adds each weight's sum over the batch once (a deep layer's gradient is
    /// megabytes). `false`, having done nothing, for other layers.
    pub(crate) fn backward_batch_any_geometry<const N: usize>(
        &self,
        input: &[Maps<T, CI, H, W>; N],
        grad_output: &[Maps<T, CO, OH, OW>; N],
        grad_input: Option<&mut [Maps<T, CI, H, W>; N]>,
        grads: &mut Self,
    ) -> bool {
        if const { Self::FAST } || T::as_f32(&self.bias).is_none() {
            return false;
        }
        if let Some(gi) = grad_input
            && let (Some(w), Some(g), Some(gi)) = (
                T::as_f32(self.param(0)),
                T::as_f32(Tensor::flat_slice(grad_output)),
                T::as_f32_mut(Tensor::flat_slice_mut(gi)),
            )
        {
            (Self::KERNELS.input_grad)(&Self::GEOMETRY, w, g, gi);
        }
        Self::param_grad_any_geometry(input, grad_output, grads, 1.0);
        true
    }

    /// `grads += scale · ∂E/∂parameters` for the samples `input` and `grad_output` by
    /// [`Conv2d::KERNELS`] (`grads` may be the layer itself: `scale = −lr` is an SGD step).
    pub(crate) fn param_grad_any_geometry(
        input: &[Maps<T, CI, H, W>],
        grad_output: &[Maps<T, CO, OH, OW>],
        grads: &mut Self,
        scale: f32,
    ) {
        if const { Self::FAST } {
            unreachable!("LeNet's kernels take this shape");
        }
        let Conv2d { weight, bias } = grads;
        let weight = weight
            .as_flattened_mut()
            .as_flattened_mut()
            .as_flattened_mut();
        if let (Some(x), Some(g), Some(gw), Some(gb)) = (
            T::as_f32(Tensor::flat_slice(input)),
            T::as_f32(Tensor::flat_slice(grad_output)),
            T::as_f32_mut(weight),
            T::as_f32_mut(bias),
        ) {
            (Self::KERNELS.weight_grad)(&Self::GEOMETRY, x, g, gw, gb, scale);
        }
    }

    /// The lane forward pass of one block by the SIMD kernels (then a ReLU if `relu`, then
    /// a 2×2 max pooling with `Some(scratch)`), or `false` if they do not apply.
    pub(crate) fn forward_lanes_fast(
        &self,
        x: &[T],
        y: &mut [T],
        relu: bool,
        pool: Option<&mut [T]>,
    ) -> bool {
        let params = (self.param(0), &self.bias[..]);
        Self::LANES_FAST
            && conv_lanes::forward::<T, CI, CO, K, H, W, OH, OW>(x, params, y, relu, pool)
    }

    /// The lane backward pass of block `block` (of `N / LANES`) by the SIMD kernels, or
    /// `false` if they do not apply. With `relu_output`, `g` is the gradient of the ReLU of
    /// this layer's output, and passes where `relu_output > 0`.
    pub(crate) fn backward_lanes_fast<const N: usize>(
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
    pub(crate) fn fast_sgd(
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

    /// A ReLU when the SIMD kernels run this geometry; in inference, also a 2×2 pooling
    /// after it when the maps' sides are even.
    fn fuses(&self, epilogue: Fusion<'_, T>) -> bool {
        let relu = Self::LANES_FAST && T::as_f32(&self.bias).is_some();
        if epilogue.is_relu() {
            relu
        } else {
            epilogue.is_relu_pool() && relu && OH.is_multiple_of(2) && OW.is_multiple_of(2)
        }
    }

    /// The SIMD kernels apply the ReLU as they store the output. With the pooling, two
    /// output rows at a time go to a scratch buffer still in L1, and are pooled from there:
    /// the maps before pooling are never written out.
    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: &mut [T],
        ws: &mut Self::LaneWorkspace,
        epilogue: Fusion<'_, T>,
        infer: bool,
    ) -> bool {
        check_lanes(N);
        if !<Self as LaneLayer<N>>::fuses(self, epilogue) {
            return false;
        }
        let x = Maps::flat_slice(block_of(input, block));
        if epilogue.is_relu() {
            let len = CO * OH * OW * LANES;
            return self.forward_lanes_fast(x, &mut output[block * len..][..len], true, None);
        }
        if !infer {
            return false;
        }
        let len = CO * (OH / 2) * (OW / 2) * LANES;
        let y = &mut output[block * len..][..len];
        // The backward pass's scratch for one block's maps; inference has no backward pass.
        let scratch = &mut Maps::flat_slice_mut(&mut ws.g.0)[..CO * 2 * OW * LANES];
        self.forward_lanes_fast(x, y, true, Some(scratch))
    }

    /// The ReLU's gradient is applied where the weight gradient loads the output gradient
    /// (or once for the block, when the input gradient reads it too).
    fn backward_lanes_then(
        &self,
        block: usize,
        input: &[Self::Input; N],
        output: Option<&[T]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[T],
        epilogue: Fusion<'_, T>,
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        check_lanes(N);
        if !(epilogue.is_relu() && <Self as LaneLayer<N>>::fuses(self, epilogue)) {
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
