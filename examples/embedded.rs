//! Weights baked into the binary, inference with zero heap allocations.
//!
//! ```text
//! cargo run --release --example embedded
//! ```
//!
//! The network and its workspace are placed on the heap once at start-up (on firmware they
//! would be `static`s or a stack frame; `tools/test_no_std` does it with `core` only); then
//! the weights are loaded from the bytes `include_bytes!` put in the binary, and ten digits
//! are classified while a counting allocator watches.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use constnet::weights::load_weights;
use constnet::{LeNet5, zeroed_box};

static WEIGHTS: &[u8] = include_bytes!("../data/embedded/lenet5-mnist10k.cnet");
/// Ten test digits: 10 labels, then 10 × 784 pixels.
static DIGITS: &[u8] = include_bytes!("../data/embedded/digits10.u8");

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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

fn main() {
    let mut net = zeroed_box::<LeNet5<f32>>();
    let mut ws = LeNet5::<f32>::workspace();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    if let Err(e) = load_weights(&mut *net, WEIGHTS) {
        eprintln!("error: baked-in weights: {e}");
        std::process::exit(1);
    }
    let mut results = [(None, 0usize); 10];
    for (i, r) in results.iter_mut().enumerate() {
        let mut image = [[[0.0f32; 32]; 32]; 1];
        for (k, &p) in DIGITS[10 + i * 784..10 + (i + 1) * 784].iter().enumerate() {
            image[0][2 + k / 28][2 + k % 28] = f32::from(p) / 255.0;
        }
        *r = (net.classify(&image, &mut ws), usize::from(DIGITS[i]));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;

    for (i, (predicted, label)) in results.iter().enumerate() {
        match predicted {
            Some(class) => println!("digit {i}: predicted {class}, label {label}"),
            None => println!("digit {i}: no prediction (NaN probabilities), label {label}"),
        }
    }
    println!("heap allocations while loading weights and classifying: {allocations}");
}
