//! The matrix-product convolution kernels (`conv_gemm`) against the direct ones
//! (`conv_kernel`), pass by pass, on the geometries of the article's networks, in the same
//! binary: `<case>/<pass>/direct` and `<case>/<pass>/gemm` run one after the other, and for the
//! forward pass `forward/columns`, the product on the packed input even where `forward/gemm`
//! runs F(2×2, 3×3) (`conv_winograd`), and `weight_grad/gemm_batch`, the weight gradient of
//! a batch of 8 in one call. Then one core's FMA peak (`peak/fma`), for scale.
//!
//! Throughput: FLOPs (2 per multiply-add, padding taps included), so criterion's "elem/s"
//! reads as FLOP/s.
//!
//! `cargo bench --bench conv_gemm [-- FILTER]`; `CONSTNET_ISA=sse2|avx2|scalar` limits the
//! instruction set.

#[path = "peak.rs"]
mod peak;
use peak::{CHAINS, Peak, ROUNDS};

use constnet::conv_gemm;
use constnet::conv_kernel::{self, ConvGeometry};
use constnet::conv_out;
use constnet::simd::{self, Isa, with_isa};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
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

/// `c_in → c_out`, `k`×`k` at `stride` with `pad`, on `h`×`h` maps.
const fn geo(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    h: usize,
) -> ConvGeometry {
    let o = conv_out(h, k, stride, pad);
    ConvGeometry {
        c_in,
        c_out,
        groups: 1,
        k,
        stride,
        pad,
        h,
        w: h,
        oh: o,
        ow: o,
    }
    .checked()
}

const CASES: [(&str, ConvGeometry); 28] = [
    ("alexnet_conv1_3x64_11x11s4_224", geo(3, 64, 11, 4, 2, 224)),
    ("alexnet_conv2_64x192_5x5_27", geo(64, 192, 5, 1, 2, 27)),
    ("resnet20_16x16_3x3_32", geo(16, 16, 3, 1, 1, 32)),
    ("resnet20_16x32_3x3s2_32", geo(16, 32, 3, 2, 1, 32)),
    ("resnet20_16x32_1x1s2_32", geo(16, 32, 1, 2, 0, 32)),
    ("resnet20_32x32_3x3_16", geo(32, 32, 3, 1, 1, 16)),
    ("resnet20_32x64_3x3s2_16", geo(32, 64, 3, 2, 1, 16)),
    ("resnet20_32x64_1x1s2_16", geo(32, 64, 1, 2, 0, 16)),
    ("resnet20_64x64_3x3_8", geo(64, 64, 3, 1, 1, 8)),
    ("resnet20_stem_1x16_3x3_32", geo(1, 16, 3, 1, 1, 32)),
    ("resnet18_stem_3x64_7x7s2_224", geo(3, 64, 7, 2, 3, 224)),
    ("resnet18_64x64_3x3_56", geo(64, 64, 3, 1, 1, 56)),
    ("resnet18_128x128_3x3_28", geo(128, 128, 3, 1, 1, 28)),
    ("resnet18_256x256_3x3_14", geo(256, 256, 3, 1, 1, 14)),
    ("resnet18_512x512_3x3_7", geo(512, 512, 3, 1, 1, 7)),
    ("resnet18_64x128_3x3s2_56", geo(64, 128, 3, 2, 1, 56)),
    ("resnet18_128x256_3x3s2_28", geo(128, 256, 3, 2, 1, 28)),
    ("resnet18_256x512_3x3s2_14", geo(256, 512, 3, 2, 1, 14)),
    ("resnet18_256x512_1x1s2_14", geo(256, 512, 1, 2, 0, 14)),
    ("vgg16_64x64_3x3_224", geo(64, 64, 3, 1, 1, 224)),
    ("vgg16_256x256_3x3_56", geo(256, 256, 3, 1, 1, 56)),
    ("vgg16_512x512_3x3_28", geo(512, 512, 3, 1, 1, 28)),
    ("vgg16_512x512_3x3_14", geo(512, 512, 3, 1, 1, 14)),
    ("densenet121_128x32_3x3_56", geo(128, 32, 3, 1, 1, 56)),
    ("densenet121_128x32_3x3_14", geo(128, 32, 3, 1, 1, 14)),
    ("densenet121_128x32_3x3_7", geo(128, 32, 3, 1, 1, 7)),
    ("densenet121_256x128_1x1_28", geo(256, 128, 1, 1, 0, 28)),
    ("googlenet_480x192_1x1_14", geo(480, 192, 1, 1, 0, 14)),
];

