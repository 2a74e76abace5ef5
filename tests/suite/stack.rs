//! A `LeNet5` with its workspace and gradients trains in a thread with a 2 MiB stack:
//! the big parts live in one heap allocation each, built without a stack temporary.

use constnet::{Layer, LeNet5, Loss, Sgd, zeroed_box};
use rand::SeedableRng;

const STACK: usize = 2 * 1024 * 1024;

fn train_a_little() -> f64 {
    let mut net = LeNet5::<f64>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(9));
    let mut grads = zeroed_box::<LeNet5<f64>>();
    let mut momentum = zeroed_box::<LeNet5<f64>>();
    let mut ws = LeNet5::<f64>::workspace();
    let mut image = [[[0.0f64; 32]; 32]; 1];
    image[0][10..22]
        .iter_mut()
        .for_each(|row| row[12..20].fill(1.0));
    let mut grad_image = [[[0.0f64; 32]; 32]; 1];
    let mut loss = 0.0;
    for _ in 0..5 {
        grads.zero_params();
        loss = net.backprop(
            &image,
            0,
            Loss::CrossEntropy,
            &mut ws,
            &mut grads,
            Some(&mut grad_image),
        );
        Sgd { lr: 0.01 }.step(&mut *net, &grads);
        Sgd { lr: -1.0 }.step(&mut *momentum, &grads);
    }
    loss
}

#[test]
fn lenet5_f64_trains_in_a_thread_with_a_2_mib_stack() {
    let loss = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(train_a_little)
        .expect("spawn")
        .join()
        .expect("the training thread must not overflow its 2 MiB stack");
    assert!(loss.is_finite() && loss > 0.0);
}

#[test]
fn lenet5_sizes_are_as_documented() {
    use std::mem::size_of;
    type N = LeNet5<f32>;
    // The parameters, plus the padding that starts each `Linear` on a cache line (less
    // than 64 bytes before and after each of the three).
    let (size, params) = (size_of::<N>(), 63_802 * 4);
    assert!(
        (params..params + 3 * 2 * 64).contains(&size),
        "LeNet5<f32> is {size} bytes for {params} bytes of parameters"
    );
    // Workspace: every intermediate activation and its gradient, plus pool indices.
    let ws = size_of::<<N as Layer>::Workspace>();
    assert!(
        ws <= 124 * 1024,
        "workspace is {ws} bytes, README says ≤ 124 KiB"
    );
}
