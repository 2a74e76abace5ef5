//! VGG-16 (Simonyan & Zisserman 2014, configuration D), as torchvision's `vgg16`.
//!
//! ```text
//! 3×224×224 → [conv 3×3 64, relu] ×2 → maxpool 2×2/2        64×112×112   features.0, .2
//!           → [conv 3×3 128, relu] ×2 → maxpool             128×56×56    features.5, .7
//!           → [conv 3×3 256, relu] ×3 → maxpool             256×28×28    features.10, .12, .14
//!           → [conv 3×3 512, relu] ×3 → maxpool             512×14×14    features.17, .19, .21
//!           → [conv 3×3 512, relu] ×3 → maxpool             512×7×7      features.24, .26, .28
//!           → flatten 25088 → linear 4096 → relu → dropout               classifier.0
//!           → linear 4096 → relu → dropout → linear 1000 → softmax       classifier.3, .6
//! ```
//!
//! torchvision's `avgpool` (`AdaptiveAvgPool2d(7, 7)`) is the identity on the 7×7 maps of a
//! 224×224 image and has no parameters, so the type leaves it out.

use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, Named, Relu, name, sequential};

name!(
    /// The convolutional part, numbered as torchvision's `nn.Sequential`.
    pub Features = "features"
);
name!(
    /// The fully connected part.
    pub Classifier = "classifier"
);

/// A 3×3 convolution with padding 1 and its ReLU, on `H`×`H` maps.
pub type ConvRelu<T, const CI: usize, const CO: usize, const H: usize> =
    sequential![Conv2d<T, CI, CO, 3, 1, 1, H, H, H, H>, Relu<Maps<T, CO, H, H>>];

type Pool<T, const C: usize, const H: usize, const OH: usize> = MaxPool2d<T, C, H, H, 2, 2, OH, OH>;

/// VGG-16's convolutions and poolings (torchvision's `features`).
pub type Vgg16Features<T> = sequential![
    ConvRelu<T, 3, 64, 224>, ConvRelu<T, 64, 64, 224>, Pool<T, 64, 224, 112>,
    ConvRelu<T, 64, 128, 112>, ConvRelu<T, 128, 128, 112>, Pool<T, 128, 112, 56>,
    ConvRelu<T, 128, 256, 56>, ConvRelu<T, 256, 256, 56>, ConvRelu<T, 256, 256, 56>, Pool<T, 256, 56, 28>,
    ConvRelu<T, 256, 512, 28>, ConvRelu<T, 512, 512, 28>, ConvRelu<T, 512, 512, 28>, Pool<T, 512, 28, 14>,
    ConvRelu<T, 512, 512, 14>, ConvRelu<T, 512, 512, 14>, ConvRelu<T, 512, 512, 14>, Pool<T, 512, 14, 7>,
];

/// VGG-16 up to the logits.
pub type Vgg16Logits<T> = sequential![
    Named<Features, Vgg16Features<T>>,
    Flatten<T, 512, 7, 7, 25088>,
    Named<Classifier, sequential![
        Linear<T, 25088, 4096>, Relu<[T; 4096]>, Dropout<[T; 4096]>,
        Linear<T, 4096, 4096>, Relu<[T; 4096]>, Dropout<[T; 4096]>,
        Linear<T, 4096, 1000>,
    ]>,
];

/// VGG-16, configuration D (torchvision's `vgg16`): a 3×224×224 image to the probabilities
/// of 1000 classes; 13 convolutions 3×3 and 3 linear layers, 138,357,544 parameters (528
/// MiB in `f32`). Dropout 0.5 in training. `net.first` is [`Vgg16Logits`].
///
/// ```
/// use constnet::{layer::count, Layer, TensorKind, Vgg16};
/// assert_eq!(count::<Vgg16<f32>>(TensorKind::Param), 32);
/// const _: () = <Vgg16<f32> as Layer>::CHECK;
/// ```
pub type Vgg16<T> = sequential![Vgg16Logits<T>, Softmax<T, 1000>];

impl<T: Scalar> Network for Vgg16<T> {
    /// Dropout 0.5.
    fn configure(&mut self) {
        crate::network::set_each(self, |d: &mut Dropout<[T; 4096]>| d.p = T::from_f64(0.5));
    }
}
