//! GoogLeNet with its auxiliary classifiers (`GoogLeNetAux`): torchvision's tensors for
//! `googlenet(aux_logits=True)`, the paper's training loss, and the same network as
//! `GoogLeNet` in evaluation.

use std::collections::BTreeSet;

use constnet::googlenet::AuxLosses;
use constnet::state_dict::{SafetensorsError, load_state_dict, save_state_dict};
use constnet::{
    GoogLeNet, GoogLeNetAux, Layer, Network, Pass, Scalar, Tensor, TensorKind, layer::count,
    tensor_names, zeroed_box,
};
use rand::SeedableRng;

type Aux = GoogLeNetAux<f32>;
const N: usize = 2;

fn images() -> Box<[<Aux as Layer>::Input; N]> {
    let mut x = zeroed_box::<[<Aux as Layer>::Input; N]>();
    for (i, v) in Tensor::flat_slice_mut(&mut x[..]).iter_mut().enumerate() {
        *v = (((i * 7919) % 251) as f32 / 251.0 - 0.5) * 2.0;
    }
    x
}

/// The tensors of torchvision's `googlenet(aux_logits=True, init_weights=False)`: those of the
/// aux-free model plus, per head, `conv.conv.weight`, `conv.bn.*` (batch norm's two
/// parameters, two running statistics and its counter), `fc1.*` and `fc2.*`;
/// 13,004,888 parameters (`../shared/ARCHITECTURES.md`).
#[test]
fn it_has_torchvisions_tensors_and_parameter_count() {
    let net = Aux::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
    assert_eq!(net.param_count(), 13_004_888);
    let main = GoogLeNet::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
    assert_eq!(
        net.param_count() - main.param_count(),
        3_188_968 + 3_191_016
    );

    let names: BTreeSet<String> = tensor_names::<Aux>().into_iter().collect();
    let main_names: BTreeSet<String> = tensor_names::<GoogLeNet<f32>>().into_iter().collect();
    let mut expected = main_names.clone();
    for head in ["aux1", "aux2"] {
        for t in [
            "conv.conv.weight",
            "conv.bn.weight",
            "conv.bn.bias",
            "conv.bn.running_mean",
            "conv.bn.running_var",
            "conv.bn.num_batches_tracked",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
        ] {
            expected.insert(format!("{head}.{t}"));
        }
    }
    assert_eq!(names, expected);

    // The heads' shapes, as torchvision's.
    let shape = |name: &str| {
        let names = tensor_names::<Aux>();
        let at = names.iter().position(|n| n == name).unwrap();
        let (p, b) = (
            count::<Aux>(TensorKind::Param),
            count::<Aux>(TensorKind::Buffer),
        );
        let (kind, i) = if at < p {
            (TensorKind::Param, at)
        } else if at < p + b {
            (TensorKind::Buffer, at - p)
        } else {
            (TensorKind::Counter, at - p - b)
        };
        net.tensor_shape(kind, i).dims().to_vec()
    };
    assert_eq!(shape("aux1.conv.conv.weight"), [128, 512, 1, 1]);
    assert_eq!(shape("aux2.conv.conv.weight"), [128, 528, 1, 1]);
    assert_eq!(shape("aux2.fc1.weight"), [1024, 2048]);
    assert_eq!(shape("aux1.fc2.weight"), [1000, 1024]);
    assert_eq!(shape("aux1.fc2.bias"), [1000]);
}

/// A state dict with the heads round-trips through `GoogLeNetAux`; the aux-free
/// `GoogLeNet` refuses it by naming the first head tensor, and is left unchanged.
#[test]
fn its_state_dict_round_trips_and_the_aux_free_network_refuses_it() {
    let net = Aux::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(2));
    let bytes = save_state_dict(&*net).unwrap();
    let mut back = zeroed_box::<Aux>();
    load_state_dict(&mut *back, &bytes).unwrap();
    for i in 0..Aux::PARAM_TENSORS {
        assert_eq!(back.param(i), net.param(i), "tensor {i}");
    }
    let mut main = GoogLeNet::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(3));
    let before = main.param(0).to_vec();
    match load_state_dict(&mut *main, &bytes) {
        Err(SafetensorsError::Unexpected { tensor }) => {
            assert!(tensor.starts_with("aux1."), "{tensor}")
        }
        other => panic!("expected the first head tensor to be refused, got {other:?}"),
    }
    assert_eq!(main.param(0), &before[..]);
}

