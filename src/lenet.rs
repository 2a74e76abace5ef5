//! The article's network, LeNet-5, as one type, and what a classifier can do.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::layer::Layer;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::Maps;
use crate::{Conv2d, Flatten, Lanes, Linear, MaxPool2d, Named, Relu, sequential};

/// LeNet-5 as in the article: a 1×32×32 digit to 10 class probabilities.
///
/// ```text
/// 1×32×32 → Conv 6@5×5 → ReLU → MaxPool 2×2/2 → Conv 16@5×5 → ReLU → MaxPool 2×2/2
///         → Flatten 400 → Linear 120 → ReLU → Linear 100 → ReLU → Linear 10 → Softmax
/// ```
///
/// Every layer before the softmax is wrapped in [`Lanes`]: with AVX-512, a batch of 16, 32,
/// 48, … images runs through them 16 images per vector ([`crate::lanes`]); a single image,
/// another batch size or another instruction set runs them as if unwrapped.
///
/// It has 63,802 parameters (249 KiB in `f32`, 498 KiB in `f64`); build it on the heap with
/// [`LeNet5::new_boxed`]. Its parameter tensors are, in order, PyTorch's `conv1.weight`,
/// `conv1.bias`, `conv2.weight`, `conv2.bias`, `fc1.weight`, `fc1.bias`, `fc2.*`, `fc3.*`
/// in the same layouts ([`Layer::param`]).
///
/// ```
/// use constnet::{LeNet5, Layer};
/// use rand::SeedableRng;
///
/// let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(7));
/// let mut ws = LeNet5::<f32>::workspace();
/// let mut image = [[[0.0f32; 32]; 32]; 1];
/// image[0][16][10..22].fill(1.0); // a horizontal stroke
/// let probs = net.probabilities(&image, &mut ws);
/// assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
/// let class = net.classify(&image, &mut ws).expect("finite probabilities");
/// assert!(class < 10);
/// ```
pub type LeNet5<T> = sequential![
    Lanes<sequential![                              // batches of 16k: 16 images per vector
        Named<Conv1, Conv2d<T, 1, 6, 5, 1, 0, 32, 32, 28, 28>>,   // C1: 6 filters 5×5 → 6@28×28
        Named<Relu1, Relu<Maps<T, 6, 28, 28>>>,
        Named<Pool1, MaxPool2d<T, 6, 28, 28, 2, 2, 14, 14>>,      // S2: 2×2 stride 2 → 6@14×14
        Named<Conv2, Conv2d<T, 6, 16, 5, 1, 0, 14, 14, 10, 10>>,  // C3: 16 filters 5×5 → 16@10×10
        Named<Relu2, Relu<Maps<T, 16, 10, 10>>>,
        Named<Pool2, MaxPool2d<T, 16, 10, 10, 2, 2, 5, 5>>,       // S4: 2×2 stride 2 → 16@5×5
        Named<Flat, Flatten<T, 16, 5, 5, 400>>,                  // 400
        Named<Fc1, Linear<T, 400, 120>>,            // F5: 120
        Named<Relu3, Relu<[T; 120]>>,
        Named<Fc2, Linear<T, 120, 100>>,            // F6: 100
        Named<Relu4, Relu<[T; 100]>>,
        Named<Fc3, Linear<T, 100, 10>>,             // output: 10 logits
    ]>,
    Softmax<T, 10>,                                 // class probabilities
];

crate::name!(
    /// LeNet-5's first convolution (PyTorch `conv1`).
    pub Conv1 = "conv1"
);
crate::name!(
    /// The ReLU after `conv1` (no parameters: not in the `state_dict`).
    pub Relu1 = "relu1"
);
crate::name!(
    /// The first max pooling.
    pub Pool1 = "pool1"
);
crate::name!(
    /// The ReLU after `conv2`.
    pub Relu2 = "relu2"
);
crate::name!(
    /// The second max pooling.
    pub Pool2 = "pool2"
);
crate::name!(
    /// The pooled maps as one vector.
    pub Flat = "flatten"
);
crate::name!(
    /// The ReLU after `fc1`.
    pub Relu3 = "relu3"
);
crate::name!(
    /// The ReLU after `fc2`.
    pub Relu4 = "relu4"
);
crate::name!(
    /// LeNet-5's second convolution (PyTorch `conv2`).
    pub Conv2 = "conv2"
);
crate::name!(
    /// LeNet-5's first fully connected layer (PyTorch `fc1`).
    pub Fc1 = "fc1"
);
crate::name!(
    /// LeNet-5's second fully connected layer (PyTorch `fc2`).
    pub Fc2 = "fc2"
);
crate::name!(
    /// LeNet-5's output layer (PyTorch `fc3`).
    pub Fc3 = "fc3"
);

/// LeNet-5's input: one 32×32 grey image (a 28×28 MNIST digit padded by 2).
pub type Image<T> = Maps<T, 1, 32, 32>;

