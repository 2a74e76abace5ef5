//! The blocks of the PyTorch golden fixtures as constnet types, named as torchvision names
//! their parts (`tests/data/arch/blocks/FORMAT.md` defines each).

use constnet::{
    AvgPool2d, BatchNorm2d, Concat, Conv2d, Identity, Maps, Named, NoBias, Relu, name, sequential,
};

name!(pub Conv1 = "conv1");
name!(pub Conv2 = "conv2");
name!(pub Conv = "conv");
name!(pub Norm = "norm");
name!(pub Norm1 = "norm1");
name!(pub Norm2 = "norm2");
name!(pub DenseLayer1 = "denselayer1");
name!(pub DenseLayer2 = "denselayer2");
name!(pub DenseLayer3 = "denselayer3");

type Bn2d<T, const C: usize, const H: usize> = BatchNorm2d<T, C, H, H>;

/// torchvision's `_DenseLayer(CI, growth 4, bn_size 2)` on `H`×`H`: the 4 new channels.
pub type DenseLayer<T, const CI: usize, const H: usize> = sequential![
    Named<Norm1, Bn2d<T, CI, H>>,
    Relu<Maps<T, CI, H, H>>,
    Named<Conv1, NoBias<Conv2d<T, CI, 8, 1, 1, 0, H, H, H, H>>>,
    Named<Norm2, Bn2d<T, 8, H>>,
    Relu<Maps<T, 8, H, H>>,
    Named<Conv2, NoBias<Conv2d<T, 8, 4, 3, 1, 1, H, H, H, H>>>,
];

/// torchvision's `_DenseBlock` of three such layers on 6 channels of 6×6: each layer reads
/// everything before it, and the block gives 6 + 3·4 = 18 channels.
pub type DenseBlock<T> = sequential![
    Concat<
        (
            Identity<Maps<T, 6, 6, 6>>,
            Named<DenseLayer1, DenseLayer<T, 6, 6>>
        ),
        Maps<T, 10, 6, 6>,
    >,
    Concat<
        (
            Identity<Maps<T, 10, 6, 6>>,
            Named<DenseLayer2, DenseLayer<T, 10, 6>>
        ),
        Maps<T, 14, 6, 6>,
    >,
    Concat<
        (
            Identity<Maps<T, 14, 6, 6>>,
            Named<DenseLayer3, DenseLayer<T, 14, 6>>
        ),
        Maps<T, 18, 6, 6>,
    >,
];

/// torchvision's `_Transition(18 → 9)` on 6×6: `avgpool2x2(conv1x1(relu(norm(x))))`.
pub type Transition<T> = sequential![
    Named<Norm, Bn2d<T, 18, 6>>,
    Relu<Maps<T, 18, 6, 6>>,
    Named<Conv, NoBias<Conv2d<T, 18, 9, 1, 1, 0, 6, 6, 6, 6>>>,
    AvgPool2d<T, 9, 6, 6, 2, 2, 3, 3>,
];

/// The CIFAR ResNet-20 of He et al. 2015 §4.2 on one-channel 32×32 images, with option-B
/// (projection) shortcuts: the crate's own network, checked here against PyTorch's numbers.
pub type CifarResNet20<T> = constnet::resnet::ResNet20Logits<T, 1, 10>;

/// torchvision's `BasicBlock(C, C)` on `H`×`H` maps: the crate's own.
pub type BasicIdentity<T, const C: usize, const H: usize> = constnet::resnet::BasicBlock<T, C, H>;

/// torchvision's `BasicBlock(CI, CO, stride=2, downsample)`: the crate's own.
pub type BasicDown<T, const CI: usize, const CO: usize, const H: usize, const OH: usize> =
    constnet::resnet::BasicBlockDown<T, CI, CO, H, OH>;

/// torchvision's `Inception(8, 4, 3, 5, 2, 3, 2)` on 5×5 maps (4 + 5 + 3 + 2 = 14 channels,
/// batch norm eps 0.001 by its type): GoogLeNet's own module.
pub type Inception<T> = constnet::googlenet::Inception<T, 8, 4, 3, 5, 2, 3, 2, 14, 5>;
