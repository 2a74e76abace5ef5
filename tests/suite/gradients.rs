//! Every layer's analytic gradients against central finite differences, as proptest properties.
//!
//! # What is checked
//! For each layer type (`Conv2d` in two configurations, `MaxPool2d` in two, `Relu`,
//! `Flatten`, `Linear`, `Softmax`), a small `Chain` (conv → ReLU → pool → flatten → linear)
//! and the whole `LeNet5<f64>` with both losses, the gradient that `Layer::backward` (or
//! `LeNet5::backprop`) reports with respect to the input and to every parameter tensor is
//! compared with a central difference of the forward pass.
//!
//! * A layer on its own has no loss, so it is given one: a random linear functional
//!   `E = Σ rᵢ·yᵢ` of its output, whose gradient with respect to the output is `r`. `r`, the
//!   input and the parameters are drawn by proptest. Every coordinate of the input and of
//!   every parameter tensor is checked.
//! * LeNet-5 is checked on its real losses, cross-entropy and half-SSE, each recomputed here
//!   from its definition (`ln Σ exp zⱼ − z_label` from the logits, `½ Σ (pᵢ − tᵢ)²` from the
//!   probabilities). Tensors of at most 16 entries (the three smallest biases) are checked
//!   whole; every other tensor, input included, at 16 distinct coordinates chosen by proptest
//!   (fc1's weight has 48,000 entries).
//! * `backward` must *add* parameter gradients and *write* the input gradient: the gradient
//!   buffers start at `PREFILL` (subtracted again before comparing) and the input gradient
//!   starts as NaN, so a gradient that overwrites, or an input gradient left unwritten, fails.
//!
//! # Finite differences and tolerance
//! The numeric derivative is the central difference `(E(θ + h) − E(θ − h)) / (2h)` with
//! `h = H = 1e-6` (the denominator is the step actually represented, `(θ + h) − (θ − h)`).
//! An analytic value `a` and a numeric value `n` agree when
//!
//! ```text
//! |a − n| ≤ 1e-6 · max(|a|, |n|) + ATOL
//! ATOL = 1e-9 for single layers, 1e-8 for networks (the chain and LeNet-5)
//! ```
//!
//! * The relative part, `RTOL = 1e-6`, is the test. The truncation error of a central
//!   difference is `h²·|E‴|/6 ≈ 2e-13·|E‴|`, orders of magnitude below it, so Richardson
//!   extrapolation is not needed (it would remove truncation error, which is negligible, and
//!   amplify rounding error, which is what is left).
//! * The absolute floor is the rounding error of the numeric derivative, which is all that
//!   is left for a gradient near zero. Every forward value `v` is rounded to within a few
//!   `u·|v|` (`u = 1.1e-16`); after perturbing `θ`, the rounding of every later sum changes,
//!   and dividing by `2h` scales those errors by `5e5`. A single layer is one sum of a few
//!   products of values in `[−1, 1]`: its numeric derivatives are off by a few `1e-10`
//!   (measured), so its floor is `ATOL_LAYER = 1e-9`. (To keep it that small,
//!   `E(θ+h) − E(θ−h)` is summed as `Σ rᵢ·(yᵢ(θ+h) − yᵢ(θ−h))`, the same number in exact
//!   arithmetic, where the outputs a perturbation does not reach add exactly 0.)
//!   A network adds sums of sums: the chain's outputs reach `≈ 5`, LeNet-5's logits `≈ 10`
//!   and its cross-entropy `≈ 8`, and its numeric derivatives are off by up to `≈ 4e-9`
//!   (measured), so their floor is `ATOL_NET = 1e-8`. The floors matter only below
//!   `|a| = 1e-3` (layers) and `1e-2` (networks); above, the test is purely relative.
//!
//! Measured over 384 cases per property, the largest `|a − n|` is 0.42 of this tolerance
//! (LeNet-5 cross-entropy), 0.32 and 0.18 (the two convolutions), 0.15 (chain), 0.08
//! (LeNet-5 half-SSE) and at most 0.07 for every other property; yet a linear weight
//! gradient or a conv input gradient scaled by `1 + 3e-6` fails every property it reaches.
//!
//! # Kinks
//! ReLU and max-pooling are not differentiable where a ReLU input is 0 or a pooling window
//! has two equal maxima; a finite difference across such a point measures a mix of two
//! slopes. Those cases are skipped with `prop_assume!`, never absorbed by the tolerance: a
//! case is rejected when any ReLU pre-activation is within `KINK_EPS = 1e-4` of 0, or any
//! pooling window has its two largest values within `KINK_EPS` of each other. (A window of
//! a ReLU's output whose maximum is 0 is all zeros from pre-activations below `−KINK_EPS`:
//! it stays 0 under any perturbation here and is not a kink.)
//!
//! `KINK_EPS` is far above what one perturbation can move:
//! * single layers and the chain: inputs and parameters lie in `[−1, 1]`, and a ReLU or
//!   pooling input depends on each input value, conv weight or bias through at most one
//!   product with a factor of at most 1, so a step of `h` moves it by at most `h = 1e-6`:
//!   `KINK_EPS = 100·h`;
//! * LeNet-5: a conv1 weight reaches every later layer, so there is no such simple bound.
//!   LeNet-5's pre-activations (conv1, conv2, fc1, fc2, from `LeNet5::activations`) are
//!   therefore compared at `θ ± h` with those at `θ`: they move by at most `≈ 8e-6`
//!   (measured), and the test *asserts* that every move is below `KINK_EPS / 2`, which
//!   guarantees that no ReLU changes sign and no pooling window changes winner on the
//!   stencil.
//!
//! With inputs and parameters drawn as they are, about half of LeNet-5's candidate cases are
//! rejected (a rejection costs one forward pass; proptest allows 1024 per property), and
//! fewer than 1% of the single layers' and the chain's.
//!
//! # f32
//! `LeNet5<f32>` is compared with `LeNet5<f64>` holding the same values (drawn, rounded to
//! `f32` and widened exactly), activation by activation (`F32_FORWARD_TOL`) and gradient
//! by gradient (`F32_GRAD_TOL_CE`, `F32_GRAD_TOL_SSE`).
//!
//! Every property runs `CASES = 64` cases; the whole file runs in about 15 s with
//! `cargo test --test gradients` (the test profile is optimised), nearly all of it LeNet-5.

