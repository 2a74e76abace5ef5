//! Shared parts of the PyTorch golden tests (`blocks_golden.rs`): reading a fixture file's
//! `meta` and tensors, loading a layer from it, running it and comparing with tolerance.
//!
//! * [`Case`] is one `.safetensors` fixture: `meta` (operation, `hyper`, shapes) and its
//!   tensors, read as `f64` with a dtype and shape check; it notes which tensors were read, so
//!   a test can insist that none was ignored.
//! * [`compare`] checks a result against PyTorch's numbers, `f64` to 1e-9 relative (1e-12
//!   absolute), `f32` to 1e-4 of the tensor's largest magnitude, and returns the worst
//!   element (or an error naming it).
//! * [`check_block`] runs a layer over every sample of a case, forward and backward, and
//!   compares output, input gradient and parameter gradients.

use std::cell::RefCell;
use std::collections::BTreeSet;

use constnet::{BatchLayer, Layer, Pass, Scalar, Sgd, Tensor, TensorKind, zeroed_box};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde_json::Value;

/// `f64` tolerance: relative, or absolute for values near zero (as `pytorch_golden.rs`).
pub(crate) const F64_REL: f64 = 1e-9;
pub(crate) const F64_ABS: f64 = 1e-12;
/// `f32` tolerance, relative to the largest magnitude in the tensor.
pub(crate) const F32_OF_MAX: f64 = 1e-4;

