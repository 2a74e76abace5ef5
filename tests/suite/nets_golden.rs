//! PyTorch's numbers for the article's later networks at full size
//! (`tests/data/arch/nets/`, format in its `FORMAT.md`): for every network JSON, generate
//! torchvision's `state_dict` bit for bit from the counter-based generator, write it as a
//! torchvision-named safetensors file, load that through [`load_state_dict`], run the
//! network in evaluation mode on the generated image, and match PyTorch's logits.
//!
//! Tolerances: `f64` to 1e-9 of the largest |logit| (the order of the sums differs from
//! PyTorch's); `f32` to 4 × PyTorch's own f32-vs-f64 gap (`max_abs_f32_vs_f64`). Both
//! implementations round in f32, each in its own order, so each should land about that far
//! from the exact (f64) logits; measured, constnet's f32 gap is 0.5–1.9 times PyTorch's on
//! the seven networks (`--nocapture` prints it).

use std::path::{Path, PathBuf};

use constnet::state_dict::load_state_dict;
use constnet::{
    AlexNet, AlexNet2012, BatchLayer, DenseNet121, GoogLeNet, Layer, Network, Pass, ResNet18,
    Scalar, TensorKind, Vgg16, ZfNet, layer::count, tensor_names, zeroed_box,
};
use rand::SeedableRng;
use safetensors::{Dtype, tensor::TensorView};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/arch/nets")
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator's integer for element `e` of tensor `t`: in [0, 2^24).
fn k(seed: u64, t: u64, e: u64) -> u32 {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(t.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(e);
    (splitmix64(mix) >> 40) as u32
}

/// A tensor's generator rule (FORMAT.md, "The weight generator"), read once from the JSON.
#[derive(Clone, Copy)]
enum Rule {
    /// `(k − 2²³)·scale`.
    Scaled(f32),
    BnWeight,
    /// `bn_bias` and `bn_running_mean`.
    Centred,
    BnRunningVar,
}

impl Rule {
    fn of(rule: &Value) -> Rule {
        match rule {
            Value::Number(s) => Rule::Scaled(s.as_f64().unwrap() as f32),
            Value::String(r) => match r.as_str() {
                "bn_weight" => Rule::BnWeight,
                "bn_bias" | "bn_running_mean" => Rule::Centred,
                "bn_running_var" => Rule::BnRunningVar,
                other => panic!("unknown generator rule {other}"),
            },
            other => panic!("unknown generator rule {other}"),
        }
    }

    /// One generated value for the generator's integer `k`.
    fn value(self, k: u32) -> f32 {
        let k = k as f32;
        match self {
            Rule::Scaled(s) => (k - 8_388_608.0) * s,
            Rule::BnWeight => 0.5 + k * (1.0 / 16_777_216.0),
            Rule::Centred => (k - 8_388_608.0) * (1.0 / 33_554_432.0),
            Rule::BnRunningVar => 0.5 + k * (1.0 / 33_554_432.0),
        }
    }
}

/// A network's fixture: its JSON and its generated tensors as safetensors bytes.
struct Case {
    json: Value,
    name: String,
}

fn read(path: &Path) -> Case {
    let json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    Case { json, name }
}

impl Case {
    fn seed(&self) -> u64 {
        self.json["seed"].as_u64().unwrap()
    }

    fn keys(&self) -> &Vec<Value> {
        self.json["keys"].as_array().unwrap()
    }

    /// torchvision's `state_dict`, generated, as `safetensors.torch.save_file` writes it.
    fn state_dict(&self) -> Vec<u8> {
        let mut data = Vec::new();
        for (t, key) in self.keys().iter().enumerate() {
            let numel: usize = key[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product();
            let bytes: Vec<u8> = if key[2] == "int64" {
                assert_eq!(key[3], "zero");
                0i64.to_le_bytes().to_vec()
            } else {
                let (seed, rule) = (self.seed(), Rule::of(&key[3]));
                let mut bytes = Vec::with_capacity(4 * numel);
                for e in 0..numel as u64 {
                    bytes.extend_from_slice(&rule.value(k(seed, t as u64, e)).to_le_bytes());
                }
                bytes
            };
            data.push(bytes);
        }
        let views: Vec<(String, TensorView<'_>)> = self
            .keys()
            .iter()
            .zip(&data)
            .map(|(key, bytes)| {
                let shape: Vec<usize> = key[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                let dtype = if key[2] == "int64" {
                    Dtype::I64
                } else {
                    Dtype::F32
                };
                (
                    key[0].as_str().unwrap().to_string(),
                    TensorView::new(dtype, shape, bytes).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    /// Image `n` of the input (t = 1,000,000 + n), `[3, H, W]` row-major.
    fn image(&self, n: u64) -> Vec<f32> {
        let shape = self.json["input_shape"].as_array().unwrap();
        let numel: usize = shape[1..]
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .product();
        let seed = self.seed();
        (0..numel as u64)
            .map(|e| (k(seed, 1_000_000 + n, e) as f32 - 8_388_608.0) / 8_388_608.0)
            .collect()
    }

    fn logits(&self, field: &str) -> Vec<f64> {
        let v = &self.json[field];
        let row = if v[0].is_array() { &v[0] } else { v };
        row.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }
}

/// Loads the case's weights into a fresh `L` (built with `new`, so that the constants that
/// are not weights are set), runs `logits` on its image and compares with PyTorch's.
fn check<T: Scalar, L: Layer<Scalar = T>>(
    case: &Case,
    mut net: Box<L>,
    logits: impl Fn(&L, &[T]) -> Vec<f64>,
) {
    // torchvision's names and counts, exactly
    let mut ours = tensor_names::<L>();
    let mut theirs: Vec<String> = case
        .keys()
        .iter()
        .map(|k| k[0].as_str().unwrap().to_string())
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "{}: tensor names", case.name);
    let params = net.param_count() as u64;
    assert_eq!(
        params,
        case.json["param_count"].as_u64().unwrap(),
        "{}: parameters",
        case.name
    );

    load_state_dict(&mut *net, &case.state_dict()).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let image: Vec<T> = case
        .image(0)
        .iter()
        .map(|&v| T::from_f64(f64::from(v)))
        .collect();
    let ours = logits(&net, &image);
    let torch = case.logits("logits_f64");
    let scale = torch.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let wide = core::mem::size_of::<T>() == 8;
    let tol = if wide {
        1e-9 * scale
    } else {
        4.0 * case.json["max_abs_f32_vs_f64"].as_f64().unwrap()
    };
    let (worst, at) = ours
        .iter()
        .zip(&torch)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0.0f64, 0),
            |(w, i), (j, d)| if d > w { (d, j) } else { (w, i) },
        );
    eprintln!(
        "{} {}: max |ours − torch| = {worst:.3e} at {at} (tolerance {tol:.3e}, largest |logit| {scale:.3})",
        case.name,
        if wide { "f64" } else { "f32" },
    );
    assert!(
        worst <= tol,
        "{}: logit {at} differs by {worst:e} > {tol:e}",
        case.name
    );
}

/// Runs `first` (the network without its softmax) in evaluation mode.
macro_rules! eval_logits {
    ($net:ty, $t:ty) => {
        |net: &$net, image: &[$t]| {
            let mut ws = <$net>::workspace();
            let mut x = zeroed_box::<<$net as Layer>::Input>();
            constnet::Tensor::flat_mut(&mut *x).copy_from_slice(image);
            let mut logits = [<$t>::from_f64(0.0); 1000];
            net.first.infer(&x, &mut logits, &mut ws.first);
            logits.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()
        }
    };
}

fn run<T: Scalar>(name: &str)
where
    f64: From<T>,
{
    let case = read(&dir().join(format!("{name}.json")));
    let rng = &mut rand::rngs::StdRng::seed_from_u64(1);
    macro_rules! go {
        ($net:ident) => {
            check(&case, $net::<T>::new_boxed(rng), eval_logits!($net<T>, T))
        };
    }
    match name {
        "alexnet" => go!(AlexNet),
        "alexnet_paper" => go!(AlexNet2012),
        "zfnet" => go!(ZfNet),
        "vgg16" => go!(Vgg16),
        "resnet18" => go!(ResNet18),
        "googlenet" => go!(GoogLeNet),
        "densenet121" => go!(DenseNet121),
        other => panic!("no constnet type registered for the fixture {other}.json"),
    }
}

/// Each network fixture's own pair of tests (`nets_golden::vgg16::f32`, …), so that the
/// test threads share the seven networks, and the list of the fixtures they cover.
macro_rules! per_network {
    ($($net:ident),* $(,)?) => {
        const REGISTERED: &[&str] = &[$(stringify!($net)),*];
        $(mod $net {
            #[test]
            fn f32() {
                super::run::<f32>(stringify!($net));
            }

            #[test]
            fn f64() {
                super::run::<f64>(stringify!($net));
            }
        })*
    };
}

per_network!(
    alexnet,
    alexnet_paper,
    zfnet,
    vgg16,
    resnet18,
    googlenet,
    densenet121
);

/// Every network JSON in the directory has a type and tests here (a new fixture file fails
/// until it is registered).
#[test]
fn every_network_fixture_has_its_tests() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "summary" && !n.ends_with("_train"))
        .collect();
    names.sort();
    let mut registered: Vec<&str> = REGISTERED.to_vec();
    registered.sort();
    assert_eq!(
        names, registered,
        "network fixtures without tests, or tests without fixtures"
    );
}

fn close(what: &str, a: f64, b: f64, tol: f64) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a} against PyTorch's {b} (tolerance {tol:e})"
    );
}

