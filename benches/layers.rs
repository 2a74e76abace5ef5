//! Forward and backward of each LeNet-5 layer at LeNet's sizes, `f32`: one sample, and for
//! the convolutions and fully connected layers also 64 samples in lanes (`*_lanes/64`).
//! Then the larger networks' max pooling (ResNet's stem, 3×3 stride 2 padding 1 on
//! 64×112×112) and local response normalisation (AlexNet's, 96×55×55), each against its
//! reference loops called directly (`*_reference`): the speed-up of the SIMD paths.
//!
//! Throughput: FLOPs (2 per multiply-add) for `conv*` and `fc*`, so criterion's "elem/s"
//! reads as FLOP/s; elements of the layer's output for the element-wise layers. conv1's
//! backward computes no input gradient (LeNet-5 never needs it), every other backward does.
//!
//! `cargo bench --bench layers`; `CONSTNET_ISA=sse2|avx2|scalar` limits the instruction set.

use constnet::simd::{Isa, with_isa};
use constnet::{
    BatchLayer, Conv2d, LaneLayer, Layer, Linear, LocalResponseNorm, Maps, MaxPool2d, Relu,
    Softmax, Tensor, zeroed_box,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

fn isa() -> Isa {
    match std::env::var("CONSTNET_ISA").as_deref() {
        Ok("scalar") => Isa::Scalar,
        Ok("sse2") => Isa::Sse2,
        Ok("avx2") => Isa::Avx2,
        _ => Isa::Avx512,
    }
}

fn random<X: Tensor<Scalar = f32>>(rng: &mut impl Rng) -> Box<X> {
    let mut x = zeroed_box::<X>();
    for v in x.flat_mut() {
        *v = rng.random_range(-1.0..1.0);
    }
    x
}

/// Benches `forward`, `infer` (the forward pass for inference) and `backward` of `layer` with FLOP (or element) counts per pass.
fn bench_layer<L: Layer<Scalar = f32>>(
    c: &mut Criterion,
    name: &str,
    layer: &L,
    (forward_work, backward_work): (u64, u64),
    input_grad: bool,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let x = random::<L::Input>(&mut rng);
    let g = random::<L::Output>(&mut rng);
    let mut y = zeroed_box::<L::Output>();
    let mut gi = zeroed_box::<L::Input>();
    let mut ws = zeroed_box::<L::Workspace>();
    let mut grads = zeroed_box::<L>();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(forward_work));
    group.bench_function("forward", |b| {
        b.iter(|| layer.forward(black_box(&x), &mut y, &mut ws))
    });
    group.bench_function("infer", |b| {
        b.iter(|| layer.infer(black_box(&x), &mut y, &mut ws))
    });
    layer.forward(&x, &mut y, &mut ws);
    group.throughput(Throughput::Elements(backward_work));
    group.bench_function("backward", |b| {
        b.iter(|| {
            let gi = if input_grad { Some(&mut *gi) } else { None };
            layer.backward(black_box(&x), &mut ws, black_box(&g), gi, &mut grads)
        })
    });
    group.finish();
}

/// The batched forward pass of a convolution over 64 images (weights packed once per batch),
/// in multiply-adds per image × 64.
fn bench_conv_batch<
    const CI: usize,
    const CO: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
>(
    c: &mut Criterion,
    name: &str,
    conv: &Conv2d<f32, CI, CO, 5, 1, 0, H, W, OH, OW>,
    work: u64,
) {
    const N: usize = 64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut xs = zeroed_box::<[Maps<f32, CI, H, W>; N]>();
    for v in xs.iter_mut().flat_map(|x| x.flat_mut()) {
        *v = rng.random_range(-1.0..1.0);
    }
    let mut ys = zeroed_box::<[Maps<f32, CO, OH, OW>; N]>();
    let mut ws = zeroed_box::<
        <Conv2d<f32, CI, CO, 5, 1, 0, H, W, OH, OW> as BatchLayer<N>>::BatchWorkspace,
    >();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(work * N as u64));
    group.bench_function("forward_batch/64", |b| {
        b.iter(|| conv.forward_batch(black_box(&xs), &mut ys, &mut ws))
    });
    group.finish();
}

/// A layer's lane passes over 64 samples in lanes ([`LaneLayer`]): forward, and backward
/// with the input gradient if `input_grad`; FLOPs per sample × 64.
fn bench_lanes<L: LaneLayer<64> + Layer<Scalar = f32>>(
    c: &mut Criterion,
    name: &str,
    layer: &L,
    (forward_work, backward_work): (u64, u64),
    input_grad: bool,
) {
    const N: usize = 64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut xs = zeroed_box::<[L::Input; N]>();
    for v in L::Input::flat_slice_mut(&mut *xs) {
        *v = rng.random_range(-1.0..1.0);
    }
    let mut gs = zeroed_box::<[L::Output; N]>();
    for v in L::Output::flat_slice_mut(&mut *gs) {
        *v = rng.random_range(-1.0..1.0);
    }
    let mut ys = zeroed_box::<[L::Output; N]>();
    let mut gis = zeroed_box::<[L::Input; N]>();
    let mut grads = zeroed_box::<L>();
    let mut ws = zeroed_box::<L::LaneWorkspace>();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(forward_work * N as u64));
    group.bench_function("forward_lanes/64", |b| {
        b.iter(|| {
            for block in 0..N / 16 {
                layer.forward_lanes(block, black_box(&xs), &mut ys, &mut ws)
            }
        })
    });
    group.throughput(Throughput::Elements(backward_work * N as u64));
    group.bench_function("backward_lanes/64", |b| {
        b.iter(|| {
            for block in 0..N / 16 {
                let gi = if input_grad { Some(&mut *gis) } else { None };
                let (x, g) = (black_box(&*xs), black_box(&*gs));
                layer.backward_lanes(block, x, &ys, &mut ws, g, gi, &mut grads)
            }
        })
    });
    group.finish();
}

