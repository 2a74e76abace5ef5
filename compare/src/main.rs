//! The same LeNet-5 (same weights, same images) in constnet and in candle, single thread,
//! f32: µs per image for inference and for a training step (forward, backward, SGD update)
//! at batch 1 and batch 64, and the ratio candle / constnet.
//!
//! `cargo run --release` in this folder (see README.md). Candle's CPU backend is limited to
//! one thread with `RAYON_NUM_THREADS=1`, set below before candle starts.

use std::hint::black_box;
use std::time::Instant;

use candle_core::{D, Device, Module, Tensor, Var};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Optimizer, SGD};
use constnet::{BatchLayer, Image, Layer, LeNet5, Loss, Sgd, zeroed_box};
use rand::{RngExt, SeedableRng};

const N: usize = 64;
const LR: f32 = 0.01;

/// µs per call: the best of 5 rounds of enough calls to fill ~60 ms each.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed().as_secs_f64() < 0.06 {
        f();
        calls += 1;
    }
    let calls = calls.max(1);
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
        })
        .fold(f64::INFINITY, f64::min)
}

/// LeNet-5 in candle, from constnet's parameter tensors (PyTorch layouts, same order).
struct CandleLeNet {
    vars: Vec<Var>,
}

impl CandleLeNet {
    fn from_constnet(net: &LeNet5<f32>) -> candle_core::Result<Self> {
        let shapes: [&[usize]; 10] = [
            &[6, 1, 5, 5],
            &[6],
            &[16, 6, 5, 5],
            &[16],
            &[120, 400],
            &[120],
            &[100, 120],
            &[100],
            &[10, 100],
            &[10],
        ];
        let vars = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| Var::from_slice(net.param(i), *shape, &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { vars })
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let v = |i: usize| self.vars[i].as_tensor().clone();
        let conv1 = Conv2d::new(v(0), Some(v(1)), Conv2dConfig::default());
        let conv2 = Conv2d::new(v(2), Some(v(3)), Conv2dConfig::default());
        let (fc1, fc2, fc3) = (
            Linear::new(v(4), Some(v(5))),
            Linear::new(v(6), Some(v(7))),
            Linear::new(v(8), Some(v(9))),
        );
        let x = conv1.forward(x)?.relu()?.max_pool2d(2)?;
        let x = conv2.forward(&x)?.relu()?.max_pool2d(2)?;
        let x = x.flatten_from(1)?;
        let x = fc1.forward(&x)?.relu()?;
        let x = fc2.forward(&x)?.relu()?;
        fc3.forward(&x)
    }

    fn probabilities(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax(&self.logits(x)?, D::Minus1)
    }
}

fn main() -> candle_core::Result<()> {
    if std::env::var("RAYON_NUM_THREADS").as_deref() != Ok("1") {
        // SAFETY: no other thread exists yet (candle's thread pool starts on first use).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut net = LeNet5::<f32>::new_boxed(&mut rng);
    let mut images = zeroed_box::<[Image<f32>; N]>();
    for v in images.iter_mut().flatten().flatten().flatten() {
        *v = rng.random_range(0.0..1.0);
    }
    let labels: [usize; N] = core::array::from_fn(|n| n % 10);

    // candle: the same weights and images
    let candle_net = CandleLeNet::from_constnet(&net)?;
    let flat: Vec<f32> = images
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let x64 = Tensor::from_vec(flat, (N, 1, 32, 32), &Device::Cpu)?;
    let x1 = x64.narrow(0, 0, 1)?;
    let y64 = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        N,
        &Device::Cpu,
    )?;
    let y1 = y64.narrow(0, 0, 1)?;

    // Same network: the probabilities agree.
    let mut ws = LeNet5::<f32>::workspace();
    let ours = net.probabilities(&images[0], &mut ws);
    let theirs: Vec<f32> = candle_net.probabilities(&x1)?.flatten_all()?.to_vec1()?;
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("same LeNet-5, same image: max |p_constnet − p_candle| = {diff:.1e}");
    assert!(diff < 1e-4, "the two networks disagree");

    let mut rows: Vec<(&str, f64, f64)> = Vec::new();

    // inference, batch 1 and batch N
    let ours = time(|| {
        black_box(net.probabilities(black_box(&images[0]), &mut ws));
    });
    let theirs = time(|| {
        black_box(candle_net.probabilities(&x1).unwrap());
    });
    rows.push(("inference, batch 1", ours, theirs));
    let mut bws = LeNet5::<f32>::batch_workspace::<N>();
    let mut probs = zeroed_box::<[[f32; 10]; N]>();
    let ours = time(|| net.infer_batch(black_box(&images), &mut probs, &mut bws)) / N as f64;
    let theirs = time(|| {
        black_box(candle_net.probabilities(&x64).unwrap());
    }) / N as f64;
    rows.push(("inference, batch 64", ours, theirs));

    // training step: forward, cross-entropy, backward, SGD
    let mut grads = zeroed_box::<LeNet5<f32>>();
    let sgd = Sgd { lr: LR };
    let ours = time(|| {
        grads.zero_params();
        net.backprop(
            &images[0],
            labels[0],
            Loss::CrossEntropy,
            &mut ws,
            &mut grads,
            None,
        );
        sgd.step(&mut *net, &grads);
    });
    let mut opt = SGD::new(candle_net.vars.clone(), f64::from(LR))?;
    let mut candle_step = |x: &Tensor, y: &Tensor| {
        let loss = candle_nn::loss::cross_entropy(&candle_net.logits(x).unwrap(), y).unwrap();
        opt.backward_step(&loss).unwrap();
    };
    let theirs = time(|| candle_step(&x1, &y1));
    rows.push(("training step, batch 1", ours, theirs));
    let ours = time(|| {
        grads.zero_params();
        net.backprop_batch(&images, &labels, Loss::CrossEntropy, &mut bws, &mut grads);
        sgd.step(&mut *net, &grads);
    }) / N as f64;
    let theirs = time(|| candle_step(&x64, &y64)) / N as f64;
    rows.push(("training step, batch 64", ours, theirs));

    println!();
    println!(
        "| LeNet-5, f32, 1 thread   | constnet µs/image | candle µs/image | candle / constnet |"
    );
    println!(
        "|--------------------------|------------------:|----------------:|------------------:|"
    );
    for (name, ours, theirs) in rows {
        println!(
            "| {name:<24} | {ours:>17.1} | {theirs:>15.1} | {:>16.1}× |",
            theirs / ours
        );
    }
    Ok(())
}
