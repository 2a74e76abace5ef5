//! GoogLeNet (Inception v1, Szegedy et al. 2014) as torchvision's `googlenet` builds it
//! without its auxiliary classifiers ([`GoogLeNet`]) and with them ([`GoogLeNetAux`], for
//! training): every convolution a `BasicConv2d` (convolution without
//! bias → batch norm with eps 0.001 → ReLU), the "5×5" branch a 3×3 convolution, ceil-mode
//! poolings.
//!
//! ```text
//! 3×224×224 → conv1 7×7/2 64 → maxpool1 3/2 ceil                      64×56×56
//!           → conv2 1×1 64 → conv3 3×3 192 → maxpool2 3/2 ceil         192×28×28
//!           → inception3a → 3b → maxpool3 3/2 ceil                     480×14×14
//!           → inception4a → 4b → 4c → 4d → 4e → maxpool4 2/2 ceil      832×7×7
//!           → inception5a → 5b → avgpool (global) → dropout 0.2       1024
//!           → fc 1000 → softmax
//! ```

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::batch::BatchLayer;
use crate::loss::cross_entropy_with_logits;
use crate::mode::{Pass, Train};
use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    AdaptiveAvgPool2d, BatchNorm2d, Block, Concat, Conv2d, Dropout, Eps1e3, Flatten,
    GlobalAvgPool2d, Linear, MaxPool2d, Named, NoBias, Relu, Tap, name, sequential,
};

name!(
    /// A `BasicConv2d`'s convolution.
    pub Conv = "conv"
);
name!(
    /// A `BasicConv2d`'s batch norm.
    pub Bn = "bn"
);
name!(
    /// The 1×1 branch of an Inception module.
    pub Branch1 = "branch1"
);
name!(
    /// The 1×1 → 3×3 branch.
    pub Branch2 = "branch2"
);
name!(
    /// The 1×1 → 3×3 branch that the paper has as 1×1 → 5×5.
    pub Branch3 = "branch3"
);
name!(
    /// The pooling → 1×1 branch.
    pub Branch4 = "branch4"
);

/// torchvision's `BasicConv2d`: a `K`×`K` convolution with stride `S`, padding `P` and no
/// bias from `CI` to `CO` channels, batch norm with eps 0.001, ReLU.
pub type BasicConv2d<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const OH: usize,
> = sequential![
    Named<Conv, NoBias<Conv2d<T, CI, CO, K, S, P, H, H, OH, OH>>>,
    Named<Bn, BatchNorm2d<T, CO, OH, OH, Eps1e3>>,
    Relu<Maps<T, CO, OH, OH>>,
];

type Unit<T, const CI: usize, const CO: usize, const K: usize, const P: usize, const H: usize> =
    BasicConv2d<T, CI, CO, K, 1, P, H, H>;

/// torchvision's `Inception(CI, C1, C3R, C3, C5R, C5, PP)` on `H`×`H` maps: the
/// concatenation of a 1×1 convolution (`C1`), 1×1 (`C3R`) → 3×3 (`C3`), 1×1 (`C5R`) → 3×3
/// (`C5`; the paper's 5×5), and 3×3 max pooling (stride 1, ceil mode) → 1×1 (`PP`). `CO`
/// must be `C1 + C3 + C5 + PP`, which the compiler checks.
pub type Inception<
    T,
    const CI: usize,
    const C1: usize,
    const C3R: usize,
    const C3: usize,
    const C5R: usize,
    const C5: usize,
    const PP: usize,
    const CO: usize,
    const H: usize,
> = Concat<
    (
        Named<Branch1, Unit<T, CI, C1, 1, 0, H>>,
        Named<
            Branch2,
            sequential![
                Block<Unit<T, CI, C3R, 1, 0, H>>,
                Block<Unit<T, C3R, C3, 3, 1, H>>
            ],
        >,
        Named<
            Branch3,
            sequential![
                Block<Unit<T, CI, C5R, 1, 0, H>>,
                Block<Unit<T, C5R, C5, 3, 1, H>>
            ],
        >,
        Named<
            Branch4,
            sequential![MaxPool2d<T, CI, H, H, 3, 1, H, H, 1, true>, Block<Unit<T, CI, PP, 1, 0, H>>],
        >,
    ),
    Maps<T, CO, H, H>,
>;

