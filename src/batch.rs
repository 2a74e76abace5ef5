//! Mini-batches as one pass: `N` samples through each layer before the next layer.
//!
//! [`BatchLayer<N>`] is implemented by every layer and by every [`Chain`] of them. Most layers
//! just run their per-sample pass `N` times; a stack wrapped in [`Lanes`](crate::Lanes) runs
//! 16 samples per vector with AVX-512 (LeNet-5's layers before the softmax);
//! [`Linear`](crate::Linear) turns the batch into a small matrix product, which reads each
//! weight once per batch instead of once per sample (at batch 1 LeNet-5's fully connected
//! layers are bound by streaming their 244 KB of weights). The batch size is a const
//! generic, so every buffer is still fixed-size and nothing allocates.
//!
//! ```
//! use constnet::{BatchLayer, LeNet5, Loss, Sgd, zeroed_box};
//! use rand::SeedableRng;
//!
//! const N: usize = 8;
//! let mut net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(3));
//! let mut grads = zeroed_box::<LeNet5<f32>>();
//! let mut ws = LeNet5::<f32>::batch_workspace::<N>();
//! let mut images = zeroed_box::<[constnet::Image<f32>; N]>();
//! for (n, image) in images.iter_mut().enumerate() {
//!     image[0][4 + n][4..28].fill(1.0); // a stroke at a different height per image
//! }
//! let labels = [0, 1, 2, 3, 4, 5, 6, 7];
//! let before = net.backprop_batch(&images, &labels, Loss::CrossEntropy, &mut ws, &mut grads);
//! for _ in 0..10 {
//!     constnet::Layer::zero_params(&mut *grads);
//!     net.backprop_batch(&images, &labels, Loss::CrossEntropy, &mut ws, &mut grads);
//!     Sgd { lr: 0.05 / N as f32 }.step(&mut *net, &grads);
//! }
//! let after = net.backprop_batch(&images, &labels, Loss::CrossEntropy, &mut ws, &mut grads);
//! assert!(after < before);
//! let mut probs = [[0.0f32; 10]; N];
//! net.infer_batch(&images, &mut probs, &mut ws); // forward only: nothing kept for backward
//! assert!(net.classify_batch(&images, &mut ws).iter().all(|&class| class < Some(10)));
//! ```

use crate::chain::{Chain, backward_at, forward_at, infer_at};
use crate::fusion::Fusion;
use crate::layer::Layer;
use crate::mode::{Mode, Pass, Train};
use crate::place::Place;
use crate::tensor::Tensor;
use crate::zeroed::Zeroable;

/// A layer that can run `N` samples in one pass.
///
/// Results equal `N` calls of [`Layer::forward`] / [`Layer::backward`] (up to the order of
/// floating-point sums in the `f32` fast paths): outputs and input gradients per sample,
/// parameter gradients *added* to `grads` for all samples. No method allocates.
pub trait BatchLayer<const N: usize>: Layer {
    /// What the batched forward keeps for the batched backward, fixed-size.
    type BatchWorkspace: Zeroable + Send + Sync + 'static;

    /// Computes `output[n]` from `input[n]` for every sample.
    fn forward_batch(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    );