use std::ops::Range;

use constnet::{
    Conv2d, Flatten, Image, Layer, LeNet5, Linear, Loss, Maps, MaxPool2d, Relu, Scalar, Softmax,
    Tensor, sequential, zeroed_box,
};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::{RngExt, SeedableRng};

/// Half-width of the central difference.
const H: f64 = 1e-6;
/// Relative tolerance between analytic and numeric derivatives.
const RTOL: f64 = 1e-6;
/// Absolute floor for single layers (one sum of a few products of values in `[−1, 1]`).
pub(crate) const ATOL_LAYER: f64 = 1e-9;
/// Absolute floor for networks, the chain and LeNet-5 (sums of sums, outputs up to ≈ 10).
const ATOL_NET: f64 = 1e-8;
/// Distance from a ReLU or max-pool kink below which a case is skipped.
const KINK_EPS: f64 = 1e-4;
/// Cases per property.
pub(crate) const CASES: u32 = 64;
/// Coordinates sampled per LeNet-5 tensor larger than this many entries (smaller ones: all).
const SAMPLES: usize = 16;
/// Value the parameter-gradient buffers hold before `backward` adds to them.
const PREFILL: f64 = 0.25;
/// `LeNet5<f32>`'s activations (every tensor, conv1 to probabilities) may differ from
/// `f64`'s by this much, relative to the largest magnitude in the same tensor, and its loss
/// relative to `max(|loss|, 1)`: 170 f32 epsilons (measured over 1000 cases: at most 2.8e-6,
/// on the probabilities).
const F32_FORWARD_TOL: f64 = 2e-5;
/// `LeNet5<f32>`'s cross-entropy gradients may differ from `f64`'s by this much, relative to
/// the largest magnitude in the same gradient tensor (measured over 1000 cases: at most
/// 1.1e-5).
const F32_GRAD_TOL_CE: f64 = 1e-4;
/// The same for the half-SSE gradients, which are less well conditioned: through a
/// saturated softmax, `∂E/∂zᵢ = pᵢ·(gᵢ − Σⱼ gⱼ pⱼ)` is a difference of nearly equal numbers
/// (measured over 1000 cases: at most 6.5e-5).
const F32_GRAD_TOL_SSE: f64 = 1e-3;

/// Whether an analytic and a numeric derivative agree (false for NaN).
fn agree(analytic: f64, numeric: f64, atol: f64) -> bool {
    (analytic - numeric).abs() <= RTOL * analytic.abs().max(numeric.abs()) + atol
}