name!(
    /// The stem's 7×7 convolution.
    pub Conv1 = "conv1"
);
name!(
    /// The stem's 1×1 convolution.
    pub Conv2 = "conv2"
);
name!(
    /// The stem's 3×3 convolution.
    pub Conv3 = "conv3"
);
name!(
    /// The pooling after `conv1`.
    pub Maxpool1 = "maxpool1"
);
name!(
    /// The pooling after `conv3`.
    pub Maxpool2 = "maxpool2"
);
name!(
    /// The pooling after `inception3b`.
    pub Maxpool3 = "maxpool3"
);
name!(
    /// The pooling after `inception4e`.
    pub Maxpool4 = "maxpool4"
);
name!(
    /// Inception module 3a.
    pub Inception3a = "inception3a"
);
name!(
    /// Inception module 3b.
    pub Inception3b = "inception3b"
);
name!(
    /// Inception module 4a.
    pub Inception4a = "inception4a"
);
name!(
    /// Inception module 4b.
    pub Inception4b = "inception4b"
);
name!(
    /// Inception module 4c.
    pub Inception4c = "inception4c"
);
name!(
    /// Inception module 4d.
    pub Inception4d = "inception4d"
);
name!(
    /// Inception module 4e.
    pub Inception4e = "inception4e"
);
name!(
    /// Inception module 5a.
    pub Inception5a = "inception5a"
);
name!(
    /// Inception module 5b.
    pub Inception5b = "inception5b"
);
name!(
    /// The global average pooling.
    pub Avgpool = "avgpool"
);
name!(
    /// The dropout before `fc`.
    pub DropoutName = "dropout"
);
name!(
    /// The classifier.
    pub Fc = "fc"
);

type CeilPool<T, const C: usize, const K: usize, const H: usize, const OH: usize> =
    MaxPool2d<T, C, H, H, K, 2, OH, OH, 0, true>;

/// GoogLeNet from the image to `inception4a`, whose output the first auxiliary head reads.
pub type ToInception4a<T> = sequential![
    Named<Conv1, BasicConv2d<T, 3, 64, 7, 2, 3, 224, 112>>,
    Named<Maxpool1, CeilPool<T, 64, 3, 112, 56>>,
    Named<Conv2, BasicConv2d<T, 64, 64, 1, 1, 0, 56, 56>>,
    Named<Conv3, BasicConv2d<T, 64, 192, 3, 1, 1, 56, 56>>,
    Named<Maxpool2, CeilPool<T, 192, 3, 56, 28>>,
    Named<Inception3a, Inception<T, 192, 64, 96, 128, 16, 32, 32, 256, 28>>,
    Named<Inception3b, Inception<T, 256, 128, 128, 192, 32, 96, 64, 480, 28>>,
    Named<Maxpool3, CeilPool<T, 480, 3, 28, 14>>,
    Named<Inception4a, Inception<T, 480, 192, 96, 208, 16, 48, 64, 512, 14>>,
];

/// `inception4b` to `inception4d`, whose output the second auxiliary head reads.
pub type ToInception4d<T> = sequential![
    Named<Inception4b, Inception<T, 512, 160, 112, 224, 24, 64, 64, 512, 14>>,
    Named<Inception4c, Inception<T, 512, 128, 128, 256, 24, 64, 64, 512, 14>>,
    Named<Inception4d, Inception<T, 512, 112, 144, 288, 32, 64, 64, 528, 14>>,
];

/// `inception4e` to the logits.
pub type ToLogits<T> = sequential![
    Named<Inception4e, Inception<T, 528, 256, 160, 320, 32, 128, 128, 832, 14>>,
    Named<Maxpool4, CeilPool<T, 832, 2, 14, 7>>,
    Named<Inception5a, Inception<T, 832, 256, 160, 320, 32, 128, 128, 832, 7>>,
    Named<Inception5b, Inception<T, 832, 384, 192, 384, 48, 128, 128, 1024, 7>>,
    Named<Avgpool, GlobalAvgPool2d<T, 1024, 7, 7>>,
    Named<DropoutName, Dropout<[T; 1024]>>,
    Named<Fc, Linear<T, 1024, 1000>>,
];

/// GoogLeNet up to the logits, named as torchvision's.
pub type GoogLeNetLogits<T> = sequential![ToInception4a<T>, ToInception4d<T>, ToLogits<T>];

name!(
    /// An auxiliary head's first fully connected layer.
    pub Fc1 = "fc1"
);
name!(
    /// An auxiliary head's classifier.
    pub Fc2 = "fc2"
);
name!(
    /// The auxiliary head on `inception4a`.
    pub Aux1 = "aux1"
);
name!(
    /// The auxiliary head on `inception4d`.
    pub Aux2 = "aux2"
);