fn layers(c: &mut Criterion) {
    with_isa(isa(), || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut conv1 = zeroed_box::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>>();
        conv1.init(&mut rng);
        let mut conv2 = zeroed_box::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>>();
        conv2.init(&mut rng);
        let mut fc1 = zeroed_box::<Linear<f32, 400, 120>>();
        fc1.init(&mut rng);
        let mut fc2 = zeroed_box::<Linear<f32, 120, 100>>();
        fc2.init(&mut rng);
        let mut fc3 = zeroed_box::<Linear<f32, 100, 10>>();
        fc3.init(&mut rng);
        // multiply-adds of each forward pass
        let (c1, c2) = (6 * 28 * 28 * 25, 16 * 10 * 10 * 150);
        let (f1, f2, f3) = (400 * 120, 120 * 100, 100 * 10);
        bench_layer(c, "conv1", &*conv1, (2 * c1, 2 * c1), false);
        bench_lanes(c, "conv1", &*conv1, (2 * c1, 2 * c1), false);
        bench_layer(
            c,
            "relu1",
            &Relu::<Maps<f32, 6, 28, 28>>::new(),
            (4704, 4704),
            true,
        );
        bench_layer(
            c,
            "pool1",
            &MaxPool2d::<f32, 6, 28, 28, 2, 2, 14, 14>::new(),
            (1176, 1176),
            true,
        );
        bench_layer(c, "conv2", &*conv2, (2 * c2, 4 * c2), true);
        bench_conv_batch(c, "conv2", &*conv2, 2 * c2);
        bench_lanes(c, "conv2", &*conv2, (2 * c2, 4 * c2), true);
        bench_layer(
            c,
            "relu2",
            &Relu::<Maps<f32, 16, 10, 10>>::new(),
            (1600, 1600),
            true,
        );
        bench_layer(
            c,
            "pool2",
            &MaxPool2d::<f32, 16, 10, 10, 2, 2, 5, 5>::new(),
            (400, 400),
            true,
        );
        bench_layer(c, "fc1", &*fc1, (2 * f1, 4 * f1), true);
        bench_lanes(c, "fc1", &*fc1, (2 * f1, 4 * f1), true);
        bench_layer(c, "fc2", &*fc2, (2 * f2, 4 * f2), true);
        bench_lanes(c, "fc2", &*fc2, (2 * f2, 4 * f2), true);
        bench_layer(c, "fc3", &*fc3, (2 * f3, 4 * f3), true);
        bench_lanes(c, "fc3", &*fc3, (2 * f3, 4 * f3), true);
        bench_layer(c, "softmax", &Softmax::<f32, 10>::new(), (10, 10), true);
        bench_stem_pool(c);
        bench_lrn(c);
    });
}

/// AlexNet's local response normalisation (size 5, alpha 1e-4, beta 0.75, k 2 on
/// 96×55×55): the layer's passes and its reference loops, in elements.
fn bench_lrn(c: &mut Criterion) {
    type Lrn = LocalResponseNorm<f32, 96, 55, 55, 5>;
    let lrn = Lrn::new(1e-4, 0.75, 2.0);
    bench_layer(c, "alexnet_lrn", &lrn, (96 * 55 * 55, 96 * 55 * 55), true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let x = random::<Maps<f32, 96, 55, 55>>(&mut rng);
    let g = random::<Maps<f32, 96, 55, 55>>(&mut rng);
    let mut y = zeroed_box::<Maps<f32, 96, 55, 55>>();
    let mut gi = zeroed_box::<Maps<f32, 96, 55, 55>>();
    let mut ws = zeroed_box::<<Lrn as Layer>::Workspace>();
    let mut group = c.benchmark_group("alexnet_lrn");
    group.throughput(Throughput::Elements(96 * 55 * 55));
    group.bench_function("forward_reference", |b| {
        b.iter(|| lrn.forward_reference(black_box(&x), &mut y, &mut ws))
    });
    group.bench_function("backward_reference", |b| {
        b.iter(|| lrn.backward_reference(black_box(&x), &ws, black_box(&g), &mut gi))
    });
    group.finish();
}

/// ResNet-18's max pooling (3×3, stride 2, padding 1, 64×112×112 → 64×56×56): the layer's
/// passes and its reference loops, in output elements.
fn bench_stem_pool(c: &mut Criterion) {
    type Pool = MaxPool2d<f32, 64, 112, 112, 3, 2, 56, 56, 1>;
    let pool = Pool::new();
    bench_layer(c, "stem_pool", &pool, (64 * 56 * 56, 64 * 56 * 56), true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let x = random::<Maps<f32, 64, 112, 112>>(&mut rng);
    let g = random::<Maps<f32, 64, 56, 56>>(&mut rng);
    let mut y = zeroed_box::<Maps<f32, 64, 56, 56>>();
    let mut gi = zeroed_box::<Maps<f32, 64, 112, 112>>();
    let mut ws = zeroed_box::<[[[u32; 56]; 56]; 64]>();
    let mut group = c.benchmark_group("stem_pool");
    group.throughput(Throughput::Elements(64 * 56 * 56));
    group.bench_function("forward_reference", |b| {
        b.iter(|| pool.forward_reference(black_box(&x), &mut y, &mut ws))
    });
    group.bench_function("backward_reference", |b| {
        b.iter(|| Pool::backward_reference(black_box(&x), &ws, black_box(&g), &mut gi))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500))
        .sample_size(20);
    targets = layers
}
criterion_main!(benches);