/// `θ ± h` and the step between them as actually represented.
fn stencil(theta: f64) -> (f64, f64, f64) {
    let (plus, minus) = (theta + H, theta - H);
    (plus, minus, plus - minus)
}

// ---------------------------------------------------------------------------------------------
// Single layers and chains: the linear functional E = Σ rᵢ·yᵢ.
// ---------------------------------------------------------------------------------------------

/// A layer's parameters (one vector per tensor), its input and the functional's weights `r`.
type Draw = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

/// Parameters and input uniform in `range`, `r` uniform in `[−1, 1]`.
pub(crate) fn draw<L: Layer<Scalar = f64>>(range: Range<f64>) -> impl Strategy<Value = Draw> {
    let shape = zeroed_box::<L>();
    let params: Vec<_> = (0..L::PARAM_TENSORS)
        .map(|i| vec(range.clone(), shape.param(i).len()))
        .collect();
    (
        params,
        vec(range, <L::Input as Tensor>::LEN),
        vec(-1.0..1.0, <L::Output as Tensor>::LEN),
    )
}

/// Where a perturbation goes: the input, or coordinate of parameter tensor `i`.
#[derive(Clone, Copy, Debug)]
enum Target {
    Input,
    Param(usize),
}

impl Target {
    fn name(self) -> String {
        match self {
            Target::Input => "input".into(),
            Target::Param(i) => format!("parameter tensor {i}"),
        }
    }
}

/// The value at `k` in `target`.
fn slot<'a, L: Layer<Scalar = f64>>(
    layer: &'a mut L,
    input: &'a mut L::Input,
    target: Target,
    k: usize,
) -> &'a mut f64 {
    match target {
        Target::Input => &mut input.flat_mut()[k],
        Target::Param(i) => &mut layer.param_mut(i)[k],
    }
}

/// Builds the layer and input of `draw`, skips the case if `kink_free` (given the input and
/// the workspace after a forward pass) says it is too close to a kink, then checks every
/// coordinate of the input and of every parameter tensor with absolute floor `atol`.
pub(crate) fn check_layer<L: Layer<Scalar = f64>>(
    (params, input, r): &Draw,
    atol: f64,
    kink_free: impl Fn(&L::Input, &L::Workspace) -> bool,
) -> Result<(), TestCaseError> {
    let mut layer = zeroed_box::<L>();
    for (i, p) in params.iter().enumerate() {
        layer.param_mut(i).copy_from_slice(p);
    }
    let mut x = zeroed_box::<L::Input>();
    x.flat_mut().copy_from_slice(input);
    let mut r_out = zeroed_box::<L::Output>();
    r_out.flat_mut().copy_from_slice(r);

    let mut ws = zeroed_box::<L::Workspace>();
    let mut y = zeroed_box::<L::Output>();
    layer.forward(&x, &mut y, &mut ws);
    prop_assume!(
        kink_free(&x, &ws),
        "within KINK_EPS of a ReLU/max-pool kink"
    );

    // Analytic: ∂E/∂y = r.
    let mut grads = zeroed_box::<L>();
    for i in 0..L::PARAM_TENSORS {
        grads.param_mut(i).fill(PREFILL);
    }
    let mut grad_x = zeroed_box::<L::Input>();
    grad_x.flat_mut().fill(f64::NAN);
    layer.backward(&x, &mut ws, &r_out, Some(&mut grad_x), &mut grads);

    let mut y_minus = zeroed_box::<L::Output>();
    let targets = std::iter::once(Target::Input).chain((0..L::PARAM_TENSORS).map(Target::Param));
    for target in targets {
        let len = match target {
            Target::Input => <L::Input as Tensor>::LEN,
            Target::Param(i) => layer.param(i).len(),
        };
        for k in 0..len {
            let analytic = match target {
                Target::Input => grad_x.flat()[k],
                Target::Param(i) => grads.param(i)[k] - PREFILL,
            };
            let theta = *slot(&mut *layer, &mut *x, target, k);
            let (plus, minus, step) = stencil(theta);
            *slot(&mut *layer, &mut *x, target, k) = plus;
            layer.forward(&x, &mut y, &mut ws);
            *slot(&mut *layer, &mut *x, target, k) = minus;
            layer.forward(&x, &mut y_minus, &mut ws);
            *slot(&mut *layer, &mut *x, target, k) = theta;
            // E(θ+h) − E(θ−h) = Σ rᵢ (yᵢ(θ+h) − yᵢ(θ−h)): unchanged outputs add exactly 0.
            let numeric = r
                .iter()
                .zip(y.flat().iter().zip(y_minus.flat()))
                .map(|(r, (p, m))| r * (p - m))
                .sum::<f64>()
                / step;
            prop_assert!(
                agree(analytic, numeric, atol),
                "{}[{k}]: analytic {analytic:e}, numeric {numeric:e}",
                target.name()
            );
        }
    }
    Ok(())
}

