//! GoogLeNet (Inception v1, Szegedy et al. 2014) as torchvision's `googlenet` builds it
//! without its auxiliary classifiers: every convolution a `BasicConv2d` (convolution without
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

use crate::layer::Layer;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    BatchNorm2d, Block, Concat, Conv2d, Dropout, Eps1e3, GlobalAvgPool2d, Linear, MaxPool2d, Named,
    NoBias, Relu, name, sequential,
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

/// GoogLeNet up to the logits, named as torchvision's.
pub type GoogLeNetLogits<T> = sequential![
    Named<Conv1, BasicConv2d<T, 3, 64, 7, 2, 3, 224, 112>>,
    Named<Maxpool1, CeilPool<T, 64, 3, 112, 56>>,
    Named<Conv2, BasicConv2d<T, 64, 64, 1, 1, 0, 56, 56>>,
    Named<Conv3, BasicConv2d<T, 64, 192, 3, 1, 1, 56, 56>>,
    Named<Maxpool2, CeilPool<T, 192, 3, 56, 28>>,
    Named<Inception3a, Inception<T, 192, 64, 96, 128, 16, 32, 32, 256, 28>>,
    Named<Inception3b, Inception<T, 256, 128, 128, 192, 32, 96, 64, 480, 28>>,
    Named<Maxpool3, CeilPool<T, 480, 3, 28, 14>>,
    Named<Inception4a, Inception<T, 480, 192, 96, 208, 16, 48, 64, 512, 14>>,
    Named<Inception4b, Inception<T, 512, 160, 112, 224, 24, 64, 64, 512, 14>>,
    Named<Inception4c, Inception<T, 512, 128, 128, 256, 24, 64, 64, 512, 14>>,
    Named<Inception4d, Inception<T, 512, 112, 144, 288, 32, 64, 64, 528, 14>>,
    Named<Inception4e, Inception<T, 528, 256, 160, 320, 32, 128, 128, 832, 14>>,
    Named<Maxpool4, CeilPool<T, 832, 2, 14, 7>>,
    Named<Inception5a, Inception<T, 832, 256, 160, 320, 32, 128, 128, 832, 7>>,
    Named<Inception5b, Inception<T, 832, 384, 192, 384, 48, 128, 128, 1024, 7>>,
    Named<Avgpool, GlobalAvgPool2d<T, 1024, 7, 7>>,
    Named<DropoutName, Dropout<[T; 1024]>>,
    Named<Fc, Linear<T, 1024, 1000>>,
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

impl<T: Scalar> GoogLeNet<T> {
    /// A GoogLeNet with PyTorch's initial values and dropout 0.2, on the heap.
    #[cfg(feature = "alloc")]
    pub fn new_boxed<R: rand::Rng + ?Sized>(rng: &mut R) -> Box<Self> {
        crate::network::new_boxed(rng, |net: &mut Self| {
            crate::network::set_each(net, |d: &mut Dropout<[T; 1024]>| d.p = T::from_f64(0.2));
        })
    }

    /// A zeroed workspace for its passes, on the heap.
    #[cfg(feature = "alloc")]
    pub fn workspace() -> Box<<Self as Layer>::Workspace> {
        crate::zeroed_box()
    }
}