/// Every activation of one LeNet-5 forward pass, borrowed from its workspace (for pictures
/// of the network, and for checking it against other frameworks).
#[derive(Clone, Copy, Debug)]
pub struct LeNet5Activations<'a, T> {
    /// First convolution, before ReLU: 6@28×28.
    pub conv1: &'a Maps<T, 6, 28, 28>,
    /// After the first ReLU.
    pub relu1: &'a Maps<T, 6, 28, 28>,
    /// After the first max-pool: 6@14×14.
    pub pool1: &'a Maps<T, 6, 14, 14>,
    /// Second convolution, before ReLU: 16@10×10.
    pub conv2: &'a Maps<T, 16, 10, 10>,
    /// After the second ReLU.
    pub relu2: &'a Maps<T, 16, 10, 10>,
    /// After the second max-pool: 16@5×5.
    pub pool2: &'a Maps<T, 16, 5, 5>,
    /// The pooled maps as one vector.
    pub flat: &'a [T; 400],
    /// First fully connected layer, before ReLU.
    pub fc1: &'a [T; 120],
    /// After its ReLU.
    pub relu3: &'a [T; 120],
    /// Second fully connected layer, before ReLU.
    pub fc2: &'a [T; 100],
    /// After its ReLU.
    pub relu4: &'a [T; 100],
    /// Output layer: one logit per class.
    pub logits: &'a [T; 10],
    /// Softmax of the logits.
    pub probs: &'a [T; 10],
}

/// LeNet-5 has no constants beyond its weights. Its inherent `new_boxed` and `workspace`
/// below are the trait's, callable without importing [`crate::Network`].
impl<T: Scalar> crate::network::Network for LeNet5<T> {}

impl<T: Scalar> LeNet5<T> {
    /// A LeNet-5 with PyTorch's default initial weights and biases drawn from `rng`
    /// (U(±1/√fan_in), [`Layer::init`]), built directly on the heap.
    #[cfg(feature = "alloc")]
    pub fn new_boxed<R: rand::Rng + ?Sized>(rng: &mut R) -> Box<Self> {
        <Self as crate::network::Network>::new_boxed(rng)
    }

    /// A zeroed workspace for LeNet-5's passes, on the heap (124 KiB in `f32`: every activation,
    /// its gradient, and the pools' winning positions).
    #[cfg(feature = "alloc")]
    pub fn workspace() -> Box<<Self as Layer>::Workspace> {
        <Self as crate::network::Network>::workspace()
    }

    /// The activations of the latest forward pass that used `ws`, found by their layers'
    /// names ([`Layer::activation`]).
    pub fn activations(ws: &<Self as Layer>::Workspace) -> LeNet5Activations<'_, T> {
        LeNet5Activations {
            conv1: tap(ws, "conv1"),
            relu1: tap(ws, "relu1"),
            pool1: tap(ws, "pool1"),
            conv2: tap(ws, "conv2"),
            relu2: tap(ws, "relu2"),
            pool2: tap(ws, "pool2"),
            flat: tap(ws, "flatten"),
            fc1: tap(ws, "fc1"),
            relu3: tap(ws, "relu3"),
            fc2: tap(ws, "fc2"),
            relu4: tap(ws, "relu4"),
            logits: tap(ws, "fc3"),
            probs: &ws.then,
        }
    }
}

/// The output of LeNet-5's layer `name`, as its type.
fn tap<'a, T: Scalar, X: 'static>(ws: &'a <LeNet5<T> as Layer>::Workspace, name: &str) -> &'a X {
    <LeNet5<T> as Layer>::activation(ws, name)
        .and_then(|a| a.get())
        .unwrap_or_else(|| panic!("LeNet-5 keeps the output of its layer `{name}`"))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lenet_has_the_articles_parameter_count() {
        let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
        // conv1 6·25+6, conv2 16·150+16, fc1 400·120+120, fc2 120·100+100, fc3 100·10+10
        assert_eq!(net.param_count(), 156 + 2416 + 48120 + 12100 + 1010);
        assert_eq!(<LeNet5<f32> as Layer>::PARAM_TENSORS, 10);
    }

    #[test]
    fn activations_are_the_layers_outputs() {
        let net = LeNet5::<f64>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(2));
        let mut ws = LeNet5::<f64>::workspace();
        let mut image = [[[0.0; 32]; 32]; 1];
        for (i, v) in image[0].iter_mut().flatten().enumerate() {
            *v = ((i * 37) % 11) as f64 / 10.0;
        }
        let probs = net.probabilities(&image, &mut ws);
        let a = LeNet5::<f64>::activations(&ws);
        // relu1 = max(conv1, 0); pool1 = 2×2 max of relu1
        assert_eq!(a.relu1[3][5][7], a.conv1[3][5][7].max(0.0));
        let m = a.relu1[2][6][8]
            .max(a.relu1[2][6][9])
            .max(a.relu1[2][7][8])
            .max(a.relu1[2][7][9]);
        assert_eq!(a.pool1[2][3][4], m);
        assert_eq!(a.flat[25 * 3 + 5 * 2 + 1], a.pool2[3][2][1]);
        assert_eq!(a.relu4[9], a.fc2[9].max(0.0));
        assert_eq!(a.probs, &probs);
        // logits are fc3 of relu4
        let fc3 = &net.first.0.then;
        let z0 = fc3.bias[0]
            + fc3.weight[0]
                .iter()
                .zip(a.relu4)
                .map(|(w, x)| w * x)
                .sum::<f64>();
        assert!((z0 - a.logits[0]).abs() < 1e-12);
    }
}
