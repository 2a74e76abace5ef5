//! The lane passes ([`LaneLayer`]: 16 samples per vector) compute what the per-sample passes
//! compute, on every instruction set this CPU has, on random inputs: each layer alone
//! (outputs, input gradients, summed parameter gradients), and LeNet-5's batches through
//! [`Lanes`].
//!
//! Tolerance as in `tests/suite/fast_paths.rs`: |lanes − per sample| ≤ 1e-4 · max(1, |per sample|)
//! in `f32`, times √(terms / 1000) for a parameter gradient summed over `terms` products;
//! `f64` runs the reference loops in both ways, sample by sample in the same order, so it
//! must agree exactly.

use constnet::simd::{Isa, with_isa};
use constnet::{
    BatchLayer, Conv2d, Image, LaneLayer, Layer, LeNet5, Linear, Loss, MaxPool2d, Tensor,
    from_lanes, to_lanes, zeroed_box,
};
use proptest::prelude::*;
use rand::SeedableRng;

#[track_caller]
fn assert_close(what: &str, isa: Isa, lanes: &[f32], reference: &[f32]) {
    assert_close_scaled(what, isa, lanes, reference, 1.0);
}

/// [`assert_close`] with the tolerance multiplied by `scale`.
#[track_caller]
fn assert_close_scaled(what: &str, isa: Isa, lanes: &[f32], reference: &[f32], scale: f32) {
    assert_eq!(lanes.len(), reference.len());
    for (i, (&f, &r)) in lanes.iter().zip(reference).enumerate() {
        assert!(
            (f - r).abs() <= 1e-4 * scale * r.abs().max(1.0),
            "{what} on {isa:?}: [{i}] lanes {f} vs per sample {r}"
        );
    }
}

fn available() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.available())
}

fn fill(x: &mut [f32], values: &[f32], offset: usize) {
    for (v, &s) in x.iter_mut().zip(values.iter().cycle().skip(offset)) {
        *v = s;
    }
}

fn values() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, 997)
}

