//! Small ResNet-style and Inception-style networks built from the building blocks: their
//! training and evaluation passes allocate nothing (on every instruction set) and run in a
//! thread with a 2 MiB stack, as LeNet-5's do (`no_alloc.rs`, `stack.rs`).

use constnet::simd::{Isa, with_isa};
use constnet::{
    BatchLayer, BatchNorm2d, Block, Concat, Conv2d, Eval, Flatten, Identity, Layer, Linear, Maps,
    MaxPool2d, Named, NoBias, Optimizer, OptimizerState, Pass, Relu, Residual, Scalar, Sgd, Train,
    name, sequential, zeroed_box,
};
use rand::SeedableRng;

use crate::no_alloc::allocations;

name!(Conv1 = "conv1");
name!(Bn1 = "bn1");
name!(Conv2 = "conv2");
name!(Bn2 = "bn2");
name!(Downsample = "downsample");
name!(Layer1 = "layer1");
name!(Fc = "fc");
name!(Conv = "conv");
name!(Bn = "bn");
name!(Branch1 = "branch1");
name!(Branch2 = "branch2");
name!(Branch3 = "branch3");
name!(Branch4 = "branch4");

/// torchvision's BasicBlock on `C` channels of `S`×`S`, identity shortcut.
type Basic<T, const C: usize, const S: usize> = sequential![
    Residual<
        sequential![
            Named<Conv1, NoBias<Conv2d<T, C, C, 3, 1, 1, S, S, S, S>>>,
            Named<Bn1, BatchNorm2d<T, C, S, S>>,
            Relu<Maps<T, C, S, S>>,
            Named<Conv2, NoBias<Conv2d<T, C, C, 3, 1, 1, S, S, S, S>>>,
            Named<Bn2, BatchNorm2d<T, C, S, S>>,
        ],
        Identity<Maps<T, C, S, S>>,
    >,
    Relu<Maps<T, C, S, S>>,
];

/// BasicBlock(8 → 16, stride 2) on 8×8 maps, with the projection shortcut.
type Down<T> = sequential![
    Residual<
        sequential![
            Named<Conv1, NoBias<Conv2d<T, 8, 16, 3, 2, 1, 8, 8, 4, 4>>>,
            Named<Bn1, BatchNorm2d<T, 16, 4, 4>>,
            Relu<Maps<T, 16, 4, 4>>,
            Named<Conv2, NoBias<Conv2d<T, 16, 16, 3, 1, 1, 4, 4, 4, 4>>>,
            Named<Bn2, BatchNorm2d<T, 16, 4, 4>>,
        ],
        Named<Downsample, sequential![NoBias<Conv2d<T, 8, 16, 1, 2, 0, 8, 8, 4, 4>>, BatchNorm2d<T, 16, 4, 4>]>,
    >,
    Relu<Maps<T, 16, 4, 4>>,
];

/// A ResNet-18 in miniature: stem conv → BN → ReLU → max pool 3/2 padding 1, two stages,
/// then a classifier.
type MiniResNet<T> = sequential![
    Named<Conv1, NoBias<Conv2d<T, 3, 8, 3, 1, 1, 16, 16, 16, 16>>>,
    Named<Bn1, BatchNorm2d<T, 8, 16, 16>>,
    Relu<Maps<T, 8, 16, 16>>,
    MaxPool2d<T, 8, 16, 16, 3, 2, 8, 8, 1>,
    Named<Layer1, sequential![Block<Basic<T, 8, 8>>, Block<Down<T>>]>,
    Flatten<T, 16, 4, 4, 256>,
    Named<Fc, Linear<T, 256, 10>>,
];

/// GoogLeNet's BasicConv2d: conv without bias → BN (eps 0.001 in GoogLeNet) → ReLU.
type BasicConv<T, const CI: usize, const CO: usize, const K: usize, const P: usize> = sequential![
    Named<Conv, NoBias<Conv2d<T, CI, CO, K, 1, P, 5, 5, 5, 5>>>,
    Named<Bn, BatchNorm2d<T, CO, 5, 5>>,
    Relu<Maps<T, CO, 5, 5>>,
];

