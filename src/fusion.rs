//! Fusion as data: the maps a layer applies to its output as it writes it, instead of the
//! layers after it running as passes of their own.
//!
//! A layer says what it is as such a map ([`Layer::EPILOGUE`](crate::Layer::EPILOGUE),
//! [`Layer::channel_affine`](crate::Layer::channel_affine),
//! [`LaneLayer::LANE_EPILOGUE`](crate::LaneLayer::LANE_EPILOGUE)); a
//! [`Chain`](crate::Chain) composes it with what it was offered itself and passes the result
//! down to the layer before it as one value, a [`Fusion`]: to
//! [`Layer::infer_fused`](crate::Layer::infer_fused),
//! [`BatchLayer::infer_sample_fused`](crate::BatchLayer::infer_sample_fused) and, in lanes,
//! [`LaneLayer::forward_lanes_then`](crate::LaneLayer::forward_lanes_then) and
//! [`LaneLayer::backward_lanes_then`](crate::LaneLayer::backward_lanes_then). A layer
//! that cannot apply a map as it writes runs it as a pass after its own, with the same
//! result bit for bit.

use crate::scalar::Scalar;

/// An element-wise map applied to a layer's output as the layer writes it, instead of as a
/// layer of its own: fusion passed down a network as data
/// ([`Layer::infer_fused`](crate::Layer::infer_fused)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// No map.
    Identity,
    /// `max(x, 0)` as [`Relu`](crate::Relu) computes it: a NaN stays NaN.
    Relu,
}

impl Epilogue {
    /// The map of one value.
    #[inline(always)]
    pub fn of<T: Scalar>(self, x: T) -> T {
        match self {
            Epilogue::Identity => x,
            // Not `x > 0`, which would turn a NaN into 0.
            Epilogue::Relu => {
                if x <= T::zero() {
                    T::zero()
                } else {
                    x
                }
            }
        }
    }

    /// The map applied to every value of `y`, in place.
    pub fn apply<T: Scalar>(self, y: &mut [T]) {
        if self != Epilogue::Identity {
            for v in y {
                *v = self.of(*v);
            }
        }
    }

    /// This map after `first` (`self ∘ first`), if it is one of the maps: ReLU after ReLU is
    /// ReLU.
    pub fn after(self, first: Epilogue) -> Option<Epilogue> {
        match (first, self) {
            (Epilogue::Identity, e) | (e, Epilogue::Identity) => Some(e),
            (Epilogue::Relu, Epilogue::Relu) => Some(Epilogue::Relu),
        }
    }
}

/// A map of each channel's values `x` to `(x − mean[c])·scale[c] + shift[c]`: what batch norm
/// is in evaluation ([`Layer::channel_affine`](crate::Layer::channel_affine)), passed as data
/// to the layer before it ([`Layer::infer_fused`](crate::Layer::infer_fused)). The three slices
/// have one value per channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelAffine<'a, T> {
    /// Subtracted first.
    pub mean: &'a [T],
    /// Then multiplied.
    pub scale: &'a [T],
    /// Then added.
    pub shift: &'a [T],
}

impl<T: Scalar> ChannelAffine<'_, T> {
    /// The map, then `e`, applied in place to `y`, channel after channel (each `y.len() /
    /// channels` values), in the order and with the roundings batch norm's pass has.
    pub fn apply(&self, y: &mut [T], e: Epilogue) {
        let channels = self.mean.len();
        if y.is_empty() {
            return;
        }
        assert!(
            channels > 0
                && y.len().is_multiple_of(channels)
                && self.scale.len() == channels
                && self.shift.len() == channels,
            "ChannelAffine: {} values are not whole channels of {channels} constants",
            y.len()
        );
        for (c, y) in y.chunks_exact_mut(y.len() / channels).enumerate() {
            let (mean, scale, shift) = (self.mean[c], self.scale[c], self.shift[c]);
            for v in y {
                *v = e.of((*v - mean) * scale + shift);
            }
        }
    }
}