    /// [`BatchLayer::forward_batch`] in the mode and with the seed that `pass` gives (see
    /// [`crate::mode`]); sample `n` runs with `pass.offset(n)`. Layers that behave the same
    /// in both modes need not implement it; combinators pass it on.
    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        let _ = pass;
        self.forward_batch(input, output, ws);
    }

    /// Back-propagates every sample's `grad_output`; `input` and `ws` must be those of the latest
    /// [`BatchLayer::forward_batch`] (or
    /// [`BatchLayer::forward_batch_in`]).
    fn backward_batch(
        &self,
        input: &[Self::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[Self::Output; N],
        grad_input: Option<&mut [Self::Input; N]>,
        grads: &mut Self,
    );

    /// Readies `ws` for [`BatchLayer::forward_sample`] calls over one batch (a convolution
    /// packs its weights for its kernels once per batch). [`BatchLayer::forward_batch`] and
    /// [`BatchLayer::infer_batch`] call it themselves; call it before driving
    /// `forward_sample` by hand, and again after the parameters change.
    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        let _ = ws;
    }

    /// Readies `ws` for [`BatchLayer::backward_sample`] calls over one batch (see
    /// [`BatchLayer::prepare_forward`]); [`BatchLayer::backward_batch`] calls it itself.
    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        let _ = ws;
    }

    /// Whether this layer gains from seeing the whole batch at once (a
    /// [`Linear`](crate::Linear) reads its weights once per batch rather than once per sample).
    const WHOLE_BATCH: bool = false;

    /// The forward pass for inference only: the same outputs as
    /// [`BatchLayer::forward_batch`], but `ws` is left unfit for a backward pass. A chain of
    /// layers that do not gain from the whole batch (LeNet-5's convolutions and poolings) runs
    /// it sample by sample in the buffers of the first sample, which stay in cache, instead
    /// of writing every sample's activations to memory (inside two threads' `within_layers`,
    /// layer by layer, each call shared out by samples).
    fn infer_batch(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch(input, output, ws);
    }

    /// Whether [`BatchLayer::infer_batch`] gains from the whole batch at once: as
    /// [`BatchLayer::WHOLE_BATCH`], but batch norm, which needs the batch only to train,
    /// does not, so that a chain with it infers sample by sample, each sample's activations
    /// in cache, with its fusions ([`BatchLayer::infer_sample_fused`]).
    const INFER_WHOLE_BATCH: bool = Self::WHOLE_BATCH;

    /// [`BatchLayer::infer_sample`], then `fusion`'s maps on the output: [`Layer::infer_fused`]
    /// for sample `n` of a batch. Layers that apply them as they write do (a convolution,
    /// batch norm, residual adds, chains); the default runs them as a pass.
    fn infer_sample_fused(
        &self,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, Self::Scalar>,
    ) {
        self.infer_sample(n, input, output, ws);
        fusion.apply(output.flat_mut());
    }

    /// [`BatchLayer::infer_batch`], then `fusion`'s maps on every sample's output: what
    /// [`Layer::infer_fused`] is for one sample, for the whole batch at once. Layers that
    /// apply them as they write do (a convolution on its sums, batch norm, residual adds,
    /// chains); the default runs them as a pass after.
    fn infer_batch_fused(
        &self,
        input: &[Self::Input; N],
        output: &mut [Self::Output; N],
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, Self::Scalar>,
    ) {
        self.infer_batch(input, output, ws);
        for y in output {
            fusion.apply(y.flat_mut());
        }
    }

    /// The forward pass of one sample, keeping what it computes in slot `n` of the batch
    /// workspace.
    fn forward_sample(
        &self,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    );

    /// [`BatchLayer::forward_sample`] in the mode that `pass`, the batch's pass, gives: the
    /// sample runs with `pass.offset(n)`.
    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        let _ = pass;
        self.forward_sample(n, input, output, ws);
    }

    /// [`Layer::infer`] of one sample in slot `n` of the batch workspace (see
    /// [`BatchLayer::infer_batch`]).
    fn infer_sample(
        &self,
        n: usize,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_sample(n, input, output, ws);
    }

    /// The backward pass of sample `n` alone, after a forward pass that kept it in slot `n`.
    /// Chains pass gradients between their layers in slot 0, which stays in cache.
    fn backward_sample(
        &self,
        n: usize,
        input: &Self::Input,
        ws: &mut Self::BatchWorkspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    );
}

/// What a [`Chain`]'s batched passes keep: both parts' batch workspaces and the whole
/// batch's intermediate activations and their gradients.
pub struct BatchChainWorkspace<
    A: BatchLayer<N>,
    B: BatchLayer<N, Input = A::Output>,
    const N: usize,
> {
    /// Batch workspace of the first layer(s).
    pub first: A::BatchWorkspace,
    /// Output of `first` for every sample.
    pub mid: [A::Output; N],
    /// Gradient with respect to `mid` for every sample.
    pub mid_grad: [A::Output; N],
    /// Batch workspace of the later layer.
    pub then: B::BatchWorkspace,
}

