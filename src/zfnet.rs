//! ZF Net (Zeiler & Fergus 2013, Fig. 3): AlexNet with a 7×7 stride-2 first convolution, a
//! stride-2 second one, and the layer shapes of pytorchcv's `zfnet`.
//!
//! ```text
//! 3×224×224 → conv1 7×7/2 pad 1, 96 → relu → LRN → maxpool 3/2 ceil   96×110×110 → 96×55×55
//!           → conv2 5×5/2, 256 → relu → LRN → maxpool 3/2 ceil        256×26×26 → 256×13×13
//!           → conv3 3×3 384 → relu → conv4 3×3 384 → relu
//!           → conv5 3×3 256 → relu → maxpool 3/2 ceil → flatten 9216   256×6×6
//!           → fc6 4096 → relu → dropout → fc7 4096 → relu → dropout → fc8 1000
//! ```

use crate::alexnet::{
    Conv1, Conv2, Conv3, Conv4, Conv5, Drop6, Drop7, Fc6, Fc7, Fc8, Flat, Norm1, Norm2, Pool1,
    Pool2, Pool5, Relu1, Relu2, Relu3, Relu4, Relu5, Relu6, Relu7,
};
use crate::network::Network;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{
    Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Named, Relu, sequential,
};

type CeilPool<T, const C: usize, const H: usize, const OH: usize> =
    MaxPool2d<T, C, H, H, 3, 2, OH, OH, 0, true>;

/// ZF Net up to the logits, named `conv1`…`conv5`, `fc6`…`fc8` (as in the 2012 AlexNet).
pub type ZfNetLogits<T> = sequential![
    Named<Conv1, Conv2d<T, 3, 96, 7, 2, 1, 224, 224, 110, 110>>,
    Named<Relu1, Relu<Maps<T, 96, 110, 110>>>,
    Named<Norm1, LocalResponseNorm<T, 96, 110, 110, 5>>,
    Named<Pool1, CeilPool<T, 96, 110, 55>>,
    Named<Conv2, Conv2d<T, 96, 256, 5, 2, 0, 55, 55, 26, 26>>,
    Named<Relu2, Relu<Maps<T, 256, 26, 26>>>,
    Named<Norm2, LocalResponseNorm<T, 256, 26, 26, 5>>,
    Named<Pool2, CeilPool<T, 256, 26, 13>>,
    Named<Conv3, Conv2d<T, 256, 384, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu3, Relu<Maps<T, 384, 13, 13>>>,
    Named<Conv4, Conv2d<T, 384, 384, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu4, Relu<Maps<T, 384, 13, 13>>>,
    Named<Conv5, Conv2d<T, 384, 256, 3, 1, 1, 13, 13, 13, 13>>,
    Named<Relu5, Relu<Maps<T, 256, 13, 13>>>,
    Named<Pool5, CeilPool<T, 256, 13, 6>>,
    Named<Flat, Flatten<T, 256, 6, 6, 9216>>,
    Named<Fc6, Linear<T, 9216, 4096>>,
    Named<Relu6, Relu<[T; 4096]>>,
    Named<Drop6, Dropout<[T; 4096]>>,
    Named<Fc7, Linear<T, 4096, 4096>>,
    Named<Relu7, Relu<[T; 4096]>>,
    Named<Drop7, Dropout<[T; 4096]>>,
    Named<Fc8, Linear<T, 4096, 1000>>,
];

/// ZF Net (Zeiler & Fergus 2013): 3×224×224 → 1000 classes through the paper's
/// 110→55→26→13→6 maps (a 7×7 stride-2 first convolution with 96 filters and padding 1,
/// ceil-mode pooling), local response normalisation after the first two convolutions (size
/// 5, alpha 1e-4, beta 0.75, k 2, PyTorch's convention), dropout 0.5 in training;
/// 62,357,608 parameters.
///
/// ```
/// use constnet::{layer::count, Layer, TensorKind, ZfNet};
/// assert_eq!(count::<ZfNet<f32>>(TensorKind::Param), 16);
/// const _: () = <ZfNet<f32> as Layer>::CHECK;
/// ```
pub type ZfNet<T> = sequential![ZfNetLogits<T>, Softmax<T, 1000>];

impl<T: Scalar> Network for ZfNet<T> {
    /// The normalisation constants above (alpha 1e-4, beta 0.75, k 2) and dropout 0.5.
    fn configure(&mut self) {
        let (alpha, beta, k) = (T::from_f64(1e-4), T::from_f64(0.75), T::from_f64(2.0));
        let norm1 = |l: &mut LocalResponseNorm<T, 96, 110, 110, 5>| {
            (l.alpha, l.beta, l.k) = (alpha, beta, k)
        };
        let norm2 = |l: &mut LocalResponseNorm<T, 256, 26, 26, 5>| {
            (l.alpha, l.beta, l.k) = (alpha, beta, k)
        };
        crate::network::set_each(self, norm1);
        crate::network::set_each(self, norm2);
        crate::network::set_each(self, |d: &mut Dropout<[T; 4096]>| d.p = T::from_f64(0.5));
    }
}