/// One layer's lane passes over a batch of `N` against `N` per-sample passes: output, input
/// gradient and the summed parameter gradients. `params` fills the layer's parameters.
fn check_layer<L, const N: usize>(values: &[f32])
where
    L: LaneLayer<N> + Layer<Scalar = f32>,
{
    let mut layer = zeroed_box::<L>();
    for i in 0..L::PARAM_TENSORS {
        fill(layer.param_mut(i), values, 11 * i);
    }
    let mut xs = zeroed_box::<[L::Input; N]>();
    fill(L::Input::flat_slice_mut(&mut *xs), values, 3);
    let mut gs = zeroed_box::<[L::Output; N]>();
    fill(L::Output::flat_slice_mut(&mut *gs), values, 5);
    for isa in available() {
        with_isa(isa, || {
            // per sample
            let mut ys_one = zeroed_box::<[L::Output; N]>();
            let mut gis_one = zeroed_box::<[L::Input; N]>();
            let mut grads_one = zeroed_box::<L>();
            let mut ws = zeroed_box::<L::Workspace>();
            for n in 0..N {
                layer.forward(&xs[n], &mut ys_one[n], &mut ws);
                layer.backward(
                    &xs[n],
                    &mut ws,
                    &gs[n],
                    Some(&mut gis_one[n]),
                    &mut grads_one,
                );
            }
            // in lanes
            let mut xl = zeroed_box::<[L::Input; N]>();
            to_lanes(&xs, &mut xl);
            let mut gl = zeroed_box::<[L::Output; N]>();
            to_lanes(&gs, &mut gl);
            let mut yl = zeroed_box::<[L::Output; N]>();
            let mut gil = zeroed_box::<[L::Input; N]>();
            let mut grads = zeroed_box::<L>();
            let mut lws = zeroed_box::<L::LaneWorkspace>();
            for b in 0..N / 16 {
                layer.infer_lanes(b, &xl, &mut yl, &mut lws);
            }
            let mut ys = zeroed_box::<[L::Output; N]>();
            from_lanes(&yl, &mut ys);
            let flat = |y: &[L::Output; N]| L::Output::flat_slice(y).to_vec();
            assert_close("inferred output", isa, &flat(&ys), &flat(&ys_one));
            for b in 0..N / 16 {
                layer.forward_lanes(b, &xl, &mut yl, &mut lws);
            }
            for b in 0..N / 16 {
                layer.backward_lanes(b, &xl, &yl, &mut lws, &gl, Some(&mut gil), &mut grads);
            }
            from_lanes(&yl, &mut ys);
            assert_close("output", isa, &flat(&ys), &flat(&ys_one));
            let mut gis = zeroed_box::<[L::Input; N]>();
            from_lanes(&gil, &mut gis);
            assert_close(
                "input gradient",
                isa,
                L::Input::flat_slice(&*gis),
                L::Input::flat_slice(&*gis_one),
            );
            // A parameter gradient sums up to N·|output| products in a different order in
            // each way: its f32 rounding grows like the square root of that count (a
            // 16-sample 28×28 convolution measured 1.5e-4 apart on 0.59).
            let terms = (N * L::Output::LEN) as f32;
            let scale = (terms / 1000.0).sqrt().max(1.0);
            for i in 0..L::PARAM_TENSORS {
                assert_close_scaled(
                    "parameter gradient",
                    isa,
                    grads.param(i),
                    grads_one.param(i),
                    scale,
                );
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn lane_convolutions_equal_samples_one_at_a_time(v in values()) {
        check_layer::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>, 16>(&v); // LeNet's C1
        check_layer::<Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>, 32>(&v); // C3, two blocks
        check_layer::<Conv2d<f32, 3, 5, 3, 1, 0, 9, 20, 7, 18>, 16>(&v); // odd sizes
        check_layer::<Conv2d<f32, 2, 3, 3, 2, 1, 9, 9, 5, 5>, 16>(&v); // stride, padding
        check_layer::<Conv2d<f32, 2, 3, 3, 2, 0, 8, 6, 3, 2>, 16>(&v); // the floor rule
        check_layer::<Conv2d<f32, 2, 3, 3, 1, 0, 30, 30, 28, 28>, 16>(&v); // rows past registers
    }

    #[test]
    fn lane_linears_equal_samples_one_at_a_time(v in values()) {
        check_layer::<Linear<f32, 400, 120>, 16>(&v); // LeNet's F5
        check_layer::<Linear<f32, 120, 100>, 32>(&v); // F6, two blocks
        check_layer::<Linear<f32, 100, 10>, 16>(&v); // the output layer
        check_layer::<Linear<f32, 7, 30>, 48>(&v); // odd sizes, a middle block
    }

    #[test]
    fn lane_poolings_equal_samples_one_at_a_time(v in values()) {
        check_layer::<MaxPool2d<f32, 6, 28, 28, 2, 2, 14, 14>, 16>(&v);
        check_layer::<MaxPool2d<f32, 16, 10, 10, 2, 2, 5, 5>, 32>(&v);
        check_layer::<MaxPool2d<f32, 3, 7, 9, 3, 2, 3, 4>, 16>(&v); // overlapping windows
        check_layer::<MaxPool2d<f32, 4, 9, 7, 2, 2, 4, 3>, 16>(&v); // the floor rule
        check_layer::<MaxPool2d<f32, 3, 9, 9, 3, 2, 5, 5, 1>, 16>(&v); // padding
        check_layer::<MaxPool2d<f32, 2, 10, 10, 3, 2, 5, 5, 0, true>, 16>(&v); // ceil mode
    }
}

/// Ties go to the first maximum in lanes too (after a ReLU, windows of zeros are common).
#[test]
fn lane_pooling_routes_ties_to_the_first_maximum() {
    type Pool = MaxPool2d<f32, 1, 2, 2, 2, 2, 1, 1>;
    let mut xs = [[[[0.0f32; 2]; 2]; 1]; 16];
    xs[1][0][1] = [5.0, 5.0]; // sample 1: tie in the second row
    let mut xl = xs;
    to_lanes(&xs, &mut xl);
    let mut gl = [[[[1.0f32; 1]; 1]; 1]; 16];
    let g = gl;
    to_lanes(&g, &mut gl);
    for isa in available() {
        with_isa(isa, || {
            let mut gil = [[[[9.0f32; 2]; 2]; 1]; 16];
            let (pool, mut ws) = (Pool::new(), zeroed_box());
            let y = [[[[0.0f32; 1]; 1]; 1]; 16];
            pool.backward_lanes(0, &xl, &y, &mut ws, &gl, Some(&mut gil), &mut Pool::new());
            let mut gi = gil;
            from_lanes(&gil, &mut gi);
            assert_eq!(gi[0][0], [[1.0, 0.0], [0.0, 0.0]], "{isa:?}");
            assert_eq!(gi[1][0], [[0.0, 0.0], [1.0, 0.0]], "{isa:?}");
        });
    }
}

/// LeNet-5's batches of 16 and 32 run its convolutions in lanes: probabilities, summed loss
/// and every parameter gradient equal the samples one at a time.
fn check_lenet<const N: usize>(seed: u64, pixels: &[f32]) {
    let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut xs = zeroed_box::<[Image<f32>; N]>();
    for (v, &s) in xs
        .iter_mut()
        .flat_map(|x| x.flat_mut())
        .zip(pixels.iter().cycle())
    {
        *v = s.abs();
    }
    let labels: [usize; N] = core::array::from_fn(|n| (n * 7 + seed as usize) % 10);
    for isa in available() {
        with_isa(isa, || {
            let mut ws = LeNet5::<f32>::workspace();
            let mut grads_one = zeroed_box::<LeNet5<f32>>();
            let (mut probs_one, mut loss_one) = ([[0.0f32; 10]; N], 0.0);
            for n in 0..N {
                probs_one[n] = net.probabilities(&xs[n], &mut ws);
                let l = Loss::CrossEntropy;
                loss_one += net.backprop(&xs[n], labels[n], l, &mut ws, &mut grads_one, None);
            }
            let mut bws = LeNet5::<f32>::batch_workspace::<N>();
            let mut grads = zeroed_box::<LeNet5<f32>>();
            let mut probs = [[0.0f32; 10]; N];
            net.infer_batch(&xs, &mut probs, &mut bws);
            assert_close("probabilities", isa, probs.flat(), probs_one.flat());
            let loss = net.backprop_batch(&xs, &labels, Loss::CrossEntropy, &mut bws, &mut grads);
            assert_close("loss", isa, &[loss], &[loss_one]);
            for i in 0..<LeNet5<f32> as Layer>::PARAM_TENSORS {
                assert_close("gradient", isa, grads.param(i), grads_one.param(i));
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn lenet_lane_batches_equal_samples_one_at_a_time(seed in 0u64..1000, x in values()) {
        check_lenet::<16>(seed, &x);
        check_lenet::<32>(seed, &x);
    }
}

/// In `f64` the lane passes run the reference loops sample by sample: exactly the numbers
/// of the per-sample passes (`Lanes` itself runs `f64` batches sample by sample).
fn check_layer_f64<L, const N: usize>()
where
    L: LaneLayer<N> + Layer<Scalar = f64>,
{
    let mut layer = zeroed_box::<L>();
    layer.init(&mut rand::rngs::StdRng::seed_from_u64(5));
    let mut xs = zeroed_box::<[L::Input; N]>();
    for (i, v) in L::Input::flat_slice_mut(&mut *xs).iter_mut().enumerate() {
        *v = ((i * 29) % 17) as f64 / 17.0 - 0.4;
    }
    let mut gs = zeroed_box::<[L::Output; N]>();
    for (i, v) in L::Output::flat_slice_mut(&mut *gs).iter_mut().enumerate() {
        *v = ((i * 13) % 11) as f64 / 11.0 - 0.5;
    }
    let (mut ys_one, mut gis_one) = (
        zeroed_box::<[L::Output; N]>(),
        zeroed_box::<[L::Input; N]>(),
    );
    let mut grads_one = zeroed_box::<L>();
    let mut ws = zeroed_box::<L::Workspace>();
    for n in 0..N {
        layer.forward(&xs[n], &mut ys_one[n], &mut ws);
        layer.backward(
            &xs[n],
            &mut ws,
            &gs[n],
            Some(&mut gis_one[n]),
            &mut grads_one,
        );
    }
    let (mut xl, mut gl) = (
        zeroed_box::<[L::Input; N]>(),
        zeroed_box::<[L::Output; N]>(),
    );
    to_lanes(&xs, &mut xl);
    to_lanes(&gs, &mut gl);
    let (mut yl, mut gil) = (
        zeroed_box::<[L::Output; N]>(),
        zeroed_box::<[L::Input; N]>(),
    );
    let mut grads = zeroed_box::<L>();
    let mut lws = zeroed_box::<L::LaneWorkspace>();
    for b in 0..N / 16 {
        layer.forward_lanes(b, &xl, &mut yl, &mut lws);
    }
    for b in 0..N / 16 {
        layer.backward_lanes(b, &xl, &yl, &mut lws, &gl, Some(&mut gil), &mut grads);
    }
    let (mut ys, mut gis) = (
        zeroed_box::<[L::Output; N]>(),
        zeroed_box::<[L::Input; N]>(),
    );
    from_lanes(&yl, &mut ys);
    from_lanes(&gil, &mut gis);
    assert_eq!(L::Output::flat_slice(&*ys), L::Output::flat_slice(&*ys_one));
    assert_eq!(L::Input::flat_slice(&*gis), L::Input::flat_slice(&*gis_one));
    for i in 0..L::PARAM_TENSORS {
        assert_eq!(grads.param(i), grads_one.param(i), "tensor {i}");
    }
}

#[test]
fn f64_lane_passes_are_exactly_the_samples() {
    check_layer_f64::<Conv2d<f64, 1, 6, 5, 1, 0, 32, 32, 28, 28>, 16>();
    check_layer_f64::<Conv2d<f64, 6, 16, 5, 1, 0, 14, 14, 10, 10>, 32>();
    check_layer_f64::<MaxPool2d<f64, 6, 28, 28, 2, 2, 14, 14>, 16>();
    check_layer_f64::<Linear<f64, 30, 25>, 32>();
}

/// Max pooling's masked backward pass (the gradient with respect to the input of a fused
/// ReLU before it) equals its plain backward pass zeroed where the input is not positive.
fn check_masked_pool<const C: usize, const H: usize, const OH: usize>(values: &[f32]) {
    type Pool<const C: usize, const H: usize, const OH: usize> =
        MaxPool2d<f32, C, H, H, 2, 2, OH, OH>;
    let mut xl = zeroed_box::<[[[[f32; H]; H]; C]; 16]>();
    fill(
        xl.as_flattened_mut().as_flattened_mut().as_flattened_mut(),
        values,
        1,
    );
    let mut gl = zeroed_box::<[[[[f32; OH]; OH]; C]; 16]>();
    fill(
        gl.as_flattened_mut().as_flattened_mut().as_flattened_mut(),
        values,
        2,
    );
    let y = zeroed_box::<[[[[f32; OH]; OH]; C]; 16]>();
    let pool = Pool::<C, H, OH>::new();
    for isa in available() {
        with_isa(isa, || {
            let mut ws = zeroed_box();
            let mut plain = zeroed_box::<[[[[f32; H]; H]; C]; 16]>();
            pool.backward_lanes(0, &xl, &y, &mut ws, &gl, Some(&mut plain), &mut Pool::new());
            let mut masked = zeroed_box::<[[[[f32; H]; H]; C]; 16]>();
            pool.backward_lanes_masked(0, &xl, &y, &mut ws, &gl, &mut masked, &mut Pool::new());
            let flat = |a: &[[[[f32; H]; H]; C]; 16]| {
                a.as_flattened().as_flattened().as_flattened().to_vec()
            };
            let x = flat(&xl);
            let expected: Vec<f32> = flat(&plain)
                .iter()
                .zip(&x)
                .map(|(&g, &x)| if x > 0.0 { g } else { 0.0 })
                .collect();
            assert_eq!(flat(&masked), expected, "{isa:?}");
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn masked_pool_backward_is_the_plain_one_through_a_relu(v in values()) {
        check_masked_pool::<6, 28, 14>(&v);
        check_masked_pool::<3, 4, 2>(&v);
    }
}

/// A stack through [`Lanes`] equals the samples one at a time: outputs, input gradients and
/// parameter gradients. Used on stacks where a ReLU follows a convolution and is followed
/// by a convolution (the convolution masks the gradient itself) or by a pool (the pool
/// does), and at the end.
fn check_stack<L, const N: usize>(values: &[f32])
where
    L: BatchLayer<N> + Layer<Scalar = f32> + InLanes<N>,
{
    let in_lanes = |ws: &L::BatchWorkspace| L::in_lanes(ws);
    let mut net = zeroed_box::<L>();
    for i in 0..L::PARAM_TENSORS {
        fill(net.param_mut(i), values, 13 * i);
        for w in net.param_mut(i) {
            *w *= 0.5;
        }
    }
    let mut xs = zeroed_box::<[L::Input; N]>();
    fill(L::Input::flat_slice_mut(&mut *xs), values, 3);
    let mut gs = zeroed_box::<[L::Output; N]>();
    fill(L::Output::flat_slice_mut(&mut *gs), values, 7);
    for isa in available() {
        with_isa(isa, || {
            let mut ys_one = zeroed_box::<[L::Output; N]>();
            let mut gis_one = zeroed_box::<[L::Input; N]>();
            let mut grads_one = zeroed_box::<L>();
            let mut ws = zeroed_box::<L::Workspace>();
            for n in 0..N {
                net.forward(&xs[n], &mut ys_one[n], &mut ws);
                net.backward(
                    &xs[n],
                    &mut ws,
                    &gs[n],
                    Some(&mut gis_one[n]),
                    &mut grads_one,
                );
            }
            let mut ys = zeroed_box::<[L::Output; N]>();
            let mut gis = zeroed_box::<[L::Input; N]>();
            let mut grads = zeroed_box::<L>();
            let mut bws = zeroed_box::<L::BatchWorkspace>();
            net.forward_batch(&xs, &mut ys, &mut bws);
            net.backward_batch(&xs, &mut bws, &gs, Some(&mut gis), &mut grads);
            assert_eq!(
                in_lanes(&bws),
                N.is_multiple_of(16) && isa == Isa::Avx512,
                "{isa:?}"
            );
            let out = |y: &[L::Output; N]| L::Output::flat_slice(y).to_vec();
            assert_close("output", isa, &out(&ys), &out(&ys_one));
            let inp = |x: &[L::Input; N]| L::Input::flat_slice(x).to_vec();
            assert_close("input gradient", isa, &inp(&gis), &inp(&gis_one));
            // A parameter gradient sums up to N·|output| products in a different order in
            // each way: its f32 rounding grows like the square root of that count (a
            // 16-sample 28×28 convolution measured 1.5e-4 apart on 0.59).
            let terms = (N * L::Output::LEN) as f32;
            let scale = (terms / 1000.0).sqrt().max(1.0);
            for i in 0..L::PARAM_TENSORS {
                assert_close_scaled(
                    "parameter gradient",
                    isa,
                    grads.param(i),
                    grads_one.param(i),
                    scale,
                );
            }
            // without the input gradient the first convolution masks in its weight gradient
            let mut grads = zeroed_box::<L>();
            net.forward_batch(&xs, &mut ys, &mut bws);
            net.backward_batch(&xs, &mut bws, &gs, None, &mut grads);
            for i in 0..L::PARAM_TENSORS {
                let (lanes, one) = (grads.param(i), grads_one.param(i));
                assert_close("parameter gradient, no input gradient", isa, lanes, one);
            }
        });
    }
}

/// Whether the latest batch through a [`Lanes`] ran in lanes.
trait InLanes<const N: usize>: BatchLayer<N> {
    fn in_lanes(ws: &Self::BatchWorkspace) -> bool;
}
impl<Net, const N: usize> InLanes<N> for constnet::Lanes<Net>
where
    Net: BatchLayer<N> + LaneLayer<N>,
{
    fn in_lanes(ws: &Self::BatchWorkspace) -> bool {
        ws.in_lanes
    }
}

/// The stack inside a [`Lanes`].
trait Stack {
    type Net;
}
impl<Net> Stack for constnet::Lanes<Net> {
    type Net = Net;
}

/// A strided, padded convolution (no lane kernel, so its ReLU is not fused) and an
/// overlapping pool.
type StridedReluPool = constnet::sequential![
    Conv2d<f32, 2, 3, 3, 2, 1, 9, 9, 5, 5>,
    constnet::Relu<[[[f32; 5]; 5]; 3]>,
    MaxPool2d<f32, 3, 5, 5, 3, 1, 3, 3>,
];

type ConvReluConvReluPool = constnet::Lanes<
    constnet::sequential![
        Conv2d<f32, 2, 4, 3, 1, 0, 12, 12, 10, 10>,
        constnet::Relu<[[[f32; 10]; 10]; 4]>,
        Conv2d<f32, 4, 16, 3, 1, 0, 10, 10, 8, 8>,
        constnet::Relu<[[[f32; 8]; 8]; 16]>,
        MaxPool2d<f32, 16, 8, 8, 2, 2, 4, 4>,
        Conv2d<f32, 16, 3, 3, 1, 0, 4, 4, 2, 2>,
        constnet::Relu<[[[f32; 2]; 2]; 3]>,
    ],
>;

/// A fused ReLU over an odd number of output rows (the kernel's last pair of rows is moved
/// back to end at the last row, and computed twice).
type OddRowsRelu = constnet::sequential![
    Conv2d<f32, 3, 5, 3, 1, 0, 9, 20, 7, 18>,
    constnet::Relu<[[[f32; 18]; 7]; 5]>,
];

/// Pooling in the convolution's kernel with a single pair of rows.
type TwoRowsReluPool = constnet::sequential![
    Conv2d<f32, 2, 17, 3, 1, 0, 4, 6, 2, 4>,
    constnet::Relu<[[[f32; 4]; 2]; 17]>,
    MaxPool2d<f32, 17, 2, 4, 2, 2, 1, 2>,
];

/// A 2×2 pooling after a strided convolution, which has no lane kernel to pool in: the
/// pooling layer runs in inference too.
type StridedReluPool2x2 = constnet::sequential![
    Conv2d<f32, 2, 3, 3, 2, 0, 9, 9, 4, 4>,
    constnet::Relu<[[[f32; 4]; 4]; 3]>,
    MaxPool2d<f32, 3, 4, 4, 2, 2, 2, 2>,
];

/// Fully connected layers that apply the ReLU after them themselves, the second one's
/// input gradient going back through the first one's ReLU.
type LinearReluLinearRelu = constnet::sequential![
    Linear<f32, 30, 25>,
    constnet::Relu<[f32; 25]>,
    Linear<f32, 25, 9>,
    constnet::Relu<[f32; 9]>,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn stacks_in_lanes_equal_samples_one_at_a_time(v in values()) {
        check_stack::<ConvReluConvReluPool, 32>(&v);
        check_stack::<ConvReluConvReluPool, 48>(&v); // a block neither first nor last
        check_stack::<ConvReluConvReluPool, 24>(&v); // not a multiple of 16: sample by sample
    }

    /// The chains' lane passes called directly, so that every ISA runs them (`Lanes` uses
    /// them with AVX-512 only): fused ReLUs and poolings, and a ReLU or pooling no layer fuses.
    #[test]
    fn chain_lane_passes_equal_samples_one_at_a_time(v in values()) {
        check_layer::<<ConvReluConvReluPool as Stack>::Net, 48>(&v);
        check_layer::<StridedReluPool, 16>(&v);
        check_layer::<LinearReluLinearRelu, 32>(&v);
        check_layer::<StridedReluPool2x2, 16>(&v);
        check_layer::<OddRowsRelu, 16>(&v);
        check_layer::<TwoRowsReluPool, 32>(&v);
    }
}

/// The ReLU a convolution applies itself maps −0 to +0, as `Relu` does.
#[test]
fn fused_relu_turns_negative_zero_into_zero() {
    type ConvRelu = constnet::sequential![
        Conv2d<f32, 1, 1, 1, 1, 0, 4, 4, 4, 4>,
        constnet::Relu<[[[f32; 4]; 4]; 1]>,
    ];
    let mut net = zeroed_box::<ConvRelu>();
    net.first.weight = [[[[-1.0]]]];
    net.first.bias = [-0.0]; // −1 · 0 + (−0) = −0 before the ReLU
    let xl = zeroed_box::<[[[[f32; 4]; 4]; 1]; 16]>();
    let mut one = [[[1.0f32; 4]; 4]; 1];
    net.forward(&xl[0], &mut one, &mut zeroed_box());
    assert!(one.flat().iter().all(|v| v.to_bits() == 0));
    for isa in available() {
        with_isa(isa, || {
            let mut yl = Box::new([[[[7.0f32; 4]; 4]; 1]; 16]); // overwritten, or the test fails
            let mut lws = zeroed_box::<<ConvRelu as LaneLayer<16>>::LaneWorkspace>();
            net.forward_lanes(0, &xl, &mut yl, &mut lws);
            let bits = <[[[f32; 4]; 4]; 1]>::flat_slice(&*yl);
            assert!(bits.iter().all(|v| v.to_bits() == 0), "{isa:?}");
        });
    }
}

/// So does the ReLU that inference applies after pooling, inside the convolution's kernel.
#[test]
fn pooled_inference_turns_negative_zero_into_zero() {
    type ConvReluPool = constnet::sequential![
        Conv2d<f32, 1, 1, 1, 1, 0, 4, 4, 4, 4>,
        constnet::Relu<[[[f32; 4]; 4]; 1]>,
        MaxPool2d<f32, 1, 4, 4, 2, 2, 2, 2>,
    ];
    let mut net = zeroed_box::<ConvReluPool>();
    net.first.first.weight = [[[[-1.0]]]];
    net.first.first.bias = [-0.0]; // −1 · 0 + (−0) = −0 before the ReLU
    let xl = zeroed_box::<[[[[f32; 4]; 4]; 1]; 16]>();
    for isa in available() {
        with_isa(isa, || {
            let mut yl = Box::new([[[[7.0f32; 2]; 2]; 1]; 16]);
            let mut lws = zeroed_box::<<ConvReluPool as LaneLayer<16>>::LaneWorkspace>();
            net.infer_lanes(0, &xl, &mut yl, &mut lws);
            let bits = <[[[f32; 2]; 2]; 1]>::flat_slice(&*yl);
            assert!(bits.iter().all(|v| v.to_bits() == 0), "{isa:?}");
        });
    }
}

/// The ReLU a fully connected layer applies itself maps −0 to +0 too.
#[test]
fn linear_fused_relu_turns_negative_zero_into_zero() {
    type LinearRelu = constnet::sequential![Linear<f32, 3, 2>, constnet::Relu<[f32; 2]>];
    let mut net = zeroed_box::<LinearRelu>();
    net.first.weight = [[-1.0; 3]; 2];
    net.first.bias = [-0.0, 1.0]; // −1 · 0 + (−0) = −0 before the ReLU
    let xl = zeroed_box::<[[f32; 3]; 16]>();
    for isa in available() {
        with_isa(isa, || {
            let mut yl = Box::new([[7.0f32; 2]; 16]); // overwritten, or the test fails
            let mut lws = zeroed_box::<<LinearRelu as LaneLayer<16>>::LaneWorkspace>();
            net.forward_lanes(0, &xl, &mut yl, &mut lws);
            let mut ys = zeroed_box::<[[f32; 2]; 16]>();
            from_lanes(&yl, &mut ys);
            assert!(
                ys.iter().all(|y| y[0].to_bits() == 0 && y[1] == 1.0),
                "{isa:?}"
            );
        });
    }
}

/// Pooled inference (the ReLU after the max, in the convolution's kernel) gives what the
/// lane passes give without fusing (the ReLU first, then the pooling layer) and what the
/// samples give one at a time, NaN included: a NaN in any tap of a window makes the window
/// NaN (`MaxPool2d`'s rule), whichever tap it is in and whatever the other taps hold.
#[test]
fn pooled_inference_equals_relu_then_pooling_with_nans() {
    type ConvReluPool = constnet::sequential![
        Conv2d<f32, 1, 1, 1, 1, 0, 4, 4, 4, 4>,
        constnet::Relu<[[[f32; 4]; 4]; 1]>,
        MaxPool2d<f32, 1, 4, 4, 2, 2, 2, 2>,
    ];
    let mut net = zeroed_box::<ConvReluPool>();
    net.first.first.weight = [[[[1.0]]]]; // the identity, so the maps are the input
    let mut xs = zeroed_box::<[[[[f32; 4]; 4]; 1]; 16]>();
    for (n, x) in xs.iter_mut().enumerate() {
        for (i, v) in x.flat_mut().iter_mut().enumerate() {
            *v = ((n * 7 + i * 5) % 9) as f32 - 4.0;
        }
        // a NaN in a different tap of a different window, sample by sample, beside a
        // larger value in another tap of the same window
        let (window, tap) = (n % 4, n / 4);
        let at = |t: usize| (2 * (window / 2) + t / 2, 2 * (window % 2) + t % 2);
        let ((y, x_), (by, bx)) = (at(tap), at((tap + 1) % 4));
        x[0][y][x_] = f32::NAN;
        x[0][by][bx] = 100.0;
    }
    let mut xl = zeroed_box::<[[[[f32; 4]; 4]; 1]; 16]>();
    to_lanes(&xs, &mut xl);
    for isa in available() {
        with_isa(isa, || {
            let mut lws = zeroed_box::<<ConvReluPool as LaneLayer<16>>::LaneWorkspace>();
            let mut fused = Box::new([[[[7.0f32; 2]; 2]; 1]; 16]);
            net.infer_lanes(0, &xl, &mut fused, &mut lws);
            let mut plain = Box::new([[[[7.0f32; 2]; 2]; 1]; 16]);
            net.forward_lanes(0, &xl, &mut plain, &mut lws);
            let bits = |y: &[[[[f32; 2]; 2]; 1]; 16]| {
                let flat = <[[[f32; 2]; 2]; 1]>::flat_slice(y);
                flat.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&fused), bits(&plain), "{isa:?}");
            let mut ys = zeroed_box::<[[[[f32; 2]; 2]; 1]; 16]>();
            from_lanes(&fused, &mut ys);
            let mut ws = zeroed_box::<<ConvReluPool as Layer>::Workspace>();
            for (n, (x, y)) in xs.iter().zip(ys.iter()).enumerate() {
                let window = n % 4;
                for (w, v) in y.flat().iter().enumerate() {
                    assert_eq!(
                        v.is_nan(),
                        w == window,
                        "{isa:?}: sample {n} window {w}: {v}"
                    );
                }
                for infer in [false, true] {
                    let mut one = [[[7.0f32; 2]; 2]; 1];
                    if infer {
                        net.infer(x, &mut one, &mut ws);
                    } else {
                        net.forward(x, &mut one, &mut ws);
                    }
                    let one: Vec<u32> = one.flat().iter().map(|v| v.to_bits()).collect();
                    let lanes: Vec<u32> = y.flat().iter().map(|v| v.to_bits()).collect();
                    assert_eq!(one, lanes, "{isa:?}: sample {n}, per-sample infer: {infer}");
                }
            }
        });
    }
}

/// In lanes a chain's fusions are taken, not only correct: a convolution applies the ReLU
/// after it in a training pass (its output before the ReLU is never written), and in
/// inference the 2×2 pooling after that ReLU too (nothing between the convolution and the
/// pooling's output is written); a fully connected layer applies its ReLU. The buffers between
/// the layers hold a sentinel that a pass run apart would overwrite. Fails if the chain's
/// generic passes stop asking the lane layers what they fuse.
#[test]
fn lane_chains_fuse_and_leave_the_maps_between_unwritten() {
    type ConvReluPool = constnet::sequential![
        Conv2d<f32, 1, 2, 3, 1, 0, 10, 10, 8, 8>,
        constnet::Relu<[[[f32; 8]; 8]; 2]>,
        MaxPool2d<f32, 2, 8, 8, 2, 2, 4, 4>,
    ];
    type Ws = <ConvReluPool as LaneLayer<16>>::LaneWorkspace;
    let mut net = zeroed_box::<ConvReluPool>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(3));
    let mut xl = zeroed_box::<[[[[f32; 10]; 10]; 1]; 16]>();
    for (i, v) in <[[[f32; 10]; 10]; 1]>::flat_slice_mut(&mut *xl)
        .iter_mut()
        .enumerate()
    {
        *v = ((i * 7) % 11) as f32 / 5.0 - 1.0;
    }
    const SENTINEL: f32 = 12345.0;
    let untouched = |maps: &[[[[f32; 8]; 8]; 2]; 16]| {
        <[[[f32; 8]; 8]; 2]>::flat_slice(maps)
            .iter()
            .all(|&v| v == SENTINEL)
    };
    let mark = |ws: &mut Ws| {
        <[[[f32; 8]; 8]; 2]>::flat_slice_mut(&mut ws.first.mid.0).fill(SENTINEL);
        <[[[f32; 8]; 8]; 2]>::flat_slice_mut(&mut ws.mid.0).fill(SENTINEL);
        <[[[f32; 8]; 8]; 2]>::flat_slice_mut(&mut ws.first.mid_grad.0).fill(SENTINEL);
    };
    for isa in available() {
        with_isa(isa, || {
            let mut lws = zeroed_box::<Ws>();
            let mut y = zeroed_box::<[[[[f32; 4]; 4]; 2]; 16]>();
            mark(&mut lws);
            net.forward_lanes(0, &xl, &mut y, &mut lws);
            assert!(untouched(&lws.first.mid.0), "{isa:?}: conv output written");
            assert!(
                !untouched(&lws.mid.0),
                "{isa:?}: training keeps the ReLU's output"
            );
            let mut g = zeroed_box::<[[[[f32; 4]; 4]; 2]; 16]>();
            <[[[f32; 4]; 4]; 2]>::flat_slice_mut(&mut *g).fill(1.0);
            let mut grads = zeroed_box::<ConvReluPool>();
            net.backward_lanes(0, &xl, &y, &mut lws, &g, None, &mut grads);
            assert!(
                untouched(&lws.first.mid_grad.0),
                "{isa:?}: the gradient before the ReLU went through the buffer"
            );
            mark(&mut lws);
            net.infer_lanes(0, &xl, &mut y, &mut lws);
            assert!(untouched(&lws.first.mid.0), "{isa:?}: conv output written");
            assert!(untouched(&lws.mid.0), "{isa:?}: ReLU output written");
        });
    }
    type LinearRelu = constnet::sequential![Linear<f32, 3, 2>, constnet::Relu<[f32; 2]>];
    let mut net = zeroed_box::<LinearRelu>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(4));
    let xl = Box::new([[0.5f32, -1.0, 2.0]; 16]);
    for isa in available() {
        with_isa(isa, || {
            let mut lws = zeroed_box::<<LinearRelu as LaneLayer<16>>::LaneWorkspace>();
            lws.mid.0 = [[SENTINEL; 2]; 16];
            let mut y = zeroed_box::<[[f32; 2]; 16]>();
            net.forward_lanes(0, &xl, &mut y, &mut lws);
            assert_eq!(lws.mid.0, [[SENTINEL; 2]; 16], "{isa:?}");
        });
    }
}

/// A layer that gathers parameter gradients over the blocks refuses blocks out of order,
/// repeated or skipped, naming the block it expected, instead of summing wrong gradients;
/// in order, one batch after another, it runs and its gradients are the per-sample ones.
fn check_block_order<L, const N: usize>(values: &[f32])
where
    L: LaneLayer<N> + Layer<Scalar = f32>,
{
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let mut layer = zeroed_box::<L>();
    for i in 0..L::PARAM_TENSORS {
        fill(layer.param_mut(i), values, 11 * i);
    }
    let mut xs = zeroed_box::<[L::Input; N]>();
    fill(L::Input::flat_slice_mut(&mut *xs), values, 3);
    let mut gs = zeroed_box::<[L::Output; N]>();
    fill(L::Output::flat_slice_mut(&mut *gs), values, 5);
    let mut ys = zeroed_box::<[L::Output; N]>();
    let blocks = N / 16;
    // per sample, the gradients the lane passes must add
    let mut want = zeroed_box::<L>();
    let mut ws = zeroed_box::<L::Workspace>();
    let mut y = zeroed_box::<L::Output>();
    for n in 0..N {
        layer.forward(&xs[n], &mut y, &mut ws);
        layer.backward(&xs[n], &mut ws, &gs[n], None, &mut want);
    }
    let (mut xl, mut gl) = (
        zeroed_box::<[L::Input; N]>(),
        zeroed_box::<[L::Output; N]>(),
    );
    to_lanes(&xs, &mut xl);
    to_lanes(&gs, &mut gl);
    let run =
        |order: &[usize], lws: &mut L::LaneWorkspace, ys: &mut [L::Output; N], grads: &mut L| {
            for b in 0..blocks {
                layer.forward_lanes(b, &xl, ys, lws);
            }
            catch_unwind(AssertUnwindSafe(|| {
                for &b in order {
                    layer.backward_lanes(b, &xl, ys, lws, &gl, None, grads);
                }
            }))
            .map_err(|e| e.downcast_ref::<String>().cloned().unwrap_or_default())
        };
    for isa in available() {
        with_isa(isa, || {
            let mut lws = zeroed_box::<L::LaneWorkspace>();
            let mut grads = zeroed_box::<L>();
            let in_order: Vec<usize> = (0..blocks).collect();
            for _ in 0..2 {
                grads.zero_params();
                run(&in_order, &mut lws, &mut ys, &mut grads).expect("blocks in order");
                for i in 0..L::PARAM_TENSORS {
                    assert_close("gradient in order", isa, grads.param(i), want.param(i));
                }
            }
            for bad in [vec![1], vec![0, 0], vec![0, 2], vec![blocks]] {
                let message = run(&bad, &mut lws, &mut ys, &mut grads)
                    .expect_err("a block out of order panics");
                let expected = format!("expected block {}", bad.len() - 1);
                assert!(message.contains(&expected), "{isa:?} {bad:?}: {message}");
                // a fresh workspace starts again at block 0
                lws = zeroed_box::<L::LaneWorkspace>();
            }
        });
    }
}

#[test]
fn lane_backward_refuses_blocks_out_of_order() {
    let v: Vec<f32> = (0..997)
        .map(|i| ((i * 37) % 19) as f32 / 9.5 - 1.0)
        .collect();
    check_block_order::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>, 48>(&v);
    check_block_order::<Linear<f32, 400, 120>, 48>(&v);
    // stride 2 and padding: the reference loops, which keep the order too
    check_block_order::<Conv2d<f32, 2, 3, 3, 2, 1, 7, 7, 4, 4>, 48>(&v);
}
