//! AlexNet (Krizhevsky, Sutskever & Hinton 2012) in its two common forms: torchvision's
//! `alexnet` (the single-tower "one weird trick" layout, 3×224×224) and the 2012 paper's as
//! Caffe's `bvlc_alexnet` has it (3×227×227, local response normalisation, grouped
//! convolutions: the two GPUs of the paper).
//!
//! ```text
//! torchvision  3×224×224 → conv 11×11/4 pad 2, 64 → relu → maxpool 3/2        64×27×27
//!              → conv 5×5 pad 2, 192 → relu → maxpool 3/2                    192×13×13
//!              → conv 3×3 384 → relu → conv 3×3 256 → relu → conv 3×3 256 → relu
//!              → maxpool 3/2 → flatten 9216                                  256×6×6
//!              → dropout → linear 4096 → relu → dropout → linear 4096 → relu → linear 1000
//! 2012 paper   3×227×227 → conv1 11×11/4, 96 → relu → LRN → maxpool 3/2       96×27×27
//!              → conv2 5×5 pad 2, 256, groups 2 → relu → LRN → maxpool 3/2  256×13×13
//!              → conv3 3×3 384 → relu → conv4 3×3 384 groups 2 → relu
//!              → conv5 3×3 256 groups 2 → relu → maxpool 3/2 → flatten 9216  256×6×6
//!              → fc6 4096 → relu → dropout → fc7 4096 → relu → dropout → fc8 1000
//! ```

use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    Conv2d, Dropout, Flatten, GroupedConv2d, Linear, LocalResponseNorm, MaxPool2d, Named, Relu,
    name, sequential,
};

pub use crate::vgg::{Classifier, Features};

/// torchvision's AlexNet up to the logits. Its `avgpool` (`AdaptiveAvgPool2d(6, 6)`) is the
/// identity on the 6×6 maps of a 224×224 image and has no parameters, so the type leaves it
/// out.
pub type AlexNetLogits<T> = sequential![
    Named<Features, sequential![
        Conv2d<T, 3, 64, 11, 4, 2, 224, 224, 55, 55>, Relu<Maps<T, 64, 55, 55>>,   // 0, 1
        MaxPool2d<T, 64, 55, 55, 3, 2, 27, 27>,                                    // 2
        Conv2d<T, 64, 192, 5, 1, 2, 27, 27, 27, 27>, Relu<Maps<T, 192, 27, 27>>,  // 3, 4
        MaxPool2d<T, 192, 27, 27, 3, 2, 13, 13>,                                   // 5
        Conv2d<T, 192, 384, 3, 1, 1, 13, 13, 13, 13>, Relu<Maps<T, 384, 13, 13>>, // 6, 7
        Conv2d<T, 384, 256, 3, 1, 1, 13, 13, 13, 13>, Relu<Maps<T, 256, 13, 13>>, // 8, 9
        Conv2d<T, 256, 256, 3, 1, 1, 13, 13, 13, 13>, Relu<Maps<T, 256, 13, 13>>, // 10, 11
        MaxPool2d<T, 256, 13, 13, 3, 2, 6, 6>,                                     // 12
    ]>,
    Flatten<T, 256, 6, 6, 9216>,
    Named<Classifier, sequential![
        Dropout<[T; 9216]>, Linear<T, 9216, 4096>, Relu<[T; 4096]>,               // 0, 1, 2
        Dropout<[T; 4096]>, Linear<T, 4096, 4096>, Relu<[T; 4096]>,               // 3, 4, 5
        Linear<T, 4096, 1000>,                                                     // 6
    ]>,
];

/// AlexNet as torchvision has it (`torchvision.models.alexnet`): 64/192/384/256/256
/// channels, no normalisation, no groups; 61,100,840 parameters. Dropout 0.5 in training.
/// `net.first` is [`AlexNetLogits`].
///
/// ```
/// use constnet::{layer::count, AlexNet, Layer, TensorKind};
/// assert_eq!(count::<AlexNet<f32>>(TensorKind::Param), 16);
/// const _: () = <AlexNet<f32> as Layer>::CHECK;
/// ```
pub type AlexNet<T> = sequential![AlexNetLogits<T>, Softmax<T, 1000>];

name!(
    /// The 2012 AlexNet's first convolution.
    pub Conv1 = "conv1"
);
name!(
    /// Its second convolution (2 groups).
    pub Conv2 = "conv2"
);
name!(
    /// Its third convolution.
    pub Conv3 = "conv3"
);
name!(
    /// Its fourth convolution (2 groups).
    pub Conv4 = "conv4"
);
name!(
    /// Its fifth convolution (2 groups).
    pub Conv5 = "conv5"
);
name!(
    /// The ReLU after `conv1`.
    pub Relu1 = "relu1"
);
name!(
    /// The ReLU after `conv2`.
    pub Relu2 = "relu2"
);
name!(
    /// The ReLU after `conv3`.
    pub Relu3 = "relu3"
);
name!(
    /// The ReLU after `conv4`.
    pub Relu4 = "relu4"
);
name!(
    /// The ReLU after `conv5`.
    pub Relu5 = "relu5"
);
name!(
    /// The normalisation after `relu1`.
    pub Norm1 = "norm1"
);
name!(
    /// The normalisation after `relu2`.
    pub Norm2 = "norm2"
);
name!(
    /// The pooling after `norm1`.
    pub Pool1 = "pool1"
);
name!(
    /// The pooling after `norm2`.
    pub Pool2 = "pool2"
);
name!(
    /// The pooling after `relu5`.
    pub Pool5 = "pool5"
);
name!(
    /// The first fully connected layer.
    pub Fc6 = "fc6"
);
name!(
    /// The second fully connected layer.
    pub Fc7 = "fc7"
);
name!(
    /// The output layer.
    pub Fc8 = "fc8"
);
name!(
    /// The ReLU after `fc6`.
    pub Relu6 = "relu6"
);
name!(
    /// The ReLU after `fc7`.
    pub Relu7 = "relu7"
);
name!(
    /// The dropout after `relu6`.
    pub Drop6 = "drop6"
);
name!(
    /// The dropout after `relu7`.
    pub Drop7 = "drop7"
);
name!(
    /// The pooled maps as one vector.
    pub Flat = "flatten"
);