impl<A, B, const N: usize> BatchLayer<N> for Chain<A, B>
where
    A: BatchLayer<N>,
    B: BatchLayer<N, Scalar = A::Scalar, Input = A::Output>,
{
    type BatchWorkspace = BatchChainWorkspace<A, B, N>;

    /// Layer by layer if some layer gains from the whole batch, else sample by sample
    /// (each sample's activations are read again while still in cache).
    fn forward_batch(
        &self,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_batch_in(&Pass::<Train>::DEFAULT, input, output, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        if Self::WHOLE_BATCH {
            let BatchChainWorkspace {
                first, mid, then, ..
            } = ws;
            let parts = (&self.first, &self.then);
            forward_at(&Whole::<N>, pass, parts, input, output, (first, mid, then));
        } else {
            self.prepare_forward(ws);
            for (n, (x, y)) in input.iter().zip(output.iter_mut()).enumerate() {
                self.forward_sample_in(pass, n, x, y, ws);
            }
        }
    }

    const WHOLE_BATCH: bool = A::WHOLE_BATCH || B::WHOLE_BATCH;

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.first.prepare_forward(&mut ws.first);
        self.then.prepare_forward(&mut ws.then);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.first.prepare_backward(&mut ws.first);
        self.then.prepare_backward(&mut ws.then);
    }

    const INFER_WHOLE_BATCH: bool = A::INFER_WHOLE_BATCH || B::INFER_WHOLE_BATCH;

    /// See [`BatchLayer::infer_batch_fused`].
    fn infer_batch(
        &self,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.infer_batch_fused(input, output, ws, Fusion::NONE);
    }

    /// Layer by layer if some layer's inference gains from the whole batch, with the
    /// fusions of [`Layer::infer_fused`] on the whole batch; else sample by sample in the
    /// first sample's buffers. Inside [`crate::threads::within_layers`]`(2, ..)` layer by
    /// layer, each convolution giving each thread half the samples (ResNet-20's batch of 64:
    /// 1.7–1.8× one thread, 1.07× sample by sample); the same bits as one thread.
    fn infer_batch_fused(
        &self,
        input: &[A::Input; N],
        output: &mut [B::Output; N],
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, A::Scalar>,
    ) {
        #[cfg(feature = "std")]
        let whole = Self::INFER_WHOLE_BATCH || crate::threads::layer_threads() > 1;
        #[cfg(not(feature = "std"))]
        let whole = Self::INFER_WHOLE_BATCH;
        if whole {
            let BatchChainWorkspace {
                first, mid, then, ..
            } = ws;
            let parts = (&self.first, &self.then);
            infer_at(
                &Whole::<N>,
                parts,
                input,
                output,
                (first, mid, then),
                fusion,
            );
        } else {
            self.prepare_forward(ws);
            for (x, y) in input.iter().zip(output.iter_mut()) {
                self.infer_sample_fused(0, x, y, ws, fusion);
            }
        }
    }

    fn forward_sample(
        &self,
        n: usize,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.forward_sample_in(&Pass::<Train>::DEFAULT, n, input, output, ws);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        let BatchChainWorkspace {
            first, mid, then, ..
        } = ws;
        let (parts, buffers) = ((&self.first, &self.then), (first, &mut mid[n], then));
        forward_at(&Slot::<N>(n), pass, parts, input, output, buffers);
    }

    fn infer_sample(
        &self,
        n: usize,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.infer_sample_fused(n, input, output, ws, Fusion::NONE);
    }

    /// The fusions of [`Layer::infer_fused`] for one sample: batch norm in the convolution
    /// before it, a ReLU in the layer before it; what is fused is not written to `ws`.
    fn infer_sample_fused(
        &self,
        n: usize,
        input: &A::Input,
        output: &mut B::Output,
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, A::Scalar>,
    ) {
        let BatchChainWorkspace {
            first, mid, then, ..
        } = ws;
        let parts = (&self.first, &self.then);
        let buffers = (first, &mut mid[n], then);
        infer_at(&Slot::<N>(n), parts, input, output, buffers, fusion);
    }

    fn backward_batch(
        &self,
        input: &[A::Input; N],
        ws: &mut Self::BatchWorkspace,
        grad_output: &[B::Output; N],
        grad_input: Option<&mut [A::Input; N]>,
        grads: &mut Self,
    ) {
        if !Self::WHOLE_BATCH {
            // Sample by sample: the gradients between layers never leave the cache.
            self.prepare_backward(ws);
            match grad_input {
                Some(gi) => {
                    for (n, ((x, g), gi)) in input.iter().zip(grad_output).zip(gi).enumerate() {
                        self.backward_sample(n, x, ws, g, Some(gi), grads);
                    }
                }
                None => {
                    for (n, (x, g)) in input.iter().zip(grad_output).enumerate() {
                        self.backward_sample(n, x, ws, g, None, grads);
                    }
                }
            }
            return;
        }
        let BatchChainWorkspace {
            first,
            mid,
            mid_grad,
            then,
        } = ws;
        let (parts, buffers) = ((&self.first, &self.then), (first, &*mid, mid_grad, then));
        backward_at(
            &Whole::<N>,
            parts,
            input,
            None,
            buffers,
            grad_output,
            grad_input,
            grads,
        );
    }

    fn backward_sample(
        &self,
        n: usize,
        input: &A::Input,
        ws: &mut Self::BatchWorkspace,
        grad_output: &B::Output,
        grad_input: Option<&mut A::Input>,
        grads: &mut Self,
    ) {
        let BatchChainWorkspace {
            first,
            mid,
            mid_grad,
            then,
        } = ws;
        // The gradient between the parts in slot 0, which stays in cache.
        let buffers = (first, &mid[n], &mut mid_grad[0], then);
        let parts = (&self.first, &self.then);
        backward_at(
            &Slot::<N>(n),
            parts,
            input,
            None,
            buffers,
            grad_output,
            grad_input,
            grads,
        );
    }
}