/// `resnet18_train.json`: ResNet-18 in training mode on a batch of two generated images,
/// cross-entropy against labels 3 and 7, in `f64`. Batch statistics, the loss, every
/// parameter tensor's gradient (sum and norm; `fc.weight` and `conv1.weight` in full), and
/// the running statistics after the optimizer's buffer update, against PyTorch's.
#[test]
fn resnet18_training_step_matches_pytorch_in_f64() {
    type Net = ResNet18<f64>;
    type Body = constnet::resnet::ResNet18Logits<f64>;
    let case = read(&dir().join("resnet18_train.json"));
    let mut net = Net::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
    // the same generated weights and buffers as the evaluation case (the file has no keys)
    let weights = read(&dir().join("resnet18.json"));
    assert_eq!(weights.seed(), case.seed());
    load_state_dict(&mut *net, &weights.state_dict()).unwrap();
    let labels: Vec<usize> = case.json["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(labels.len(), 2);

    let mut x = zeroed_box::<[<Body as Layer>::Input; 2]>();
    for (n, image) in x.iter_mut().enumerate() {
        let values = case.image(n as u64);
        for (d, v) in constnet::Tensor::flat_mut(image).iter_mut().zip(values) {
            *d = f64::from(v);
        }
    }
    let mut z = zeroed_box::<[[f64; 1000]; 2]>();
    let mut ws = zeroed_box::<<Body as BatchLayer<2>>::BatchWorkspace>();
    net.first
        .forward_batch_in(&Pass::train(0, 0), &x, &mut z, &mut ws);

    // logits, and cross-entropy (mean over the batch) with its gradient (p − onehot) / 2
    let torch_logits = case.json["logits_f64"].as_array().unwrap();
    let mut dz = zeroed_box::<[[f64; 1000]; 2]>();
    let mut loss = 0.0;
    for n in 0..2 {
        let theirs: Vec<f64> = torch_logits[n]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (j, (&a, &b)) in z[n].iter().zip(&theirs).enumerate() {
            close(&format!("logit [{n}][{j}]"), a, b, 1e-9 * scale);
        }
        let max = z[n].iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = z[n].iter().map(|&v| (v - max).exp()).sum();
        loss += (sum.ln() + max - z[n][labels[n]]) / 2.0;
        for j in 0..1000 {
            dz[n][j] = ((z[n][j] - max).exp() / sum - f64::from(u8::from(j == labels[n]))) / 2.0;
        }
    }
    close(
        "loss",
        loss,
        case.json["loss"].as_f64().unwrap(),
        1e-9 * loss.abs(),
    );

    let mut grads = zeroed_box::<Body>();
    net.first.backward_batch(&x, &mut ws, &dz, None, &mut grads);
    let stats = case.json["grad_stats"].as_object().unwrap();
    assert_eq!(stats.len(), count::<Body>(TensorKind::Param));
    for i in 0..count::<Body>(TensorKind::Param) {
        let mut name = String::new();
        Body::tensor_name(TensorKind::Param, i, &mut name).unwrap();
        let g = grads.param(i);
        let (sum, l2) = (
            g.iter().sum::<f64>(),
            g.iter().map(|v| v * v).sum::<f64>().sqrt(),
        );
        let theirs = &stats[&name];
        let their_l2 = theirs["l2"].as_f64().unwrap();
        close(&format!("‖∂L/∂{name}‖"), l2, their_l2, 1e-9 * their_l2);
        // a sum cancels: hold it to the norm's scale
        close(
            &format!("Σ ∂L/∂{name}"),
            sum,
            theirs["sum"].as_f64().unwrap(),
            1e-9 * their_l2 * (g.len() as f64).sqrt(),
        );
        if let Some(full) = case.json.get(format!("grad_{name}")) {
            let full: Vec<f64> = full
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(full.len(), g.len(), "{name}");
            let scale = full.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (j, (&a, &b)) in g.iter().zip(&full).enumerate() {
                close(&format!("∂L/∂{name}[{j}]"), a, b, 1e-9 * scale);
            }
        }
    }
    assert!(
        case.json.get("grad_fc.weight").is_some() && case.json.get("grad_conv1.weight").is_some()
    );

    // the optimizer's step folds the batch statistics into the running ones
    net.first.update_buffers(&grads);
    let after = case.json["buffer_after"].as_object().unwrap();
    for kind in [TensorKind::Buffer, TensorKind::Counter] {
        for i in 0..count::<Body>(kind) {
            let mut name = String::new();
            Body::tensor_name(kind, i, &mut name).unwrap();
            if kind == TensorKind::Counter {
                assert_eq!(
                    net.first.counter(i),
                    after[&name].as_u64().unwrap(),
                    "{name}"
                );
            } else {
                let sum: f64 = net.first.buffer(i).iter().sum();
                let theirs = after[&name]["sum"].as_f64().unwrap();
                close(&name, sum, theirs, 1e-9 * theirs.abs().max(1.0));
            }
        }
    }
}

/// Per parameter tensor, the sum of its values' bit patterns (changes if any value does;
/// a clone of a 233 MiB network would go through the stack).
fn fingerprint<L: Layer<Scalar = f32>>(net: &L) -> Vec<u64> {
    (0..L::PARAM_TENSORS)
        .map(|i| net.param(i).iter().map(|v| u64::from(v.to_bits())).sum())
        .collect()
}

/// torchvision's AlexNet `state_dict` does not fit the 2012 AlexNet: a typed error naming
/// the first tensor that does not fit, and the network unchanged.
#[test]
fn another_variants_state_dict_is_refused_naming_the_tensor() {
    let torchvision = read(&dir().join("alexnet.json")).state_dict();
    let mut net = AlexNet2012::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(4));
    let before = fingerprint(&*net);
    let err = load_state_dict(&mut *net, &torchvision).unwrap_err();
    assert!(
        matches!(&err, constnet::pytorch::SafetensorsError::Missing { tensor } if tensor == "conv1.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("conv1.weight"), "{err}");
    assert!(fingerprint(&*net) == before, "the network is unchanged");
    // and the other way round: the 2012 dict into torchvision's network
    let paper = read(&dir().join("alexnet_paper.json")).state_dict();
    let mut tv = AlexNet::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(4));
    let err = load_state_dict(&mut *tv, &paper).unwrap_err();
    assert!(err.to_string().contains("features.0.weight"), "{err}");
}

/// ResNet-18 exports its `state_dict` as torchvision's (names, shapes, F32 and I64 counters),
/// and what it writes loads back to the same network.
#[test]
fn resnet18_state_dict_round_trips_with_torchvision_names() {
    let case = read(&dir().join("resnet18.json"));
    let mut net = ResNet18::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(5));
    load_state_dict(&mut *net, &case.state_dict()).unwrap();
    *net.counter_mut(3) = 7; // a counter that is not 0 survives the trip as I64
    let bytes = constnet::state_dict::save_state_dict(&*net).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for key in case.keys() {
        let view = st.tensor(key[0].as_str().unwrap()).unwrap();
        let shape: Vec<usize> = key[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(view.shape(), &shape[..], "{}", key[0]);
        let dtype = if key[2] == "int64" {
            Dtype::I64
        } else {
            Dtype::F32
        };
        assert_eq!(view.dtype(), dtype, "{}", key[0]);
    }
    assert_eq!(st.len(), case.keys().len());
    let mut copy = ResNet18::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(6));
    load_state_dict(&mut *copy, &bytes).unwrap();
    assert!(*copy == *net);
}
