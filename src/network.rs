//! What the networks of the article share: building one on the heap and setting the values
//! that are part of its definition rather than of its weights.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use core::any::Any;

use crate::layer::Layer;

/// A network built on the heap from zeroed memory, initialised ([`Layer::init`]: PyTorch's
/// default for every layer), then `configure`d (dropout rates, normalisation constants).
#[cfg(feature = "alloc")]
pub(crate) fn new_boxed<L: Layer, R: rand::Rng + ?Sized>(
    rng: &mut R,
    configure: impl FnOnce(&mut L),
) -> Box<L> {
    let mut net = crate::zeroed_box::<L>();
    net.init(rng);
    configure(&mut net);
    net
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
