//! The classic networks' extra blocks (`AvgPool2d`, `GlobalAvgPool2d`, `LocalResponseNorm`):
//! analytic gradients against central finite differences, and the blocks in chains.
//!
//! # What is checked
//! * `AvgPool2d` in six geometries: tiled 2×2 (DenseNet's transition), padded 3×3 at stride 2
//!   with the padding counted and not counted, ceil mode without padding, and ceil mode with
//!   padding whose last window runs past the padded map (both counts); `GlobalAvgPool2d`; and
//!   `LocalResponseNorm` with an odd window (5), an even one (4, asymmetric) and a window
//!   wider than the channels (9 over 7), with `alpha`, `beta` and `k` drawn per case.
//! * As in `gradients.rs`, each layer gets the loss `E = Σ rᵢ·yᵢ` with `r` drawn, and every
//!   coordinate of the input gradient is compared with `(E(x + h) − E(x − h)) / 2h`,
//!   `h = 1e-6`, summed as `Σ rᵢ·(yᵢ(x+h) − yᵢ(x−h))`. The input gradient starts as NaN, so
//!   one left unwritten fails.
//! * A chain conv → LRN → average pool → global average pool → linear: every parameter
//!   tensor and the input, the same way (so the blocks compose with `Chain` and pass
//!   gradients to the layers before them).
//! * The same chain with a softmax: a batch through `BatchLayer` equals its samples one at a
//!   time, and `train_sgd` equals `backprop` followed by `Sgd::step`.
//!
//! # Tolerance
//! `|a − n| ≤ 1e-6·max(|a|, |n|) + 1e-9` (layers) or `+ 1e-8` (the chain), the reasoning of
//! `gradients.rs`: the truncation error of a central difference is far below 1e-6 relative,
//! and the absolute floor is the rounding error of one (layer) or a few (chain) sums divided
//! by `2h`. The averaging pools are linear, so their differences are exact up to rounding;
//! LRN is smooth (`s ≥ k ≥ 0.5`), so no case is skipped. Every property runs 64 cases.

