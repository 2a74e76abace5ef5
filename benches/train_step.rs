//! One training step of ResNet-20 (`ResNet20<f32, 1, 10>`, 1×32×32 inputs, as for
//! Fashion-MNIST) on one thread: forward and backward of a batch of 32, as the trainer runs
//! them (`BatchLayer`), timed per batch; criterion's "elem/s" reads as images per second.
//!
//! `cargo bench --bench train_step`

use constnet::{BatchLayer, Layer, Network, Pass, ResNet20, Tensor, zeroed_box};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

const N: usize = 32;
type Net = ResNet20<f32, 1, 10>;

fn resnet20_step(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let net = Net::new_boxed(&mut rng);
    let mut x = zeroed_box::<[<Net as Layer>::Input; N]>();
    for v in Tensor::flat_slice_mut(&mut x[..]) {
        *v = rng.random_range(0.0..1.0);
    }
    let mut y = zeroed_box::<[[f32; 10]; N]>();
    let mut ws = zeroed_box::<<Net as BatchLayer<N>>::BatchWorkspace>();
    let mut grads = zeroed_box::<Net>();
    let mut g = zeroed_box::<[[f32; 10]; N]>();
    for (n, row) in g.iter_mut().enumerate() {
        row[n % 10] = -1.0 / N as f32;
    }
    let mut group = c.benchmark_group("resnet20_f32");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("train_step_batch32", |b| {
        b.iter(|| {
            net.forward_batch_in(&Pass::train(1, 0), black_box(&x), &mut y, &mut ws);
            net.backward_batch(&x, &mut ws, &g, None, &mut grads);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    targets = resnet20_step
}
criterion_main!(benches);
