//! Building values from zeroed memory, so big networks never pass through the stack.
//!
//! One of the crate's two `unsafe` modules (with [`crate::simd`]; `#![deny(unsafe_code)]`
//! keeps it out of every other). A `LeNet5<f64>` holds 63,802 parameters
//! (≈ 0.5 MB) and its gradients as many again: returned by value from a constructor, a debug
//! build copies such values through several stack frames and overflows small thread stacks.
//! [`zeroed_box`] allocates the memory already zeroed and never materialises the value on the
//! stack; `tests/suite/stack.rs` runs a whole training step in a thread with a 2 MiB stack.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::boxed::Box;

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

// SAFETY: IEEE-754 +0.0 and integer 0 are all-zero bytes, and so is `false`; an array, a tuple
// or a `PhantomData` of `Zeroable` types (or of nothing) is all-zero bytes of them.
unsafe impl Zeroable for f32 {}
unsafe impl Zeroable for f64 {}
unsafe impl Zeroable for u8 {}
unsafe impl Zeroable for u32 {}
unsafe impl Zeroable for u64 {}
unsafe impl Zeroable for usize {}
unsafe impl Zeroable for bool {}
unsafe impl Zeroable for () {}
unsafe impl<T: ?Sized> Zeroable for core::marker::PhantomData<T> {}
unsafe impl<Z: Zeroable, const N: usize> Zeroable for [Z; N] {}
unsafe impl<A: Zeroable, B: Zeroable> Zeroable for (A, B) {}
unsafe impl<A: Zeroable, B: Zeroable, C: Zeroable> Zeroable for (A, B, C) {}
unsafe impl<A: Zeroable, B: Zeroable, C: Zeroable, D: Zeroable> Zeroable for (A, B, C, D) {}

/// Implements [`Zeroable`] for a struct of the crate, in the struct's own file, after proving
/// at compile time that it holds: the struct pattern the macro writes must name every field
/// (Rust rejects a pattern that leaves one out), and each field must be `Zeroable`. So a field
/// added later without the trait, or left off the list, is a compile error, not undefined
/// behaviour; and this module imports no layer.
///
/// `zeroable!(impl [generics] for Name [arguments] { fields })` for a struct with named fields,
/// `( fields )` for a tuple struct (name its positions `_0, _1, …`). Your own layers and
/// workspaces use it too, with no `unsafe` of their own:
///
/// ```
/// use constnet::{zeroable, zeroed_box};
///
/// /// A per-channel scale and its running count.
/// pub struct Scale<const C: usize> {
///     factor: [f32; C],
///     seen: u64,
/// }
/// zeroable!(impl [const C: usize] for Scale [C] { factor, seen });
///
/// let scale = zeroed_box::<Scale<64>>();
/// assert_eq!((scale.factor[63], scale.seen), (0.0, 0));
/// ```
///
/// Leaving a field out, or a field that is not `Zeroable` (a reference, a `Box`), does not
/// compile:
///
/// ```compile_fail
/// use constnet::zeroable;
/// pub struct Scale<const C: usize> {
///     factor: [f32; C],
///     seen: u64,
/// }
/// zeroable!(impl [const C: usize] for Scale [C] { factor }); // `seen` is missing
/// ```
#[macro_export]
macro_rules! zeroable {
    (impl [$($gen:tt)*] for $name:ident [$($arg:tt)*] { $($field:ident),* $(,)? }) => {
        $crate::zeroable!(@emit [$($gen)*] $name [$($arg)*] ($($field),*) $name { $($field),* });
    };
    (impl [$($gen:tt)*] for $name:ident [$($arg:tt)*] ( $($field:ident),* $(,)? )) => {
        $crate::zeroable!(@emit [$($gen)*] $name [$($arg)*] ($($field),*) $name ( $($field),* ));
    };
    (@emit [$($gen:tt)*] $name:ident [$($arg:tt)*] ($($field:ident),*) $every_field:pat) => {
        // SAFETY: every field is `Zeroable`, and the pattern below lists them all (checked
        // by the compiler), so all-zero bytes are a valid value of each and of the whole.
        #[allow(unsafe_code)]
        unsafe impl<$($gen)*> $crate::zeroed::Zeroable for $name<$($arg)*> {}
        const _: () = {
            #[allow(dead_code)]
            fn every_field_is_zeroable<$($gen)*>(value: &$name<$($arg)*>) {
                fn zeroable<Z: $crate::zeroed::Zeroable>(_: &Z) {}
                let $every_field = value;
                $(zeroable($field);)*
            }
        };
    };
}
