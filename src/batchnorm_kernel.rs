//! Batch normalisation's per-map arithmetic, apart from the layer that uses it
//! ([`crate::BatchNorm2d`]).
//!
//! Each function takes one channel's map of one sample as a slice, its length known only
//! at run time, so every batch-norm layer of a program, whatever its channels, height and
//! width, runs the same compiled copies (one per scalar type) instead of its own. The layer
//! loops over channels and samples. The sums over a map run in independent partial sums
//! (vectors in `f32`), in an order fixed by the map's length and the instruction set, so
//! a result is the same, bit for bit, from one run to the next.

use crate::fusion::Epilogue;
use crate::scalar::Scalar;
use crate::simd::{self, Kernel, Simd};

/// Independent partial sums of [`sum_f64`]: as many chains as keep the adders busy (an
/// add's latency times the adds per cycle), in a fixed-size array that the compiler turns
/// into vector adds. One chain, in order, made the batch statistics a large part of
/// ResNet-20's training step (batch 64): each add waited for the one before.
const PARTS: usize = 16;

/// `Σ parts`, pairwise in a fixed order.
#[inline(always)]
fn total(mut parts: [f64; PARTS]) -> f64 {
    let mut width = PARTS;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            parts[i] += parts[i + width];
        }
    }
    parts[0]
}

/// `acc + Σ x` over one map (`mean = None`), or `acc + Σ (x − mean)²`, in `f64`: a
/// training pass's batch statistics are these carried through the batch's maps of one
/// channel, in `f64` so that `f32` statistics over large maps stay exact to `f32`
/// precision. Summed in [`PARTS`] chains over the map's whole chunks, then its last values
/// in order, in an order fixed by the map's length.
#[inline(always)]
pub(crate) fn sum_f64<T: Scalar>(acc: f64, x: &[T], mean: Option<f64>) -> f64 {
    let mut parts = [-0.0f64; PARTS];
    let mut chunks = x.chunks_exact(PARTS);
    let term = |v: T| match mean {
        None => Scalar::to_f64(v),
        Some(mean) => {
            let d = Scalar::to_f64(v) - mean;
            d * d
        }
    };
    for chunk in &mut chunks {
        let chunk: &[T; PARTS] = chunk.try_into().expect("a whole chunk");
        for (p, &v) in parts.iter_mut().zip(chunk) {
            *p += term(v);
        }
    }
    let tail = chunks.remainder().iter().fold(-0.0, |a, &v| a + term(v));
    acc + (total(parts) + tail)
}

/// The mean and the biased variance of one channel over a batch (its maps in `maps`, `n`
/// values in all): two passes, summed in `f64` (see [`sum_f64`]), from −0 as
/// `Iterator::sum` starts (an all-−0 channel keeps its sign).
///
/// Runs with the widest instruction set there is ([`simd::dispatch`]): the same additions
/// in the same order whatever the set (IEEE `f64` adds, no fused multiply-add), so the same
/// bits; compiled for the baseline alone, the conversions and adds ran two lanes at a time
/// (4% of ResNet-20's training step at batch 64).
pub(crate) fn batch_stats<T: Scalar>(maps: Maps<'_, T>, n: f64) -> (f64, f64) {
    simd::dispatch(BatchStats { maps, n })
}

/// One channel's maps in a batch: `len` values from `at`, then every `stride` values, to
/// the end of `all`. A slice and three numbers rather than an iterator, so that
/// [`batch_stats`] compiles once per scalar type and instruction set, not once per layer.
#[derive(Clone, Copy)]
pub(crate) struct Maps<'a, T> {
    pub(crate) all: &'a [T],
    pub(crate) at: usize,
    pub(crate) len: usize,
    pub(crate) stride: usize,
}

/// [`batch_stats`] as a [`Kernel`].
struct BatchStats<'a, T> {
    maps: Maps<'a, T>,
    n: f64,
}

