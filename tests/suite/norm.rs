//! Batch normalisation and dropout: gradients against central finite differences in both
//! modes (as `gradients.rs` does for the other layers), the mode and seed reaching layers
//! inside chains, and buffers in the weights format.
//!
//! Tolerance: `|a − n| ≤ 1e-6·max(|a|, |n|) + 1e-8`. In training, one input value moves
//! its channel's mean and variance, so every output of the channel changes and the rounding
//! of all of them reaches the numeric derivative: the floor is the networks' one in
//! `gradients.rs`. Batch normalisation has no kinks; nothing is skipped.

use constnet::weights::{WeightsError, crc32, load_weights, save_weights};
use constnet::{
    BatchLayer, BatchNorm2d, Chain, Conv2d, Dropout, Eval, Layer, Mode, Pass, Train, zeroed_box,
};
use proptest::prelude::*;

const N: usize = 3;
type Bn = BatchNorm2d<f64, 2, 2, 3>;
type Maps = [[[f64; 3]; 2]; 2];
type Batch = [Maps; N];
const H: f64 = 1e-6;

fn close(a: f64, n: f64, what: &str) -> Result<(), TestCaseError> {
    let tol = 1e-6 * a.abs().max(n.abs()) + 1e-8;
    prop_assert!((a - n).abs() <= tol, "{what}: analytic {a}, numeric {n}");
    Ok(())
}

fn batch(v: &[f64]) -> Box<Batch> {
    let mut x = zeroed_box::<Batch>();
    x.as_flattened_mut()
        .as_flattened_mut()
        .as_flattened_mut()
        .copy_from_slice(v);
    x
}

fn flat(x: &mut Batch) -> &mut [f64] {
    x.as_flattened_mut().as_flattened_mut().as_flattened_mut()
}

/// `Σ r·y` after a batched pass in mode `M`.
fn loss<M: Mode>(bn: &Bn, x: &Batch, r: &Batch) -> f64 {
    let mut y = zeroed_box::<Batch>();
    bn.forward_batch_in(&Pass::<M>::DEFAULT, x, &mut y, &mut zeroed_box());
    let mut y = *y;
    let mut r = *r;
    flat(&mut y)
        .iter()
        .zip(flat(&mut r))
        .map(|(y, r)| *y * *r)
        .sum()
}

fn bn_from(p: &[f64]) -> Bn {
    let mut bn = Bn::new(1e-5, 0.1);
    bn.weight = [p[0], p[1]];
    bn.bias = [p[2], p[3]];
    bn.running_mean = [p[4], p[5]];
    bn.running_var = [1.0 + p[6] / 2.0, 1.0 + p[7] / 2.0];
    bn
}

