//! Residual networks (He et al. 2015): torchvision's ResNet-18 for 224×224 images and the
//! CIFAR-style ResNet-20 of the paper's §4.2 for 32×32 images, from torchvision's
//! `BasicBlock`.
//!
//! ```text
//! ResNet-18  3×224×224 → conv1 7×7/2 64 → bn1 → relu → maxpool 3×3/2 pad 1   64×56×56
//!            layer1: 2 × BasicBlock(64)                                      64×56×56
//!            layer2: BasicBlock(64→128, /2, downsample) + BasicBlock(128)  128×28×28
//!            layer3: BasicBlock(128→256, /2, downsample) + BasicBlock(256) 256×14×14
//!            layer4: BasicBlock(256→512, /2, downsample) + BasicBlock(512) 512×7×7
//!            avgpool (global) 512 → fc 1000 → softmax
//! ResNet-20  CI×32×32 → conv1 3×3 16 → bn1 → relu                          16×32×32
//!            layer1: 3 × BasicBlock(16)                                      16×32×32
//!            layer2: BasicBlock(16→32, /2, downsample) + 2 × BasicBlock(32)  32×16×16
//!            layer3: BasicBlock(32→64, /2, downsample) + 2 × BasicBlock(64)  64×8×8
//!            avgpool (global) 64 → fc CLASSES → softmax
//! ```

use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    BatchNorm2d, Block, Conv2d, GlobalAvgPool2d, Identity, Linear, MaxPool2d, Named, NoBias, Relu,
    Residual, name, sequential,
};

name!(
    /// A block's first convolution, or a network's stem convolution.
    pub Conv1 = "conv1"
);
name!(
    /// The batch norm after `conv1`.
    pub Bn1 = "bn1"
);
name!(
    /// A block's second convolution.
    pub Conv2 = "conv2"
);
name!(
    /// The batch norm after `conv2`.
    pub Bn2 = "bn2"
);
name!(
    /// A block's projection shortcut: `downsample.0` the 1×1 convolution, `downsample.1` its
    /// batch norm.
    pub Downsample = "downsample"
);
name!(
    /// The ReLU after the stem (and, as in torchvision, the name of every block's ReLUs).
    pub ReluName = "relu"
);
name!(
    /// The stem's max pooling.
    pub Maxpool = "maxpool"
);
name!(
    /// The first stage.
    pub Layer1 = "layer1"
);
name!(
    /// The second stage.
    pub Layer2 = "layer2"
);
name!(
    /// The third stage.
    pub Layer3 = "layer3"
);
name!(
    /// The fourth stage.
    pub Layer4 = "layer4"
);
name!(
    /// The global average pooling.
    pub Avgpool = "avgpool"
);
name!(
    /// The classifier.
    pub Fc = "fc"
);

type Bn<T, const C: usize, const H: usize> = BatchNorm2d<T, C, H, H>;
type Conv<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const OH: usize,
> = NoBias<Conv2d<T, CI, CO, K, S, P, H, H, OH, OH>>;

