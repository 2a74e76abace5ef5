//! Building values from zeroed memory, so big networks never pass through the stack.
//!
//! One of the crate's two `unsafe` modules (with [`crate::simd`]; `#![deny(unsafe_code)]`
//! keeps it out of every other). A `LeNet5<f64>` holds 63,802 parameters
//! (≈ 0.5 MB) and its gradients as many again: returned by value from a constructor, a debug
//! build copies such values through several stack frames and overflows small thread stacks.
//! [`zeroed_box`] allocates the memory already zeroed and never materialises the value on the
//! stack; `tests/stack.rs` runs a whole training step in a thread with a 2 MiB stack.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::batch::{BatchChainWorkspace, BatchLayer};
use crate::chain::{Chain, ChainWorkspace};
use crate::conv2d::{Conv2d, ConvLaneWorkspace};
use crate::flatten::Flatten;
use crate::lanes::{CacheLines, LaneChainWorkspace, LaneLayer, Lanes, LanesWorkspace};
use crate::layer::Layer;
use crate::linear::{Linear, LinearLaneWorkspace};
use crate::maxpool2d::MaxPool2d;
use crate::optim::OptimizerState;
use crate::relu::Relu;
use crate::scalar::Scalar;
use crate::softmax::Softmax;

/// Types for which the all-zero bit pattern is a valid value (numbers equal to zero, empty
/// markers, and structs and arrays made only of such fields).
///
/// # Safety
/// Implement it only for types whose every field is itself `Zeroable` and which have no
/// invariant that zero breaks (no references, no `NonZero`, no enums without a zero variant).
pub unsafe trait Zeroable: Sized {
    /// The all-zero value, built in place (for small values; use [`zeroed_box`] for big ones).
    fn zeroed() -> Self {
        // SAFETY: the trait's contract is that all-zero bytes are a valid `Self`.
        unsafe { core::mem::zeroed() }
    }
}

/// Allocates a `Z` on the heap with every byte zero, without building it on the stack first.
///
/// ```
/// use constnet::{zeroed_box, LeNet5};
/// let net = zeroed_box::<LeNet5<f64>>(); // ~0.5 MB, straight onto the heap
/// # let _ = net;
/// ```
#[cfg(feature = "alloc")]
pub fn zeroed_box<Z: Zeroable>() -> Box<Z> {
    let boxed = Box::<Z>::new_zeroed();
    // SAFETY: the memory is zeroed, and all-zero bytes are a valid `Z` by `Zeroable`'s contract.
    unsafe { boxed.assume_init() }
}

// SAFETY (all impls below): IEEE-754 +0.0 and integer 0 are all-zero bytes; arrays, tuples and
// the listed structs consist only of `Zeroable` fields (struct fields are listed beside each).
unsafe impl Zeroable for f32 {}
unsafe impl Zeroable for f64 {}
unsafe impl Zeroable for u8 {}
unsafe impl Zeroable for u32 {}
unsafe impl Zeroable for u64 {}
unsafe impl Zeroable for () {}
unsafe impl<Z: Zeroable, const N: usize> Zeroable for [Z; N] {}
unsafe impl<A: Zeroable, B: Zeroable> Zeroable for (A, B) {}
// Conv2d { weight: [[[[T; K]; K]; CI]; CO], bias: [T; CO] }
unsafe impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Zeroable for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
}
// Linear { weight: [[T; IN]; OUT], bias: [T; OUT] }
unsafe impl<T: Scalar, const IN: usize, const OUT: usize> Zeroable for Linear<T, IN, OUT> {}
// MaxPool2d, Relu, Flatten, Softmax: only PhantomData (zero-sized).
unsafe impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
> Zeroable for MaxPool2d<T, C, H, W, K, S, OH, OW>
{
}
unsafe impl<X> Zeroable for Relu<X> {}
unsafe impl<T: Scalar, const C: usize, const H: usize, const W: usize, const N: usize> Zeroable
    for Flatten<T, C, H, W, N>
{
}
unsafe impl<T: Scalar, const N: usize> Zeroable for Softmax<T, N> {}
// OptimizerState { first: L, second: L, steps: u64 }
unsafe impl<L: Zeroable> Zeroable for OptimizerState<L> {}
// Chain { first: A, then: B }
unsafe impl<A: Zeroable, B: Zeroable> Zeroable for Chain<A, B> {}
// ChainWorkspace { first: A::Workspace, mid: A::Output, mid_grad: A::Output, then: B::Workspace }
unsafe impl<A: Layer, B: Layer<Input = A::Output>> Zeroable for ChainWorkspace<A, B> {}
// BatchChainWorkspace { first: A::BatchWorkspace, mid: [A::Output; N], mid_grad: [A::Output; N],
// then: B::BatchWorkspace }: batch workspaces are `Zeroable` by `BatchLayer`'s bound, tensors
// by `Tensor`'s.
unsafe impl<A: BatchLayer<N>, B: BatchLayer<N, Input = A::Output>, const N: usize> Zeroable
    for BatchChainWorkspace<A, B, N>
{
}
// Lanes(Net)
unsafe impl<Net: Zeroable> Zeroable for Lanes<Net> {}
// LaneChainWorkspace { first: A::LaneWorkspace, mid: [A::Output; N], mid_grad: [A::Output; N],
// then: B::LaneWorkspace }: lane workspaces are `Zeroable` by `LaneLayer`'s bound.
unsafe impl<A: LaneLayer<N>, B: LaneLayer<N, Input = A::Output>, const N: usize> Zeroable
    for LaneChainWorkspace<A, B, N>
{
}
// LanesWorkspace { samples: Net::BatchWorkspace, lanes: Net::LaneWorkspace, input: [Net::Input; N],
// output, grad_output: [Net::Output; N], grad_input: [Net::Input; N], in_lanes: bool (all-zero
// bytes are `false`) }
unsafe impl<Net: BatchLayer<N> + LaneLayer<N>, const N: usize> Zeroable for LanesWorkspace<Net, N> {}
// ConvLaneWorkspace { x, y, gx: maps of T, gw: CacheLines<[[[[[T; 16]; K]; K]; CI]; CO]>,
// gb: CacheLines<[[T; 16]; CO]>, g: CacheLines<[maps of T; 16]>, order: BlockOrder }
unsafe impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Zeroable for ConvLaneWorkspace<T, CI, CO, K, H, W, OH, OW>
{
}
// LinearLaneWorkspace { x: CacheLines<[[T; IN]; N]>, g: CacheLines<[[T; OUT]; N]>,
// masked: CacheLines<[[T; OUT]; 16]>, order: BlockOrder }
// BlockOrder(usize): one integer
unsafe impl Zeroable for crate::lanes::BlockOrder {}
unsafe impl<T: Scalar, const IN: usize, const OUT: usize, const N: usize> Zeroable
    for LinearLaneWorkspace<T, IN, OUT, N>
{
}
// CacheLines(X): one field (and padding, which is not part of the value)
unsafe impl<X: Zeroable> Zeroable for CacheLines<X> {}
