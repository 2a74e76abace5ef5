//! A [`Chain`]'s lane passes: block by block, layer by layer, with a ReLU (and in inference
//! a 2×2 max pooling) fused into the layer before it when that layer can apply it.

use crate::chain::Chain;
use crate::lane_layer::LaneLayer;
use crate::lane_layout::CacheLines;
use crate::tensor::Tensor;

/// What a [`Chain`]'s lane passes keep: both parts' workspaces and the intermediate
/// activation and its gradient, in lanes.
pub struct LaneChainWorkspace<A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize> {
    /// Workspace of the first layer(s).
    pub first: A::LaneWorkspace,
    /// Output of `first`, in lanes.
    pub mid: CacheLines<[A::Output; N]>,
    /// Gradient with respect to `mid`, in lanes.
    pub mid_grad: CacheLines<[A::Output; N]>,
    /// Workspace of the later layer.
    pub then: B::LaneWorkspace,
}

impl<A, B> Chain<A, B> {
    /// The forward pass of a layer and the ReLU after it, fused, if `B` is a ReLU that `A`
    /// can apply itself (then returns `true`), for inference if `infer`.
    fn forward_fused<const N: usize>(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut LaneChainWorkspace<A, B, N>,
        infer: bool,
    ) -> bool
    where
        A: LaneLayer<N>,
        B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
    {
        if !(B::RELU && self.first.fuses_relu()) {
            return false;
        }
        let y = B::Output::flat_slice_mut(output);
        let fused = if infer {
            self.first.infer_lanes_relu(block, input, y, &mut ws.first)
        } else {
            self.first
                .forward_lanes_relu(block, input, y, &mut ws.first)
        };
        debug_assert!(fused, "fuses_relu promised a fused forward pass");
        true
    }
}

/// Block by block, layer by layer.
impl<A, B, const N: usize> LaneLayer<N> for Chain<A, B>
where
    A: LaneLayer<N>,
    B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
{
    type LaneWorkspace = LaneChainWorkspace<A, B, N>;

    /// A layer followed by a ReLU that it can apply itself writes the ReLU's output
    /// straight away ([`LaneLayer::forward_lanes_relu`]): the maps before the ReLU are
    /// never written.
    fn forward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        if self.forward_fused(block, input, output, ws, false) {
            return;
        }
        self.first
            .forward_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .forward_lanes(block, &ws.mid.0, output, &mut ws.then);
    }

    fn infer_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        if self.forward_fused(block, input, output, ws, true) {
            return;
        }
        if B::POOL_2X2 {
            let y = B::Output::flat_slice_mut(output);
            if self
                .first
                .infer_lanes_pooled(block, input, y, &mut ws.first)
            {
                return;
            }
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes(block, &ws.mid.0, output, &mut ws.then);
    }

    fn fuses_relu_pool(&self) -> bool {
        self.then.fuses_relu_pool()
    }

    /// The chain's last layer applies the ReLU and the pooling, if it can.
    fn infer_lanes_relu_pool(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        if !self.then.fuses_relu_pool() {
            return false;
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes_relu_pool(block, &ws.mid.0, output, &mut ws.then)
    }

    /// A chain that ends in a ReLU (`B`) hands it and the pooling to the layer before it.
    fn infer_lanes_pooled(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        B::RELU
            && self.first.fuses_relu_pool()
            && self
                .first
                .infer_lanes_relu_pool(block, input, output, &mut ws.first)
    }

    /// The chain's last layer applies the ReLU, if it can.
    fn forward_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        // Asked first, with nothing computed: whether the last layer fuses does not depend
        // on its input.
        if !self.then.fuses_relu() {
            return false;
        }
        self.first
            .forward_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .forward_lanes_relu(block, &ws.mid.0, output, &mut ws.then)
    }

    fn infer_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
    ) -> bool {
        if !self.then.fuses_relu() {
            return false;
        }
        self.first
            .infer_lanes(block, input, &mut ws.mid.0, &mut ws.first);
        self.then
            .infer_lanes_relu(block, &ws.mid.0, output, &mut ws.then)
    }

    fn fuses_relu(&self) -> bool {
        self.then.fuses_relu()
    }

    fn ends_in_fused_relu(&self) -> bool {
        B::RELU && self.first.fuses_relu()
    }

    fn backward_lanes_through_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        ws: &mut Self::LaneWorkspace,
        grad: &[A::Scalar],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        self.ends_in_fused_relu()
            && self.first.backward_lanes_relu(
                block,
                input,
                None,
                &mut ws.first,
                grad,
                grad_input,
                &mut grads.first,
            )
    }

    fn backward_lanes_relu(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: Option<&[A::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[A::Scalar],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        if !self.then.fuses_relu() {
            return false;
        }
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        let g = Some(&mut *mid_grad);
        let fused = self.then.backward_lanes_relu(
            block,
            mid,
            output,
            then,
            grad_output,
            g,
            &mut grads.then,
        );
        debug_assert!(fused, "fuses_relu promised a fused backward pass");
        self.first.backward_lanes(
            block,
            input,
            mid,
            first,
            mid_grad,
            grad_input,
            &mut grads.first,
        );
        true
    }

    fn backward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &[B::Output; N],
        ws: &mut Self::LaneWorkspace,
        grad_output: &[B::Output; N],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) {
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        if B::RELU && self.first.fuses_relu() {
            let (y, g) = (
                B::Output::flat_slice(output),
                B::Output::flat_slice(grad_output),
            );
            let grads = &mut grads.first;
            let fused =
                self.first
                    .backward_lanes_relu(block, input, Some(y), first, g, grad_input, grads);
            debug_assert!(fused, "fuses_relu promised a fused backward pass");
            return;
        }
        if B::MASKS_FOR_FREE && self.first.ends_in_fused_relu() {
            // The later layer hands back the gradient with respect to the fused ReLU's input.
            let g = &mut *mid_grad;
            self.then.backward_lanes_masked(
                block,
                mid,
                output,
                then,
                grad_output,
                g,
                &mut grads.then,
            );
            let fused = self.first.backward_lanes_through_relu(
                block,
                input,
                first,
                A::Output::flat_slice(mid_grad),
                grad_input,
                &mut grads.first,
            );
            debug_assert!(fused, "ends_in_fused_relu promised a fused backward pass");
            return;
        }
        let g = Some(&mut *mid_grad);
        self.then
            .backward_lanes(block, mid, output, then, grad_output, g, &mut grads.then);
        self.first.backward_lanes(
            block,
            input,
            mid,
            first,
            mid_grad,
            grad_input,
            &mut grads.first,
        );
    }
}

crate::zeroable!(impl [A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize]
    for LaneChainWorkspace [A, B, N] { first, mid, mid_grad, then });
