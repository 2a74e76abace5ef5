//! A LeNet-5 trained by PyTorch, loaded from safetensors, classifies the 2,000 bundled test
//! digits exactly as PyTorch did: logits within 1e-4 absolute, identical predicted labels and
//! accuracy (97.30%). Fixture and origin: `tests/data/pytorch-lenet-mnist10k/`.

use constnet::{LeNet5, argmax, mnist::load_dir, zeroed_box};
use safetensors::SafeTensors;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/pytorch-lenet-mnist10k"
);

#[test]
fn pytorch_trained_lenet_gives_pytorchs_logits_labels_and_accuracy() {
    let mut net = zeroed_box::<LeNet5<f32>>();
    let weights = std::fs::read(format!("{DIR}/lenet.safetensors")).unwrap();
    net.load_safetensors(&weights).unwrap();

    let expected_bytes = std::fs::read(format!("{DIR}/expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&expected_bytes).unwrap();
    let logits = expected.tensor("logits").unwrap();
    assert_eq!(logits.shape(), [2000, 10]);
    let torch_logits: Vec<f32> = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/expected.json")).unwrap())
            .unwrap();
    let torch_labels: Vec<usize> = json["predicted_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();

    let (_, test) = load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap();
    assert_eq!(test.len(), 2000);
    let mut ws = LeNet5::<f32>::workspace();
    let (mut worst, mut correct) = (0.0f32, 0);
    for i in 0..test.len() {
        let probs = net.probabilities(&test.image(i), &mut ws);
        let ours = LeNet5::<f32>::activations(&ws).logits;
        for (a, b) in ours.iter().zip(&torch_logits[i * 10..i * 10 + 10]) {
            worst = worst.max((a - b).abs());
        }
        let label = argmax(&probs).expect("finite probabilities");
        assert_eq!(
            label, torch_labels[i],
            "image {i}: constnet predicts {label}, PyTorch {}",
            torch_labels[i]
        );
        correct += usize::from(label == test.label(i));
    }
    assert!(worst <= 1e-4, "largest logit difference {worst:e}");
    let accuracy = correct as f64 / test.len() as f64;
    let torch_accuracy = json["test_accuracy"].as_f64().unwrap();
    assert_eq!(
        correct,
        (torch_accuracy * 2000.0).round() as usize,
        "accuracy {accuracy} vs {torch_accuracy}"
    );
    eprintln!(
        "largest logit difference from PyTorch: {worst:e}; accuracy {:.2}%",
        100.0 * accuracy
    );
}