impl<T: Scalar> Kernel for BatchStats<'_, T> {
    type Output = (f64, f64);
    #[inline(always)]
    fn run<S: Simd>(self, _: S) -> (f64, f64) {
        let BatchStats { maps, n } = self;
        let mean = sum_maps(maps, None) / n;
        (mean, sum_maps(maps, Some(mean)) / n)
    }
}

/// [`sum_f64`] over `maps`, from −0. A loop in a function inlined into the kernel, not
/// `fold` or a closure: those are functions of their own, compiled without the kernel's
/// instruction set.
#[inline(always)]
fn sum_maps<T: Scalar>(maps: Maps<'_, T>, mean: Option<f64>) -> f64 {
    let Maps {
        all,
        at,
        len,
        stride,
    } = maps;
    let mut acc = -0.0;
    for sample in all.chunks_exact(stride) {
        acc = sum_f64(acc, &sample[at..at + len], mean);
    }
    acc
}

/// [`grad_sums`] of each sample's map of one channel, added to `(bias, weight)` (the
/// channel's gradients) sample by sample, as per-sample passes add them; returns the sums
/// over the batch.
pub(crate) fn batch_grad_sums<'a, T: Scalar>(
    maps: impl Iterator<Item = (&'a [T], &'a [T])>,
    stats: (T, T),
    (bias, weight): (&mut T, &mut T),
) -> (T, T) {
    let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
    for (x, g) in maps {
        let (sg, sgx) = grad_sums(x, g, stats);
        (*bias, *weight) = (*bias + sg, *weight + sgx);
        (sum_g, sum_gx) = (sum_g + sg, sum_gx + sgx);
    }
    (sum_g, sum_gx)
}

/// `y = e((x − mean)·scale + bias)` over one map.
pub(crate) fn affine<T: Scalar>(x: &[T], y: &mut [T], (mean, scale, bias): (T, T, T), e: Epilogue) {
    match e {
        // One loop per map, so that each is as plain as the identity's.
        Epilogue::Identity => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x - mean) * scale + bias;
            }
        }
        Epilogue::Relu => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = Epilogue::Relu.of((x - mean) * scale + bias);
            }
        }
    }
}

/// `(Σ g, Σ g·x̂)` over one map, with `x̂ = (x − mean)·inv_std`: the channel's bias and
/// weight gradients, and (over the batch) the terms of a training pass's input gradient.
/// In `f32`, summed in vectors ([`GradSums`]); otherwise (the `f64` reference) in order.
pub(crate) fn grad_sums<T: Scalar>(x: &[T], g: &[T], (mean, inv_std): (T, T)) -> (T, T) {
    if let (Some(x), Some(g)) = (T::as_f32(x), T::as_f32(g)) {
        // `T` is `f32`: the conversions are exact.
        let (mean, inv_std) = (mean.to_f64() as f32, inv_std.to_f64() as f32);
        let (sg, sgx) = simd::dispatch(GradSums {
            x,
            g,
            mean,
            inv_std,
        });
        return (T::from_f64(f64::from(sg)), T::from_f64(f64::from(sgx)));
    }
    let (mut sum_g, mut sum_gx) = (T::zero(), T::zero());
    for (&x, &g) in x.iter().zip(g) {
        sum_g = sum_g + g;
        sum_gx = sum_gx + g * (x - mean) * inv_std;
    }
    (sum_g, sum_gx)
}

/// One map's input gradient, for a pass that normalised with fixed `mean` and `inv_std`
/// (evaluation: `batch_terms` is `None`), or with the batch's statistics, whose gradient
/// terms `mean_g` = mean(g) and `mean_gx` = mean(g·x̂) are given. `scale` is the channel's
/// weight times `inv_std`.
pub(crate) fn input_grad<T: Scalar>(
    (x, g, gi): (&[T], &[T], &mut [T]),
    (mean, inv_std, scale): (T, T, T),
    batch_terms: Option<(T, T)>,
) {
    match batch_terms {
        None => {
            for (gi, &g) in gi.iter_mut().zip(g) {
                *gi = g * scale;
            }
        }
        Some((mean_g, mean_gx)) => {
            for ((gi, &g), &x) in gi.iter_mut().zip(g).zip(x) {
                *gi = scale * (g - mean_g - (x - mean) * inv_std * mean_gx);
            }
        }
    }
}

