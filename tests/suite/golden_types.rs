//! The blocks of the PyTorch golden fixtures as constnet types, named as torchvision names
//! their parts (`tests/data/arch/blocks/FORMAT.md` defines each).

use constnet::{
    AvgPool2d, BatchNorm2d, Block, Concat, Conv2d, GlobalAvgPool2d, Identity, Linear, Maps,
    MaxPool2d, Named, NoBias, Relu, Residual, Scalar, name, sequential,
};

name!(pub Conv1 = "conv1");
name!(pub Bn1 = "bn1");
name!(pub Conv2 = "conv2");
name!(pub Bn2 = "bn2");
name!(pub Downsample = "downsample");
name!(pub Conv = "conv");
name!(pub Bn = "bn");
name!(pub Norm = "norm");
name!(pub Norm1 = "norm1");
name!(pub Norm2 = "norm2");
name!(pub Branch1 = "branch1");
name!(pub Branch2 = "branch2");
name!(pub Branch3 = "branch3");
name!(pub Branch4 = "branch4");
name!(pub DenseLayer1 = "denselayer1");
name!(pub DenseLayer2 = "denselayer2");
name!(pub DenseLayer3 = "denselayer3");
name!(pub Layer1 = "layer1");
name!(pub Layer2 = "layer2");
name!(pub Layer3 = "layer3");
name!(pub Fc = "fc");

type Bn2d<T, const C: usize, const H: usize> = BatchNorm2d<T, C, H, H>;

/// torchvision's `BasicBlock(C, C)` on `H`×`H` maps: `relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`.
pub type BasicIdentity<T, const C: usize, const H: usize> = sequential![
    Residual<
        sequential![
            Named<Conv1, NoBias<Conv2d<T, C, C, 3, 1, 1, H, H, H, H>>>,
            Named<Bn1, Bn2d<T, C, H>>,
            Relu<Maps<T, C, H, H>>,
            Named<Conv2, NoBias<Conv2d<T, C, C, 3, 1, 1, H, H, H, H>>>,
            Named<Bn2, Bn2d<T, C, H>>,
        ],
        Identity<Maps<T, C, H, H>>,
    >,
    Relu<Maps<T, C, H, H>>,
];

/// torchvision's `BasicBlock(CI, CO, stride=2, downsample)` from `H`×`H` to `OH`×`OH`, the
/// shortcut a 1×1 stride-2 convolution and batch norm.
pub type BasicDown<T, const CI: usize, const CO: usize, const H: usize, const OH: usize> = sequential![
    Residual<
        sequential![
            Named<Conv1, NoBias<Conv2d<T, CI, CO, 3, 2, 1, H, H, OH, OH>>>,
            Named<Bn1, Bn2d<T, CO, OH>>,
            Relu<Maps<T, CO, OH, OH>>,
            Named<Conv2, NoBias<Conv2d<T, CO, CO, 3, 1, 1, OH, OH, OH, OH>>>,
            Named<Bn2, Bn2d<T, CO, OH>>,
        ],
        Named<Downsample, sequential![NoBias<Conv2d<T, CI, CO, 1, 2, 0, H, H, OH, OH>>, Bn2d<T, CO, OH>]>,
    >,
    Relu<Maps<T, CO, OH, OH>>,
];

/// GoogLeNet's `BasicConv2d`: convolution without bias → batch norm (eps 0.001) → ReLU.
pub type BasicConv<
    T,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const H: usize,
> = sequential![
    Named<Conv, NoBias<Conv2d<T, CI, CO, K, 1, P, H, H, H, H>>>,
    Named<Bn, Bn2d<T, CO, H>>,
    Relu<Maps<T, CO, H, H>>,
];

/// torchvision's `Inception(8, 4, 3, 5, 2, 3, 2)` on 5×5 maps: 4 + 5 + 3 + 2 = 14 channels.
pub type Inception<T> = Concat<
    (
        Named<Branch1, BasicConv<T, 8, 4, 1, 0, 5>>,
        Named<
            Branch2,
            sequential![
                Block<BasicConv<T, 8, 3, 1, 0, 5>>,
                Block<BasicConv<T, 3, 5, 3, 1, 5>>
            ],
        >,
        Named<
            Branch3,
            sequential![
                Block<BasicConv<T, 8, 2, 1, 0, 5>>,
                Block<BasicConv<T, 2, 3, 3, 1, 5>>
            ],
        >,
        Named<
            Branch4,
            sequential![MaxPool2d<T, 8, 5, 5, 3, 1, 5, 5, 1, true>, Block<BasicConv<T, 8, 2, 1, 0, 5>>],
        >,
    ),
    Maps<T, 14, 5, 5>,
>;

fn eps<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const P: usize,
    const H: usize,
>(
    conv: &mut BasicConv<T, CI, CO, K, P, H>,
    eps: T,
) {
    conv.first.then.eps = eps;
}

/// Sets every batch norm of the Inception module to `value` (GoogLeNet's 0.001).
pub fn inception_eps<T: Scalar>(module: &mut Inception<T>, value: T) {
    let (b1, b2, b3, b4) = &mut module.branches;
    eps(b1, value);
    eps(&mut b2.first, value);
    eps(&mut b2.then, value);
    eps(&mut b3.first, value);
    eps(&mut b3.then, value);
    eps(&mut b4.then, value);
}

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
/// (projection) shortcuts.
pub type CifarResNet20<T> = sequential![
    Named<Conv1, NoBias<Conv2d<T, 1, 16, 3, 1, 1, 32, 32, 32, 32>>>,
    Named<Bn1, Bn2d<T, 16, 32>>,
    Relu<Maps<T, 16, 32, 32>>,
    Named<Layer1, sequential![Block<BasicIdentity<T, 16, 32>>, Block<BasicIdentity<T, 16, 32>>, Block<BasicIdentity<T, 16, 32>>]>,
    Named<Layer2, sequential![Block<BasicDown<T, 16, 32, 32, 16>>, Block<BasicIdentity<T, 32, 16>>, Block<BasicIdentity<T, 32, 16>>]>,
    Named<Layer3, sequential![Block<BasicDown<T, 32, 64, 16, 8>>, Block<BasicIdentity<T, 64, 8>>, Block<BasicIdentity<T, 64, 8>>]>,
    GlobalAvgPool2d<T, 64, 8, 8>,
    Named<Fc, Linear<T, 64, 10>>,
];
