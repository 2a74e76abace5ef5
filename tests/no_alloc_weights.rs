//! Loading weights from bytes allocates nothing, so firmware can load `include_bytes!` data.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use constnet::weights::{load_weights, save_weights};
use constnet::{LeNet5, zeroed_box};
use rand::SeedableRng;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn loading_weights_from_bytes_allocates_nothing() {
    let bytes = save_weights(&*LeNet5::<f32>::new_boxed(
        &mut rand::rngs::StdRng::seed_from_u64(1),
    ));
    let mut net = zeroed_box::<LeNet5<f32>>();
    let mut broken = bytes.clone();
    broken[5000] ^= 1;
    let before = ALLOCATIONS.with(Cell::get);
    load_weights(&mut *net, &bytes).unwrap();
    assert!(load_weights(&mut *net, &broken).is_err());
    assert!(load_weights(&mut *net, &bytes[..100]).is_err());
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(after - before, 0);
    // The counter counts: a clone of the bytes is one allocation.
    let _copy = bytes.clone();
    assert_eq!(ALLOCATIONS.with(Cell::get) - after, 1);
}