/// [`grad_sums`] in `f32`: four vectors of partial sums of each over the map's whole runs of
/// four vectors, then its last values in order.
struct GradSums<'a> {
    x: &'a [f32],
    g: &'a [f32],
    mean: f32,
    inv_std: f32,
}

impl Kernel for GradSums<'_> {
    type Output = (f32, f32);
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> (f32, f32) {
        let GradSums {
            x,
            g,
            mean,
            inv_std,
        } = self;
        let (n, l) = (x.len().min(g.len()), S::LANES);
        let (m, k) = (s.splat(mean), s.splat(inv_std));
        let (mut ag, mut agx) = ([s.splat(0.0); 4], [s.splat(0.0); 4]);
        let whole = n / (4 * l) * (4 * l);
        for i in (0..whole).step_by(4 * l) {
            for j in 0..4 {
                let (gv, xv) = (s.load(g, i + j * l), s.load(x, i + j * l));
                ag[j] = s.add(ag[j], gv);
                agx[j] = s.add(agx[j], s.mul(s.mul(gv, s.sub(xv, m)), k));
            }
        }
        let four = |a: [S::F; 4]| s.sum(s.add(s.add(a[0], a[1]), s.add(a[2], a[3])));
        let (mut sum_g, mut sum_gx) = (four(ag), four(agx));
        for (&x, &g) in x[whole..n].iter().zip(&g[whole..n]) {
            sum_g += g;
            sum_gx += g * (x - mean) * inv_std;
        }
        (sum_g, sum_gx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_map_arithmetic_follows_its_formulas() {
        let x = [1.0f64, 2.0, 4.0, 9.0];
        let g = [0.5f64, -1.0, 2.0, 0.25];
        assert_eq!(sum_f64(1.0, &x, None), 17.0);
        assert_eq!(sum_f64(0.0, &x, Some(4.0)), 9.0 + 4.0 + 0.0 + 25.0);
        let mut y = [0.0; 4];
        affine(&x, &mut y, (4.0, 2.0, 1.0), Epilogue::Identity);
        assert_eq!(y, [-5.0, -3.0, 1.0, 11.0]);
        affine(&x, &mut y, (4.0, 2.0, 1.0), Epilogue::Relu);
        assert_eq!(y, [0.0, 0.0, 1.0, 11.0]);
        let (mean, inv_std) = (4.0, 0.5);
        let (sg, sgx) = grad_sums(&x, &g, (mean, inv_std));
        assert_eq!(sg, 1.75);
        let xhat = x.map(|x| (x - mean) * inv_std);
        assert_eq!(sgx, (0..4).map(|i| g[i] * xhat[i]).sum::<f64>());
        let mut gi = [0.0; 4];
        input_grad((&x, &g, &mut gi), (mean, inv_std, 3.0), None);
        assert_eq!(gi, g.map(|g| 3.0 * g));
        input_grad((&x, &g, &mut gi), (mean, inv_std, 3.0), Some((0.25, 0.5)));
        let want: [f64; 4] = core::array::from_fn(|i| 3.0 * (g[i] - 0.25 - xhat[i] * 0.5));
        assert_eq!(gi, want);

        // Over a batch of two maps: the statistics of all eight values, and the sums added
        // to the gradients sample by sample.
        let y = [3.0f64, 5.0, 0.0, 0.0];
        // Two samples of two channels, the first channel `x` then `y`.
        let all = [[9.0; 4], x, [9.0; 4], y].concat();
        let maps = Maps {
            all: &all,
            at: 4,
            len: 4,
            stride: 8,
        };
        assert_eq!(batch_stats(maps, 8.0), (3.0, 8.0));
        let (mut bias, mut weight) = (1.0, 0.0);
        let pairs = [(&x[..], &g[..]), (&y[..], &g[..])];
        let (sg, sgx) =
            batch_grad_sums(pairs.into_iter(), (mean, inv_std), (&mut bias, &mut weight));
        assert_eq!((sg, bias), (3.5, 4.5));
        let second = grad_sums(&y, &g, (mean, inv_std)).1;
        assert_eq!(
            (sgx, weight),
            (grad_sums(&x, &g, (mean, inv_std)).1 + second, sgx)
        );
    }

    #[test]
    fn maps_longer_than_the_parts_sum_every_value_once() {
        // 141 values: 8 whole chunks of 16 and a tail of 13, two runs of four 16-lane
        // vectors and the same tail; small integers, so every order of the sums is exact
        // and a lost or doubled value shows.
        let x: Vec<f32> = (0..141).map(|i| (i % 7) as f32 - 2.0).collect();
        let g: Vec<f32> = (0..141).map(|i| (i % 5) as f32).collect();
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(sum_f64(0.5, &x, None), 0.5 + exact);
        let squares: f64 = x.iter().map(|&v| (f64::from(v) - 1.0).powi(2)).sum();
        assert_eq!(sum_f64(0.0, &x, Some(1.0)), squares);
        let want: f32 = x.iter().zip(&g).map(|(&x, &g)| g * (x - 1.0) * 2.0).sum();
        for isa in crate::simd::Isa::ALL
            .into_iter()
            .filter(|isa| isa.available())
        {
            let (sg, sgx) = crate::simd::with_isa(isa, || grad_sums(&x, &g, (1.0, 2.0)));
            assert_eq!((sg, sgx), (g.iter().sum::<f32>(), want), "{isa:?}");
        }
    }

    #[test]
    fn batch_statistics_are_the_same_bits_on_every_instruction_set() {
        // Sums whose order shows: each map leads with ±2⁵⁴ (where `f64`'s values are 4
        // apart) and goes on with small values (maps of 141: whole chunks and a
        // tail), so an instruction set that summed in another order, or fused a multiply
        // and an add, would give other bits.
        let map = |n: usize, big: f32, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| if i == 0 { big } else { (i % k) as f32 + 0.25 })
                .collect()
        };
        // Three samples of two channels of 141 values, the second channel's maps read.
        let (a, b) = (map(141, 2f32.powi(54), 5), map(141, -(2f32.powi(54)), 3));
        let other = vec![7.0f32; 141];
        let all = [&other[..], &a, &other, &b, &other, &a].concat();
        let maps = Maps {
            all: &all,
            at: 141,
            len: 141,
            stride: 282,
        };
        let n = (3 * 141) as f64;
        let first = crate::simd::with_isa(crate::simd::Isa::Scalar, || batch_stats(maps, n));
        // The two-pass definition summed in order, to the roundings of the two orders
        // (a few units of 4 at 2⁵⁴ in the sum).
        let values = [&a, &b, &a]
            .into_iter()
            .flat_map(|m| m.iter().map(|&v| f64::from(v)));
        let mean = values.clone().sum::<f64>() / n;
        let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        assert!(
            (first.0 - mean).abs() <= 1e3 / n,
            "{} against {mean}",
            first.0
        );
        assert!(
            (first.1 - var).abs() <= 1e-9 * var,
            "{} against {var}",
            first.1
        );
        for isa in crate::simd::Isa::ALL
            .into_iter()
            .filter(|isa| isa.available())
        {
            let got = crate::simd::with_isa(isa, || batch_stats(maps, n));
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (first.0.to_bits(), first.1.to_bits()),
                "{isa:?}"
            );
        }
    }
}
