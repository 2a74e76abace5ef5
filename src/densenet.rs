//! DenseNet-121 (Huang et al. 2016, Table 1) as torchvision's `densenet121`: growth rate 32,
//! blocks of 6, 12, 24 and 16 layers, bottleneck 4·32 = 128 channels, compression 0.5.
//!
//! ```text
//! 3×224×224 → conv0 7×7/2 64 → norm0 → relu0 → pool0 3×3/2 pad 1        64×56×56
//!           → denseblock1 (6 layers)  → transition1 (1×1, avgpool 2/2)    256 → 128×28×28
//!           → denseblock2 (12 layers) → transition2                       512 → 256×14×14
//!           → denseblock3 (24 layers) → transition3                      1024 → 512×7×7
//!           → denseblock4 (16 layers) → norm5 → relu → avgpool (global)   1024
//!           → classifier 1000 → softmax
//! ```
//!
//! A dense layer reads every channel before it and adds 32: in the type, the block is a
//! chain of [`Concat`]s of the [`Identity`] and the new layer, so each step's channel sum is
//! checked by the compiler, and the names stay torchvision's (`Concat` adds none).

use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    AvgPool2d, BatchNorm2d, Concat, Conv2d, GlobalAvgPool2d, Identity, Linear, MaxPool2d, Named,
    NoBias, Relu, name, sequential,
};

name!(
    /// A dense layer's first batch norm.
    pub Norm1 = "norm1"
);
name!(
    /// A dense layer's 1×1 bottleneck convolution.
    pub Conv1 = "conv1"
);
name!(
    /// A dense layer's second batch norm.
    pub Norm2 = "norm2"
);
name!(
    /// A dense layer's 3×3 convolution.
    pub Conv2 = "conv2"
);
name!(
    /// A transition's batch norm.
    pub Norm = "norm"
);
name!(
    /// A transition's 1×1 convolution.
    pub Conv = "conv"
);

type Bn<T, const C: usize, const H: usize> = BatchNorm2d<T, C, H, H>;

/// torchvision's `_DenseLayer(CI, growth 32, bn_size 4)` on `H`×`H` maps: `norm1` → ReLU →
/// `conv1` 1×1 to 128 → `norm2` → ReLU → `conv2` 3×3 to 32, the 32 new channels.
pub type DenseLayer<T, const CI: usize, const H: usize> = sequential![
    Named<Norm1, Bn<T, CI, H>>,
    Relu<Maps<T, CI, H, H>>,
    Named<Conv1, NoBias<Conv2d<T, CI, 128, 1, 1, 0, H, H, H, H>>>,
    Named<Norm2, Bn<T, 128, H>>,
    Relu<Maps<T, 128, H, H>>,
    Named<Conv2, NoBias<Conv2d<T, 128, 32, 3, 1, 1, H, H, H, H>>>,
];

/// One step of a dense block: the `CI` channels so far and `L`'s new ones, `CO` in all.
pub type DenseStep<T, L, const CI: usize, const CO: usize, const H: usize> =
    Concat<(Identity<Maps<T, CI, H, H>>, L), Maps<T, CO, H, H>>;

/// torchvision's `_Transition(CI → CO)` from `H`×`H` to `OH`×`OH`: `norm` → ReLU → `conv` 1×1
/// → average pooling 2×2/2.
pub type Transition<T, const CI: usize, const CO: usize, const H: usize, const OH: usize> = sequential![
    Named<Norm, Bn<T, CI, H>>,
    Relu<Maps<T, CI, H, H>>,
    Named<Conv, NoBias<Conv2d<T, CI, CO, 1, 1, 0, H, H, H, H>>>,
    AvgPool2d<T, CO, H, H, 2, 2, OH, OH>,
];