/// Checks `backward_batch` after a pass in mode `M` against central differences for every
/// input value, weight and bias.
fn check_batch<M: Mode>(bn: &Bn, x: &Batch, r: &Batch) -> Result<(), TestCaseError> {
    let mut y = zeroed_box::<Batch>();
    let mut ws = zeroed_box();
    bn.forward_batch_in(&Pass::<M>::DEFAULT, x, &mut y, &mut ws);
    let mut gi = zeroed_box::<Batch>();
    flat(&mut gi).fill(f64::NAN);
    let mut grads = zeroed_box::<Bn>();
    bn.backward_batch(x, &mut ws, r, Some(&mut gi), &mut grads);
    for i in 0..flat(&mut x.clone()).len() {
        let (mut plus, mut minus) = (Box::new(*x), Box::new(*x));
        flat(&mut plus)[i] += H;
        flat(&mut minus)[i] -= H;
        let n = (loss::<M>(bn, &plus, r) - loss::<M>(bn, &minus, r)) / (2.0 * H);
        close(flat(&mut gi)[i], n, &format!("input {i}"))?;
    }
    for (t, name) in [(0, "weight"), (1, "bias")] {
        for c in 0..2 {
            let (mut plus, mut minus) = (bn.clone(), bn.clone());
            plus.param_mut(t)[c] += H;
            minus.param_mut(t)[c] -= H;
            let n = (loss::<M>(&plus, x, r) - loss::<M>(&minus, x, r)) / (2.0 * H);
            close(grads.param(t)[c], n, &format!("{name}[{c}]"))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batchnorm_training_gradients_match_finite_differences(
        x in prop::collection::vec(-1.0f64..1.0, 36),
        r in prop::collection::vec(-1.0f64..1.0, 36),
        p in prop::collection::vec(-1.0f64..1.0, 8),
    ) {
        check_batch::<Train>(&bn_from(&p), &batch(&x), &batch(&r))?;
    }

    #[test]
    fn batchnorm_evaluation_gradients_match_finite_differences(
        x in prop::collection::vec(-1.0f64..1.0, 36),
        r in prop::collection::vec(-1.0f64..1.0, 36),
        p in prop::collection::vec(-1.0f64..1.0, 8),
    ) {
        let bn = bn_from(&p);
        let (x, r) = (batch(&x), batch(&r));
        check_batch::<Eval>(&bn, &x, &r)?;
        // The per-sample evaluation pass and its backward give the same as the batch.
        let mut gb = zeroed_box::<Batch>();
        let mut grads_b = zeroed_box::<Bn>();
        let mut ws = zeroed_box();
        bn.forward_batch_in(&Pass::eval(), &x, &mut zeroed_box(), &mut ws);
        bn.backward_batch(&x, &mut ws, &r, Some(&mut gb), &mut grads_b);
        let mut grads = zeroed_box::<Bn>();
        for s in 0..N {
            let (mut y, mut gi) = (zeroed_box::<Maps>(), zeroed_box::<Maps>());
            bn.forward_in(&Pass::eval(), &x[s], &mut y, &mut ());
            bn.backward(&x[s], &mut (), &r[s], Some(&mut gi), &mut grads);
            prop_assert_eq!(*gi, gb[s]);
        }
        prop_assert_eq!(grads.weight, grads_b.weight);
    }

    #[test]
    fn dropout_gradients_match_finite_differences_in_both_modes(
        x in prop::collection::vec(-1.0f64..1.0, 24),
        r in prop::collection::vec(-1.0f64..1.0, 24),
        seed in any::<u64>(),
    ) {
        let drop = Dropout::<[f64; 24]>::new(0.4);
        let x: [f64; 24] = x.try_into().unwrap();
        let r: [f64; 24] = r.try_into().unwrap();
        fn run<M: Mode>(d: &Dropout<[f64; 24]>, p: &Pass<M>, x: &[f64; 24], r: &[f64; 24]) -> f64 {
            let (mut y, mut ws) = ([0.0; 24], [0.0; 24]);
            d.forward_in(p, x, &mut y, &mut ws);
            y.iter().zip(r).map(|(y, r)| y * r).sum()
        }
        fn check<M: Mode>(d: &Dropout<[f64; 24]>, p: &Pass<M>, x: &[f64; 24], r: &[f64; 24]) -> Result<(), TestCaseError> {
            let (mut y, mut ws, mut gi) = ([0.0; 24], [0.0; 24], [f64::NAN; 24]);
            d.forward_in(p, x, &mut y, &mut ws);
            d.backward(x, &mut ws, r, Some(&mut gi), &mut d.clone());
            for i in 0..24 {
                let (mut plus, mut minus) = (*x, *x);
                plus[i] += H;
                minus[i] -= H;
                let n = (run(d, p, &plus, r) - run(d, p, &minus, r)) / (2.0 * H);
                close(gi[i], n, &format!("input {i}"))?;
            }
            Ok(())
        }
        check(&drop, &Pass::train(seed, 3), &x, &r)?;
        check(&drop, &Pass::eval(), &x, &r)?;
    }
}

/// A convolution followed by batch normalisation: the chain runs it layer by layer
/// (`WHOLE_BATCH`) and passes the mode down.
type ConvBn = Chain<Conv2d<f64, 1, 2, 3, 1, 1, 2, 3, 2, 3>, Bn>;

#[test]
fn a_chain_passes_the_mode_to_batch_norm_and_runs_it_on_the_whole_batch() {
    const { assert!(<ConvBn as BatchLayer<N>>::WHOLE_BATCH) };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let mut net = zeroed_box::<ConvBn>();
    net.init(&mut rng);
    net.then.running_mean = [0.3, -0.2];
    net.then.running_var = [0.7, 1.4];
    let x: [[[[f64; 3]; 2]; 1]; N] = core::array::from_fn(|s| {
        [core::array::from_fn(|i| {
            core::array::from_fn(|j| (s + 2 * i + 3 * j) as f64 / 7.0 - 0.5)
        })]
    });
    let mut mid = zeroed_box::<Batch>();
    net.first.forward_batch(&x, &mut mid, &mut zeroed_box());
    for (mode, train) in [("train", true), ("eval", false)] {
        let (mut y, mut expected) = (zeroed_box::<Batch>(), zeroed_box::<Batch>());
        let mut ws = zeroed_box::<<ConvBn as BatchLayer<N>>::BatchWorkspace>();
        if train {
            net.forward_batch_in(&Pass::train(1, 2), &x, &mut y, &mut ws);
            net.then
                .forward_batch_in(&Pass::train(1, 2), &mid, &mut expected, &mut zeroed_box());
        } else {
            net.forward_batch_in(&Pass::eval(), &x, &mut y, &mut ws);
            net.then.infer_batch(&mid, &mut expected, &mut zeroed_box());
            let mut inferred = zeroed_box::<Batch>();
            net.infer_batch(&x, &mut inferred, &mut ws);
            assert_eq!(inferred, expected);
        }
        assert_eq!(y, expected, "{mode}");
    }
    // `forward_batch` is a training pass.
    let (mut y, mut t) = (zeroed_box::<Batch>(), zeroed_box::<Batch>());
    net.forward_batch(&x, &mut y, &mut zeroed_box());
    net.forward_batch_in(&Pass::train(0, 0), &x, &mut t, &mut zeroed_box());
    assert_eq!(y, t);
}

/// Dropout after a convolution in a chain run sample by sample: the samples get their own
/// masks, from the batch's pass offset by their index.
#[test]
fn a_chain_run_sample_by_sample_gives_each_sample_its_own_dropout_mask() {
    type Net = Chain<Conv2d<f64, 1, 2, 3, 1, 1, 2, 3, 2, 3>, Dropout<Maps>>;
    const { assert!(!<Net as BatchLayer<N>>::WHOLE_BATCH) };
    let mut net = zeroed_box::<Net>();
    net.first.bias = [1.0, 1.0];
    net.then = Dropout::new(0.5);
    let x = [[[[0.0f64; 3]; 2]; 1]; N];
    let mut y = zeroed_box::<Batch>();
    let pass = Pass::train(11, 4).offset(16);
    net.forward_batch_in(&pass, &x, &mut y, &mut zeroed_box());
    for s in 0..N {
        let mut mask = [[[0.0; 3]; 2]; 2];
        net.then.mask(&pass.offset(s), &mut mask);
        assert_eq!(y[s], mask, "sample {s}");
    }
    assert_ne!(y[0], y[1]);
}

type BnNet = Chain<Conv2d<f32, 1, 2, 3, 1, 1, 2, 3, 2, 3>, BatchNorm2d<f32, 2, 2, 3>>;

fn trained_bn_net() -> Box<BnNet> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(8);
    let mut net = zeroed_box::<BnNet>();
    net.init(&mut rng);
    net.then.running_mean = [0.25, -0.5];
    net.then.running_var = [0.75, 1.5];
    net.then.num_batches_tracked = 41;
    net
}

#[test]
fn weights_files_keep_buffers_and_counters() {
    let net = trained_bn_net();
    let bytes = save_weights(&*net).unwrap();
    let mut back = zeroed_box::<BnNet>();
    load_weights(&mut *back, &bytes).unwrap();
    assert_eq!(
        (back.then.running_mean, back.then.running_var),
        (net.then.running_mean, net.then.running_var)
    );
    assert_eq!(back.then.num_batches_tracked, 41);
    assert_eq!(back.first, net.first);
    // 20 + 2 + 2 parameters, 4 buffer values, one 8-byte counter.
    assert_eq!(constnet::weights::weights_len(&*net), bytes.len());
    let params_end = bytes.len() - 4 - 8 - 4 * 4;
    assert_eq!(&bytes[params_end..params_end + 4], &0.25f32.to_le_bytes());
}

#[test]
fn a_file_without_its_buffers_or_with_a_nan_buffer_is_refused_and_the_network_kept() {
    let net = trained_bn_net();
    let bytes = save_weights(&*net).unwrap();
    let mut target = zeroed_box::<BnNet>();
    let untouched = zeroed_box::<BnNet>();
    // The counter and the checksum cut off.
    let cut = &bytes[..bytes.len() - 12];
    assert!(matches!(
        load_weights(&mut *target, cut),
        Err(WeightsError::Truncated { .. })
    ));
    // running_var[1] = NaN, with a valid checksum.
    let mut bad = bytes.clone();
    let at = bad.len() - 4 - 8 - 4;
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let body = bad.len() - 4;
    let crc = crc32(&bad[..body]);
    bad[body..].copy_from_slice(&crc.to_le_bytes());
    // Tensors: conv weight, conv bias, bn weight, bn bias (0–3), running_mean (4), running_var (5).
    assert_eq!(
        load_weights(&mut *target, &bad),
        Err(WeightsError::NonFinite {
            tensor: 5,
            index: 1
        })
    );
    assert_eq!(target, untouched);
    let mut diverged = trained_bn_net();
    diverged.then.running_mean[0] = f32::INFINITY;
    assert_eq!(
        save_weights(&*diverged),
        Err(WeightsError::NonFinite {
            tensor: 4,
            index: 0
        })
    );
}

#[test]
fn the_descriptor_names_batch_norm_so_its_weights_fit_no_other_network() {
    let bytes = save_weights(&*trained_bn_net()).unwrap();
    type Other = Chain<Conv2d<f32, 1, 2, 3, 1, 1, 2, 3, 2, 3>, Dropout<[[[f32; 3]; 2]; 2]>>;
    let mut other = zeroed_box::<Other>();
    assert!(matches!(
        load_weights(&mut *other, &bytes),
        Err(WeightsError::ArchitectureMismatch { .. })
    ));
}

/// A network of the new layers saves and loads in constnet's format, and its descriptor
/// tells it from a network with another grouping.
#[test]
fn weights_files_cover_every_new_layer() {
    use constnet::{AvgPool2d, GlobalAvgPool2d, GroupedConv2d, LocalResponseNorm, sequential};
    type Net = sequential![
        GroupedConv2d<f32, 4, 6, 2, 2, 3, 1, 1, 8, 8, 8, 8>,
        LocalResponseNorm<f32, 6, 8, 8, 5>,
        AvgPool2d<f32, 6, 8, 8, 2, 2, 4, 4>,
        BatchNorm2d<f32, 6, 4, 4>,
        Dropout<[[[f32; 4]; 4]; 6]>,
        GlobalAvgPool2d<f32, 6, 4, 4>,
    ];
    type Other = sequential![
        GroupedConv2d<f32, 4, 6, 1, 4, 3, 1, 1, 8, 8, 8, 8>,
        LocalResponseNorm<f32, 6, 8, 8, 5>,
        AvgPool2d<f32, 6, 8, 8, 2, 2, 4, 4>,
        BatchNorm2d<f32, 6, 4, 4>,
        Dropout<[[[f32; 4]; 4]; 6]>,
        GlobalAvgPool2d<f32, 6, 4, 4>,
    ];
    let mut net = zeroed_box::<Net>();
    net.init(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3));
    let bytes = save_weights(&*net).unwrap();
    let mut back = zeroed_box::<Net>();
    load_weights(&mut *back, &bytes).unwrap();
    for i in 0..<Net as Layer>::PARAM_TENSORS {
        assert_eq!(back.param(i), net.param(i));
    }
    let mut other = zeroed_box::<Other>();
    assert!(matches!(
        load_weights(&mut *other, &bytes),
        Err(WeightsError::ArchitectureMismatch { .. })
    ));
}
