//! LeNet-5 as a whole: inference and a training step (forward + backward + SGD update), at
//! batch 1 and at batch 64, in `f32` (SIMD fast paths) and `f64` (reference loops).
//! `train_step` clears a gradient buffer, back-propagates into it and applies `Sgd::step`;
//! `train_sgd` is the fused batch-1 step (`Chain::train_sgd`), same result, no buffer;
//! `train_step_4x16` is a batch of 64 as the trainer runs it, 4 micro-batches of 16 (the
//! convolutions in lanes, see `constnet::lanes`); `train_step_8x8` runs 8 micro-batches of 8
//! (sample by sample through the convolutions).
//!
//! Throughput is in FLOPs (2 per multiply-add: 837,200 forward, 2,276,400 per training
//! step), so criterion's "elem/s" reads as FLOP/s; divide the time by the batch for µs/image.
//!
//! `cargo bench --bench lenet`; `CONSTNET_ISA=sse2|avx2|scalar` limits the instruction set.

use constnet::simd::{Isa, with_isa};
use constnet::{BatchLayer, Image, Layer, LeNet5, Loss, Scalar, Sgd, zeroed_box};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

/// FLOPs of one forward pass (2 × 418,600 multiply-adds).
const FORWARD_FLOPS: u64 = 837_200;
/// FLOPs of one training step: forward, input and weight gradients (conv1 needs no input
/// gradient).
const TRAIN_FLOPS: u64 = 2_276_400;

fn isa() -> Isa {
    match std::env::var("CONSTNET_ISA").as_deref() {
        Ok("scalar") => Isa::Scalar,
        Ok("sse2") => Isa::Sse2,
        Ok("avx2") => Isa::Avx2,
        _ => Isa::Avx512,
    }
}

fn images<T: Scalar, const N: usize>(seed: u64) -> Box<[Image<T>; N]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut x = zeroed_box::<[Image<T>; N]>();
    for v in x.iter_mut().flatten().flatten().flatten() {
        *v = T::from_f64(rng.random_range(0.0..1.0));
    }
    x
}

fn bench_type<T: Scalar>(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group(format!("lenet5_{name}"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut net = LeNet5::<T>::new_boxed(&mut rng);
    let mut grads = zeroed_box::<LeNet5<T>>();
    let sgd = Sgd {
        lr: T::from_f64(0.01),
    };

    // batch 1
    let x1 = images::<T, 1>(2);
    let mut ws = LeNet5::<T>::workspace();
    g.throughput(Throughput::Elements(FORWARD_FLOPS));
    // what classifying one image costs: `probabilities` (`Layer::infer`, which skips what
    // only a backward pass needs, such as the pooling winners)
    g.bench_function(BenchmarkId::new("inference", 1), |b| {
        b.iter(|| net.probabilities(black_box(&x1[0]), &mut ws))
    });
    g.throughput(Throughput::Elements(TRAIN_FLOPS));
    g.bench_function(BenchmarkId::new("train_step", 1), |b| {
        b.iter(|| {
            grads.zero_params();
            let loss = net.backprop(
                black_box(&x1[0]),
                3,
                Loss::CrossEntropy,
                &mut ws,
                &mut grads,
                None,
            );
            sgd.step(&mut *net, &grads);
            loss
        })
    });

    g.bench_function(BenchmarkId::new("train_sgd", 1), |b| {
        b.iter(|| net.train_sgd(black_box(&x1[0]), 3, Loss::CrossEntropy, sgd.lr, &mut ws))
    });

    // batch 64
    const N: usize = 64;
    let xs = images::<T, N>(3);
    let labels: [usize; N] = core::array::from_fn(|n| n % 10);
    let mut bws = LeNet5::<T>::batch_workspace::<N>();
    let mut probs = zeroed_box::<[[T; 10]; N]>();
    g.throughput(Throughput::Elements(FORWARD_FLOPS * N as u64));
    g.bench_function(BenchmarkId::new("inference", N), |b| {
        b.iter(|| net.infer_batch(black_box(&xs), &mut probs, &mut bws))
    });
    g.throughput(Throughput::Elements(TRAIN_FLOPS * N as u64));
    g.bench_function(BenchmarkId::new("train_step", N), |b| {
        b.iter(|| {
            grads.zero_params();
            let loss = net.backprop_batch(
                black_box(&xs),
                &labels,
                Loss::CrossEntropy,
                &mut bws,
                &mut grads,
            );
            sgd.step(&mut *net, &grads);
            loss
        })
    });

    // batch 64 as micro-batches (gradients summed), one update: 4 × 16 as the trainer runs
    // it (the convolutions in lanes), and 8 × 8 (sample by sample, the activations in cache)
    train_micro::<T, 16>(&mut g, &mut net, &xs, &mut grads, &sgd);
    train_micro::<T, 8>(&mut g, &mut net, &xs, &mut grads, &sgd);
    g.finish();
}

fn lenet(c: &mut Criterion) {
    with_isa(isa(), || {
        bench_type::<f32>(c, "f32");
        bench_type::<f64>(c, "f64");
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = lenet
}
criterion_main!(benches);

/// The batch-64 training step as `64 / M` micro-batches of `M`, gradients summed, one update.
fn train_micro<T: Scalar, const M: usize>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    net: &mut LeNet5<T>,
    xs: &[Image<T>; 64],
    grads: &mut LeNet5<T>,
    sgd: &Sgd<T>,
) where
    LeNet5<T>: BatchLayer<M> + Layer<Scalar = T>,
{
    const N: usize = 64;
    let micro: Vec<Box<[Image<T>; M]>> = (0..N / M)
        .map(|k| {
            let mut x = zeroed_box::<[Image<T>; M]>();
            x.copy_from_slice(&xs[k * M..(k + 1) * M]);
            x
        })
        .collect();
    let micro_labels: [usize; M] = core::array::from_fn(|n| n % 10);
    let mut mws = LeNet5::<T>::batch_workspace::<M>();
    g.throughput(Throughput::Elements(TRAIN_FLOPS * N as u64));
    g.bench_function(
        BenchmarkId::new(format!("train_step_{}x{M}", N / M), N),
        |b| {
            b.iter(|| {
                grads.zero_params();
                let mut loss = T::zero();
                for x in &micro {
                    loss = loss
                        + net.backprop_batch(
                            black_box(&**x),
                            &micro_labels,
                            Loss::CrossEntropy,
                            &mut mws,
                            grads,
                        );
                }
                sgd.step(net, grads);
                loss
            })
        },
    );
}
