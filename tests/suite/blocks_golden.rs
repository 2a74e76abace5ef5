//! The PyTorch golden blocks: every `*.safetensors` in `tests/data/arch/blocks/` (see its
//! `README.md` and `FORMAT.md`) run through the constnet layer of the same configuration.
//!
//! # How a file is checked
//! Each file's `meta` names the operation (the start of `module`, e.g. `AvgPool2d`), its
//! hyper-parameters and the input and output shapes. [`registry`] lists the constnet blocks;
//! the one whose operation, `hyper` (equal as JSON) and shapes all equal the file's runs it:
//! * the parameters `param.<name>` load into [`Layer::param`] by the entry's list of PyTorch
//!   names (a name the file does not have, like the bias of a bias-free convolution, stays
//!   zero and its gradient is not compared), and the entry's `setup` function reads anything else
//!   (constants from `hyper`, buffers);
//! * each sample of `input` runs [`Layer::forward`], then [`Layer::backward`] with its
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
//! [`Layer::param`] order, and if needed a `setup` function `fn(&mut Layer, &Case) -> Result<(),
//! String>`, generic over the scalar, that reads constants or buffers through [`Case`] (see
//! [`lrn_constants`]). Then drop the case from [`PENDING`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use constnet::{
    AvgPool2d, Conv2d, GlobalAvgPool2d, Layer, Linear, LocalResponseNorm, MaxPool2d, Scalar,
    Tensor, zeroed_box,
};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde_json::{Value, json};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/arch/blocks");

/// Cases whose blocks are being written elsewhere, with what they wait for. A trailing `*`
/// matches any ending. They are printed, not failed, while no [`registry`] entry matches.
const PENDING: &[(&str, &str)] = &[
    ("batchnorm_*", "BatchNorm2d (train and eval mode)"),
    (
        "resnet_*",
        "ResNet's BasicBlock (BatchNorm2d, residual sum)",
    ),
    (
        "inception_*",
        "GoogLeNet's Inception (BatchNorm2d, channel concat)",
    ),
    (
        "dense_*",
        "DenseNet's _DenseLayer and _DenseBlock (BatchNorm2d, concat)",
    ),
    ("transition_*", "DenseNet's _Transition (BatchNorm2d)"),
    (
        "cifar_resnet20_mini",
        "the CIFAR ResNet-20 network (BatchNorm2d, BasicBlock)",
    ),
    ("conv_groups2", "grouped convolution"),
    ("depthwise", "depthwise (grouped) convolution"),
];

/// `f64` tolerance: relative, or absolute for values near zero (as `pytorch_golden.rs`).
const F64_REL: f64 = 1e-9;
const F64_ABS: f64 = 1e-12;
/// `f32` tolerance, relative to the largest magnitude in the tensor.
const F32_OF_MAX: f64 = 1e-4;

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
    ]
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

/// One fixture file: its `meta` and its tensors, with a record of which tensors were read.
struct Case<'a> {
    name: String,
    operation: String,
    hyper: Value,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    tensors: SafeTensors<'a>,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Case<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("meta"))
            .ok_or("no `meta` in the header")?;
        let meta: Value = serde_json::from_str(meta).map_err(|e| format!("meta: {e}"))?;
        let shape = |key: &str| -> Result<Vec<usize>, String> {
            meta[key]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .ok_or(format!("meta.{key} is not a shape"))
        };
        let module = meta["module"].as_str().ok_or("no meta.module")?;
        Ok(Self {
            name: meta["case"].as_str().ok_or("no meta.case")?.to_string(),
            operation: operation(module).to_string(),
            hyper: meta["hyper"].clone(),
            input_shape: shape("input_shape")?,
            output_shape: shape("output_shape")?,
            tensors,
            read: RefCell::default(),
        })
    }

    /// Number `key` of `hyper`.
    fn hyper_f64(&self, key: &str) -> Result<f64, String> {
        self.hyper[key]
            .as_f64()
            .ok_or(format!("hyper.{key} is not a number"))
    }

    /// Whether the file has tensor `name`.
    fn has(&self, name: &str) -> bool {
        self.tensors.tensor(name).is_ok()
    }

    /// Tensor `name` as `f64`s, after checking that it is F64 and has `shape` (or, if
    /// `shape` is `None`, any shape), and noting that it was read.
    fn f64s(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f64>, String> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| format!("no tensor `{name}`"))?;
        if view.dtype() != Dtype::F64 {
            return Err(format!("`{name}` is {:?}, not F64", view.dtype()));
        }
        if let Some(shape) = shape.filter(|s| *s != view.shape()) {
            return Err(format!(
                "`{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            ));
        }
        self.read.borrow_mut().insert(name.to_string());
        Ok(view
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }

    /// The tensors nobody read.
    fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        let mut names: Vec<String> = self
            .tensors
            .names()
            .into_iter()
            .filter(|n| !read.contains(*n))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }
}