/// An Inception module as torchvision's (8 → 4 + 5 + 3 + 2 channels on 5×5), then a
/// classifier.
type MiniInception<T> = sequential![
    Concat<
        (
            Named<Branch1, BasicConv<T, 8, 4, 1, 0>>,
            Named<Branch2, sequential![Block<BasicConv<T, 8, 3, 1, 0>>, Block<BasicConv<T, 3, 5, 3, 1>>]>,
            Named<Branch3, sequential![Block<BasicConv<T, 8, 2, 1, 0>>, Block<BasicConv<T, 2, 3, 3, 1>>]>,
            Named<Branch4, sequential![MaxPool2d<T, 8, 5, 5, 3, 1, 5, 5, 1, true>, Block<BasicConv<T, 8, 2, 1, 0>>]>,
        ),
        Maps<T, 14, 5, 5>,
    >,
    Flatten<T, 14, 5, 5, 350>,
    Named<Fc, Linear<T, 350, 10>>,
];

const N: usize = 4;

/// Training steps (forward in training mode, backward, three optimizers) and evaluation at
/// batch `N` and batch 1, all after the buffers are built; returns a checksum of the outputs.
fn passes<L>(seed: u64, count_from: Option<usize>) -> f64
where
    L: BatchLayer<N> + BatchLayer<1> + Layer,
    L::Scalar: Scalar,
{
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut net = zeroed_box::<L>();
    net.init(&mut rng);
    let mut grads = zeroed_box::<L>();
    let mut adam = zeroed_box::<OptimizerState<L>>();
    let mut ws = zeroed_box::<<L as BatchLayer<N>>::BatchWorkspace>();
    let mut ws1 = zeroed_box::<<L as BatchLayer<1>>::BatchWorkspace>();
    let mut single = zeroed_box::<L::Workspace>();
    let mut x = zeroed_box::<[L::Input; N]>();
    let mut y = zeroed_box::<[L::Output; N]>();
    let mut gx = zeroed_box::<[L::Input; N]>();
    let mut y1 = zeroed_box::<[L::Output; 1]>();
    let mut g = zeroed_box::<[L::Output; N]>();
    let one = <L::Scalar as Scalar>::from_f64;
    let before = count_from.map(|_| allocations());
    let mut sum = 0.0;
    for step in 0..3u64 {
        for (i, v) in constnet::Tensor::flat_slice_mut(&mut *x)
            .iter_mut()
            .enumerate()
        {
            *v = one(((i as u64 * 31 + step * 7) % 17) as f64 / 8.0 - 1.0);
        }
        net.forward_batch_in(&Pass::<Train>::train(seed, step), &x, &mut y, &mut ws);
        grads.zero_params();
        *g = *y;
        net.backward_batch(&x, &mut ws, &g, Some(&mut gx), &mut grads);
        Sgd { lr: one(1e-3) }.step(&mut *net, &grads);
        adam.step(&Optimizer::ADAM, 1e-3, 0.25, &mut *net, &grads);
        net.infer_batch(&x, &mut y, &mut ws);
        net.forward_batch_in(&Pass::<Eval>::eval(), &x, &mut y, &mut ws);
        net.backward_batch(&x, &mut ws, &g, None, &mut grads);
        // One image, evaluation: the per-sample passes and a batch of one.
        net.infer(&x[0], &mut y[0], &mut single);
        net.forward_in(&Pass::eval(), &x[0], &mut y[0], &mut single);
        net.backward(&x[0], &mut single, &g[0], Some(&mut gx[0]), &mut grads);
        net.infer_batch(core::array::from_ref(&x[0]), &mut y1, &mut ws1);
        sum += constnet::Tensor::flat(&y1[0])
            .iter()
            .map(|v| v.to_f64())
            .sum::<f64>();
    }
    if let Some(before) = before {
        let n = allocations() - before;
        assert_eq!(n, 0, "the passes allocated {n} times");
    }
    sum
}

