//! A [`Chain`]'s lane passes: block by block, layer by layer, with the layers after a layer
//! that it can apply as it writes (a ReLU, and in inference a 2×2 max pooling after it)
//! passed to it as a [`LaneEpilogue`].

use crate::chain::Chain;
use crate::fusion::LaneEpilogue;
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
    /// The epilogue that `A` applies for `B` and then `epilogue` (`B` itself when
    /// `epilogue` is `None`), if `B` is one and `A` takes it over.
    fn taken_over<const N: usize>(&self, epilogue: Option<LaneEpilogue>) -> Option<LaneEpilogue>
    where
        A: LaneLayer<N>,
        B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
    {
        let own = B::LANE_EPILOGUE?;
        let both = match epilogue {
            Some(e) => e.after(own)?,
            None => own,
        };
        self.first.fuses(both).then_some(both)
    }

    /// `first` then `then`, each with its own fusions (inference if `infer`).
    fn apart<const N: usize>(
        &self,
        block: usize,
        input: &[A::Input; N],
        ws: &mut LaneChainWorkspace<A, B, N>,
        infer: bool,
        then: impl FnOnce(&B, &[A::Output; N], &mut B::LaneWorkspace),
    ) where
        A: LaneLayer<N>,
        B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
    {
        let mid = &mut ws.mid.0;
        if infer {
            self.first.infer_lanes(block, input, mid, &mut ws.first);
        } else {
            self.first.forward_lanes(block, input, mid, &mut ws.first);
        }
        then(&self.then, &ws.mid.0, &mut ws.then);
    }

    /// The forward pass, or the inference pass if `infer`: with `B` taken over by `A` if
    /// `B` is an epilogue that `A` applies (a ReLU; in inference also a pooling after a
    /// chain that ends in one), so that `A`'s output is never written.
    fn run<const N: usize>(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut LaneChainWorkspace<A, B, N>,
        infer: bool,
    ) where
        A: LaneLayer<N>,
        B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
    {
        if let Some(e) = self.taken_over(None)
            && (infer || e.trains())
        {
            let y = B::Output::flat_slice_mut(output);
            let fused = self
                .first
                .forward_lanes_then(block, input, y, &mut ws.first, e, infer);
            debug_assert!(fused, "fuses promised a fused forward pass");
            return;
        }
        self.apart(block, input, ws, infer, |then, mid, ws| {
            if infer {
                then.infer_lanes(block, mid, output, ws);
            } else {
                then.forward_lanes(block, mid, output, ws);
            }
        });
    }
}

/// Block by block, layer by layer.
impl<A, B, const N: usize> LaneLayer<N> for Chain<A, B>
where
    A: LaneLayer<N>,
    B: LaneLayer<N, Scalar = A::Scalar, Input = A::Output>,
{
    type LaneWorkspace = LaneChainWorkspace<A, B, N>;

    const ENDS_IN_RELU: bool = B::ENDS_IN_RELU;

    /// A layer followed by a ReLU that it can apply itself writes the ReLU's output
    /// straight away ([`LaneLayer::forward_lanes_then`]): the maps before the ReLU are
    /// never written.
    fn forward_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        self.run(block, input, output, ws, false);
    }

    /// As [`LaneLayer::forward_lanes`], and a 2×2 max pooling after a layer and its ReLU is
    /// applied by that layer too.
    fn infer_lanes(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::LaneWorkspace,
    ) {
        self.run(block, input, output, ws, true);
    }

    /// `A` applies `B` and `epilogue` if it can (`B` is an epilogue too), or else `B`
    /// applies `epilogue`.
    fn fuses(&self, epilogue: LaneEpilogue) -> bool {
        self.taken_over(Some(epilogue)).is_some() || self.then.fuses(epilogue)
    }

    fn forward_lanes_then(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: &mut [A::Scalar],
        ws: &mut Self::LaneWorkspace,
        epilogue: LaneEpilogue,
        infer: bool,
    ) -> bool {
        if let Some(both) = self.taken_over(Some(epilogue)) {
            return self
                .first
                .forward_lanes_then(block, input, output, &mut ws.first, both, infer);
        }
        // Asked first, with nothing computed: whether the last layer fuses does not depend
        // on its input.
        if !self.then.fuses(epilogue) {
            return false;
        }
        let mut fused = false;
        self.apart(block, input, ws, infer, |then, mid, ws| {
            fused = then.forward_lanes_then(block, mid, output, ws, epilogue, infer);
        });
        fused
    }

    fn backward_lanes_then(
        &self,
        block: usize,
        input: &[A::Input; N],
        output: Option<&[A::Scalar]>,
        ws: &mut Self::LaneWorkspace,
        grad_output: &[A::Scalar],
        epilogue: LaneEpilogue,
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) -> bool {
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        let (g, e) = (grad_output, epilogue);
        if let Some(both) = self.taken_over(Some(e)) {
            let grads = &mut grads.first;
            return self
                .first
                .backward_lanes_then(block, input, output, first, g, both, grad_input, grads);
        }
        if !self.then.fuses(e) {
            return false;
        }
        let gm = Some(&mut *mid_grad);
        let fused =
            (self.then).backward_lanes_then(block, mid, output, then, g, e, gm, &mut grads.then);
        debug_assert!(fused, "fuses promised a fused backward pass");
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

    /// The backward pass of [`LaneLayer::forward_lanes`]'s fusions: from the ReLU's output
    /// if `A` applied it, or, when `B` is a max pooling after a fused ReLU, with the
    /// pooling's input gradient masked by the ReLU as it is written
    /// ([`LaneLayer::backward_lanes_masked`]).
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
        if let Some(e) = self.taken_over(None)
            && e.trains()
        {
            let y = Some(B::Output::flat_slice(output));
            let g = B::Output::flat_slice(grad_output);
            let (ws, grads) = (&mut ws.first, &mut grads.first);
            let fused =
                (self.first).backward_lanes_then(block, input, y, ws, g, e, grad_input, grads);
            debug_assert!(fused, "fuses promised a fused backward pass");
            return;
        }
        let LaneChainWorkspace {
            first,
            mid: CacheLines(mid),
            mid_grad: CacheLines(mid_grad),
            then,
        } = ws;
        let relu = LaneEpilogue::Relu;
        if B::MASKS_FOR_FREE && A::ENDS_IN_RELU && self.first.fuses(relu) {
            // The later layer hands back the gradient with respect to the fused ReLU's
            // input, which `A` starts from.
            let g = &mut *mid_grad;
            (self.then).backward_lanes_masked(
                block,
                mid,
                output,
                then,
                grad_output,
                g,
                &mut grads.then,
            );
            let g = A::Output::flat_slice(mid_grad);
            let grads = &mut grads.first;
            let fused = (self.first)
                .backward_lanes_then(block, input, None, first, g, relu, grad_input, grads);
            debug_assert!(fused, "fuses promised a fused backward pass");
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