/// The operation a `module` description starts with: the last word before its first `(`
/// (`torchvision.models.resnet.BasicBlock(8, 8)…` → `BasicBlock`).
fn operation(module: &str) -> &str {
    let head = module.split('(').next().unwrap_or(module).trim_end();
    head.rsplit([' ', '.']).next().unwrap_or(head)
}

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

// ---------------------------------------------------------------------------------------------
// Running and comparing.
// ---------------------------------------------------------------------------------------------

/// The shape of one sample's tensor: `[C, H, W]` for maps, `[N]` for vectors (a scalar's is
/// empty).
trait Dims {
    /// The dimensions, outermost first.
    fn dims() -> Vec<usize>;
}
impl Dims for f32 {
    fn dims() -> Vec<usize> {
        Vec::new()
    }
}
impl Dims for f64 {
    fn dims() -> Vec<usize> {
        Vec::new()
    }
}
impl<E: Dims, const N: usize> Dims for [E; N] {
    fn dims() -> Vec<usize> {
        let mut dims = vec![N];
        dims.extend(E::dims());
        dims
    }
}

/// `dims` without trailing 1s: PyTorch's `[C, 1, 1]` is constnet's `[C]`.
fn squeezed(dims: &[usize]) -> &[usize] {
    let end = dims.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    &dims[..end]
}

/// The worst element of one comparison: `ratio` is its error over its allowed error.
struct Worst {
    tensor: String,
    index: usize,
    ours: f64,
    theirs: f64,
    ratio: f64,
}

/// Compares `ours` with PyTorch's `theirs` under the tolerance of `T` (see the module
/// documentation), returning the element with the largest error relative to what is allowed.
fn compare<T: Scalar>(tensor: &str, ours: &[T], theirs: &[f64]) -> Result<Worst, String> {
    if ours.len() != theirs.len() {
        return Err(format!(
            "{tensor}: {} values, PyTorch has {}",
            ours.len(),
            theirs.len()
        ));
    }
    let is_f64 = size_of::<T>() == 8;
    let largest = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = Worst {
        tensor: tensor.to_string(),
        index: 0,
        ours: f64::NAN,
        theirs: f64::NAN,
        ratio: 0.0,
    };
    for (index, (a, &b)) in ours.iter().zip(theirs).enumerate() {
        let a = Scalar::to_f64(*a);
        let allowed = if is_f64 {
            (F64_REL * b.abs()).max(F64_ABS)
        } else {
            F32_OF_MAX * largest
        };
        // a NaN (ours or theirs) anywhere is the worst
        let ratio = match (a - b).abs() / allowed {
            r if r.is_nan() => f64::INFINITY,
            r => r,
        };
        if ratio > worst.ratio || index == 0 {
            worst = Worst {
                tensor: tensor.to_string(),
                index,
                ours: a,
                theirs: b,
                ratio,
            };
        }
    }
    if worst.ratio > 1.0 {
        return Err(format!(
            "{tensor}[{}]: constnet {:e}, PyTorch {:e}, difference {:e} ({:.3}× the tolerance)",
            worst.index,
            worst.ours,
            worst.theirs,
            worst.ours - worst.theirs,
            worst.ratio
        ));
    }
    Ok(worst)
}