/// One fixture file: its `meta` and its tensors, with a record of which tensors were read.
pub(crate) struct Case<'a> {
    pub(crate) name: String,
    pub(crate) operation: String,
    pub(crate) hyper: Value,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) output_shape: Vec<usize>,
    /// Whether the file ran its module in training mode (`meta.mode` starts with `train`).
    pub(crate) train: bool,
    tensors: SafeTensors<'a>,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Case<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, String> {
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
            train: meta["mode"]
                .as_str()
                .is_some_and(|m| m.starts_with("train")),
            tensors,
            read: RefCell::default(),
        })
    }

    /// Number `key` of `hyper`.
    pub(crate) fn hyper_f64(&self, key: &str) -> Result<f64, String> {
        self.hyper[key]
            .as_f64()
            .ok_or(format!("hyper.{key} is not a number"))
    }

    /// Whether the file has tensor `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.tensors.tensor(name).is_ok()
    }

    /// Tensor `name` as `f64`s, after checking that it is F64 and has `shape` (or, if
    /// `shape` is `None`, any shape), and noting that it was read.
    pub(crate) fn f64s(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f64>, String> {
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

    /// Tensor `name` as `i64`s (an I64 tensor: a counter, the targets), noting that it was
    /// read.
    pub(crate) fn i64s(&self, name: &str) -> Result<Vec<i64>, String> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| format!("no tensor `{name}`"))?;
        if view.dtype() != Dtype::I64 {
            return Err(format!("`{name}` is {:?}, not I64", view.dtype()));
        }
        self.read.borrow_mut().insert(name.to_string());
        Ok(view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }

    /// The tensors nobody read.
    pub(crate) fn unread(&self) -> Vec<String> {
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
pub(crate) fn operation(module: &str) -> &str {
    let head = module.split('(').next().unwrap_or(module).trim_end();
    head.rsplit([' ', '.']).next().unwrap_or(head)
}

/// The shape of one sample's tensor: `[C, H, W]` for maps, `[N]` for vectors (a scalar's is
/// empty).
pub(crate) trait Dims {
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
pub(crate) fn squeezed(dims: &[usize]) -> &[usize] {
    let end = dims.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    &dims[..end]
}

/// The worst element of one comparison: `ratio` is its error over its allowed error.
pub(crate) struct Worst {
    pub(crate) tensor: String,
    pub(crate) index: usize,
    pub(crate) ours: f64,
    pub(crate) theirs: f64,
    pub(crate) ratio: f64,
}

/// Compares `ours` with PyTorch's `theirs` under the tolerance of `T` (see the module
/// documentation), returning the element with the largest error relative to what is allowed.
pub(crate) fn compare<T: Scalar>(
    tensor: &str,
    ours: &[T],
    theirs: &[f64],
) -> Result<Worst, String> {
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
pub(crate) fn check_block<L: Layer>(
    layer: &mut L,
    case: &Case,
    params: &[&str],
) -> Result<Vec<Worst>, String>
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

/// Past a kink, how far an `f32` gradient may be from PyTorch's `f64` one, relative to the
/// tensor's largest magnitude: 100 times [`F32_OF_MAX`] (the CIFAR ResNet's worst is 3.8e-3).
const KINKED_OF_MAX: f64 = 1e-2;

/// [`compare`], or with `kinks` the looser bound [`KINKED_OF_MAX`], printing how many
/// values miss the `f32` tolerance (see [`check_batch_block`]).
fn compare_at_kinks<T: Scalar>(
    tensor: &str,
    ours: &[T],
    theirs: &[f64],
    kinks: bool,
) -> Result<Worst, String> {
    if !kinks {
        return compare(tensor, ours, theirs);
    }
    let largest = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // Each value's difference over the largest magnitude; a NaN counts as infinitely far.
    let off: Vec<f64> = (0..ours.len())
        .map(|i| match (ours[i].to_f64() - theirs[i]).abs() / largest {
            d if d.is_nan() => f64::INFINITY,
            d => d,
        })
        .collect();
    let missed = off.iter().filter(|&&d| d > F32_OF_MAX).count();
    let worst = off.iter().fold(0.0, |m: f64, &d| m.max(d));
    if missed > 0 {
        println!(
            "         {tensor}: f32 after a kink: {missed} of {} values miss 1e-4 of the largest; worst {worst:.1e} of it",
            ours.len()
        );
    }
    if worst > KINKED_OF_MAX {
        return Err(format!(
            "{tensor}: f32 differs by {worst:.1e} of its largest value, more than a kink explains ({KINKED_OF_MAX:e})"
        ));
    }
    Ok(Worst {
        tensor: tensor.to_string(),
        index: 0,
        ours: 0.0,
        theirs: 0.0,
        ratio: 0.0,
    })
}

/// The PyTorch name of tensor `i` of `kind` of `L`.
fn name_of<L: Layer>(kind: TensorKind, i: usize) -> String {
    let mut name = String::new();
    L::tensor_name(kind, i, &mut name).expect("a String takes any name");
    name
}

/// Loads the case into `layer` by the names its type gives its parts (`param.<name>`,
/// `buffer.<name>` for buffers and counters), runs the batch of `N` in the file's mode,
/// back-propagates `grad.output`, and compares output, input gradient and every parameter
/// gradient; then lets an optimizer step fold the batch statistics into the buffers (a step
/// of size 0, which leaves the parameters as they were) and compares every buffer and
/// counter with `buffer_after.<name>`. Files with `output_eval` (the evaluation-mode output
/// of the state before the pass) and `loss` (cross-entropy for `target`) have those
/// compared too.
///
/// With `kinks` (the 20-layer CIFAR ResNet only), the `f32` run's gradients are held to
/// [`KINKED_OF_MAX`] instead: there one ReLU input lies within `f32` rounding of 0 and takes the other
/// branch than in `f64` (the same on the scalar and every SIMD path; `f64` arithmetic on the
/// `f32`-rounded inputs does not move it), which changes the input gradient over that unit's
/// receptive field (36 values, rows 25–31 and columns 0–5 of image 0) and every weight
/// gradient upstream of it (`layer1.1.bn1` and before; every later one matches to 4e-6 of
/// its largest value). Its forward values, loss and buffers are still checked in `f32`, and
/// everything in `f64`.
pub(crate) fn check_batch_block<L: BatchLayer<N>, const N: usize>(
    layer: &mut L,
    case: &Case,
    kinks: bool,
) -> Result<Vec<Worst>, String>
where
    L::Input: Dims,
    L::Output: Dims,
{
    let t = L::Scalar::from_f64;
    if case.input_shape[0] != N || case.output_shape[0] != N {
        return Err(format!("the file's batch is not {N}"));
    }
    for (what, file, dims) in [
        ("input", &case.input_shape, L::Input::dims()),
        ("output", &case.output_shape, L::Output::dims()),
    ] {
        if squeezed(&file[1..]) != squeezed(&dims) {
            return Err(format!(
                "{what} shape {file:?} does not fit the layer's {dims:?} per sample"
            ));
        }
    }
    for i in 0..L::PARAM_TENSORS {
        let key = format!("param.{}", name_of::<L>(TensorKind::Param, i));
        let values = case.f64s(&key, None)?;
        if values.len() != layer.param(i).len() {
            return Err(format!(
                "{key}: {} values, the layer has {}",
                values.len(),
                layer.param(i).len()
            ));
        }
        layer
            .param_mut(i)
            .iter_mut()
            .zip(&values)
            .for_each(|(p, &v)| *p = t(v));
    }
    for i in 0..L::BUFFER_TENSORS {
        let key = format!("buffer.{}", name_of::<L>(TensorKind::Buffer, i));
        let values = case.f64s(&key, None)?;
        if values.len() != layer.buffer(i).len() {
            return Err(format!(
                "{key}: {} values, the layer has {}",
                values.len(),
                layer.buffer(i).len()
            ));
        }
        layer
            .buffer_mut(i)
            .iter_mut()
            .zip(&values)
            .for_each(|(p, &v)| *p = t(v));
    }
    for i in 0..L::COUNTERS {
        let key = format!("buffer.{}", name_of::<L>(TensorKind::Counter, i));
        *layer.counter_mut(i) = case.i64s(&key)?[0] as u64;
    }
    let mut x = zeroed_box::<[L::Input; N]>();
    let mut g = zeroed_box::<[L::Output; N]>();
    let mut y = zeroed_box::<[L::Output; N]>();
    let mut gx = zeroed_box::<[L::Input; N]>();
    let fill =
        |dst: &mut [L::Scalar], src: &[f64]| dst.iter_mut().zip(src).for_each(|(d, &s)| *d = t(s));
    fill(
        L::Input::flat_slice_mut(&mut *x),
        &case.f64s("input", Some(&case.input_shape))?,
    );
    fill(
        L::Output::flat_slice_mut(&mut *g),
        &case.f64s("grad.output", Some(&case.output_shape))?,
    );
    L::Input::flat_slice_mut(&mut *gx).fill(t(f64::NAN));
    let mut ws = zeroed_box::<L::BatchWorkspace>();
    let mut worst = Vec::new();
    if case.has("output_eval") {
        layer.infer_batch(&x, &mut y, &mut ws);
        let theirs = case.f64s("output_eval", Some(&case.output_shape))?;
        worst.push(compare("output_eval", L::Output::flat_slice(&*y), &theirs)?);
    }
    if case.train {
        layer.forward_batch_in(&Pass::train(0, 0), &x, &mut y, &mut ws);
    } else {
        layer.forward_batch_in(&Pass::eval(), &x, &mut y, &mut ws);
    }
    let mut grads = zeroed_box::<L>();
    layer.backward_batch(&x, &mut ws, &g, Some(&mut gx), &mut grads);
    let output = case.f64s("output", Some(&case.output_shape))?;
    worst.push(compare("output", L::Output::flat_slice(&*y), &output)?);
    let kinks = kinks && size_of::<L::Scalar>() == 4;
    let grad_input = case.f64s("grad.input", Some(&case.input_shape))?;
    let gx = L::Input::flat_slice(&*gx);
    worst.push(compare_at_kinks("grad.input", gx, &grad_input, kinks)?);
    for i in 0..L::PARAM_TENSORS {
        let key = format!("grad.{}", name_of::<L>(TensorKind::Param, i));
        let theirs = case.f64s(&key, None)?;
        worst.push(compare_at_kinks(&key, grads.param(i), &theirs, kinks)?);
    }
    if case.has("loss") {
        // Cross-entropy, mean over the batch, from our logits.
        let target = case.i64s("target")?;
        let logits = L::Output::flat_slice(&*y);
        let classes = logits.len() / N;
        let mut loss = 0.0;
        for (n, &label) in target.iter().enumerate() {
            let z: Vec<f64> = logits[n * classes..][..classes]
                .iter()
                .map(|v| v.to_f64())
                .collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += (lse - z[label as usize]) / N as f64;
        }
        worst.push(compare("loss", &[t(loss)], &case.f64s("loss", None)?)?);
    }
    Sgd { lr: t(0.0) }.step(layer, &grads);
    for i in 0..L::BUFFER_TENSORS {
        let key = format!("buffer_after.{}", name_of::<L>(TensorKind::Buffer, i));
        worst.push(compare(&key, layer.buffer(i), &case.f64s(&key, None)?)?);
    }
    for i in 0..L::COUNTERS {
        let key = format!("buffer_after.{}", name_of::<L>(TensorKind::Counter, i));
        let theirs = case.i64s(&key)?[0];
        if layer.counter(i) as i64 != theirs {
            return Err(format!(
                "{key}: constnet {}, PyTorch {theirs}",
                layer.counter(i)
            ));
        }
    }
    Ok(worst)
}

/// The harness's own parts: the operation from a description, shape squeezing, and the
/// comparison's verdicts.
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
