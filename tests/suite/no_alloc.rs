//! Forward, backward and the update of `LeNet5` never touch the heap.
//!
//! A counting global allocator records every allocation made by the current thread; the
//! networks, workspaces and gradient buffers are built first (one allocation each), then many
//! passes run and the count must stay exactly zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use constnet::simd::{Isa, with_isa};
use constnet::weights::{load_weights, save_weights};
use constnet::{
    BatchLayer, Image, Layer, LeNet5, Loss, Optimizer, OptimizerState, Scalar, Sgd, zeroed_box,
};
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
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

pub(crate) fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn passes_allocate_nothing<T: Scalar>() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut net = LeNet5::<T>::new_boxed(&mut rng);
    let mut grads = zeroed_box::<LeNet5<T>>();
    let mut ws = LeNet5::<T>::workspace();
    let mut image = Box::new([[[T::zero(); 32]; 32]; 1]);
    let mut grad_image = Box::new([[[T::zero(); 32]; 32]; 1]);
    let mut probs = [T::zero(); 10];
    let sgd = Sgd {
        lr: T::from_f64(0.01),
    };

    let before = allocations();
    let mut loss_sum = T::zero();
    for step in 0..50 {
        for (i, v) in image[0].iter_mut().flatten().enumerate() {
            *v = T::from_f64(((i * 31 + step * 7) % 17) as f64 / 16.0);
        }
        net.forward(&image, &mut probs, &mut ws);
        grads.zero_params();
        let loss = if step % 2 == 0 {
            Loss::CrossEntropy
        } else {
            Loss::HalfSse
        };
        loss_sum = loss_sum + net.backprop(&image, step % 10, loss, &mut ws, &mut grads, None);
        net.backprop(&image, 3, loss, &mut ws, &mut grads, Some(&mut grad_image));
        sgd.step(&mut *net, &grads);
        loss_sum = loss_sum + net.train_sgd(&image, step % 10, loss, sgd.lr, &mut ws);
        let _ = net.classify(&image, &mut ws);
        let _ = LeNet5::<T>::activations(&ws);
    }
    let after = allocations();

    assert!(loss_sum.is_finite());
    assert_eq!(
        after - before,
        0,
        "forward/backward/update allocated {} times",
        after - before
    );
    // The counter works: building a network is one allocation.
    let _another = zeroed_box::<LeNet5<T>>();
    assert_eq!(allocations() - after, 1);
}

/// The batched passes (and so the `Linear` GEMM kernels) at a const-generic batch size.
fn batched_passes_allocate_nothing<T: Scalar>() {
    const N: usize = 16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut net = LeNet5::<T>::new_boxed(&mut rng);
    let mut grads = zeroed_box::<LeNet5<T>>();
    let mut ws = LeNet5::<T>::batch_workspace::<N>();
    let mut images = zeroed_box::<[Image<T>; N]>();
    let mut probs = zeroed_box::<[[T; 10]; N]>();
    let labels: [usize; N] = core::array::from_fn(|n| (n * 7) % 10);
    let mut adam = zeroed_box::<OptimizerState<LeNet5<T>>>();
    let mut momentum = zeroed_box::<OptimizerState<LeNet5<T>>>();
    let sgd = Sgd {
        lr: T::from_f64(0.01),
    };

    let before = allocations();
    let mut loss_sum = T::zero();
    for step in 0..10 {
        for (i, v) in images.iter_mut().flatten().flatten().flatten().enumerate() {
            *v = T::from_f64(((i * 29 + step * 5) % 13) as f64 / 12.0);
        }
        net.infer_batch(&images, &mut probs, &mut ws);
        net.forward_batch(&images, &mut probs, &mut ws);
        grads.zero_params();
        let loss = if step % 2 == 0 {
            Loss::CrossEntropy
        } else {
            Loss::HalfSse
        };
        loss_sum = loss_sum + net.backprop_batch(&images, &labels, loss, &mut ws, &mut grads);
        sgd.step(&mut *net, &grads);
        // The updates the trainer uses.
        adam.step(&Optimizer::ADAM, 1e-3, 1.0 / N as f64, &mut *net, &grads);
        momentum.step(
            &Optimizer::SGD_MOMENTUM,
            1e-2,
            1.0 / N as f64,
            &mut *net,
            &grads,
        );
        let _ = net.classify_batch(&images, &mut ws);
    }
    let after = allocations();
    assert!(loss_sum.is_finite());
    assert_eq!(
        after - before,
        0,
        "batched passes allocated {} times",
        after - before
    );
}

/// Every pass on every instruction set this CPU has (each forced in turn), so that every
/// fast path is covered.
fn on_every_isa(f: impl Fn()) {
    for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
        with_isa(isa, &f);
    }
}

#[test]
fn lenet5_f32_forward_backward_update_allocate_nothing() {
    on_every_isa(passes_allocate_nothing::<f32>);
}

#[test]
fn lenet5_f32_batched_passes_allocate_nothing() {
    on_every_isa(batched_passes_allocate_nothing::<f32>);
}

#[test]
fn lenet5_f64_batched_passes_allocate_nothing() {
    batched_passes_allocate_nothing::<f64>();
}

#[test]
fn lenet5_f64_forward_backward_update_allocate_nothing() {
    passes_allocate_nothing::<f64>();
}

/// Firmware loads `include_bytes!` weights: loading (and rejecting) bytes allocates nothing.
#[test]
fn loading_weights_from_bytes_allocates_nothing() {
    let bytes = save_weights(&*LeNet5::<f32>::new_boxed(
        &mut rand::rngs::StdRng::seed_from_u64(1),
    ))
    .unwrap();
    let mut net = zeroed_box::<LeNet5<f32>>();
    let mut broken = bytes.clone();
    broken[5000] ^= 1;
    let before = allocations();
    load_weights(&mut *net, &bytes).unwrap();
    assert!(load_weights(&mut *net, &broken).is_err());
    assert!(load_weights(&mut *net, &bytes[..100]).is_err());
    let after = allocations();
    assert_eq!(after - before, 0);
    // The counter counts: a clone of the bytes is one allocation.
    let _copy = bytes.clone();
    assert_eq!(allocations() - after, 1);
}