/// For layers without kinks.
pub(crate) fn smooth<X, W>(_: &X, _: &W) -> bool {
    true
}

/// Every value is farther than `KINK_EPS` from 0.
fn clear_of_zero(values: &[f64]) -> bool {
    values.iter().all(|v| v.abs() > KINK_EPS)
}

/// [`pool_gap`] for padded or ceil-mode windows: `oh`×`ow` windows starting at
/// `(y·s − p, x·s − p)`, clipped to the map (the padding never competes).
fn padded_pool_gap<T: Scalar, const C: usize, const H: usize, const W: usize>(
    maps: &Maps<T, C, H, W>,
    (k, s, p): (usize, usize, usize),
    (oh, ow): (usize, usize),
) -> f64 {
    let mut gap = f64::INFINITY;
    for map in maps {
        for y in 0..oh {
            for x in 0..ow {
                let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                let rows = (y * s).saturating_sub(p)..(y * s + k).saturating_sub(p).min(H);
                let cols = (x * s).saturating_sub(p)..(x * s + k).saturating_sub(p).min(W);
                for row in &map[rows] {
                    for &v in &row[cols.clone()] {
                        let v = Scalar::to_f64(v);
                        if v > first {
                            second = first;
                            first = v;
                        } else if v > second {
                            second = v;
                        }
                    }
                }
                gap = gap.min(first - second);
            }
        }
    }
    gap
}

/// Smallest gap between the largest and second-largest value of any `K`×`K` window at
/// stride `S`, ignoring windows whose maximum is at most `floor` (pass `0.0` for windows of a
/// ReLU's output, where an all-zero window is flat; `−∞` to count every window).
fn pool_gap<T: Scalar, const C: usize, const H: usize, const W: usize>(
    maps: &Maps<T, C, H, W>,
    k: usize,
    s: usize,
    floor: f64,
) -> f64 {
    let mut gap = f64::INFINITY;
    for map in maps {
        for y in (0..=H - k).step_by(s) {
            for x in (0..=W - k).step_by(s) {
                let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                for row in &map[y..y + k] {
                    for v in &row[x..x + k] {
                        let v = Scalar::to_f64(*v);
                        if v > first {
                            second = first;
                            first = v;
                        } else if v > second {
                            second = v;
                        }
                    }
                }
                if first > floor {
                    gap = gap.min(first - second);
                }
            }
        }
    }
    gap
}