/// The maps a layer applies to its output as it writes it, passed down a chain as a value
/// ([`Layer::infer_fused`](crate::Layer::infer_fused),
/// [`BatchLayer::infer_sample_fused`](crate::BatchLayer::infer_sample_fused),
/// [`LaneLayer::forward_lanes_then`](crate::LaneLayer::forward_lanes_then)): the maps of the
/// layers after it that it takes over, a per-channel affine map first (batch norm in
/// evaluation), then an element-wise [`Epilogue`] (a ReLU), then, in lanes only, a 2×2
/// stride-2 max pooling.
///
/// ```
/// use constnet::{Epilogue, Fusion};
/// let relu = Fusion::<f32>::epilogue(Epilogue::Relu);
/// let pool = Fusion::<f32>::POOL;
/// // A pooling after a ReLU is one fusion, a ReLU after a ReLU is a ReLU ...
/// assert!(pool.after(relu).is_some_and(|f| f.is_relu_pool()));
/// assert!(relu.after(relu).is_some_and(|f| f.is_relu() && !f.pool));
/// // ... but nothing comes after a pooling, and only a ReLU trains fused.
/// assert!(relu.after(pool).is_none());
/// assert!(Fusion::NONE.after(pool).is_some_and(|f| f.pool));
/// assert!(relu.trains() && !pool.after(relu).unwrap().trains());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fusion<'a, T> {
    /// The per-channel affine map, if any.
    pub affine: Option<ChannelAffine<'a, T>>,
    /// The element-wise map after it.
    pub epilogue: Epilogue,
    /// A 2×2, stride-2 [`MaxPool2d`](crate::MaxPool2d) that covers its input, last: its output
    /// has another type than the layer's. Only a layer that says it applies one as it writes
    /// ([`LaneLayer::fuses`](crate::LaneLayer::fuses)) is offered one, and only in inference
    /// (its winners are not kept for a backward pass).
    pub pool: bool,
}

impl<'a, T: Scalar> Fusion<'a, T> {
    /// No map: the layer's own output.
    pub const NONE: Self = Fusion {
        affine: None,
        epilogue: Epilogue::Identity,
        pool: false,
    };

    /// A 2×2, stride-2 max pooling alone: what a [`MaxPool2d`](crate::MaxPool2d) of that
    /// geometry is as a map in lanes.
    pub const POOL: Self = Fusion {
        affine: None,
        epilogue: Epilogue::Identity,
        pool: true,
    };

    /// `epilogue` alone.
    pub const fn epilogue(epilogue: Epilogue) -> Self {
        Fusion {
            affine: None,
            epilogue,
            pool: false,
        }
    }

    /// Whether there is no map at all.
    pub const fn is_none(&self) -> bool {
        self.affine.is_none() && matches!(self.epilogue, Epilogue::Identity) && !self.pool
    }

    /// Whether the maps are a ReLU and nothing else.
    pub const fn is_relu(&self) -> bool {
        self.affine.is_none() && matches!(self.epilogue, Epilogue::Relu) && !self.pool
    }

    /// Whether the maps are a ReLU, then a pooling.
    pub const fn is_relu_pool(&self) -> bool {
        self.affine.is_none() && matches!(self.epilogue, Epilogue::Relu) && self.pool
    }

    /// Whether a training pass may fuse these maps: a ReLU alone (or nothing), whose backward
    /// pass needs nothing but its output. An affine map's input and a pooling's winners would
    /// be lost with the maps before them.
    pub const fn trains(&self) -> bool {
        self.affine.is_none() && !self.pool
    }

    /// These maps after `first` (`self ∘ first`), if that is one fusion: element-wise maps
    /// after element-wise maps ([`Epilogue::after`]), with this pooling last. Nothing comes
    /// after a pooling, and affine maps do not compose here.
    pub fn after(self, first: Self) -> Option<Self> {
        if self.is_none() {
            return Some(first);
        }
        if first.is_none() {
            return Some(self);
        }
        if first.pool || first.affine.is_some() || self.affine.is_some() {
            return None;
        }
        Some(Fusion {
            affine: None,
            epilogue: self.epilogue.after(first.epilogue)?,
            pool: self.pool,
        })
    }

    /// The maps applied in place to `y` (a layer's whole output), as a pass of their own.
    /// A pooling cannot be: it is applied only by a layer that says it applies it.
    pub fn apply(&self, y: &mut [T]) {
        debug_assert!(!self.pool, "a pooling is no pass in place");
        match self.affine {
            Some(affine) => affine.apply(y, self.epilogue),
            None => self.epilogue.apply(y),
        }
    }
}