/// torchvision's `InceptionAux(CI, 1000)` on 14×14 maps: adaptive average pooling to 4×4,
/// a 1×1 `BasicConv2d` to 128 channels, flatten to 2048, `fc1` to 1024 with ReLU, dropout
/// 0.7, `fc2` to 1000 logits. 3,188,968 parameters on `inception4a` (`CI` = 512),
/// 3,191,016 on `inception4d` (528).
pub type InceptionAux<T, const CI: usize> = sequential![
    AdaptiveAvgPool2d<T, CI, 14, 14, 4, 4>,
    Named<Conv, BasicConv2d<T, CI, 128, 1, 1, 0, 4, 4>>,
    Flatten<T, 128, 4, 4, 2048>,
    Named<Fc1, Linear<T, 2048, 1024>>,
    Relu<[T; 1024]>,
    Dropout<[T; 1024]>,
    Named<Fc2, Linear<T, 1024, 1000>>,
];

/// GoogLeNet up to the logits with its auxiliary heads tapped in after `inception4a` and
/// `inception4d` (they run in training passes only; see [`Tap`]).
pub type GoogLeNetAuxLogits<T> = sequential![
    ToInception4a<T>,
    Named<Aux1, Tap<InceptionAux<T, 512>>>,
    ToInception4d<T>,
    Named<Aux2, Tap<InceptionAux<T, 528>>>,
    ToLogits<T>,
];

/// GoogLeNet as torchvision has it (`googlenet(aux_logits=False, transform_input=False)`):
/// 3×224×224 → 1000 classes through 9 Inception modules; batch norm with eps 0.001 after
/// every convolution; dropout 0.2 in training; 6,624,904 parameters. Its `state_dict` is
/// torchvision's without the `aux1.*`/`aux2.*` heads (which torchvision drops when it loads
/// pretrained weights for evaluation).
///
/// ```
/// use constnet::{layer::count, GoogLeNet, Layer, TensorKind};
/// assert_eq!(count::<GoogLeNet<f32>>(TensorKind::Param), 3 * 57 + 2);
/// const _: () = <GoogLeNet<f32> as Layer>::CHECK;
/// ```
pub type GoogLeNet<T> = sequential![GoogLeNetLogits<T>, Softmax<T, 1000>];

impl<T: Scalar> Network for GoogLeNet<T> {
    /// Dropout 0.2.
    fn configure(&mut self) {
        crate::network::set_each(self, |d: &mut Dropout<[T; 1024]>| d.p = T::from_f64(0.2));
    }
}

/// GoogLeNet with torchvision's auxiliary classifiers (`googlenet(aux_logits=True)`), for
/// training: [`InceptionAux`] heads on `inception4a` (`aux1`) and `inception4d` (`aux2`),
/// 13,004,888 parameters, and torchvision's `state_dict` with its `aux1.*` and `aux2.*`
/// tensors (a torchvision checkpoint trained with them loads as it is).
///
/// The heads run in training passes only (each a [`Tap`]): [`GoogLeNetAux::backprop_batch_aux`]
/// trains all three classifiers with the paper's loss, the main cross-entropy plus 0.3 times
/// each auxiliary one. In evaluation the network is [`GoogLeNet`] (the heads are skipped);
/// [`GoogLeNetAux::to_googlenet`] drops them, as torchvision does for inference.
///
/// ```
/// use constnet::{layer::count, GoogLeNet, GoogLeNetAux, Layer, TensorKind};
/// let aux = count::<GoogLeNetAux<f32>>(TensorKind::Param) - count::<GoogLeNet<f32>>(TensorKind::Param);
/// assert_eq!(aux, 2 * (1 + 2 + 2 + 2)); // per head: conv, bn, fc1, fc2
/// const _: () = <GoogLeNetAux<f32> as Layer>::CHECK;
/// ```
pub type GoogLeNetAux<T> = sequential![GoogLeNetAuxLogits<T>, Softmax<T, 1000>];

/// The losses of one [`GoogLeNetAux::backprop_batch_aux`] step, each cross-entropy summed
/// over the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuxLosses<T> {
    /// The main classifier's loss.
    pub main: T,
    /// The loss of the head on `inception4a`.
    pub aux1: T,
    /// The loss of the head on `inception4d`.
    pub aux2: T,
}

impl<T: Scalar> AuxLosses<T> {
    /// `main + 0.3·(aux1 + aux2)`: the loss whose gradients the step computes.
    pub fn total(&self) -> T {
        self.main + T::from_f64(GoogLeNetAux::<T>::AUX_WEIGHT) * (self.aux1 + self.aux2)
    }
}

