//! `LeNet5<f64>` reproduces PyTorch's numbers: activations, logits, probabilities, both losses
//! and every gradient, for the weights and input in `tests/data/pytorch/` (see its README).
//!
//! Tolerance: |ours − torch| ≤ 1e-9 · |torch|, or ≤ 1e-12 absolute for values near zero.

use constnet::{Image, Layer, LeNet5, Loss, zeroed_box};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/pytorch/lenet_pytorch_grads_seed7.json"
);

/// PyTorch's parameter names, in `LeNet5`'s parameter-tensor order.
const PARAMS: [&str; 10] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
    "fc3.weight",
    "fc3.bias",
];

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[track_caller]
fn assert_matches(what: &str, ours: &[f64], torch: &[f64]) {
    assert_eq!(ours.len(), torch.len(), "{what}: length");
    for (i, (&a, &b)) in ours.iter().zip(torch).enumerate() {
        let ok = (a - b).abs() <= 1e-9 * b.abs() || (a - b).abs() <= 1e-12;
        assert!(
            ok,
            "{what}[{i}]: constnet {a:e}, PyTorch {b:e}, difference {:e}",
            a - b
        );
    }
}

fn load() -> (Value, Box<LeNet5<f64>>, Box<Image<f64>>) {
    let fx = fixture();
    let mut net = zeroed_box::<LeNet5<f64>>();
    assert_eq!(fx["param_order"].as_array().unwrap().len(), PARAMS.len());
    for (i, name) in PARAMS.iter().enumerate() {
        assert_eq!(fx["param_order"][i], *name);
        let values = numbers(&fx["params"][name]["values"]);
        net.param_mut(i).copy_from_slice(&values);
    }
    let mut image = Box::new([[[0.0; 32]; 32]; 1]);
    image[0]
        .as_flattened_mut()
        .copy_from_slice(&numbers(&fx["input"]["values"]));
    (fx, net, image)
}

#[test]
fn forward_matches_pytorch_activations_logits_and_softmax() {
    let (fx, net, image) = load();
    let mut ws = LeNet5::<f64>::workspace();
    let probs = net.probabilities(&image, &mut ws);
    let a = LeNet5::<f64>::activations(&ws);
    let acts = &fx["activations"];
    assert_matches(
        "pool1",
        a.pool1.as_flattened().as_flattened(),
        &numbers(&acts["pool1"]["values"]),
    );
    assert_matches(
        "pool2",
        a.pool2.as_flattened().as_flattened(),
        &numbers(&acts["pool2"]["values"]),
    );
    assert_matches("fc1", a.relu3, &numbers(&acts["fc1"]["values"]));
    assert_matches("fc2", a.relu4, &numbers(&acts["fc2"]["values"]));
    assert_matches("logits", a.logits, &numbers(&fx["logits"]));
    assert_matches("softmax", &probs, &numbers(&fx["softmax"]));
}

fn gradients_match(loss: Loss, key: &str) {
    let (fx, net, image) = load();
    let target = fx["target_class"].as_u64().unwrap() as usize;
    let mut ws = LeNet5::<f64>::workspace();
    let mut grads = zeroed_box::<LeNet5<f64>>();
    let mut grad_input = Box::new([[[0.0; 32]; 32]; 1]);
    let value = net.backprop(
        &image,
        target,
        loss,
        &mut ws,
        &mut grads,
        Some(&mut grad_input),
    );

    let torch = &fx["losses"][key];
    assert_matches(
        &format!("{key} value"),
        &[value],
        &[torch["value"].as_f64().unwrap()],
    );
    assert_matches(
        &format!("{key} grad input"),
        grad_input[0].as_flattened(),
        &numbers(&torch["grad_input"]),
    );
    for (i, name) in PARAMS.iter().enumerate() {
        assert_matches(
            &format!("{key} grad {name}"),
            grads.param(i),
            &numbers(&torch["grad_params"][name]),
        );
    }
}

#[test]
fn cross_entropy_loss_and_every_gradient_match_pytorch() {
    gradients_match(Loss::CrossEntropy, "cross_entropy");
}

#[test]
fn half_sse_loss_and_every_gradient_match_pytorch() {
    gradients_match(Loss::HalfSse, "half_sse_softmax");
}