/// The samples of the `gemm_batch` cases.
const BATCH: usize = 8;

/// Multiply-adds of one pass.
fn macs(g: &ConvGeometry) -> u64 {
    (g.c_out * g.in_per_group() * g.k * g.k * g.oh * g.ow) as u64
}

fn kernels(c: &mut Criterion) {
    with_isa(isa(), || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        for (name, g) in CASES {
            let (x, w, b, dy) = (
                random(g.input_len()),
                random(g.weight_len()),
                random(g.c_out),
                random(g.output_len()),
            );
            let mut y = vec![0.0f32; g.output_len()];
            let mut gi = vec![0.0f32; g.input_len()];
            let (mut gw, mut gb) = (vec![0.0f32; g.weight_len()], vec![0.0f32; g.c_out]);
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Elements(2 * macs(&g)));
            group.bench_function("forward/direct", |bench| {
                bench.iter(|| conv_kernel::forward(&g, black_box(&x), &w, &b, &mut y))
            });
            group.bench_function("forward/gemm", |bench| {
                bench.iter(|| conv_gemm::forward(&g, black_box(&x), &w, &b, &mut y))
            });
            group.bench_function("forward/columns", |bench| {
                bench.iter(|| conv_gemm::forward_on_columns(&g, black_box(&x), &w, &b, &mut y))
            });
            group.bench_function("input_grad/direct", |bench| {
                bench.iter(|| conv_kernel::input_grad(&g, &w, black_box(&dy), &mut gi))
            });
            group.bench_function("input_grad/gemm", |bench| {
                bench.iter(|| conv_gemm::input_grad(&g, &w, black_box(&dy), &mut gi))
            });
            group.bench_function("weight_grad/direct", |bench| {
                bench.iter(|| {
                    conv_kernel::weight_grad(&g, black_box(&x), &dy, &mut gw, &mut gb, 1e-9)
                })
            });
            group.bench_function("weight_grad/gemm", |bench| {
                bench
                    .iter(|| conv_gemm::weight_grad(&g, black_box(&x), &dy, &mut gw, &mut gb, 1e-9))
            });
            // A batch of 8 samples in one call: each weight's sum over the batch added once;
            // F(2×2, 3×3)'s tiles of all the samples in the same blocks where it pays for them.
            let (xs, dys) = (x.repeat(BATCH), dy.repeat(BATCH));
            let (mut ys, mut gis) = (y.repeat(BATCH), gi.repeat(BATCH));
            group.throughput(Throughput::Elements(2 * macs(&g) * BATCH as u64));
            group.bench_function("forward/gemm_batch", |bench| {
                bench.iter(|| conv_gemm::forward(&g, black_box(&xs), &w, &b, &mut ys))
            });
            group.bench_function("input_grad/gemm_batch", |bench| {
                bench.iter(|| conv_gemm::input_grad(&g, &w, black_box(&dys), &mut gis))
            });
            group.bench_function("weight_grad/gemm_batch", |bench| {
                bench.iter(|| {
                    conv_gemm::weight_grad(&g, black_box(&xs), &dys, &mut gw, &mut gb, 1e-9)
                })
            });
            group.finish();
        }
    });
}

fn peak(c: &mut Criterion) {
    with_isa(isa(), || {
        let lanes = simd::current().lanes() as u64;
        let mut group = c.benchmark_group("peak");
        group.throughput(Throughput::Elements(2 * lanes * (ROUNDS * CHAINS) as u64));
        group.bench_function("fma", |b| b.iter(|| simd::dispatch(Peak(black_box(1.0)))));
        group.finish();
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600))
        .sample_size(15);
    targets = peak, kernels
}
criterion_main!(benches);
