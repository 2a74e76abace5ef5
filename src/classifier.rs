//! What every network that ends in a softmax can do, in one place: probabilities and a class
//! for one sample or a batch, a loss and its gradients, and the fused SGD step. These are
//! methods of `Chain<Net, Softmax<T, C>>`, so [`crate::LeNet5`] and any network written
//! with [`crate::sequential!`] ending in [`Softmax`] have them.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::batch::{BatchChainWorkspace, BatchLayer};
use crate::chain::{Chain, ChainWorkspace};
use crate::fused::SgdLayer;
use crate::layer::Layer;
use crate::loss::{Loss, softmax_loss};
use crate::mode::{Mode, Pass, Train};
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::argmax;

/// What every network that ends in a softmax can do: classify, and back-propagate a loss.
impl<B, T, const N: usize> Chain<B, Softmax<T, N>>
where
    T: Scalar,
    B: Layer<Scalar = T, Output = [T; N]>,
{
    /// Forward pass for inference ([`Layer::infer`]: `ws` is left unfit for a backward
    /// pass); returns the class probabilities.
    pub fn probabilities(
        &self,
        input: &B::Input,
        ws: &mut ChainWorkspace<B, Softmax<T, N>>,
    ) -> [T; N] {
        let mut probs = [T::zero(); N];
        self.infer(input, &mut probs, ws);
        probs
    }

    /// Forward pass; returns the most probable class (the first on ties), or `None` if the
    /// probabilities are NaN (a NaN or an infinity in the input or the weights reached the
    /// softmax): such an input has no class, rather than an arbitrary one (see [`argmax`]).
    pub fn classify(
        &self,
        input: &B::Input,
        ws: &mut ChainWorkspace<B, Softmax<T, N>>,
    ) -> Option<usize> {
        argmax(&self.probabilities(input, ws))
    }

    /// Forward pass, `loss` against class `label`, and backward pass: adds this sample's
    /// parameter gradients to `grads`, writes the input gradient if asked, and returns the
    /// loss. Cross-entropy is fused with the softmax (gradient `p − onehot` straight to the
    /// logits); the half-SSE goes back through the softmax. Panics if `label >= N`.
    pub fn backprop(
        &self,
        input: &B::Input,
        label: usize,
        loss: Loss,
        ws: &mut ChainWorkspace<B, Softmax<T, N>>,
        grads: &mut Self,
        grad_input: Option<&mut B::Input>,
    ) -> T {
        assert!(
            label < N,
            "backprop: label {label} is not below the class count {N}"
        );
        let ChainWorkspace {
            first,
            mid: logits,
            mid_grad,
            then: probs,
        } = ws;
        self.first.forward(input, logits, first);
        let value = softmax_loss(logits, label, loss, probs, mid_grad);
        self.first
            .backward(input, first, mid_grad, grad_input, &mut grads.first);
        value
    }
}

/// Batched classification and training for every network that ends in a softmax.
impl<Net, T, const C: usize> Chain<Net, Softmax<T, C>>
where
    T: Scalar,
    Net: Layer<Scalar = T, Output = [T; C]>,
{
    /// A zeroed workspace for batches of `N` on the heap (LeNet-5 in `f32`: ≈ 300 KiB per
    /// sample at `N` = 16, 266 KiB at 64).
    #[cfg(feature = "alloc")]
    pub fn batch_workspace<const N: usize>() -> Box<<Self as BatchLayer<N>>::BatchWorkspace>
    where
        Net: BatchLayer<N>,
    {
        crate::zeroed_box()
    }

    /// Forward pass of `N` samples, then `loss` against `labels` and the backward pass: adds
    /// the batch's summed parameter gradients to `grads` and returns the summed loss.
    /// The batched [`Chain::backprop`]. Panics if a label is not below `C`.
    pub fn backprop_batch<const N: usize>(
        &self,
        inputs: &[Net::Input; N],
        labels: &[usize; N],
        loss: Loss,
        ws: &mut <Self as BatchLayer<N>>::BatchWorkspace,
        grads: &mut Self,
    ) -> T
    where
        Net: BatchLayer<N>,
    {
        self.backprop_batch_in(&Pass::<Train>::DEFAULT, inputs, labels, loss, ws, grads)
    }

    /// [`Chain::backprop_batch`] with its forward pass in the mode and with the seed that
    /// `pass` gives (see [`crate::mode`]): the trainer passes each step's seed, so that
    /// dropout masks differ between steps and samples.
    pub fn backprop_batch_in<M: Mode, const N: usize>(
        &self,
        pass: &Pass<M>,
        inputs: &[Net::Input; N],
        labels: &[usize; N],
        loss: Loss,
        ws: &mut <Self as BatchLayer<N>>::BatchWorkspace,
        grads: &mut Self,
    ) -> T
    where
        Net: BatchLayer<N>,
    {
        let BatchChainWorkspace {
            first,
            mid: logits,
            mid_grad,
            then: probs,
        } = ws;
        self.first.forward_batch_in(pass, inputs, logits, first);
        let mut total = T::zero();
        for n in 0..N {
            let label = labels[n];
            assert!(
                label < C,
                "backprop_batch: label {label} is not below the class count {C}"
            );
            total = total + softmax_loss(&logits[n], label, loss, &mut probs[n], &mut mid_grad[n]);
        }
        self.first
            .backward_batch(inputs, first, mid_grad, None, &mut grads.first);
        total
    }

    /// The most probable class of each of `N` samples, `None` for a sample whose
    /// probabilities are NaN (see [`crate::argmax`]).
    pub fn classify_batch<const N: usize>(
        &self,
        inputs: &[Net::Input; N],
        ws: &mut <Self as BatchLayer<N>>::BatchWorkspace,
    ) -> [Option<usize>; N]
    where
        Net: BatchLayer<N>,
    {
        self.first.infer_batch(inputs, &mut ws.mid, &mut ws.first);
        core::array::from_fn(|n| crate::tensor::argmax(&ws.mid[n]))
    }
}

impl<Net, T, const C: usize> Chain<Net, Softmax<T, C>>
where
    T: Scalar,
    Net: SgdLayer<Scalar = T, Output = [T; C]>,
{
    /// One plain-SGD training step on one sample: forward pass, `loss` against `label`, and
    /// a backward pass that updates every parameter by `−lr · ∂E/∂w` as it goes. Returns the
    /// loss before the update. The same as clearing a gradient buffer,
    /// [`Chain::backprop`] and [`Sgd::step`](crate::Sgd::step), without the buffer.
    /// Panics if `label >= C`.
    pub fn train_sgd(
        &mut self,
        input: &Net::Input,
        label: usize,
        loss: Loss,
        lr: T,
        ws: &mut ChainWorkspace<Net, Softmax<T, C>>,
    ) -> T {
        assert!(
            label < C,
            "train_sgd: label {label} is not below the class count {C}"
        );
        let ChainWorkspace {
            first,
            mid: logits,
            mid_grad,
            then: probs,
        } = ws;
        self.first.forward(input, logits, first);
        let value = softmax_loss(logits, label, loss, probs, mid_grad);
        self.first.backward_sgd(input, first, mid_grad, None, lr);
        value
    }
}