name!(
    /// Dense layer 1 of a block.
    pub DenseLayer1 = "denselayer1"
);
name!(
    /// Dense layer 2 of a block.
    pub DenseLayer2 = "denselayer2"
);
name!(
    /// Dense layer 3 of a block.
    pub DenseLayer3 = "denselayer3"
);
name!(
    /// Dense layer 4 of a block.
    pub DenseLayer4 = "denselayer4"
);
name!(
    /// Dense layer 5 of a block.
    pub DenseLayer5 = "denselayer5"
);
name!(
    /// Dense layer 6 of a block.
    pub DenseLayer6 = "denselayer6"
);
name!(
    /// Dense layer 7 of a block.
    pub DenseLayer7 = "denselayer7"
);
name!(
    /// Dense layer 8 of a block.
    pub DenseLayer8 = "denselayer8"
);
name!(
    /// Dense layer 9 of a block.
    pub DenseLayer9 = "denselayer9"
);
name!(
    /// Dense layer 10 of a block.
    pub DenseLayer10 = "denselayer10"
);
name!(
    /// Dense layer 11 of a block.
    pub DenseLayer11 = "denselayer11"
);
name!(
    /// Dense layer 12 of a block.
    pub DenseLayer12 = "denselayer12"
);
name!(
    /// Dense layer 13 of a block.
    pub DenseLayer13 = "denselayer13"
);
name!(
    /// Dense layer 14 of a block.
    pub DenseLayer14 = "denselayer14"
);
name!(
    /// Dense layer 15 of a block.
    pub DenseLayer15 = "denselayer15"
);
name!(
    /// Dense layer 16 of a block.
    pub DenseLayer16 = "denselayer16"
);
name!(
    /// Dense layer 17 of a block.
    pub DenseLayer17 = "denselayer17"
);
name!(
    /// Dense layer 18 of a block.
    pub DenseLayer18 = "denselayer18"
);
name!(
    /// Dense layer 19 of a block.
    pub DenseLayer19 = "denselayer19"
);
name!(
    /// Dense layer 20 of a block.
    pub DenseLayer20 = "denselayer20"
);
name!(
    /// Dense layer 21 of a block.
    pub DenseLayer21 = "denselayer21"
);
name!(
    /// Dense layer 22 of a block.
    pub DenseLayer22 = "denselayer22"
);
name!(
    /// Dense layer 23 of a block.
    pub DenseLayer23 = "denselayer23"
);
name!(
    /// Dense layer 24 of a block.
    pub DenseLayer24 = "denselayer24"
);
name!(
    /// Dense block 1.
    pub DenseBlock1 = "denseblock1"
);
name!(
    /// Dense block 2.
    pub DenseBlock2 = "denseblock2"
);
name!(
    /// Dense block 3.
    pub DenseBlock3 = "denseblock3"
);
name!(
    /// Dense block 4.
    pub DenseBlock4 = "denseblock4"
);
name!(
    /// Transition 1.
    pub Transition1 = "transition1"
);
name!(
    /// Transition 2.
    pub Transition2 = "transition2"
);
name!(
    /// Transition 3.
    pub Transition3 = "transition3"
);
name!(
    /// The convolutional part (torchvision's `features`).
    pub Features = "features"
);
name!(
    /// The stem convolution.
    pub Conv0 = "conv0"
);
name!(
    /// The stem's batch norm.
    pub Norm0 = "norm0"
);
name!(
    /// The stem's ReLU.
    pub Relu0 = "relu0"
);
name!(
    /// The stem's max pooling.
    pub Pool0 = "pool0"
);
name!(
    /// The last batch norm.
    pub Norm5 = "norm5"
);
name!(
    /// The classifier.
    pub Classifier = "classifier"
);

/// Dense block 1: 6 layers on 56×56 maps, 64 → 256 channels.
pub type DenseNet121Block1<T> = sequential![
    DenseStep<T, Named<DenseLayer1, DenseLayer<T, 64, 56>>, 64, 96, 56>,
    DenseStep<T, Named<DenseLayer2, DenseLayer<T, 96, 56>>, 96, 128, 56>,
    DenseStep<T, Named<DenseLayer3, DenseLayer<T, 128, 56>>, 128, 160, 56>,
    DenseStep<T, Named<DenseLayer4, DenseLayer<T, 160, 56>>, 160, 192, 56>,
    DenseStep<T, Named<DenseLayer5, DenseLayer<T, 192, 56>>, 192, 224, 56>,
    DenseStep<T, Named<DenseLayer6, DenseLayer<T, 224, 56>>, 224, 256, 56>,
];