use constnet::simd::{Isa, with_isa};
use constnet::{
    AvgPool2d, BatchLayer, Conv2d, GlobalAvgPool2d, Layer, Linear, LocalResponseNorm, Loss, Sgd,
    Softmax, Tensor, sequential, zeroed_box,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const H: f64 = 1e-6;
const RTOL: f64 = 1e-6;
const ATOL_LAYER: f64 = 1e-9;
const ATOL_NET: f64 = 1e-8;
const CASES: u32 = 64;

/// Parameters (one vector per tensor), input, and the weights `r` of the loss.
type Draw = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

/// Parameters and input uniform in `[−scale, scale]`, `r` in `[−1, 1]`.
fn draw<L: Layer<Scalar = f64>>(scale: f64) -> impl Strategy<Value = Draw> {
    let shape = zeroed_box::<L>();
    let params: Vec<_> = (0..L::PARAM_TENSORS)
        .map(|i| vec(-1.0..1.0, shape.param(i).len()))
        .collect();
    (
        params,
        vec(-scale..scale, <L::Input as Tensor>::LEN),
        vec(-1.0..1.0, <L::Output as Tensor>::LEN),
    )
}

/// `alpha`, `beta`, `k` of an LRN: sums of squares from a few tenths to several times `k`.
fn lrn_constants() -> impl Strategy<Value = (f64, f64, f64)> {
    (0.1..2.0, 0.25..1.0, 0.5..2.0)
}

/// Builds `make()` with the drawn parameters and checks `∂E/∂input` and `∂E/∂parameter`
/// against central differences at every coordinate. Parameter gradients must be *added*:
/// the buffers start at 0.25, subtracted before comparing.
fn check<L: Layer<Scalar = f64>>(
    make: impl Fn() -> Box<L>,
    (params, input, r): &Draw,
    atol: f64,
) -> Result<(), TestCaseError> {
    const PREFILL: f64 = 0.25;
    let mut layer = make();
    for (i, p) in params.iter().enumerate() {
        layer.param_mut(i).copy_from_slice(p);
    }
    let mut x = zeroed_box::<L::Input>();
    x.flat_mut().copy_from_slice(input);
    let mut g = zeroed_box::<L::Output>();
    g.flat_mut().copy_from_slice(r);
    let mut ws = zeroed_box::<L::Workspace>();
    let (mut y, mut y_minus) = (zeroed_box::<L::Output>(), zeroed_box::<L::Output>());
    layer.forward(&x, &mut y, &mut ws);
    let mut grads = make();
    for i in 0..L::PARAM_TENSORS {
        grads.param_mut(i).fill(PREFILL);
    }
    let mut gx = zeroed_box::<L::Input>();
    gx.flat_mut().fill(f64::NAN);
    layer.backward(&x, &mut ws, &g, Some(&mut gx), &mut grads);

    // Coordinate `k` of the input (`None`) or of parameter tensor `i`, and its derivative.
    let targets = (0..<L::Input as Tensor>::LEN).map(|k| (None, k));
    let targets: Vec<_> = targets
        .chain(
            (0..L::PARAM_TENSORS)
                .flat_map(|i| (0..layer.param(i).len()).map(move |k| (Some(i), k))),
        )
        .collect();
    for (tensor, k) in targets {
        let analytic = match tensor {
            None => gx.flat()[k],
            Some(i) => grads.param(i)[k] - PREFILL,
        };
        let theta = match tensor {
            None => x.flat()[k],
            Some(i) => layer.param(i)[k],
        };
        let set = |layer: &mut L, x: &mut L::Input, v: f64| match tensor {
            None => x.flat_mut()[k] = v,
            Some(i) => layer.param_mut(i)[k] = v,
        };
        let (plus, minus) = (theta + H, theta - H);
        set(&mut layer, &mut x, plus);
        layer.forward(&x, &mut y, &mut ws);
        set(&mut layer, &mut x, minus);
        layer.forward(&x, &mut y_minus, &mut ws);
        set(&mut layer, &mut x, theta);
        let numeric = r
            .iter()
            .zip(y.flat().iter().zip(y_minus.flat()))
            .map(|(r, (p, m))| r * (p - m))
            .sum::<f64>()
            / (plus - minus);
        let what = tensor.map_or("input".to_string(), |i| format!("parameter tensor {i}"));
        prop_assert!(
            (analytic - numeric).abs() <= RTOL * analytic.abs().max(numeric.abs()) + atol,
            "{what}[{k}]: analytic {analytic:e}, numeric {numeric:e}"
        );
    }
    Ok(())
}

/// DenseNet's transition pool: 2×2 at stride 2, tiling 6×8 maps.
type AvgTiled = AvgPool2d<f64, 3, 6, 8, 2, 2, 3, 4>;
/// 3×3 at stride 2 with padding 1 over 7×8: ⌊6 / 2⌋ + 1 = 4 and ⌊7 / 2⌋ + 1 = 4, the
/// padding counted in the divisor.
type AvgPadded = AvgPool2d<f64, 2, 7, 8, 3, 2, 4, 4, 1>;
/// The same without counting the padding (divisors 4, 6 or 9).
type AvgPaddedExclude = AvgPool2d<f64, 2, 7, 8, 3, 2, 4, 4, 1, false, false>;
/// Ceil mode without padding: 8×6 → 4×3, the last windows clipped to the map.
type AvgCeil = AvgPool2d<f64, 2, 8, 6, 3, 2, 4, 3, 0, true>;
/// Ceil mode with padding: over 6 rows the 4th window starts at row 5 and runs past the
/// padding (rows 5..=7, the padded map ending at 6), so PyTorch clips its divisor to 2 rows.
type AvgCeilPadded = AvgPool2d<f64, 2, 6, 5, 3, 2, 4, 3, 1, true, true>;
/// The same, the padding not counted.
type AvgCeilPaddedExclude = AvgPool2d<f64, 2, 6, 5, 3, 2, 4, 3, 1, true, false>;
type GlobalAvg = GlobalAvgPool2d<f64, 3, 4, 5>;
/// AlexNet's window (5) over 7 channels of 2×3.
type Lrn5 = LocalResponseNorm<f64, 7, 2, 3, 5>;
/// An even window: `c − 2 ..= c + 1`.
type Lrn4 = LocalResponseNorm<f64, 7, 2, 3, 4>;
/// A window wider than the channels: every channel sees every other.
type Lrn9 = LocalResponseNorm<f64, 7, 2, 3, 9>;
/// conv (3×3, padding 1) → LRN → padded average pool → global average pool → linear.
type Net = sequential![
    Conv2d<f64, 2, 5, 3, 1, 1, 6, 6, 6, 6>,
    LocalResponseNorm<f64, 5, 6, 6, 3>,
    AvgPool2d<f64, 5, 6, 6, 3, 2, 3, 3, 1, false, false>,
    GlobalAvgPool2d<f64, 5, 3, 3>,
    Linear<f64, 5, 4>,
];

/// The LRN inside [`Net`].
fn net_lrn(net: &mut Net) -> &mut LocalResponseNorm<f64, 5, 6, 6, 3> {
    &mut net.first.first.first.then
}

fn plain<L: Layer>() -> Box<L> {
    zeroed_box()
}

fn lrn<const C: usize, const HH: usize, const W: usize, const SIZE: usize>(
    (alpha, beta, k): (f64, f64, f64),
) -> impl Fn() -> Box<LocalResponseNorm<f64, C, HH, W, SIZE>> {
    move || Box::new(LocalResponseNorm::new(alpha, beta, k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn avgpool2d_tiled_input_gradient_matches_finite_differences(d in draw::<AvgTiled>(1.0)) {
        check(plain::<AvgTiled>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn avgpool2d_padded_include_pad_input_gradient_matches_finite_differences(
        d in draw::<AvgPadded>(1.0)
    ) {
        check(plain::<AvgPadded>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn avgpool2d_padded_exclude_pad_input_gradient_matches_finite_differences(
        d in draw::<AvgPaddedExclude>(1.0)
    ) {
        check(plain::<AvgPaddedExclude>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn avgpool2d_ceil_mode_input_gradient_matches_finite_differences(d in draw::<AvgCeil>(1.0)) {
        check(plain::<AvgCeil>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn avgpool2d_ceil_padded_include_pad_input_gradient_matches_finite_differences(
        d in draw::<AvgCeilPadded>(1.0)
    ) {
        check(plain::<AvgCeilPadded>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn avgpool2d_ceil_padded_exclude_pad_input_gradient_matches_finite_differences(
        d in draw::<AvgCeilPaddedExclude>(1.0)
    ) {
        check(plain::<AvgCeilPaddedExclude>, &d, ATOL_LAYER)?;
    }

    #[test]
    fn global_avgpool2d_input_gradient_matches_finite_differences(d in draw::<GlobalAvg>(1.0)) {
        check(plain::<GlobalAvg>, &d, ATOL_LAYER)?;
    }

    /// Inputs in [−2, 2]: the squares in a window add up to about `k` or several times it.
    #[test]
    fn lrn_size5_input_gradient_matches_finite_differences(
        d in draw::<Lrn5>(2.0), c in lrn_constants()
    ) {
        check(lrn::<7, 2, 3, 5>(c), &d, ATOL_LAYER)?;
    }

    #[test]
    fn lrn_even_size_input_gradient_matches_finite_differences(
        d in draw::<Lrn4>(2.0), c in lrn_constants()
    ) {
        check(lrn::<7, 2, 3, 4>(c), &d, ATOL_LAYER)?;
    }

    #[test]
    fn lrn_window_wider_than_the_channels_input_gradient_matches_finite_differences(
        d in draw::<Lrn9>(2.0), c in lrn_constants()
    ) {
        check(lrn::<7, 2, 3, 9>(c), &d, ATOL_LAYER)?;
    }

    #[test]
    fn conv_lrn_avgpool_global_linear_chain_gradients_match_finite_differences(
        d in draw::<Net>(1.0), (alpha, beta, k) in lrn_constants()
    ) {
        let make = || {
            let mut net = zeroed_box::<Net>();
            *net_lrn(&mut net) = LocalResponseNorm::new(alpha, beta, k);
            net
        };
        check(make, &d, ATOL_NET)?;
    }
}

type Classifier = sequential![Net, Softmax<f64, 4>];

/// A classifier around [`Net`] with parameters and LRN constants from `seed`.
fn classifier(seed: u64) -> Box<Classifier> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut net = zeroed_box::<Classifier>();
    net.init(&mut rng);
    *net_lrn(&mut net.first) = LocalResponseNorm::new(1.0, 0.75, 1.0);
    net
}

fn image(seed: u64) -> Box<<Net as Layer>::Input> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut x = zeroed_box::<<Net as Layer>::Input>();
    for v in x.flat_mut() {
        *v = rng.random_range(-2.0..2.0);
    }
    x
}

/// A batch of 3 through `BatchLayer` gives each sample's `Layer` outputs and input
/// gradients, and the sum of their parameter gradients.
#[test]
fn blocks_in_a_batch_equal_their_samples_one_at_a_time() {
    let net = classifier(1);
    let inputs = [*image(2), *image(3), *image(4)];
    let labels = [0, 3, 1];
    let mut ws = Classifier::batch_workspace::<3>();
    let mut grads = zeroed_box::<Classifier>();
    let batch_loss = net.backprop_batch(&inputs, &labels, Loss::CrossEntropy, &mut ws, &mut grads);

    let mut one_ws = zeroed_box::<<Classifier as Layer>::Workspace>();
    let mut sum = zeroed_box::<Classifier>();
    let mut loss = 0.0;
    for (x, &label) in inputs.iter().zip(&labels) {
        loss += net.backprop(x, label, Loss::CrossEntropy, &mut one_ws, &mut sum, None);
    }
    assert!(
        (batch_loss - loss).abs() <= 1e-12 * loss.abs(),
        "{batch_loss} vs {loss}"
    );
    for i in 0..<Classifier as Layer>::PARAM_TENSORS {
        for (a, b) in grads.param(i).iter().zip(sum.param(i)) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "tensor {i}: {a} vs {b}"
            );
        }
    }
    let mut outs = [[0.0; 4]; 3];
    net.forward_batch(&inputs, &mut outs, &mut ws);
    for (x, out) in inputs.iter().zip(&outs) {
        assert_eq!(*out, net.probabilities(x, &mut one_ws));
    }
}

/// The fused SGD step passes through the parameterless blocks: `train_sgd` leaves the
/// network as `backprop` then `Sgd::step` does, and keeps the LRN's constants.
#[test]
fn train_sgd_through_the_blocks_equals_backprop_then_sgd() {
    let (mut fused, mut stepped) = (classifier(5), classifier(5));
    let x = image(6);
    let mut ws = zeroed_box::<<Classifier as Layer>::Workspace>();
    let lr = 0.1;
    let fused_loss = fused.train_sgd(&x, 2, Loss::CrossEntropy, lr, &mut ws);
    let mut grads = zeroed_box::<Classifier>();
    let loss = stepped.backprop(&x, 2, Loss::CrossEntropy, &mut ws, &mut grads, None);
    Sgd { lr }.step(&mut *stepped, &grads);
    assert_eq!(fused_loss, loss);
    for i in 0..<Classifier as Layer>::PARAM_TENSORS {
        for (a, b) in fused.param(i).iter().zip(stepped.param(i)) {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "tensor {i}: {a} vs {b}"
            );
        }
    }
    let lrn = *net_lrn(&mut fused.first);
    assert_eq!((lrn.alpha, lrn.beta, lrn.k), (1.0, 0.75, 1.0));
}

// ---------------------------------------------------------------------------------------------
// The f32 SIMD paths against the reference loops, on every instruction set this CPU has.
// ---------------------------------------------------------------------------------------------

/// `AvgPool2d<f32, …>` with its const parameters in order.
type Avg<
    const C: usize,
    const HH: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INC: bool,
> = AvgPool2d<f32, C, HH, W, K, S, OH, OW, P, CEIL, INC>;

fn available() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.available())
}

/// `values` repeated over `x`.
fn fill(x: &mut [f32], values: &[f32]) {
    for (v, &s) in x.iter_mut().zip(values.iter().cycle()) {
        *v = s;
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Forward and backward of one average pool on every instruction set, bit for bit the
/// reference loops (the SIMD path adds in their order), also through `BatchLayer`.
fn check_avg_fast<
    const C: usize,
    const HH: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INC: bool,
>(
    values: &[f32],
    grads: &[f32],
) {
    let pool = Avg::<C, HH, W, K, S, OH, OW, P, CEIL, INC>::new();
    let mut x = zeroed_box::<[[[f32; W]; HH]; C]>();
    fill(x.flat_mut(), values);
    let mut g = zeroed_box::<[[[f32; OW]; OH]; C]>();
    fill(g.flat_mut(), grads);
    let mut y_ref = zeroed_box::<[[[f32; OW]; OH]; C]>();
    Avg::<C, HH, W, K, S, OH, OW, P, CEIL, INC>::forward_reference(&x, &mut y_ref);
    let mut gi_ref = zeroed_box::<[[[f32; W]; HH]; C]>();
    Avg::<C, HH, W, K, S, OH, OW, P, CEIL, INC>::backward_reference(&g, &mut gi_ref);
    for isa in available() {
        with_isa(isa, || {
            let mut y = zeroed_box::<[[[f32; OW]; OH]; C]>();
            pool.forward(&x, &mut y, &mut ());
            assert_eq!(bits(y.flat()), bits(y_ref.flat()), "forward on {isa:?}");
            let mut gi = zeroed_box::<[[[f32; W]; HH]; C]>();
            gi.flat_mut().fill(f32::NAN);
            pool.backward(&x, &mut (), &g, Some(&mut gi), &mut Avg::new());
            assert_eq!(bits(gi.flat()), bits(gi_ref.flat()), "backward on {isa:?}");
            let xs = [*x, *x];
            let mut ys = [*y, *y];
            pool.forward_batch(&xs, &mut ys, &mut [(), ()]);
            assert_eq!(bits(ys[1].flat()), bits(y_ref.flat()), "batch on {isa:?}");
        });
    }
}

/// The f32 means on every instruction set, within 1e-6 of the reference's magnitude
/// (the vectors add in another order), and the gradient exactly.
fn check_global_fast<const C: usize, const HH: usize, const W: usize>(values: &[f32]) {
    let pool = GlobalAvgPool2d::<f32, C, HH, W>::new();
    let mut x = zeroed_box::<[[[f32; W]; HH]; C]>();
    fill(x.flat_mut(), values);
    let mut y_ref = [0.0; C];
    GlobalAvgPool2d::<f32, C, HH, W>::forward_reference(&x, &mut y_ref);
    for isa in available() {
        with_isa(isa, || {
            let mut y = [f32::NAN; C];
            pool.forward(&x, &mut y, &mut ());
            for (c, (&f, &r)) in y.iter().zip(&y_ref).enumerate() {
                assert!(
                    (f - r).abs() <= 1e-6 * r.abs().max(1.0),
                    "{isa:?} [{c}]: {f} vs {r}"
                );
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// DenseNet-121's transitions (2×2 at stride 2: 56 → 28, 28 → 14, 14 → 7), fewer channels.
    #[test]
    fn densenet_transition_pools_fast_equal_reference(
        x in vec(-1.0f32..1.0, 997), g in vec(-1.0f32..1.0, 997)
    ) {
        check_avg_fast::<2, 56, 56, 2, 2, 28, 28, 0, false, true>(&x, &g);
        check_avg_fast::<2, 28, 28, 2, 2, 14, 14, 0, false, true>(&x, &g);
        check_avg_fast::<3, 14, 14, 2, 2, 7, 7, 0, false, true>(&x, &g);
    }

    /// Inception-v3's branch pools (3×3, stride 1, padding 1, the padding counted) at
    /// 35, 17 and 8, and the same without counting the padding.
    #[test]
    fn inception_branch_pools_fast_equal_reference(
        x in vec(-1.0f32..1.0, 997), g in vec(-1.0f32..1.0, 997)
    ) {
        check_avg_fast::<2, 35, 35, 3, 1, 35, 35, 1, false, true>(&x, &g);
        check_avg_fast::<2, 17, 17, 3, 1, 17, 17, 1, false, true>(&x, &g);
        check_avg_fast::<3, 8, 8, 3, 1, 8, 8, 1, false, true>(&x, &g);
        check_avg_fast::<2, 17, 17, 3, 1, 17, 17, 1, false, false>(&x, &g);
    }

    /// The other geometries: ceil mode with a window past the padding (both counts), odd
    /// maps at stride 2 with padding, stride 3 (no vector of outputs), maps narrower than
    /// any vector, and a wide map at stride 2 with a 3×3 window.
    #[test]
    fn other_average_pools_fast_equal_reference(
        x in vec(-1.0f32..1.0, 997), g in vec(-1.0f32..1.0, 997)
    ) {
        check_avg_fast::<2, 6, 5, 3, 2, 4, 3, 1, true, true>(&x, &g);
        check_avg_fast::<2, 6, 5, 3, 2, 4, 3, 1, true, false>(&x, &g);
        check_avg_fast::<2, 23, 21, 3, 2, 12, 11, 1, false, false>(&x, &g);
        check_avg_fast::<2, 40, 41, 3, 2, 21, 21, 1, true, true>(&x, &g);
        check_avg_fast::<2, 9, 9, 3, 3, 3, 3, 0, false, true>(&x, &g);
        check_avg_fast::<3, 3, 3, 2, 1, 2, 2, 0, false, true>(&x, &g);
        check_avg_fast::<1, 64, 70, 3, 2, 31, 34, 0, false, true>(&x, &g);
    }

    /// The heads of ResNet, GoogLeNet and DenseNet (7×7), CIFAR ResNet-20 (8×8), and 1×1.
    #[test]
    fn global_average_pools_fast_match_reference(x in vec(-1.0f32..1.0, 997)) {
        check_global_fast::<16, 7, 7>(&x);
        check_global_fast::<4, 8, 8>(&x);
        check_global_fast::<3, 1, 1>(&x);
        check_global_fast::<2, 5, 13>(&x);
    }
}
