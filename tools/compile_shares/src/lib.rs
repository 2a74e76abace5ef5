//! What each binary instantiates for its network: one image in evaluation mode and a
//! training step (forward and backward) of a batch of 2, in `f32`, as `benches/nets.rs` does.

use constnet::{BatchLayer, Pass, Scalar, Tensor, zeroed_box};
use rand::SeedableRng;

/// Evaluates one image and takes one training step's passes; returns a number that depends
/// on both, so that nothing is optimised away.
pub fn exercise<L: BatchLayer<2, Scalar = f32>>() -> f32 {
    let mut net = zeroed_box::<L>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(1));
    let mut x = zeroed_box::<[L::Input; 2]>();
    Tensor::flat_slice_mut(&mut x[..]).fill(f32::from_f64(0.5));
    let mut y = zeroed_box::<L::Output>();
    let mut ws = zeroed_box::<L::Workspace>();
    net.infer(&x[0], &mut y, &mut ws);
    let mut ys = zeroed_box::<[L::Output; 2]>();
    let mut bws = zeroed_box::<L::BatchWorkspace>();
    let mut grads = zeroed_box::<L>();
    net.forward_batch_in(&Pass::train(7, 0), &x, &mut ys, &mut bws);
    net.backward_batch(&x, &mut bws, &ys, None, &mut grads);
    y.flat()[0] + grads.param(0)[0]
}
