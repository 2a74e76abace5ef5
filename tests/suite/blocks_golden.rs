//! The PyTorch golden blocks: every `*.safetensors` in `tests/data/arch/blocks/` (see its
//! `README.md` and `FORMAT.md`) run through the constnet layer of the same configuration.
//!
//! # How a file is checked
//! Each file's `meta` names the operation (the start of `module`, e.g. `AvgPool2d`), its
//! hyper-parameters and the input and output shapes. [`registry`] lists the constnet blocks;
//! the one whose operation, `hyper` (equal as JSON) and shapes all equal the file's runs it
//! (the reading, running and comparing are in `golden_harness.rs`, for other golden tests):
//! * the parameters `param.<name>` load into `Layer::param` by the entry's list of PyTorch
//!   names (a name the file does not have, like the bias of a bias-free convolution, stays
//!   zero and its gradient is not compared), and the entry's `setup` function reads anything
//!   else (constants from `hyper`, buffers);
//! * each sample of `input` runs `Layer::forward`, then `Layer::backward` with its
//!   sample of `grad.output`; the parameter gradients add up over the batch, as PyTorch's
//!   for `L = Σ output · grad.output`;
//! * `output`, `grad.input` and every `grad.<name>` are compared: in `f64` to 1e-9 relative
//!   or 1e-12 absolute, element by element; then everything again in `f32` (parameters and
//!   inputs rounded) to 1e-4 of the largest magnitude in each tensor;
//! * a tensor of the file that nothing read is an error, so a block cannot pass by
//!   ignoring part of its file (a buffer, a gradient).
//!
//! A file that no entry matches fails, naming the file and the block that is missing,
//! unless its case is in [`PENDING`]: those are printed as pending. A pending case that has
//! an entry fails too (remove it from the list), as does a pending pattern that matches no
//! file. Run `cargo test --test suite blocks_golden -- --nocapture` for the table of worst
//! errors per file.
//!
//! # Adding a block
//! One [`block!`] line in [`registry`]: the operation and `hyper` as in the file's `meta`,
//! the shapes, the constnet type with `T` for the scalar, the PyTorch parameter names in
//! `Layer::param` order, and if needed a `setup` function `fn(&mut Layer, &Case) ->
//! Result<(), String>`, generic over the scalar, that reads constants or buffers through [`Case`] (see
//! [`lrn_constants`]). Then drop the case from [`PENDING`].

use std::path::{Path, PathBuf};

use constnet::{
    AvgPool2d, BatchNorm2d, Conv2d, DepthwiseConv2d, GlobalAvgPool2d, GroupedConv2d, Layer, Linear,
    LocalResponseNorm, MaxPool2d, Scalar, zeroed_box,
};
use rand::SeedableRng;
use serde_json::{Value, json};