/// Dense block 2: 12 layers on 28×28 maps, 128 → 512 channels.
pub type DenseNet121Block2<T> = sequential![
    DenseStep<T, Named<DenseLayer1, DenseLayer<T, 128, 28>>, 128, 160, 28>,
    DenseStep<T, Named<DenseLayer2, DenseLayer<T, 160, 28>>, 160, 192, 28>,
    DenseStep<T, Named<DenseLayer3, DenseLayer<T, 192, 28>>, 192, 224, 28>,
    DenseStep<T, Named<DenseLayer4, DenseLayer<T, 224, 28>>, 224, 256, 28>,
    DenseStep<T, Named<DenseLayer5, DenseLayer<T, 256, 28>>, 256, 288, 28>,
    DenseStep<T, Named<DenseLayer6, DenseLayer<T, 288, 28>>, 288, 320, 28>,
    DenseStep<T, Named<DenseLayer7, DenseLayer<T, 320, 28>>, 320, 352, 28>,
    DenseStep<T, Named<DenseLayer8, DenseLayer<T, 352, 28>>, 352, 384, 28>,
    DenseStep<T, Named<DenseLayer9, DenseLayer<T, 384, 28>>, 384, 416, 28>,
    DenseStep<T, Named<DenseLayer10, DenseLayer<T, 416, 28>>, 416, 448, 28>,
    DenseStep<T, Named<DenseLayer11, DenseLayer<T, 448, 28>>, 448, 480, 28>,
    DenseStep<T, Named<DenseLayer12, DenseLayer<T, 480, 28>>, 480, 512, 28>,
];

/// Dense block 3: 24 layers on 14×14 maps, 256 → 1024 channels.
pub type DenseNet121Block3<T> = sequential![
    DenseStep<T, Named<DenseLayer1, DenseLayer<T, 256, 14>>, 256, 288, 14>,
    DenseStep<T, Named<DenseLayer2, DenseLayer<T, 288, 14>>, 288, 320, 14>,
    DenseStep<T, Named<DenseLayer3, DenseLayer<T, 320, 14>>, 320, 352, 14>,
    DenseStep<T, Named<DenseLayer4, DenseLayer<T, 352, 14>>, 352, 384, 14>,
    DenseStep<T, Named<DenseLayer5, DenseLayer<T, 384, 14>>, 384, 416, 14>,
    DenseStep<T, Named<DenseLayer6, DenseLayer<T, 416, 14>>, 416, 448, 14>,
    DenseStep<T, Named<DenseLayer7, DenseLayer<T, 448, 14>>, 448, 480, 14>,
    DenseStep<T, Named<DenseLayer8, DenseLayer<T, 480, 14>>, 480, 512, 14>,
    DenseStep<T, Named<DenseLayer9, DenseLayer<T, 512, 14>>, 512, 544, 14>,
    DenseStep<T, Named<DenseLayer10, DenseLayer<T, 544, 14>>, 544, 576, 14>,
    DenseStep<T, Named<DenseLayer11, DenseLayer<T, 576, 14>>, 576, 608, 14>,
    DenseStep<T, Named<DenseLayer12, DenseLayer<T, 608, 14>>, 608, 640, 14>,
    DenseStep<T, Named<DenseLayer13, DenseLayer<T, 640, 14>>, 640, 672, 14>,
    DenseStep<T, Named<DenseLayer14, DenseLayer<T, 672, 14>>, 672, 704, 14>,
    DenseStep<T, Named<DenseLayer15, DenseLayer<T, 704, 14>>, 704, 736, 14>,
    DenseStep<T, Named<DenseLayer16, DenseLayer<T, 736, 14>>, 736, 768, 14>,
    DenseStep<T, Named<DenseLayer17, DenseLayer<T, 768, 14>>, 768, 800, 14>,
    DenseStep<T, Named<DenseLayer18, DenseLayer<T, 800, 14>>, 800, 832, 14>,
    DenseStep<T, Named<DenseLayer19, DenseLayer<T, 832, 14>>, 832, 864, 14>,
    DenseStep<T, Named<DenseLayer20, DenseLayer<T, 864, 14>>, 864, 896, 14>,
    DenseStep<T, Named<DenseLayer21, DenseLayer<T, 896, 14>>, 896, 928, 14>,
    DenseStep<T, Named<DenseLayer22, DenseLayer<T, 928, 14>>, 928, 960, 14>,
    DenseStep<T, Named<DenseLayer23, DenseLayer<T, 960, 14>>, 960, 992, 14>,
    DenseStep<T, Named<DenseLayer24, DenseLayer<T, 992, 14>>, 992, 1024, 14>,
];