impl<T: Scalar> Network for GoogLeNetAux<T> {
    /// Dropout 0.2 before `fc` and 0.7 in the heads.
    fn configure(&mut self) {
        crate::network::set_each(self, |d: &mut Dropout<[T; 1024]>| d.p = T::from_f64(0.2));
        let p = T::from_f64(0.7);
        crate::network::set_each(self.aux1_mut(), |d: &mut Dropout<[T; 1024]>| d.p = p);
        crate::network::set_each(self.aux2_mut(), |d: &mut Dropout<[T; 1024]>| d.p = p);
    }
}

impl<T: Scalar> GoogLeNetAux<T> {
    /// The weight of each auxiliary loss (Szegedy et al. 2014, §5: "weighted by 0.3").
    pub const AUX_WEIGHT: f64 = 0.3;

    /// The head on `inception4a`.
    pub fn aux1(&self) -> &InceptionAux<T, 512> {
        &self.first.first.first.first.then.head
    }

    /// The head on `inception4a`, mutable.
    pub fn aux1_mut(&mut self) -> &mut InceptionAux<T, 512> {
        &mut self.first.first.first.first.then.head
    }

    /// The head on `inception4d`.
    pub fn aux2(&self) -> &InceptionAux<T, 528> {
        &self.first.first.then.head
    }

    /// The head on `inception4d`, mutable.
    pub fn aux2_mut(&mut self) -> &mut InceptionAux<T, 528> {
        &mut self.first.first.then.head
    }

    /// The network without its heads, for evaluation: the same weights, buffers and
    /// counters as [`GoogLeNet`], on the heap.
    #[cfg(feature = "alloc")]
    pub fn to_googlenet(&self) -> Box<GoogLeNet<T>> {
        use crate::network::copy_tensors;
        let mut net = crate::zeroed_box::<GoogLeNet<T>>();
        let (main, aux) = (&mut net.first, &self.first);
        copy_tensors(&mut main.first.first, &aux.first.first.first.first);
        copy_tensors(&mut main.first.then, &aux.first.first.then);
        copy_tensors(&mut main.then, &aux.then);
        net.configure();
        net
    }

    /// One training pass of `N` images with the paper's loss: forward in training mode
    /// (batch statistics, dropout from `pass`'s seed), the main cross-entropy against
    /// `labels` and each head's, and the backward pass of `main + 0.3·(aux1 + aux2)`, whose
    /// parameter gradients are added to `grads`. Returns the three losses, summed over the
    /// batch. Panics if a label is not below 1000.
    ///
    /// ([`Chain::backprop_batch`](crate::Chain::backprop_batch) trains the main classifier
    /// alone: the heads then get no gradient.)
    pub fn backprop_batch_aux<const N: usize>(
        &self,
        pass: &Pass<Train>,
        inputs: &[Maps<T, 3, 224, 224>; N],
        labels: &[usize; N],
        ws: &mut <Self as BatchLayer<N>>::BatchWorkspace,
        grads: &mut Self,
    ) -> AuxLosses<T> {
        let weight = T::from_f64(Self::AUX_WEIGHT);
        let mut losses = AuxLosses {
            main: T::zero(),
            aux1: T::zero(),
            aux2: T::zero(),
        };
        let crate::BatchChainWorkspace {
            first,
            mid,
            mid_grad,
            ..
        } = ws;
        self.first.forward_batch_in(pass, inputs, mid, first);
        // The heads' gradients, scaled by their weight, wait in their taps' workspaces.
        let side = |out: &[[T; 1000]; N], grad: &mut [[T; 1000]; N]| {
            let mut sum = T::zero();
            for ((out, grad), &label) in out.iter().zip(grad.iter_mut()).zip(labels) {
                sum = sum + cross_entropy_with_logits(out, label, grad);
                grad.iter_mut().for_each(|g| *g = *g * weight);
            }
            sum
        };
        let tap1 = &mut first.first.first.first.then;
        losses.aux1 = side(&tap1.out, &mut tap1.grad);
        let tap2 = &mut first.first.then;
        losses.aux2 = side(&tap2.out, &mut tap2.grad);
        for ((logits, grad), &label) in mid.iter().zip(mid_grad.iter_mut()).zip(labels) {
            losses.main = losses.main + cross_entropy_with_logits(logits, label, grad);
        }
        self.first
            .backward_batch(inputs, first, mid_grad, None, &mut grads.first);
        losses
    }
}