/// Loads the case into `layer` (parameters named `params`, in [`Layer::param`] order), runs
/// every sample forward and backward, and compares output, input gradient and parameter
/// gradients with the file's.
fn check_block<L: Layer>(layer: &mut L, case: &Case, params: &[&str]) -> Result<Vec<Worst>, String>
where
    L::Input: Dims,
    L::Output: Dims,
{
    assert_eq!(
        params.len(),
        L::PARAM_TENSORS,
        "one PyTorch name per parameter tensor"
    );
    let t = L::Scalar::from_f64;
    // Shapes: [N, one sample's dims], as the layer's types say.
    let n = case.input_shape[0];
    for (what, file, dims) in [
        ("input", &case.input_shape, L::Input::dims()),
        ("output", &case.output_shape, L::Output::dims()),
    ] {
        if file[0] != n || squeezed(&file[1..]) != squeezed(&dims) {
            return Err(format!(
                "{what} shape {file:?} does not fit the layer's {dims:?} per sample"
            ));
        }
    }
    // Parameters present in the file load by name; absent ones stay zero, ungraded.
    let mut graded = Vec::new();
    for (i, name) in params.iter().enumerate() {
        let key = format!("param.{name}");
        if !case.has(&key) {
            if case.has(&format!("grad.{name}")) {
                return Err(format!("grad.{name} without {key}"));
            }
            continue;
        }
        let values = case.f64s(&key, None)?;
        if values.len() != layer.param(i).len() {
            return Err(format!(
                "{key} has {} values, parameter tensor {i} {}",
                values.len(),
                layer.param(i).len()
            ));
        }
        for (p, &v) in layer.param_mut(i).iter_mut().zip(&values) {
            *p = t(v);
        }
        graded.push((i, *name));
    }
    let input = case.f64s("input", Some(&case.input_shape))?;
    let output = case.f64s("output", Some(&case.output_shape))?;
    let grad_output = case.f64s("grad.output", Some(&case.output_shape))?;
    let grad_input = case.f64s("grad.input", Some(&case.input_shape))?;

    let (len_in, len_out) = (<L::Input as Tensor>::LEN, <L::Output as Tensor>::LEN);
    let mut x = zeroed_box::<L::Input>();
    let mut y = zeroed_box::<L::Output>();
    let mut g = zeroed_box::<L::Output>();
    let mut gx = zeroed_box::<L::Input>();
    let mut ws = zeroed_box::<L::Workspace>();
    let mut grads = zeroed_box::<L>();
    let (mut ys, mut gxs) = (Vec::new(), Vec::new());
    for s in 0..n {
        for (v, &f) in x.flat_mut().iter_mut().zip(&input[s * len_in..][..len_in]) {
            *v = t(f);
        }
        for (v, &f) in g
            .flat_mut()
            .iter_mut()
            .zip(&grad_output[s * len_out..][..len_out])
        {
            *v = t(f);
        }
        layer.forward(&x, &mut y, &mut ws);
        gx.flat_mut().fill(t(f64::NAN));
        layer.backward(&x, &mut ws, &g, Some(&mut gx), &mut grads);
        ys.extend_from_slice(y.flat());
        gxs.extend_from_slice(gx.flat());
    }
    let mut worst = vec![
        compare("output", &ys, &output)?,
        compare("grad.input", &gxs, &grad_input)?,
    ];
    for (i, name) in graded {
        let key = format!("grad.{name}");
        worst.push(compare(&key, grads.param(i), &case.f64s(&key, None)?)?);
    }
    Ok(worst)
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

/// The harness's own parts: the operation from a description, shape squeezing, patterns,
/// and the comparison's verdicts.
#[test]
fn harness_helpers_behave() {
    assert_eq!(
        operation("AvgPool2d(kernel 2, stride 2) (DenseNet)"),
        "AvgPool2d"
    );
    assert_eq!(
        operation("torchvision.models.resnet.BasicBlock(8, 8), eval"),
        "BasicBlock"
    );
    assert_eq!(
        operation("torchvision BasicBlock(4, 8, stride=2)"),
        "BasicBlock"
    );
    assert_eq!(squeezed(&[4, 1, 1]), &[4]);
    assert_eq!(squeezed(&[1, 5, 1]), &[1, 5]);
    assert!(
        matches_pattern("dense_*", "dense_layer_eval") && !matches_pattern("dense_*", "depthwise")
    );
    assert!(matches_pattern("lrn", "lrn") && !matches_pattern("lrn", "lrn_size4"));
    // f64: 1e-9 relative, 1e-12 absolute
    assert!(compare("t", &[1.0 + 0.9e-9, 0.5e-12], &[1.0, 0.0]).is_ok());
    assert!(compare("t", &[1.0 + 1.1e-9], &[1.0]).is_err());
    assert!(compare("t", &[2e-12], &[0.0]).is_err());
    assert!(compare("t", &[f64::NAN], &[0.0]).is_err());
    // f32: 1e-4 of the tensor's largest magnitude
    assert!(compare("t", &[10.0f32, 0.0009], &[10.0, 0.0]).is_ok());
    assert!(compare("t", &[10.0f32, 0.0011], &[10.0, 0.0]).is_err());
    let worst = compare("t", &[1.0, 1.0 + 4e-10, 1.0 + 2e-10], &[1.0, 1.0, 1.0]).unwrap();
    assert_eq!(worst.index, 1);
}