fn on_every_isa(f: impl Fn()) {
    for isa in Isa::ALL.into_iter().filter(|isa| isa.available()) {
        with_isa(isa, &f);
    }
}

#[test]
fn resnet_style_passes_allocate_nothing() {
    on_every_isa(|| {
        passes::<MiniResNet<f32>>(1, Some(0));
    });
    passes::<MiniResNet<f64>>(1, Some(0));
}

#[test]
fn inception_style_passes_allocate_nothing() {
    on_every_isa(|| {
        passes::<MiniInception<f32>>(2, Some(0));
    });
    passes::<MiniInception<f64>>(2, Some(0));
}

#[test]
fn block_networks_run_in_a_thread_with_a_2_mib_stack() {
    let sums = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            [
                passes::<MiniResNet<f64>>(3, None),
                passes::<MiniInception<f64>>(3, None),
                passes::<MiniResNet<f32>>(3, None),
                passes::<MiniInception<f32>>(3, None),
            ]
        })
        .expect("spawn")
        .join()
        .expect("the passes must not overflow a 2 MiB stack");
    assert!(sums.iter().all(|s| s.is_finite()), "{sums:?}");
}

#[test]
fn the_block_networks_have_torchvisions_names() {
    let names = constnet::tensor_names::<MiniResNet<f32>>();
    assert!(names.contains(&"layer1.1.downsample.0.weight".to_string()));
    assert!(names.contains(&"layer1.0.bn2.running_var".to_string()));
    let names = constnet::tensor_names::<MiniInception<f32>>();
    assert!(
        names.contains(&"branch2.1.conv.weight".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"branch4.1.bn.num_batches_tracked".to_string()));
}

/// The fused SGD step of a large `f64` convolution (ResNet-18's last, 512→512 3×3 on 7×7:
/// its gradient alone is 19 MB) runs in a 2 MiB thread and equals `backward` then
/// `Sgd::step`, bit for bit.
#[test]
fn a_large_f64_convolution_steps_in_place_in_a_2_mib_thread() {
    const STACK_FOR_STEP: usize = 2 * 1024 * 1024;
    use constnet::SgdLayer;
    type Big = Conv2d<f64, 512, 512, 3, 1, 1, 7, 7, 7, 7>;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut fused = zeroed_box::<Big>();
    fused.init(&mut rng);
    let mut separate = zeroed_box::<Big>();
    separate.weight = fused.weight;
    separate.bias = fused.bias;
    let mut x = zeroed_box::<Maps<f64, 512, 7, 7>>();
    let mut g = zeroed_box::<Maps<f64, 512, 7, 7>>();
    for (i, v) in x
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .enumerate()
    {
        *v = ((i * 37) % 19) as f64 / 9.0 - 1.0;
    }
    for (i, v) in g
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .enumerate()
    {
        *v = ((i * 13) % 23) as f64 / 11.0 - 1.0;
    }
    let (mut gi_fused, mut gi_separate) = (
        zeroed_box::<Maps<f64, 512, 7, 7>>(),
        zeroed_box::<Maps<f64, 512, 7, 7>>(),
    );
    let (fused, x, g, gi_fused) = std::thread::Builder::new()
        .stack_size(STACK_FOR_STEP)
        .spawn(move || {
            fused.backward_sgd(&x, &mut (), &g, Some(&mut gi_fused), 0.01);
            (fused, x, g, gi_fused)
        })
        .expect("spawn")
        .join()
        .expect("the step must not overflow a 2 MiB stack");
    let mut grads = zeroed_box::<Big>();
    separate.backward(&x, &mut (), &g, Some(&mut gi_separate), &mut grads);
    Sgd { lr: 0.01 }.step(&mut *separate, &grads);
    assert!(
        *fused == *separate,
        "the fused step differs from backward + step"
    );
    assert!(*gi_fused == *gi_separate);
}
