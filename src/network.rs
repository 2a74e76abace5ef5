//! What the networks of the article share: building one on the heap and setting the values
//! that are part of its definition rather than of its weights.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use core::any::Any;

use crate::layer::Layer;

/// A network the library defines, built on the heap once: [`Network::new_boxed`] initialises
/// every layer as PyTorch does ([`Layer::init`]) and then sets the values that belong to the
/// network's definition rather than to its weights ([`Network::configure`]: dropout rates,
/// normalisation constants); [`Network::workspace`] is the zeroed workspace for its passes.
///
/// The methods are the trait's, checked once for every network, rather than each network's
/// own: a method written for DenseNet-121's type made the compiler walk its 121 layers' types
/// again, seconds of every build of the crate (BENCHMARKS.md, "The main job's build").
///
/// ```
/// use constnet::{Layer, Network, ResNet20};
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let net = ResNet20::<f32, 1, 10>::new_boxed(&mut rng);
/// let mut ws = ResNet20::<f32, 1, 10>::workspace();
/// let probs = net.probabilities(&[[[0.5; 32]; 32]; 1], &mut ws); // evaluation mode
/// assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
/// ```
pub trait Network: Layer + Sized {
    /// Sets the values that are part of the network's definition (dropout rates, local
    /// response normalisation's constants) after [`Layer::init`]; nothing by default.
    fn configure(&mut self) {}

    /// The network with PyTorch's initial values and its definition's constants, built in
    /// zeroed heap memory (never on the stack).
    #[cfg(feature = "alloc")]
    fn new_boxed<R: rand::Rng + ?Sized>(rng: &mut R) -> Box<Self> {
        let mut net = crate::zeroed_box::<Self>();
        net.init(rng);
        net.configure();
        net
    }

    /// A zeroed workspace for its passes, on the heap.
    #[cfg(feature = "alloc")]
    fn workspace() -> Box<Self::Workspace> {
        crate::zeroed_box()
    }
}

/// Calls `set` on every layer of `net` of type `X` (see [`Layer::visit_layers_mut`]);
/// returns how many there were.
pub fn set_each<L: Layer, X: Any>(net: &mut L, mut set: impl FnMut(&mut X)) -> usize {
    let mut n = 0;
    net.visit_layers_mut(&mut |layer| {
        if let Some(x) = layer.downcast_mut::<X>() {
            set(x);
            n += 1;
        }
    });
    n
}

/// Copies every parameter, buffer and counter of `src` into `dst` (the same type), tensor by
/// tensor, so that a network of many megabytes is never copied through the stack.
pub fn copy_tensors<L: Layer>(dst: &mut L, src: &L) {
    for i in 0..L::PARAM_TENSORS {
        dst.param_mut(i).copy_from_slice(src.param(i));
    }
    for i in 0..L::BUFFER_TENSORS {
        dst.buffer_mut(i).copy_from_slice(src.buffer(i));
    }
    for i in 0..L::COUNTERS {
        *dst.counter_mut(i) = src.counter(i);
    }
}
