//! A layer without its bias: the convolutions of ResNet, GoogLeNet and DenseNet, which batch
//! normalisation follows (`nn.Conv2d(…, bias=False)`).

use core::fmt;
use core::ops::{Deref, DerefMut};

use num_traits::Zero;
use rand::Rng;

use crate::batch::BatchLayer;
use crate::fusion::{ChannelAffine, Fusion};
use crate::layer::{Activation, Layer, Shape, TensorKind, no_such_param};
use crate::mode::{Mode, Pass};

/// Layer `L` (a [`Conv2d`](crate::Conv2d) or [`Linear`](crate::Linear), whose parameters are
/// `weight` then `bias`) with its bias fixed at zero and left out of its parameters: it is
/// neither trained, nor saved, nor loaded, and a PyTorch `state_dict` of a `bias=False`
/// layer has no `bias` to give it. The layer still runs `L`'s kernels, which add the zero.
///
/// ```
/// use constnet::{Conv2d, Layer, NoBias, tensor_names, zeroed_box};
/// use rand::SeedableRng;
/// type Conv = NoBias<Conv2d<f32, 3, 8, 3, 1, 1, 8, 8, 8, 8>>;
/// assert_eq!(<Conv as Layer>::PARAM_TENSORS, 1);
/// assert_eq!(tensor_names::<Conv>(), ["weight"]);
/// let mut conv = zeroed_box::<Conv>();
/// conv.init(&mut rand::rngs::StdRng::seed_from_u64(0));
/// assert_eq!(conv.param_count(), 8 * 3 * 3 * 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NoBias<L>(pub L);

impl<L> Deref for NoBias<L> {
    type Target = L;
    fn deref(&self) -> &L {
        &self.0
    }
}

impl<L> DerefMut for NoBias<L> {
    fn deref_mut(&mut self) -> &mut L {
        &mut self.0
    }
}

impl<L: Layer> NoBias<L> {
    /// Sets the hidden bias back to zero (after `L`'s own initialisation, or a gradient step
    /// on `L` directly).
    fn zero_bias(&mut self) {
        self.0.param_mut(1).fill(L::Scalar::zero());
    }
}

fn weight_only(i: usize) -> usize {
    if i != 0 {
        no_such_param("NoBias", i);
    }
    0
}

impl<L: Layer> Layer for NoBias<L> {
    type Scalar = L::Scalar;
    type Input = L::Input;
    type Output = L::Output;
    type Workspace = L::Workspace;
    const CHECK: () = assert!(
        L::PARAM_TENSORS == 2,
        "NoBias: the layer must have exactly two parameters, weight and bias"
    );
    const PARAM_TENSORS: usize = 1;

    fn forward(&self, x: &L::Input, y: &mut L::Output, ws: &mut L::Workspace) {
        self.0.forward(x, y, ws);
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
    ) {
        self.0.forward_in(pass, x, y, ws);
    }

    fn infer(&self, x: &L::Input, y: &mut L::Output, ws: &mut L::Workspace) {
        self.0.infer(x, y, ws);
    }

    const APPLIES_EPILOGUES: bool = L::APPLIES_EPILOGUES;

    fn infer_fused(
        &self,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.0.infer_fused(x, y, ws, fusion);
    }

    fn channel_affine<R>(&self, f: impl FnOnce(ChannelAffine<'_, L::Scalar>) -> R) -> Option<R> {
        self.0.channel_affine(f)
    }

    const APPLIES_CHANNEL_AFFINE: bool = L::APPLIES_CHANNEL_AFFINE;

    /// `L`'s backward pass; the bias gradient it adds to `grads` is never read (the
    /// optimizer sees only the weight).
    fn backward(
        &self,
        x: &L::Input,
        ws: &mut L::Workspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut Self,
    ) {
        self.0.backward(x, ws, g, gi, &mut grads.0);
    }

    fn param(&self, i: usize) -> &[L::Scalar] {
        self.0.param(weight_only(i))
    }

    fn param_mut(&mut self, i: usize) -> &mut [L::Scalar] {
        self.0.param_mut(weight_only(i))
    }

    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        L::tensor_name(kind, i, out)
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        self.0.tensor_shape(kind, i)
    }

    fn activation<'a>(ws: &'a L::Workspace, name: &str) -> Option<Activation<'a, L::Scalar>> {
        L::activation(ws, name)
    }

    /// `L`'s initialisation, then the bias set to zero.
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.0.init(rng);
        self.zero_bias();
    }

    /// Visits the wrapped layer.
    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.0.visit_layers_mut(visit);
    }

    /// Also zeroes the hidden bias of a gradient value, so sums of gradients stay finite.
    fn zero_params(&mut self) {
        self.0.zero_params();
    }
}

impl<L: BatchLayer<N>, const N: usize> BatchLayer<N> for NoBias<L> {
    type BatchWorkspace = L::BatchWorkspace;
    const WHOLE_BATCH: bool = L::WHOLE_BATCH;
    const INFER_WHOLE_BATCH: bool = L::INFER_WHOLE_BATCH;

    fn infer_sample_fused(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.0.infer_sample_fused(n, x, y, ws, fusion);
    }

    fn infer_batch_fused(
        &self,
        x: &[L::Input; N],
        y: &mut [L::Output; N],
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.0.infer_batch_fused(x, y, ws, fusion);
    }

    fn forward_batch(
        &self,
        x: &[L::Input; N],
        y: &mut [L::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.forward_batch(x, y, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &[L::Input; N],
        y: &mut [L::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.forward_batch_in(pass, x, y, ws);
    }

    fn backward_batch(
        &self,
        x: &[L::Input; N],
        ws: &mut Self::BatchWorkspace,
        g: &[L::Output; N],
        gi: Option<&mut [L::Input; N]>,
        grads: &mut Self,
    ) {
        self.0.backward_batch(x, ws, g, gi, &mut grads.0);
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.0.prepare_forward(ws);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.0.prepare_backward(ws);
    }

    fn infer_batch(
        &self,
        x: &[L::Input; N],
        y: &mut [L::Output; N],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.infer_batch(x, y, ws);
    }

    fn forward_sample(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.forward_sample(n, x, y, ws);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.forward_sample_in(pass, n, x, y, ws);
    }

    fn infer_sample(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.0.infer_sample(n, x, y, ws);
    }

    fn backward_sample(
        &self,
        n: usize,
        x: &L::Input,
        ws: &mut Self::BatchWorkspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut Self,
    ) {
        self.0.backward_sample(n, x, ws, g, gi, &mut grads.0);
    }
}

crate::zeroable!(impl [L: crate::zeroed::Zeroable] for NoBias [L] (_0));