/// The 2012 paper's AlexNet up to the logits, named as Caffe's `bvlc_alexnet`.
pub type AlexNet2012Logits<T> = sequential![
    Named<Conv1, Conv2d<T, 3, 96, 11, 4, 0, 227, 227, 55, 55>>,
    Named<Relu1, Relu<Maps<T, 96, 55, 55>>>,
    Named<Norm1, LocalResponseNorm<T, 96, 55, 55, 5>>,
    Named<Pool1, MaxPool2d<T, 96, 55, 55, 3, 2, 27, 27>>,
    Named<Conv2, GroupedConv2d<T, 96, 256, 2, 48, 5, 1, 2, 27, 27, 27, 27>>,
    Named<Relu2, Relu<Maps<T, 256, 27, 27>>>,
    Named<Norm2, LocalResponseNorm<T, 256, 27, 27, 5>>,
    Named<Pool2, MaxPool2d<T, 256, 27, 27, 3, 2, 13, 13>>,
    Named<Conv3, Conv2d<T, 256, 384, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu3, Relu<Maps<T, 384, 13, 13>>>,
    Named<Conv4, GroupedConv2d<T, 384, 384, 2, 192, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu4, Relu<Maps<T, 384, 13, 13>>>,
    Named<Conv5, GroupedConv2d<T, 384, 256, 2, 192, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu5, Relu<Maps<T, 256, 13, 13>>>,
    Named<Pool5, MaxPool2d<T, 256, 13, 13, 3, 2, 6, 6>>,
    Named<Flat, Flatten<T, 256, 6, 6, 9216>>,
    Named<Fc6, Linear<T, 9216, 4096>>,
    Named<Relu6, Relu<[T; 4096]>>,
    Named<Drop6, Dropout<[T; 4096]>>,
    Named<Fc7, Linear<T, 4096, 4096>>,
    Named<Relu7, Relu<[T; 4096]>>,
    Named<Drop7, Dropout<[T; 4096]>>,
    Named<Fc8, Linear<T, 4096, 1000>>,
];

/// AlexNet as in the 2012 paper, in Caffe's `bvlc_alexnet` layout: 3×227×227 input,
/// 96/256/384/384/256 channels, local response normalisation after `conv1` and `conv2`
/// (size 5, alpha 1e-4, beta 0.75, k 1: Caffe's constants, alpha divided by the size),
/// 2 groups in `conv2`, `conv4` and `conv5` (the paper's two GPUs); 60,965,224 parameters.
/// Dropout 0.5 in training. Keys `conv1`…`conv5`, `fc6`…`fc8`.
///
/// ```
/// use constnet::{layer::count, AlexNet2012, Layer, TensorKind};
/// assert_eq!(count::<AlexNet2012<f32>>(TensorKind::Param), 16);
/// const _: () = <AlexNet2012<f32> as Layer>::CHECK;
/// ```
pub type AlexNet2012<T> = sequential![AlexNet2012Logits<T>, Softmax<T, 1000>];

impl<T: Scalar> Network for AlexNet<T> {
    /// Dropout 0.5.
    fn configure(&mut self) {
        crate::network::set_each(self, |d: &mut Dropout<[T; 9216]>| d.p = T::from_f64(0.5));
        crate::network::set_each(self, |d: &mut Dropout<[T; 4096]>| d.p = T::from_f64(0.5));
    }
}

impl<T: Scalar> Network for AlexNet2012<T> {
    /// Caffe's normalisation constants (alpha 1e-4, beta 0.75, k 1) and dropout 0.5.
    fn configure(&mut self) {
        let (alpha, beta, k) = (T::from_f64(1e-4), T::from_f64(0.75), T::one());
        let norm1 =
            |l: &mut LocalResponseNorm<T, 96, 55, 55, 5>| (l.alpha, l.beta, l.k) = (alpha, beta, k);
        let norm2 = |l: &mut LocalResponseNorm<T, 256, 27, 27, 5>| {
            (l.alpha, l.beta, l.k) = (alpha, beta, k)
        };
        crate::network::set_each(self, norm1);
        crate::network::set_each(self, norm2);
        crate::network::set_each(self, |d: &mut Dropout<[T; 4096]>| d.p = T::from_f64(0.5));
    }
}