/// Dense block 4: 16 layers on 7×7 maps, 512 → 1024 channels.
pub type DenseNet121Block4<T> = sequential![
    DenseStep<T, Named<DenseLayer1, DenseLayer<T, 512, 7>>, 512, 544, 7>,
    DenseStep<T, Named<DenseLayer2, DenseLayer<T, 544, 7>>, 544, 576, 7>,
    DenseStep<T, Named<DenseLayer3, DenseLayer<T, 576, 7>>, 576, 608, 7>,
    DenseStep<T, Named<DenseLayer4, DenseLayer<T, 608, 7>>, 608, 640, 7>,
    DenseStep<T, Named<DenseLayer5, DenseLayer<T, 640, 7>>, 640, 672, 7>,
    DenseStep<T, Named<DenseLayer6, DenseLayer<T, 672, 7>>, 672, 704, 7>,
    DenseStep<T, Named<DenseLayer7, DenseLayer<T, 704, 7>>, 704, 736, 7>,
    DenseStep<T, Named<DenseLayer8, DenseLayer<T, 736, 7>>, 736, 768, 7>,
    DenseStep<T, Named<DenseLayer9, DenseLayer<T, 768, 7>>, 768, 800, 7>,
    DenseStep<T, Named<DenseLayer10, DenseLayer<T, 800, 7>>, 800, 832, 7>,
    DenseStep<T, Named<DenseLayer11, DenseLayer<T, 832, 7>>, 832, 864, 7>,
    DenseStep<T, Named<DenseLayer12, DenseLayer<T, 864, 7>>, 864, 896, 7>,
    DenseStep<T, Named<DenseLayer13, DenseLayer<T, 896, 7>>, 896, 928, 7>,
    DenseStep<T, Named<DenseLayer14, DenseLayer<T, 928, 7>>, 928, 960, 7>,
    DenseStep<T, Named<DenseLayer15, DenseLayer<T, 960, 7>>, 960, 992, 7>,
    DenseStep<T, Named<DenseLayer16, DenseLayer<T, 992, 7>>, 992, 1024, 7>,
];

/// DenseNet-121 up to the logits, named as torchvision's.
pub type DenseNet121Logits<T> = sequential![
    Named<Features, sequential![
        Named<Conv0, NoBias<Conv2d<T, 3, 64, 7, 2, 3, 224, 224, 112, 112>>>,
        Named<Norm0, Bn<T, 64, 112>>,
        Named<Relu0, Relu<Maps<T, 64, 112, 112>>>,
        Named<Pool0, MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 1>>,
        Named<DenseBlock1, DenseNet121Block1<T>>,
        Named<Transition1, Transition<T, 256, 128, 56, 28>>,
        Named<DenseBlock2, DenseNet121Block2<T>>,
        Named<Transition2, Transition<T, 512, 256, 28, 14>>,
        Named<DenseBlock3, DenseNet121Block3<T>>,
        Named<Transition3, Transition<T, 1024, 512, 14, 7>>,
        Named<DenseBlock4, DenseNet121Block4<T>>,
        Named<Norm5, Bn<T, 1024, 7>>,
    ]>,
    Relu<Maps<T, 1024, 7, 7>>,
    GlobalAvgPool2d<T, 1024, 7, 7>,
    Named<Classifier, Linear<T, 1024, 1000>>,
];

/// DenseNet-121 (torchvision's `densenet121`): 3×224×224 → 1000 classes; 121 layers with
/// weights, 7,978,856 parameters.
///
/// ```
/// use constnet::{layer::count, DenseNet121, Layer, TensorKind};
/// // conv0 (no bias), norm0, 58 dense layers of 2 BN + 2 convolutions, 3 transitions, norm5, classifier
/// assert_eq!(count::<DenseNet121<f32>>(TensorKind::Param), 1 + 2 + 58 * 6 + 3 * 3 + 2 + 2);
/// const _: () = <DenseNet121<f32> as Layer>::CHECK;
/// ```
pub type DenseNet121<T> = sequential![DenseNet121Logits<T>, Softmax<T, 1000>];

impl<T: Scalar> Network for DenseNet121<T> {}