/// In evaluation the heads do not run: `GoogLeNetAux` and the `GoogLeNet` that
/// `to_googlenet` makes of it give the same probabilities, bit for bit.
#[test]
fn in_evaluation_it_is_googlenet() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut net = Aux::new_boxed(&mut rng);
    // Running statistics and counters that are not the initial ones, to see them copied.
    for i in 0..Aux::BUFFER_TENSORS {
        for (k, v) in net.buffer_mut(i).iter_mut().enumerate() {
            *v = 1.0 + (k % 5) as f32 * 0.1;
        }
    }
    *net.counter_mut(0) = 17;
    let main = net.to_googlenet();
    assert_eq!(main.counter(0), 17);
    let x = images();
    let mut ws = Aux::batch_workspace::<N>();
    let mut main_ws = GoogLeNet::<f32>::batch_workspace::<N>();
    let (mut p, mut q) = ([[0.0f32; 1000]; N], [[0.0f32; 1000]; N]);
    constnet::BatchLayer::infer_batch(&*net, &x, &mut p, &mut ws);
    constnet::BatchLayer::infer_batch(&*main, &x, &mut q, &mut main_ws);
    assert_eq!(p, q);
    assert!(p[0].iter().all(|v| v.is_finite()));
}

/// The training step's loss is the main cross-entropy plus 0.3 times each head's, and its
/// gradients are those of that sum:
/// * the main loss equals `backprop_batch`'s with the same pass (same dropout masks);
/// * `fc2.bias` of each head gets 0.3 · Σ (softmax(head logits) − one-hot), and nothing
///   without the heads' losses;
/// * layers after `inception4d` get bit-identical gradients with and without the heads,
///   layers before `inception4a` different ones.
#[test]
fn the_training_step_adds_the_weighted_auxiliary_losses() {
    let net = Aux::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(5));
    let x = images();
    let labels = [3, 997];
    let pass = Pass::train(9, 0);
    let mut ws = Aux::batch_workspace::<N>();

    let mut with = zeroed_box::<Aux>();
    let losses: AuxLosses<f32> = net.backprop_batch_aux(&pass, &x, &labels, &mut ws, &mut with);
    let mut without = zeroed_box::<Aux>();
    let main = net.backprop_batch_in(
        &pass,
        &x,
        &labels,
        constnet::Loss::CrossEntropy,
        &mut ws,
        &mut without,
    );
    assert_eq!(losses.main, main);
    for l in [losses.main, losses.aux1, losses.aux2] {
        // Random weights: each classifier is near chance, ln 1000 ≈ 6.9 per image.
        assert!(
            l.is_finite() && l > 0.0 && l < 2.0 * N as f32 * 20.0,
            "{losses:?}"
        );
    }
    let total = losses.total();
    assert!((total - (losses.main + 0.3 * (losses.aux1 + losses.aux2))).abs() < 1e-4);

    // Each head's fc2 bias gradient, from its own logits.
    let names = tensor_names::<Aux>();
    let index = |name: &str| names.iter().position(|n| n == name).unwrap();
    for (head, out) in [("aux1", head_logits(&ws, 1)), ("aux2", head_logits(&ws, 2))] {
        let i = index(&format!("{head}.fc2.bias"));
        let mut expected = [0.0f64; 1000];
        let mut loss = 0.0;
        for (logits, &label) in out.iter().zip(&labels) {
            let max = logits.iter().fold(f64::MIN, |m, &v| m.max(v));
            let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
            loss += max + sum.ln() - logits[label];
            for (e, v) in expected.iter_mut().zip(logits) {
                *e += 0.3 * (v - max).exp() / sum;
            }
            expected[label] -= 0.3;
        }
        let got = with.param(i);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g.to_f64() - e).abs() < 1e-5, "{head}.fc2.bias: {g} vs {e}");
        }
        let reported = if head == "aux1" {
            losses.aux1
        } else {
            losses.aux2
        };
        assert!(
            (reported.to_f64() - loss).abs() < 1e-3 * loss,
            "{head}: {reported} vs {loss}"
        );
        assert!(
            without.param(i).iter().all(|&g| g == 0.0),
            "{head} got a gradient without its loss"
        );
    }
    for name in [
        "inception4e.branch1.conv.weight",
        "fc.weight",
        "inception5b.branch4.1.bn.weight",
    ] {
        let i = index(name);
        assert_eq!(with.param(i), without.param(i), "{name}");
    }
    for name in [
        "conv1.conv.weight",
        "inception4a.branch2.1.conv.weight",
        "inception4d.branch1.bn.bias",
    ] {
        let i = index(name);
        assert_ne!(with.param(i), without.param(i), "{name}");
    }
}

/// The logits of head 1 or 2 from the latest training pass that used `ws` (`Tap` keeps them
/// as `out`), as `f64`. The pass of `backprop_batch_in` above ran with the same images,
/// weights and seed as `backprop_batch_aux`'s, so these are the logits its losses came from.
fn head_logits(
    ws: &<Aux as constnet::BatchLayer<N>>::BatchWorkspace,
    head: usize,
) -> Vec<Vec<f64>> {
    let logits = &ws.first;
    let out = if head == 1 {
        &logits.first.first.first.then.out
    } else {
        &logits.first.then.out
    };
    out.iter()
        .map(|o| o.iter().map(|&v| v as f64).collect())
        .collect()
}