/// torchvision's `BasicBlock(C, C)` on `C` maps of `H`×`H`:
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`, both convolutions 3×3 with padding 1 and
/// no bias. `2·9·C² + 4·C` parameters.
pub type BasicBlock<T, const C: usize, const H: usize> = sequential![
    Residual<
        sequential![
            Named<Conv1, Conv<T, C, C, 3, 1, 1, H, H>>,
            Named<Bn1, Bn<T, C, H>>,
            Relu<Maps<T, C, H, H>>,
            Named<Conv2, Conv<T, C, C, 3, 1, 1, H, H>>,
            Named<Bn2, Bn<T, C, H>>,
        ],
        Identity<Maps<T, C, H, H>>,
    >,
    Relu<Maps<T, C, H, H>>,
];

/// torchvision's `BasicBlock(CI, CO, stride=2, downsample)` from `H`×`H` to `OH`×`OH`: the
/// first convolution has stride 2, and the shortcut is `downsample` = a 1×1 stride-2
/// convolution and batch norm (option B of the paper).
pub type BasicBlockDown<T, const CI: usize, const CO: usize, const H: usize, const OH: usize> = sequential![
    Residual<
        sequential![
            Named<Conv1, Conv<T, CI, CO, 3, 2, 1, H, OH>>,
            Named<Bn1, Bn<T, CO, OH>>,
            Relu<Maps<T, CO, OH, OH>>,
            Named<Conv2, Conv<T, CO, CO, 3, 1, 1, OH, OH>>,
            Named<Bn2, Bn<T, CO, OH>>,
        ],
        Named<Downsample, sequential![Conv<T, CI, CO, 1, 2, 0, H, OH>, Bn<T, CO, OH>]>,
    >,
    Relu<Maps<T, CO, OH, OH>>,
];

/// ResNet-18's layers up to the logits (torchvision's `resnet18` exactly: 11,689,512
/// parameters, 9,600 buffer values and 20 counters, under torchvision's names).
pub type ResNet18Logits<T> = sequential![
    Named<Conv1, Conv<T, 3, 64, 7, 2, 3, 224, 112>>,
    Named<Bn1, Bn<T, 64, 112>>,
    Named<ReluName, Relu<Maps<T, 64, 112, 112>>>,
    Named<Maxpool, MaxPool2d<T, 64, 112, 112, 3, 2, 56, 56, 1>>,
    Named<Layer1, sequential![Block<BasicBlock<T, 64, 56>>, Block<BasicBlock<T, 64, 56>>]>,
    Named<Layer2, sequential![Block<BasicBlockDown<T, 64, 128, 56, 28>>, Block<BasicBlock<T, 128, 28>>]>,
    Named<Layer3, sequential![Block<BasicBlockDown<T, 128, 256, 28, 14>>, Block<BasicBlock<T, 256, 14>>]>,
    Named<Layer4, sequential![Block<BasicBlockDown<T, 256, 512, 14, 7>>, Block<BasicBlock<T, 512, 7>>]>,
    Named<Avgpool, GlobalAvgPool2d<T, 512, 7, 7>>,
    Named<Fc, Linear<T, 512, 1000>>,
];

/// ResNet-18 (He et al. 2015, Table 1; torchvision's `resnet18`): a 3×224×224 image to the
/// probabilities of ImageNet's 1000 classes. `net.first` is [`ResNet18Logits`].
///
/// Its `state_dict` is torchvision's, names and layouts: load one saved with
/// `safetensors.torch.save_file` through [`crate::state_dict::load_state_dict`]. 11,689,512
/// parameters (45 MiB in `f32`); build it with [`Network::new_boxed`].
///
/// ```
/// use constnet::{Layer, ResNet18, layer::count, TensorKind};
/// assert_eq!(count::<ResNet18<f32>>(TensorKind::Param), 62);
/// const _: () = <ResNet18<f32> as Layer>::CHECK;
/// ```
pub type ResNet18<T> = sequential![ResNet18Logits<T>, Softmax<T, 1000>];

/// The CIFAR ResNet-20 (He et al. 2015, §4.2) up to the logits, for `CI`×32×32 images and
/// `CLASSES` classes, with projection shortcuts (option B) named as torchvision's.
pub type ResNet20Logits<T, const CI: usize, const CLASSES: usize> = sequential![
    Named<Conv1, Conv<T, CI, 16, 3, 1, 1, 32, 32>>,
    Named<Bn1, Bn<T, 16, 32>>,
    Named<ReluName, Relu<Maps<T, 16, 32, 32>>>,
    Named<Layer1, sequential![Block<BasicBlock<T, 16, 32>>, Block<BasicBlock<T, 16, 32>>, Block<BasicBlock<T, 16, 32>>]>,
    Named<Layer2, sequential![Block<BasicBlockDown<T, 16, 32, 32, 16>>, Block<BasicBlock<T, 32, 16>>, Block<BasicBlock<T, 32, 16>>]>,
    Named<Layer3, sequential![Block<BasicBlockDown<T, 32, 64, 16, 8>>, Block<BasicBlock<T, 64, 8>>, Block<BasicBlock<T, 64, 8>>]>,
    Named<Avgpool, GlobalAvgPool2d<T, 64, 8, 8>>,
    Named<Fc, Linear<T, 64, CLASSES>>,
];

/// The CIFAR-style ResNet-20 of He et al. 2015, §4.2: 3 stages of 3 `BasicBlock`s with
/// 16/32/64 channels on 32×32/16×16/8×8 maps, global average pooling and a linear layer,
/// for `CI`-channel 32×32 images (a 28×28 Fashion-MNIST image padded by 2: `CI = 1`) and
/// `CLASSES` classes. The two subsampling blocks use projection shortcuts (1×1 stride-2
/// convolution and batch norm, the paper's option B), so it has 272,474 parameters with 3
/// input channels and 10 classes (the paper's option A, parameter-free, has 269,722).
///
/// ```
/// use constnet::{Layer, Network, ResNet20};
/// use rand::SeedableRng;
/// let net = ResNet20::<f32, 1, 10>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
/// assert_eq!(net.param_count(), 272_474 - 2 * 16 * 9);
/// let mut ws = ResNet20::<f32, 1, 10>::workspace();
/// let image = [[[0.5f32; 32]; 32]; 1];
/// let probs = net.probabilities(&image, &mut ws);
/// assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
/// ```
pub type ResNet20<T, const CI: usize, const CLASSES: usize> =
    sequential![ResNet20Logits<T, CI, CLASSES>, Softmax<T, CLASSES>];

impl<T: Scalar> Network for ResNet18<T> {}

impl<T: Scalar, const CI: usize, const CLASSES: usize> Network for ResNet20<T, CI, CLASSES> {}