use super::golden_harness::{Case, Dims, Worst, check_batch_block, check_block};
use super::golden_types::{
    BasicDown, BasicIdentity, CifarResNet20, DenseBlock, DenseLayer, Inception, Transition,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/arch/blocks");

/// Cases whose blocks are being written elsewhere, with what they wait for. A trailing `*`
/// matches any ending. They are printed, not failed, while no [`registry`] entry matches.
const PENDING: &[(&str, &str)] = &[];

// ---------------------------------------------------------------------------------------------
// The registry's entries.
// ---------------------------------------------------------------------------------------------

/// Runs a file's case through one scalar type's layer, returning the worst error per tensor.
type Run = fn(&Case) -> Result<Vec<Worst>, String>;

/// A registered block: what it matches, and its runs in `f64` and `f32`.
struct Block {
    operation: &'static str,
    hyper: Value,
    input: &'static [usize],
    output: &'static [usize],
    runs: [(&'static str, Run); 2],
}

/// `block!("Op" {hyper…}, [input shape] => [output shape], |T| LayerType<T, …>, ["param",
/// …] [, setup function])`. The setup function is generic over the scalar and returns a
/// `Result<(), String>` (see [`lrn_constants`]).
macro_rules! block {
    ($op:literal $hyper:tt, [$($i:literal),*] => [$($o:literal),*], |$t:ident| $ty:ty,
     [$($param:literal),*] $(, setup $setup:path)?) => {{
        fn run<$t: Scalar + Dims>(case: &Case) -> Result<Vec<Worst>, String> {
            let mut layer = zeroed_box::<$ty>();
            $($setup(&mut *layer, case)?;)?
            check_block(&mut *layer, case, &[$($param),*])
        }
        Block {
            operation: $op,
            hyper: json!($hyper),
            input: &[$($i),*],
            output: &[$($o),*],
            runs: [("f64", run::<f64>), ("f32", run::<f32>)],
        }
    }};
}
/// `batch_block!("Op" {hyper…}, [input shape] => [output shape], N = batch, |T| Type<T, …>
/// [, setup function])`: a block whose tensors load by the names its type gives them
/// (buffers and counters too) and that runs as one batch in the file's mode
/// (`check_batch_block`): batch normalisation in training mode needs the whole batch.
macro_rules! batch_block {
    ($op:literal $hyper:tt, [$($i:literal),*] => [$($o:literal),*], N = $n:literal, |$t:ident| $ty:ty
     $(, setup $setup:path)? $(, kinks $kinks:literal)?) => {{
        fn run<$t: Scalar + Dims>(case: &Case) -> Result<Vec<Worst>, String> {
            let mut layer = zeroed_box::<$ty>();
            // PyTorch's eps and momentum, which the files' parameters do not carry.
            layer.init(&mut rand::rngs::StdRng::seed_from_u64(0));
            $($setup(&mut *layer, case)?;)?
            check_batch_block::<_, $n>(&mut *layer, case, false $(|| $kinks)?)
        }
        Block {
            operation: $op,
            hyper: json!($hyper),
            input: &[$($i),*],
            output: &[$($o),*],
            runs: [("f64", run::<f64>), ("f32", run::<f32>)],
        }
    }};
}

/// The registered blocks. One line per configuration; see the module documentation.
fn registry() -> Vec<Block> {
    vec![
        block!("Conv2d" {"in_channels": 3, "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "groups": 1, "bias": true},
            [2, 3, 9, 9] => [2, 4, 5, 5], |T| Conv2d<T, 3, 4, 3, 2, 1, 9, 9, 5, 5>, ["weight", "bias"]),
        block!("Conv2d" {"in_channels": 2, "out_channels": 3, "kernel": 7, "stride": 2, "padding": 3, "groups": 1, "bias": false},
            [2, 2, 15, 15] => [2, 3, 8, 8], |T| Conv2d<T, 2, 3, 7, 2, 3, 15, 15, 8, 8>, ["weight", "bias"]),
        block!("Conv2d" {"in_channels": 4, "out_channels": 6, "kernel": 1, "stride": 2, "padding": 0, "groups": 1, "bias": false},
            [2, 4, 7, 7] => [2, 6, 4, 4], |T| Conv2d<T, 4, 6, 1, 2, 0, 7, 7, 4, 4>, ["weight", "bias"]),
        block!("Conv2d" {"in_channels": 3, "out_channels": 2, "kernel": 11, "stride": 4, "padding": 2, "groups": 1, "bias": true},
            [2, 3, 31, 31] => [2, 2, 7, 7], |T| Conv2d<T, 3, 2, 11, 4, 2, 31, 31, 7, 7>, ["weight", "bias"]),
        block!("Linear" {"in_features": 5, "out_features": 3, "bias": true},
            [2, 5] => [2, 3], |T| Linear<T, 5, 3>, ["weight", "bias"]),
        block!("MaxPool2d" {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": false},
            [2, 4, 9, 9] => [2, 4, 5, 5], |T| MaxPool2d<T, 4, 9, 9, 3, 2, 5, 5, 1>, []),
        block!("MaxPool2d" {"kernel": 3, "stride": 2, "padding": 0, "ceil_mode": true},
            [2, 4, 10, 10] => [2, 4, 5, 5], |T| MaxPool2d<T, 4, 10, 10, 3, 2, 5, 5, 0, true>, []),
        block!("MaxPool2d" {"kernel": 2, "stride": 2, "padding": 0, "ceil_mode": false},
            [2, 4, 7, 7] => [2, 4, 3, 3], |T| MaxPool2d<T, 4, 7, 7, 2, 2, 3, 3>, []),
        block!("AvgPool2d" {"kernel": 2, "stride": 2, "padding": 0, "ceil_mode": false, "count_include_pad": true},
            [2, 4, 8, 8] => [2, 4, 4, 4], |T| AvgPool2d<T, 4, 8, 8, 2, 2, 4, 4>, []),
        block!("AvgPool2d" {"kernel": 3, "stride": 1, "padding": 1, "ceil_mode": false, "count_include_pad": true},
            [2, 4, 6, 6] => [2, 4, 6, 6], |T| AvgPool2d<T, 4, 6, 6, 3, 1, 6, 6, 1>, []),
        block!("AvgPool2d" {"kernel": 3, "stride": 1, "padding": 1, "ceil_mode": false, "count_include_pad": false},
            [2, 4, 6, 6] => [2, 4, 6, 6], |T| AvgPool2d<T, 4, 6, 6, 3, 1, 6, 6, 1, false, false>, []),
        block!("AdaptiveAvgPool2d" {"output_size": 1},
            [2, 4, 5, 5] => [2, 4, 1, 1], |T| GlobalAvgPool2d<T, 4, 5, 5>, []),
        block!("LocalResponseNorm" {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
            [2, 7, 3, 3] => [2, 7, 3, 3], |T| LocalResponseNorm<T, 7, 3, 3, 5>, [], setup lrn_constants),
        block!("LocalResponseNorm" {"size": 4, "alpha": 0.5, "beta": 0.75, "k": 1.0},
            [2, 7, 3, 3] => [2, 7, 3, 3], |T| LocalResponseNorm<T, 7, 3, 3, 4>, [], setup lrn_constants),
        block!("Conv2d" {"in_channels": 4, "out_channels": 6, "kernel": 3, "stride": 1, "padding": 1, "groups": 2, "bias": true},
            [2, 4, 6, 6] => [2, 6, 6, 6], |T| GroupedConv2d<T, 4, 6, 2, 2, 3, 1, 1, 6, 6, 6, 6>, ["weight", "bias"]),
        block!("Conv2d" {"in_channels": 4, "out_channels": 4, "kernel": 3, "stride": 1, "padding": 1, "groups": 4, "bias": true},
            [2, 4, 6, 6] => [2, 4, 6, 6], |T| DepthwiseConv2d<T, 4, 3, 1, 1, 6, 6, 6, 6>, ["weight", "bias"]),
        batch_block!("BatchNorm2d" {"num_features": 3, "eps": 1e-5, "momentum": 0.1, "affine": true},
            [3, 3, 4, 4] => [3, 3, 4, 4], N = 3, |T| BatchNorm2d<T, 3, 4, 4>),
        batch_block!("BasicBlock" {"inplanes": 8, "planes": 8, "stride": 1, "downsample": null},
            [2, 8, 6, 6] => [2, 8, 6, 6], N = 2, |T| BasicIdentity<T, 8, 6>),
        batch_block!("BasicBlock" {"inplanes": 4, "planes": 8, "stride": 2, "downsample": "conv1x1 s2 + BN"},
            [2, 4, 7, 7] => [2, 8, 4, 4], N = 2, |T| BasicDown<T, 4, 8, 7, 4>),
        batch_block!("Inception" {"in_channels": 8, "ch1x1": 4, "ch3x3red": 3, "ch3x3": 5, "ch5x5red": 2, "ch5x5": 3, "pool_proj": 2, "bn_eps": 0.001},
            [2, 8, 5, 5] => [2, 14, 5, 5], N = 2, |T| Inception<T>, setup inception_setup),
        batch_block!("_DenseLayer" {"num_input_features": 6, "growth_rate": 4, "bn_size": 2, "drop_rate": 0.0},
            [2, 6, 6, 6] => [2, 4, 6, 6], N = 2, |T| DenseLayer<T, 6, 6>),
        batch_block!("_DenseBlock" {"num_layers": 3, "num_input_features": 6, "bn_size": 2, "growth_rate": 4, "drop_rate": 0.0},
            [2, 6, 6, 6] => [2, 18, 6, 6], N = 2, |T| DenseBlock<T>),
        batch_block!("_Transition" {"num_input_features": 18, "num_output_features": 9},
            [2, 18, 6, 6] => [2, 9, 3, 3], N = 2, |T| Transition<T>),
        batch_block!("ResNet-20" {"n": 3, "widths": [16, 32, 64], "in_channels": 1, "num_classes": 10, "shortcut": "B (1x1 conv + BN projection)"},
            [2, 1, 32, 32] => [2, 10], N = 2, |T| CifarResNet20<T>, kinks true),
    ]
}

/// GoogLeNet's batch-norm eps (`hyper.bn_eps`) is the module type's (`Eps1e3`, which `init`
/// gave every batch norm); a file with another would need another type.
fn inception_setup<T: Scalar>(_module: &mut Inception<T>, case: &Case) -> Result<(), String> {
    use constnet::BatchNormEps;
    let eps = case.hyper_f64("bn_eps")?;
    if eps != constnet::Eps1e3::EPS {
        return Err(format!("bn_eps {eps}: the Inception type has eps 1e-3"));
    }
    Ok(())
}

/// LRN's `alpha`, `beta` and `k` from the file's `hyper` (the size is the type's).
fn lrn_constants<T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize>(
    layer: &mut LocalResponseNorm<T, C, H, W, SIZE>,
    case: &Case,
) -> Result<(), String> {
    let [alpha, beta, k] = ["alpha", "beta", "k"].map(|key| case.hyper_f64(key));
    *layer = LocalResponseNorm::new(T::from_f64(alpha?), T::from_f64(beta?), T::from_f64(k?));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Files.
// ---------------------------------------------------------------------------------------------

/// Every fixture file, sorted.
fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("tests/data/arch/blocks")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The reason a pending case waits, if `case` is in [`PENDING`].
fn pending(case: &str) -> Option<&'static str> {
    PENDING
        .iter()
        .find(|(p, _)| matches_pattern(p, case))
        .map(|&(_, why)| why)
}

fn matches_pattern(pattern: &str, case: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => case.starts_with(prefix),
        None => case == pattern,
    }
}

/// What became of one file.
enum Outcome {
    Passed(Vec<String>),
    Pending(&'static str),
    Failed(String),
}

/// Checks one file against the registry.
fn run_file(path: &Path, registry: &[Block]) -> Outcome {
    let file = file_name(path);
    let bytes = std::fs::read(path).expect("readable fixture");
    let case = match Case::parse(&bytes) {
        Ok(case) => case,
        Err(e) => return Outcome::Failed(format!("{file}: {e}")),
    };
    let found: Vec<&Block> = registry
        .iter()
        .filter(|b| {
            b.operation == case.operation
                && b.hyper == case.hyper
                && b.input == case.input_shape
                && b.output == case.output_shape
        })
        .collect();
    let block = match (found.as_slice(), pending(&case.name)) {
        ([], Some(why)) => return Outcome::Pending(why),
        ([], None) => {
            return Outcome::Failed(format!(
                "{file}: no constnet block for {} {} {:?} → {:?} is available yet (case `{}`); \
                 register one in blocks_golden.rs",
                case.operation, case.hyper, case.input_shape, case.output_shape, case.name
            ));
        }
        ([block], None) => block,
        ([_], Some(_)) => {
            return Outcome::Failed(format!(
                "{file}: case `{}` has a registered block but is still listed in PENDING: \
                 remove it there",
                case.name
            ));
        }
        _ => return Outcome::Failed(format!("{file}: {} registry entries match", found.len())),
    };
    let mut lines = Vec::new();
    for (scalar, run) in block.runs {
        match run(&case) {
            Ok(worst) => {
                let worst = worst.iter().max_by(|a, b| a.ratio.total_cmp(&b.ratio));
                if let Some(w) = worst {
                    lines.push(format!(
                        "{scalar}: worst {} [{}] |Δ| {:.1e} ({:.1e} of tol)",
                        w.tensor,
                        w.index,
                        (w.ours - w.theirs).abs(),
                        w.ratio
                    ));
                }
            }
            Err(e) => return Outcome::Failed(format!("{file} ({} in {scalar}): {e}", case.name)),
        }
    }
    let unread = case.unread();
    if !unread.is_empty() {
        return Outcome::Failed(format!(
            "{file}: tensors never compared or loaded: {unread:?}"
        ));
    }
    Outcome::Passed(lines)
}

/// Every file passes, or is pending; the worst error of each file is printed.
#[test]
fn every_golden_block_matches_pytorch_or_is_pending() {
    let registry = registry();
    let mut failures = Vec::new();
    let (mut passed, mut waiting) = (0, 0);
    for path in files() {
        let file = file_name(&path);
        match run_file(&path, &registry) {
            Outcome::Passed(lines) => {
                passed += 1;
                println!("ok       {file:45} {}", lines.join("; "));
            }
            Outcome::Pending(why) => {
                waiting += 1;
                println!("pending  {file:45} waits for {why}");
            }
            Outcome::Failed(e) => {
                println!("FAILED   {e}");
                failures.push(e);
            }
        }
    }
    println!(
        "{passed} passed, {waiting} pending, {} failed",
        failures.len()
    );
    assert!(passed > 0, "no fixture ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The list of pending cases stays true: each pattern names at least one file's case.
#[test]
fn every_pending_pattern_names_a_fixture() {
    let cases: Vec<String> = files()
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            Case::parse(&bytes).unwrap().name
        })
        .collect();
    for (pattern, _) in PENDING {
        assert!(
            cases.iter().any(|c| matches_pattern(pattern, c)),
            "PENDING has `{pattern}`, which matches no fixture"
        );
    }
}

/// `index.json` and the directory agree: every case listed has its file, every file is
/// listed, so a file missing from the copy is noticed.
#[test]
fn the_index_lists_exactly_the_files() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/index.json")).unwrap())
            .unwrap();
    let mut listed: Vec<String> = index["cases"]
        .as_object()
        .expect("index.cases")
        .values()
        .map(|c| c["file"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let present: Vec<String> = files().iter().map(|p| file_name(p)).collect();
    assert_eq!(listed, present);
    assert_eq!(present.len(), 31);
}

/// A case name against the patterns of [`PENDING`].
#[test]
fn pending_patterns_match_by_prefix_or_whole_name() {
    assert!(matches_pattern("dense_*", "dense_layer_eval"));
    assert!(!matches_pattern("dense_*", "depthwise"));
    assert!(matches_pattern("lrn", "lrn") && !matches_pattern("lrn", "lrn_size4"));
}
