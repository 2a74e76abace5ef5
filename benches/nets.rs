//! The article's later networks, all eight: one image through each in evaluation mode, then
//! one training pass (forward and backward) over a batch of two, with the time each took.
//!
//! ```text
//! cargo bench --bench nets                       # all eight
//! cargo bench --bench nets -- resnet20           # one of them
//! cargo bench --bench nets -- vgg16 --eval-only  # no training pass
//! cargo bench --bench nets -- --sizes            # README's table of sizes
//! ```
//!
//! This program is also the compile-cost check of BENCHMARKS.md: it instantiates every
//! network's inference, training forward and backward passes in `f32`. It is a bench target
//! (`harness = false`), not an example, because `cargo test` builds every example: this one
//! alone cost a fresh clone's `cargo test` 68 s of compilation.

use std::time::Instant;

use constnet::{
    AlexNet, AlexNet2012, BatchLayer, DenseNet121, GoogLeNet, Layer, Network, Pass, ResNet18,
    ResNet20, Tensor, TensorKind, Vgg16, ZfNet, layer::count, zeroed_box,
};
use rand::{Rng, RngExt, SeedableRng};

/// A batch of 2 for `L`: inputs, outputs and their gradients, on the heap.
fn train_step<L: BatchLayer<2>>(net: &L, rng: &mut impl Rng) -> f64 {
    let mut x = zeroed_box::<[L::Input; 2]>();
    for v in Tensor::flat_slice_mut(&mut x[..]) {
        *v = <L::Scalar as constnet::Scalar>::from_f64(rng.random_range(-1.0..1.0));
    }
    let mut y = zeroed_box::<[L::Output; 2]>();
    let mut ws = zeroed_box::<L::BatchWorkspace>();
    let mut grads = zeroed_box::<L>();
    let start = Instant::now();
    net.forward_batch_in(&Pass::train(7, 0), &x, &mut y, &mut ws);
    // the gradient of Σ logits: every output gets 1
    let mut g = zeroed_box::<[L::Output; 2]>();
    for v in Tensor::flat_slice_mut(&mut g[..]) {
        *v = <L::Scalar as constnet::Scalar>::from_f64(1.0);
    }
    net.backward_batch(&x, &mut ws, &g, None, &mut grads);
    start.elapsed().as_secs_f64()
}

/// One image in evaluation mode; returns the seconds it took and the top class.
fn eval_one<L: Layer>(net: &L, rng: &mut impl Rng) -> (f64, usize) {
    let mut x = zeroed_box::<L::Input>();
    for v in x.flat_mut() {
        *v = <L::Scalar as constnet::Scalar>::from_f64(rng.random_range(-1.0..1.0));
    }
    let mut y = zeroed_box::<L::Output>();
    let mut ws = zeroed_box::<L::Workspace>();
    let start = Instant::now();
    net.infer(&x, &mut y, &mut ws);
    let secs = start.elapsed().as_secs_f64();
    let class = constnet::argmax(y.flat()).unwrap_or(usize::MAX);
    (secs, class)
}

/// MiB, to one decimal.
fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One row of README's table: the counts of a zeroed network (never written, so its pages
/// stay untouched) and the sizes of the network and its workspaces.
fn sizes_row<L: BatchLayer<2>>(name: &str) {
    let net = zeroed_box::<L>();
    let buffers: usize = (0..count::<L>(TensorKind::Buffer))
        .map(|i| net.buffer(i).len())
        .sum::<usize>()
        + count::<L>(TensorKind::Counter);
    println!(
        "| {name} | {} | {buffers} | {} | {} | {} |",
        net.param_count(),
        mib(size_of::<L>()),
        mib(size_of::<L::Workspace>()),
        mib(size_of::<L::BatchWorkspace>()),
    );
}

macro_rules! networks {
    ($($name:literal => $ty:ty),+ $(,)?) => {
        fn main() {
            let only = std::env::args().skip(1).find(|a| !a.starts_with("--"));
            let eval_only = std::env::args().any(|a| a == "--eval-only");
            let rng = &mut rand::rngs::StdRng::seed_from_u64(2026);
            let sizes = std::env::args().any(|a| a == "--sizes");
            if sizes {
                println!("| network | parameters | buffer values | weights (f32) | workspace, 1 image | batch workspace, 2 images |");
                println!("|---|---:|---:|---:|---:|---:|");
            } else {
                println!("{:<14} {:>12} {:>10} {:>14}", "network", "parameters", "eval (s)", "train×2 (s)");
            }
            $(
                if sizes {
                    sizes_row::<$ty>($name);
                } else if only.as_deref().is_none_or(|o| o == $name) {
                    let net = <$ty>::new_boxed(rng);
                    let (eval, _) = eval_one(&*net, rng);
                    let train = if eval_only { f64::NAN } else { train_step(&net.first, rng) };
                    println!("{:<14} {:>12} {:>10.3} {:>14.3}", $name, net.param_count(), eval, train);
                }
            )+
        }
    };
}

networks! {
    "alexnet" => AlexNet<f32>,
    "alexnet2012" => AlexNet2012<f32>,
    "zfnet" => ZfNet<f32>,
    "vgg16" => Vgg16<f32>,
    "resnet18" => ResNet18<f32>,
    "resnet20" => ResNet20<f32, 3, 10>,
    "googlenet" => GoogLeNet<f32>,
    "densenet121" => DenseNet121<f32>,
}