/// One sample in slot `n` of a batch's workspace ([`BatchLayer::infer_sample_fused`]).
pub(crate) struct Slot<const N: usize>(pub(crate) usize);

impl<L: BatchLayer<N>, const N: usize> Place<L> for Slot<N> {
    type Ws = L::BatchWorkspace;
    type In = L::Input;
    type Out = L::Output;

    #[inline(always)]
    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        layer: &L,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::BatchWorkspace,
    ) {
        layer.forward_sample_in(pass, self.0, x, y, ws);
    }

    #[inline(always)]
    fn backward(
        &self,
        layer: &L,
        x: &L::Input,
        _: Option<&L::Output>,
        ws: &mut L::BatchWorkspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut L,
    ) {
        layer.backward_sample(self.0, x, ws, g, gi, grads);
    }

    #[inline(always)]
    fn infer(&self, layer: &L, x: &L::Input, y: &mut L::Output, ws: &mut L::BatchWorkspace) {
        layer.infer_sample(self.0, x, y, ws);
    }

    #[inline(always)]
    fn infer_fused(
        &self,
        layer: &L,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::BatchWorkspace,
        f: Fusion<'_, L::Scalar>,
    ) {
        layer.infer_sample_fused(self.0, x, y, ws, f);
    }

    fn apply(&self, y: &mut L::Output, f: Fusion<'_, L::Scalar>) {
        f.apply(y.flat_mut());
    }

    #[inline(always)]
    fn out_from_flat_mut(y: &mut [L::Scalar]) -> Option<&mut L::Output> {
        L::Output::from_flat_mut(y)
    }

    #[inline(always)]
    fn flat_in(x: &L::Input) -> &[L::Scalar] {
        x.flat()
    }

    #[inline(always)]
    fn flat_in_mut(x: &mut L::Input) -> &mut [L::Scalar] {
        x.flat_mut()
    }

    #[inline(always)]
    fn flat_out(y: &L::Output) -> &[L::Scalar] {
        y.flat()
    }

    #[inline(always)]
    fn flat_out_mut(y: &mut L::Output) -> &mut [L::Scalar] {
        y.flat_mut()
    }
}

/// A whole batch of `N` samples at once ([`BatchLayer::infer_batch_fused`]).
pub(crate) struct Whole<const N: usize>;

impl<L: BatchLayer<N>, const N: usize> Place<L> for Whole<N> {
    type Ws = L::BatchWorkspace;
    type In = [L::Input; N];
    type Out = [L::Output; N];

    #[inline(always)]
    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut L::BatchWorkspace,
    ) {
        layer.forward_batch_in(pass, x, y, ws);
    }

    #[inline(always)]
    fn backward(
        &self,
        layer: &L,
        x: &Self::In,
        _: Option<&Self::Out>,
        ws: &mut L::BatchWorkspace,
        g: &Self::Out,
        gi: Option<&mut Self::In>,
        grads: &mut L,
    ) {
        layer.backward_batch(x, ws, g, gi, grads);
    }

    #[inline(always)]
    fn infer(&self, layer: &L, x: &Self::In, y: &mut Self::Out, ws: &mut L::BatchWorkspace) {
        layer.infer_batch(x, y, ws);
    }

    #[inline(always)]
    fn infer_fused(
        &self,
        layer: &L,
        x: &Self::In,
        y: &mut Self::Out,
        ws: &mut L::BatchWorkspace,
        f: Fusion<'_, L::Scalar>,
    ) {
        layer.infer_batch_fused(x, y, ws, f);
    }

    fn apply(&self, y: &mut Self::Out, f: Fusion<'_, L::Scalar>) {
        for y in y {
            f.apply(y.flat_mut());
        }
    }

    #[inline(always)]
    fn out_from_flat_mut(y: &mut [L::Scalar]) -> Option<&mut Self::Out> {
        L::Output::batch_from_flat_mut::<N>(y)
    }

    #[inline(always)]
    fn flat_in(x: &Self::In) -> &[L::Scalar] {
        Tensor::flat_slice(x)
    }

    #[inline(always)]
    fn flat_in_mut(x: &mut Self::In) -> &mut [L::Scalar] {
        Tensor::flat_slice_mut(x)
    }

    #[inline(always)]
    fn flat_out(y: &Self::Out) -> &[L::Scalar] {
        Tensor::flat_slice(y)
    }

    #[inline(always)]
    fn flat_out_mut(y: &mut Self::Out) -> &mut [L::Scalar] {
        Tensor::flat_slice_mut(y)
    }
}

crate::zeroable!(impl [A: BatchLayer<N>, B: BatchLayer<N, Input = A::Output>, const N: usize]
    for BatchChainWorkspace [A, B, N] { first, mid, mid_grad, then });