/// 3 → 4 channels, 3×3 kernel, stride 2, padding 1, on a non-square 7×5 map.
type ConvPadStride = Conv2d<f64, 3, 4, 3, 2, 1, 7, 5, 4, 3>;
/// 2 → 3 channels, 2×2 kernel, stride 1, no padding, on a non-square 5×4 map.
type ConvPlain = Conv2d<f64, 2, 3, 2, 1, 0, 5, 4, 4, 3>;
/// LeNet's pooling (2×2, stride 2) over 3 non-square maps.
type PoolTiled = MaxPool2d<f64, 3, 6, 8, 2, 2, 3, 4>;
/// Overlapping 3×3 windows at stride 1: an input can win several windows.
type PoolOverlap = MaxPool2d<f64, 2, 5, 6, 3, 1, 3, 4>;
/// PyTorch's floor rule: 2×2 windows, stride 2, over 7×9 maps leave the last row and column
/// unread (their gradient is zero).
type PoolFloor = MaxPool2d<f64, 2, 7, 9, 2, 2, 3, 4>;
/// ResNet-18's pooling, 3×3 at stride 2 with padding 1, on a small odd map: 7×8 → 4×4.
type PoolPadded = MaxPool2d<f64, 2, 7, 8, 3, 2, 4, 4, 1>;
/// GoogLeNet's, in ceil mode: 3×3 at stride 2 over 8×6 → 4×3 (the last windows clipped).
type PoolCeil = MaxPool2d<f64, 2, 8, 6, 3, 2, 4, 3, 0, true>;
/// The floor rule in a convolution: 3×3, stride 2, no padding, 8×6 → 3×2 (a row and a
/// column past the last window).
type ConvFloor = Conv2d<f64, 2, 3, 3, 2, 0, 8, 6, 3, 2>;
type ReluMaps = Relu<Maps<f64, 2, 3, 5>>;
type FlattenMaps = Flatten<f64, 3, 2, 4, 24>;
type Dense = Linear<f64, 7, 5>;
type Soft = Softmax<f64, 6>;
/// conv (padding 1) → ReLU → pool → flatten → linear.
type SmallNet = sequential![
    Conv2d<f64, 2, 3, 3, 1, 1, 6, 6, 6, 6>,
    Relu<Maps<f64, 3, 6, 6>>,
    MaxPool2d<f64, 3, 6, 6, 2, 2, 3, 3>,
    Flatten<f64, 3, 3, 3, 27>,
    Linear<f64, 27, 4>,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn conv2d_with_padding_and_stride_gradients_match_finite_differences(
        d in draw::<ConvPadStride>(-1.0..1.0)
    ) {
        check_layer::<ConvPadStride>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn conv2d_without_padding_gradients_match_finite_differences(
        d in draw::<ConvPlain>(-1.0..1.0)
    ) {
        check_layer::<ConvPlain>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn maxpool2d_tiled_input_gradient_matches_finite_differences(
        d in draw::<PoolTiled>(-1.0..1.0)
    ) {
        check_layer::<PoolTiled>(&d, ATOL_LAYER, |x, _| {
            pool_gap(x, 2, 2, f64::NEG_INFINITY) > KINK_EPS
        })?;
    }

    #[test]
    fn maxpool2d_floor_rule_input_gradient_matches_finite_differences(
        d in draw::<PoolFloor>(-1.0..1.0)
    ) {
        check_layer::<PoolFloor>(&d, ATOL_LAYER, |x, _| {
            pool_gap(x, 2, 2, f64::NEG_INFINITY) > KINK_EPS
        })?;
    }

    #[test]
    fn maxpool2d_padded_input_gradient_matches_finite_differences(
        d in draw::<PoolPadded>(-1.0..1.0)
    ) {
        check_layer::<PoolPadded>(&d, ATOL_LAYER, |x, _| {
            padded_pool_gap(x, (3, 2, 1), (4, 4)) > KINK_EPS
        })?;
    }

    #[test]
    fn maxpool2d_ceil_mode_input_gradient_matches_finite_differences(
        d in draw::<PoolCeil>(-1.0..1.0)
    ) {
        check_layer::<PoolCeil>(&d, ATOL_LAYER, |x, _| {
            padded_pool_gap(x, (3, 2, 0), (4, 3)) > KINK_EPS
        })?;
    }

    #[test]
    fn conv2d_floor_rule_gradients_match_finite_differences(
        d in draw::<ConvFloor>(-1.0..1.0)
    ) {
        check_layer::<ConvFloor>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn maxpool2d_overlapping_input_gradient_matches_finite_differences(
        d in draw::<PoolOverlap>(-1.0..1.0)
    ) {
        check_layer::<PoolOverlap>(&d, ATOL_LAYER, |x, _| {
            pool_gap(x, 3, 1, f64::NEG_INFINITY) > KINK_EPS
        })?;
    }

    #[test]
    fn relu_input_gradient_matches_finite_differences(d in draw::<ReluMaps>(-1.0..1.0)) {
        check_layer::<ReluMaps>(&d, ATOL_LAYER, |x, _| clear_of_zero(x.flat()))?;
    }

    #[test]
    fn flatten_input_gradient_matches_finite_differences(d in draw::<FlattenMaps>(-1.0..1.0)) {
        check_layer::<FlattenMaps>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn linear_gradients_match_finite_differences(d in draw::<Dense>(-1.0..1.0)) {
        check_layer::<Dense>(&d, ATOL_LAYER, smooth)?;
    }

    /// Logits in [−4, 4]: probabilities from ≈ 3e-4 to ≈ 1.
    #[test]
    fn softmax_input_gradient_matches_finite_differences(d in draw::<Soft>(-4.0..4.0)) {
        check_layer::<Soft>(&d, ATOL_LAYER, smooth)?;
    }

    #[test]
    fn conv_relu_pool_flatten_linear_chain_gradients_match_finite_differences(
        d in draw::<SmallNet>(-1.0..1.0)
    ) {
        check_layer::<SmallNet>(&d, ATOL_NET, |_, ws| {
            let conv = &ws.first.first.first.mid; // pre-ReLU
            let relu = &ws.first.first.mid; // pooled
            clear_of_zero(conv.flat()) && pool_gap(relu, 2, 2, 0.0) > KINK_EPS
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// LeNet-5 on its two losses.
// ---------------------------------------------------------------------------------------------

type Net = LeNet5<f64>;
type NetWs = <Net as Layer>::Workspace;

/// A LeNet-5 and an image drawn from `seed`: PyTorch-default weights (`LeNet5::init`), biases
/// uniform in `[−0.1, 0.1]` (so they are not all zero), pixels uniform in `[−1, 1]`. Every
/// value is drawn in `f64` and rounded to `T`.
fn random_lenet<T: Scalar>(seed: u64) -> (Box<LeNet5<T>>, Box<Image<T>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut net = LeNet5::<T>::new_boxed(&mut rng);
    for i in (1..<LeNet5<T> as Layer>::PARAM_TENSORS).step_by(2) {
        for b in net.param_mut(i) {
            *b = T::from_f64(rng.random_range(-0.1..0.1));
        }
    }
    let mut image = zeroed_box::<Image<T>>();
    for v in image.flat_mut() {
        *v = T::from_f64(rng.random_range(-1.0..1.0));
    }
    (net, image)
}

/// The loss of the latest forward pass, from its definition.
fn loss_value(ws: &NetWs, label: usize, loss: Loss) -> f64 {
    let a = Net::activations(ws);
    match loss {
        Loss::CrossEntropy => {
            let max = a.logits.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z));
            let sum: f64 = a.logits.iter().map(|&z| (z - max).exp()).sum();
            max + sum.ln() - a.logits[label]
        }
        Loss::HalfSse => a
            .probs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let t = if i == label { 1.0 } else { 0.0 };
                0.5 * (p - t) * (p - t)
            })
            .sum(),
    }
}

/// All ReLU pre-activations (conv1, conv2, fc1, fc2) of the latest forward pass.
fn pre_activations<T: Scalar>(
    ws: &<LeNet5<T> as Layer>::Workspace,
) -> impl Iterator<Item = f64> + '_ {
    let a = LeNet5::<T>::activations(ws);
    let (conv1, conv2) = (a.conv1.flat(), a.conv2.flat());
    conv1
        .iter()
        .chain(conv2)
        .chain(a.fc1)
        .chain(a.fc2)
        .map(|&v| Scalar::to_f64(v))
}

/// Whether every ReLU pre-activation is farther than `KINK_EPS` from 0 and every pooling
/// window with a positive maximum has a winner ahead by more than `KINK_EPS`.
fn lenet_kink_free<T: Scalar>(ws: &<LeNet5<T> as Layer>::Workspace) -> bool {
    let a = LeNet5::<T>::activations(ws);
    pre_activations::<T>(ws).all(|v| v.abs() > KINK_EPS)
        && pool_gap(a.relu1, 2, 2, 0.0) > KINK_EPS
        && pool_gap(a.relu2, 2, 2, 0.0) > KINK_EPS
}

/// Per tensor (the input, then LeNet's ten parameter tensors), the coordinates to check:
/// all of a tensor of at most `SAMPLES` entries, else `SAMPLES` distinct ones.
fn lenet_coordinates() -> impl Strategy<Value = Vec<Vec<usize>>> {
    let shape = zeroed_box::<Net>();
    let lens = std::iter::once(<Image<f64> as Tensor>::LEN)
        .chain((0..Net::PARAM_TENSORS).map(|i| shape.param(i).len()));
    lens.map(|len| {
        if len <= SAMPLES {
            Just((0..len).collect::<Vec<_>>()).boxed()
        } else {
            btree_set(0..len, SAMPLES)
                .prop_map(|set| set.into_iter().collect())
                .boxed()
        }
    })
    .collect::<Vec<_>>()
}

/// Backprop's gradients of `loss` against central differences at the chosen coordinates.
fn check_lenet(
    seed: u64,
    label: usize,
    loss: Loss,
    coordinates: &[Vec<usize>],
) -> Result<(), TestCaseError> {
    let (mut net, mut image) = random_lenet::<f64>(seed);
    let mut ws = Net::workspace();
    let mut probs = [0.0; 10];
    net.forward(&image, &mut probs, &mut ws);
    prop_assume!(
        lenet_kink_free::<f64>(&ws),
        "within KINK_EPS of a ReLU/max-pool kink"
    );
    let base: Vec<f64> = pre_activations::<f64>(&ws).collect();

    let mut grads = zeroed_box::<Net>();
    for i in 0..Net::PARAM_TENSORS {
        grads.param_mut(i).fill(PREFILL);
    }
    let mut grad_image = zeroed_box::<Image<f64>>();
    grad_image.flat_mut().fill(f64::NAN);
    let value = net.backprop(
        &image,
        label,
        loss,
        &mut ws,
        &mut grads,
        Some(&mut grad_image),
    );
    let defined = loss_value(&ws, label, loss);
    prop_assert!(
        (value - defined).abs() <= 1e-12 * defined.abs(),
        "backprop returned loss {value}, its definition gives {defined}"
    );

    for (t, coords) in coordinates.iter().enumerate() {
        for &k in coords {
            let (target, analytic) = match t {
                0 => (Target::Input, grad_image.flat()[k]),
                _ => (Target::Param(t - 1), grads.param(t - 1)[k] - PREFILL),
            };
            let theta = *slot(&mut *net, &mut *image, target, k);
            let (plus, minus, step) = stencil(theta);
            let mut at = |v: f64| -> Result<f64, TestCaseError> {
                *slot(&mut *net, &mut *image, target, k) = v;
                net.forward(&image, &mut probs, &mut ws);
                // The premise of the kink filter: no pre-activation moved by KINK_EPS / 2, so
                // no ReLU changed sign and no pooling window changed winner.
                let moved = base
                    .iter()
                    .zip(pre_activations::<f64>(&ws))
                    .fold(0.0f64, |m, (b, v)| m.max((b - v).abs()));
                prop_assert!(
                    moved < KINK_EPS / 2.0,
                    "perturbing {}[{k}] by {H} moved a pre-activation by {moved:e}",
                    target.name()
                );
                Ok(loss_value(&ws, label, loss))
            };
            let numeric = (at(plus)? - at(minus)?) / step;
            *slot(&mut *net, &mut *image, target, k) = theta;
            prop_assert!(
                agree(analytic, numeric, ATOL_NET),
                "{loss:?}, label {label}: {}[{k}]: analytic {analytic:e}, numeric {numeric:e}",
                target.name()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn lenet5_cross_entropy_gradients_match_finite_differences(
        seed in any::<u64>(),
        label in 0..10usize,
        coordinates in lenet_coordinates(),
    ) {
        check_lenet(seed, label, Loss::CrossEntropy, &coordinates)?;
    }

    #[test]
    fn lenet5_half_sse_gradients_match_finite_differences(
        seed in any::<u64>(),
        label in 0..10usize,
        coordinates in lenet_coordinates(),
    ) {
        check_lenet(seed, label, Loss::HalfSse, &coordinates)?;
    }
}

// ---------------------------------------------------------------------------------------------
// f32 against f64.
// ---------------------------------------------------------------------------------------------

/// The same network in `f64` (every `f32` value widens exactly).
fn widen(net: &LeNet5<f32>) -> Box<Net> {
    let mut wide = zeroed_box::<Net>();
    for i in 0..Net::PARAM_TENSORS {
        for (w, &n) in wide.param_mut(i).iter_mut().zip(net.param(i)) {
            *w = f64::from(n);
        }
    }
    wide
}

/// Largest `|a − b|` over two equally long sequences, and largest `|b|`.
fn max_diff_and_scale(
    a: impl IntoIterator<Item = f64>,
    b: impl IntoIterator<Item = f64>,
) -> (f64, f64) {
    a.into_iter()
        .zip(b)
        .fold((0.0f64, 0.0f64), |(d, s), (a, b)| {
            (d.max((a - b).abs()), s.max(b.abs()))
        })
}

/// Every activation tensor of a forward pass, by name, widened to `f64`.
fn activation_tensors<T: Scalar>(ws: &<LeNet5<T> as Layer>::Workspace) -> Vec<(&str, Vec<f64>)> {
    let a = LeNet5::<T>::activations(ws);
    let w = |s: &[T]| s.iter().map(|&v| Scalar::to_f64(v)).collect::<Vec<f64>>();
    vec![
        ("conv1", w(a.conv1.flat())),
        ("pool1", w(a.pool1.flat())),
        ("conv2", w(a.conv2.flat())),
        ("pool2", w(a.pool2.flat())),
        ("fc1", w(a.fc1)),
        ("fc2", w(a.fc2)),
        ("logits", w(a.logits)),
        ("probs", w(a.probs)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Every activation of `LeNet5<f32>` is within `F32_FORWARD_TOL` (relative to its
    /// tensor's largest magnitude) of `LeNet5<f64>` on the same weights and image.
    #[test]
    fn lenet5_f32_forward_matches_f64_within_f32_tolerance(seed in any::<u64>()) {
        let (net32, image32) = random_lenet::<f32>(seed);
        let net64 = widen(&net32);
        let mut image64 = zeroed_box::<Image<f64>>();
        for (w, &n) in image64.flat_mut().iter_mut().zip(image32.flat()) {
            *w = f64::from(n);
        }
        let (mut ws32, mut ws64) = (LeNet5::<f32>::workspace(), Net::workspace());
        let _ = net32.probabilities(&image32, &mut ws32);
        let _ = net64.probabilities(&image64, &mut ws64);
        let narrow = activation_tensors::<f32>(&ws32);
        for ((name, a), (_, b)) in narrow.into_iter().zip(activation_tensors::<f64>(&ws64)) {
            let (diff, scale) = max_diff_and_scale(a, b);
            prop_assert!(
                diff <= F32_FORWARD_TOL * scale,
                "{name}: f32 differs from f64 by {diff:e} (largest |value| {scale:e})"
            );
        }
    }

    /// Both losses' gradients (input and all ten parameter tensors) from `LeNet5<f32>`'s
    /// backprop are within `F32_GRAD_TOL_CE` / `F32_GRAD_TOL_SSE` (relative to the tensor's
    /// largest magnitude) of `LeNet5<f64>`'s, away from kinks.
    #[test]
    fn lenet5_f32_backprop_gradients_match_f64_within_f32_tolerance(
        seed in any::<u64>(),
        label in 0..10usize,
    ) {
        let (net32, image32) = random_lenet::<f32>(seed);
        let net64 = widen(&net32);
        let mut image64 = zeroed_box::<Image<f64>>();
        for (w, &n) in image64.flat_mut().iter_mut().zip(image32.flat()) {
            *w = f64::from(n);
        }
        let (mut ws32, mut ws64) = (LeNet5::<f32>::workspace(), Net::workspace());
        let _ = net32.probabilities(&image32, &mut ws32);
        let _ = net64.probabilities(&image64, &mut ws64);
        prop_assume!(
            lenet_kink_free::<f64>(&ws64),
            "within KINK_EPS of a ReLU/max-pool kink"
        );
        // The premise: f32's rounding moves no pre-activation by KINK_EPS / 2, so both
        // networks take the same ReLU and max-pool branches.
        let (moved, _) = max_diff_and_scale(
            pre_activations::<f32>(&ws32),
            pre_activations::<f64>(&ws64),
        );
        prop_assert!(moved < KINK_EPS / 2.0, "f32 moved a pre-activation by {moved:e}");

        for (loss, tol) in [
            (Loss::CrossEntropy, F32_GRAD_TOL_CE),
            (Loss::HalfSse, F32_GRAD_TOL_SSE),
        ] {
            let (mut g32, mut g64) = (zeroed_box::<LeNet5<f32>>(), zeroed_box::<Net>());
            let mut gi32 = zeroed_box::<Image<f32>>();
            let mut gi64 = zeroed_box::<Image<f64>>();
            let l32 =
                net32.backprop(&image32, label, loss, &mut ws32, &mut g32, Some(&mut gi32));
            let l64 =
                net64.backprop(&image64, label, loss, &mut ws64, &mut g64, Some(&mut gi64));
            prop_assert!(
                (f64::from(l32) - l64).abs() <= F32_FORWARD_TOL * l64.abs().max(1.0),
                "{loss:?}: f32 loss {l32}, f64 loss {l64}"
            );
            let mut pairs = vec![(
                "input".to_string(),
                gi32.flat().iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                gi64.flat().to_vec(),
            )];
            for i in 0..Net::PARAM_TENSORS {
                pairs.push((
                    format!("parameter tensor {i}"),
                    g32.param(i).iter().map(|&v| f64::from(v)).collect(),
                    g64.param(i).to_vec(),
                ));
            }
            for (name, a, b) in pairs {
                let (diff, scale) = max_diff_and_scale(a, b);
                prop_assert!(
                    diff <= tol * scale,
                    "{loss:?}, label {label}, {name}: f32 differs from f64 by {diff:e} \
                     (largest |gradient| {scale:e})"
                );
            }
        }
    }
}
