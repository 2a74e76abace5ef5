//! The one trait every layer and every chain of layers implements.

use core::fmt;

use num_traits::Zero;
use rand::Rng;

pub use crate::fusion::{ChannelAffine, Epilogue, Fusion};
use crate::mode::{Mode, Pass};
use crate::scalar::Scalar;
use crate::tensor::Tensor;
use crate::zeroed::Zeroable;

/// A differentiable map from one fixed-size tensor to another.
///
/// The shapes are in the types: [`Layer::Input`] and [`Layer::Output`] are nested arrays, and
/// a chain `Chain<A, B>` requires `B: Layer<Input = A::Output>`, so layers whose shapes do not
/// fit together are an ordinary type error. Rules between a layer's own const parameters
/// (for example a convolution's output size) are checked by [`Layer::CHECK`], which every
/// pass forces at compile time; write `const _: () = <MyNet as Layer>::CHECK;` to have
/// `cargo check` and the IDE report them as well.
///
/// The gradient of a layer's parameters has the layer's own type (`grads: &mut Self`), so a
/// network's gradients, momentum buffers and Adam moments are each one more network-shaped
/// value. Parameters are reached as a list of flat tensors ([`Layer::param`]).
///
/// None of the methods allocate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a constnet layer",
    note = "layers are `Conv2d`, `GroupedConv2d`, `MaxPool2d`, `AvgPool2d`, `GlobalAvgPool2d`, `BatchNorm2d`, `LocalResponseNorm`, `Dropout`, `Relu`, `Flatten`, `Linear`, `Softmax`, and `Chain`, `Residual`, `Concat`, `Named` of them"
)]
pub trait Layer: Zeroable + Send + Sync + 'static {
    /// The element type (`f32` or `f64`).
    type Scalar: Scalar;
    /// The tensor this layer reads.
    type Input: Tensor<Scalar = Self::Scalar>;
    /// The tensor this layer writes.
    type Output: Tensor<Scalar = Self::Scalar>;
    /// What the forward pass keeps for the backward pass (and scratch space), fixed-size.
    type Workspace: Zeroable + Send + Sync + 'static;

    /// Compile-time shape rules of this layer (and of every layer in a chain). Evaluating it
    /// fails compilation, with a message naming the layer and the formula, if they do not hold.
    const CHECK: ();
    /// How many parameter tensors the layer has (weights and biases count one each).
    const PARAM_TENSORS: usize;

    /// Computes `output` from `input`, storing in `ws` what [`Layer::backward`] needs.
    ///
    /// This is a training pass ([`Pass::train`] with seed 0); see [`Layer::forward_in`].
    fn forward(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace);

    /// [`Layer::forward`] in the mode and with the seed that `pass` gives (see
    /// [`crate::mode`]): an evaluation pass that a backward pass may follow, or a training
    /// pass whose dropout masks depend on the run's seed and step. Layers that behave the same
    /// in both modes need not implement it; combinators pass it on.
    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::Workspace,
    ) {
        let _ = pass;
        self.forward(input, output, ws);
    }

    /// The forward pass when no backward pass follows: the same `output` as
    /// [`Layer::forward`], but `ws` may be left unfit for [`Layer::backward`] (max pooling
    /// skips recording its winners). Classification ([`Chain::probabilities`],
    /// [`BatchLayer::infer_batch`]) runs it. One difference: where a pooling window's
    /// maximum is a zero of both signs, max pooling may return `+0.0` where `forward`
    /// returns `-0.0` (equal as numbers; LeNet-5's pools follow ReLUs, which give `+0.0`).
    ///
    /// [`Chain::probabilities`]: crate::Chain::probabilities
    /// [`BatchLayer::infer_batch`]: crate::BatchLayer::infer_batch
    fn infer(&self, input: &Self::Input, output: &mut Self::Output, ws: &mut Self::Workspace) {
        self.forward(input, output, ws);
    }

    /// What this layer is as an [`Epilogue`], if it is one (a ReLU): an element-wise map that
    /// the layer before it can apply while it writes its own output. In [`Layer::infer`], a
    /// [`Chain`](crate::Chain) of a layer that [`Layer::APPLIES_EPILOGUES`] and an epilogue
    /// runs the first layer's [`Layer::infer_fused`] with it and skips the second: no pass of
    /// its own over the maps.
    const EPILOGUE: Option<Epilogue> = None;

    /// Whether [`Layer::infer_fused`] applies an epilogue while it writes the output (batch
    /// norm, a residual add, a chain whose last layer does), rather than as a pass after.
    const APPLIES_EPILOGUES: bool = false;

    /// [`Layer::infer`] followed by `fusion`'s maps on the output: a per-channel affine map
    /// (batch norm after this layer), then an element-wise [`Epilogue`] (a ReLU). Layers that
    /// can apply them while they write their output do (a convolution on its sums, batch
    /// norm and residual adds the epilogue); combinators pass them on to their last part;
    /// the others run them as a pass of their own. The result is the same, bit for bit,
    /// either way. A [`Chain`](crate::Chain) passes a layer the [`Layer::EPILOGUE`] or the
    /// [`Layer::channel_affine`] map of the layer after it when the first
    /// [`Layer::APPLIES_EPILOGUES`] or [`Layer::APPLIES_CHANNEL_AFFINE`].
    ///
    /// ```
    /// use constnet::{sequential, BatchNorm2d, Epilogue, Layer, Maps, Pass, Relu, zeroed_box};
    /// type BnRelu = sequential![BatchNorm2d<f32, 1, 1, 2>, Relu<Maps<f32, 1, 1, 2>>];
    /// assert_eq!(<Relu<Maps<f32, 1, 1, 2>> as Layer>::EPILOGUE, Some(Epilogue::Relu));
    /// let mut net = zeroed_box::<BnRelu>();
    /// (net.first.weight, net.first.running_var) = ([1.0], [1.0]);
    /// let x: Maps<f32, 1, 1, 2> = [[[-2.0, 3.0]]];
    /// let (mut fused, mut apart) = ([[[0.0; 2]]], [[[0.0; 2]]]);
    /// // Batch norm applies the ReLU as it writes: one pass over the maps.
    /// net.infer(&x, &mut fused, &mut zeroed_box());
    /// // The two layers one after the other, the batch norm's output kept.
    /// net.forward_in(&Pass::eval(), &x, &mut apart, &mut zeroed_box());
    /// assert_eq!(fused, apart);
    /// assert_eq!(fused, [[[0.0, 3.0]]]); // (zeroed, the batch norm's ε is 0)
    /// ```
    ///
    /// A layer that applies no map itself runs them after its pass:
    ///
    /// ```
    /// use constnet::{ChannelAffine, Epilogue, Fusion, Layer, Relu};
    /// let x = [-1.0f32, 2.0, 3.0, 4.0];
    /// let mut y = [0.0; 4];
    /// // Two channels of two values: (x − 1)·2 + 0.5 and (x − 0)·(−1) + 0, then ReLU.
    /// let affine = ChannelAffine { mean: &[1.0, 0.0], scale: &[2.0, -1.0], shift: &[0.5, 0.0] };
    /// let fusion = Fusion { affine: Some(affine), ..Fusion::epilogue(Epilogue::Relu) };
    /// Relu::<[f32; 4]>::new().infer_fused(&x, &mut y, &mut (), fusion);
    /// assert_eq!(y, [0.0, 2.5, 0.0, 0.0]);
    /// ```
    fn infer_fused(
        &self,
        input: &Self::Input,
        output: &mut Self::Output,
        ws: &mut Self::Workspace,
        fusion: Fusion<'_, Self::Scalar>,
    ) {
        self.infer(input, output, ws);
        fusion.apply(output.flat_mut());
    }

    /// What this layer is in evaluation as a [`ChannelAffine`] map, if it is one (batch
    /// norm): `f` gets the map, built on the stack, and its result is returned. In
    /// [`Layer::infer`], a [`Chain`](crate::Chain) of a layer that
    /// [`Layer::APPLIES_CHANNEL_AFFINE`] and this one runs the first layer's
    /// [`Layer::infer_fused`] with the map and skips the second: a convolution
    /// followed by batch norm writes the normalised values (and a ReLU after them) as it
    /// stores its sums. `None` (the default) if the layer is no such map.
    fn channel_affine<R>(&self, f: impl FnOnce(ChannelAffine<'_, Self::Scalar>) -> R) -> Option<R> {
        let _ = f;
        None
    }

    /// Whether [`Layer::infer_fused`] applies a [`ChannelAffine`] map while it writes the
    /// output (a convolution), rather than as a pass after.
    const APPLIES_CHANNEL_AFFINE: bool = false;

    /// Back-propagates `grad_output` (∂E/∂output) through the layer.
    ///
    /// `input` and `ws` must be those of the latest [`Layer::forward`]. Parameter gradients are
    /// *added* to `grads` (so a mini-batch sums per-sample gradients); the input gradient, if
    /// asked for, is *written* to `grad_input`. Pass `None` to skip it (the first layer of a
    /// network rarely needs it).
    fn backward(
        &self,
        input: &Self::Input,
        ws: &mut Self::Workspace,
        grad_output: &Self::Output,
        grad_input: Option<&mut Self::Input>,
        grads: &mut Self,
    );

    /// Parameter tensor `i` (`i < PARAM_TENSORS`), flat. Panics if `i` is out of range.
    fn param(&self, i: usize) -> &[Self::Scalar];
    /// Parameter tensor `i` (`i < PARAM_TENSORS`), flat and mutable. Panics if out of range.
    fn param_mut(&mut self, i: usize) -> &mut [Self::Scalar];

    /// How many buffer tensors the layer has: state that is saved and loaded with the
    /// parameters but not trained (batch normalisation's running mean and variance).
    const BUFFER_TENSORS: usize = 0;

    /// Buffer tensor `i` (`i < BUFFER_TENSORS`), flat. Panics if `i` is out of range.
    fn buffer(&self, i: usize) -> &[Self::Scalar] {
        no_such_tensor("buffer", i)
    }

    /// Buffer tensor `i` (`i < BUFFER_TENSORS`), flat and mutable. Panics if out of range.
    fn buffer_mut(&mut self, i: usize) -> &mut [Self::Scalar] {
        no_such_tensor("buffer", i)
    }

    /// How many integer counters the layer keeps (batch normalisation's
    /// `num_batches_tracked`); saved and loaded like buffers, as `i64` in safetensors.
    const COUNTERS: usize = 0;

    /// Counter `i` (`i < COUNTERS`). Panics if `i` is out of range.
    fn counter(&self, i: usize) -> u64 {
        no_such_tensor("counter", i)
    }

    /// Counter `i` (`i < COUNTERS`), mutable. Panics if `i` is out of range.
    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        no_such_tensor("counter", i)
    }

    /// Folds the statistics a training backward pass left in the buffer slots of a gradient
    /// value (`stats`, of the layer's own type) into this layer's buffers. Every optimizer
    /// step calls it after updating the parameters; layers without buffers do nothing.
    ///
    /// A training pass reads the network by shared reference, so that threads can share it;
    /// batch normalisation therefore adds each batch's mean and variance to the gradient
    /// value (which the trainer sums over its threads), and this method applies the momentum
    /// update once per step.
    fn update_buffers(&mut self, stats: &Self) {
        let _ = stats;
    }

    /// How many positions this layer takes in a sequence ([`Chain`](crate::Chain)): a chain
    /// takes its layers' (it is flattened, as PyTorch's `nn.Sequential` numbers its children
    /// 0, 1, 2, … whatever the nesting of `sequential!`), any other layer one.
    const CHILDREN: usize = 1;

    /// Whether the layer carries its own name ([`Named`](crate::Named)): in a sequence it is
    /// then called by that name instead of its position.
    const NAMED: bool = false;

    /// Writes the name of tensor `i` of `kind`, as PyTorch's `state_dict` names it relative
    /// to this layer: `weight` and `bias` for parameters 0 and 1, `running_mean` and
    /// `running_var` for buffers 0 and 1, `num_batches_tracked` for counter 0 (the names of
    /// PyTorch's layers); combinators prefix their parts' names (`conv1.weight`,
    /// `layer1.0.bn2.running_var`). See [`crate::named`].
    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        const PARAMS: [&str; 2] = ["weight", "bias"];
        const BUFFERS: [&str; 2] = ["running_mean", "running_var"];
        let names: &[&str] = match kind {
            TensorKind::Param => &PARAMS,
            TensorKind::Buffer => &BUFFERS,
            TensorKind::Counter => &["num_batches_tracked"],
        };
        match names.get(i) {
            Some(name) => out.write_str(name),
            None => write!(out, "{kind:?}{i}"),
        }
    }

    /// [`Layer::tensor_name`] of this layer as the child at `position` of a sequence: the
    /// position, a dot and the name, or only the name for a [`Layer::NAMED`] layer.
    fn tensor_name_at(
        kind: TensorKind,
        i: usize,
        position: usize,
        out: &mut dyn fmt::Write,
    ) -> fmt::Result {
        if !Self::NAMED {
            write!(out, "{position}.")?;
        }
        Self::tensor_name(kind, i, out)
    }

    /// The shape of tensor `i` of `kind` as PyTorch stores it (a convolution's weight is
    /// `[C_out, C_in, K, K]`); by default a vector of its length.
    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        match kind {
            TensorKind::Param => Shape::new(&[self.param(i).len()]),
            TensorKind::Buffer => Shape::new(&[self.buffer(i).len()]),
            TensorKind::Counter => Shape::new(&[]),
        }
    }

    /// The output of the layer called `name` ([`Named`](crate::Named)) in the latest
    /// forward pass ([`Layer::forward`], [`Layer::forward_in`]) that used `ws`; `None` if no
    /// such layer keeps its output in `ws` (the last layer's output is the pass's `output`).
    /// A dotted path (`layer1.conv1`) goes through named parts. [`Layer::infer`] does not
    /// keep the output of a layer that applied the [`Epilogue`] after it (a batch norm or a
    /// residual add before a ReLU: [`Layer::APPLIES_EPILOGUES`]) nor those of a
    /// [`Concat`](crate::Concat)'s branches, which it writes straight into the
    /// concatenation; a forward pass keeps them.
    fn activation<'a>(ws: &'a Self::Workspace, name: &str) -> Option<Activation<'a, Self::Scalar>> {
        let _ = (ws, name);
        None
    }

    /// Whether this layer's output is that of the layer called `name` (the layer itself, or
    /// the last layer of a chain, is named `name`).
    fn ends_with(name: &str) -> bool {
        let _ = name;
        false
    }

    /// [`Layer::activation`] of this layer as the child at `position` of a sequence: unless
    /// it is [`Layer::NAMED`], its parts are `position.…` (`layer1.0.conv1` in a stage of
    /// [`Block`](crate::Block)s, `features.0` in a chain of unnamed layers).
    fn activation_at<'a>(
        ws: &'a Self::Workspace,
        name: &str,
        position: usize,
    ) -> Option<Activation<'a, Self::Scalar>> {
        if Self::NAMED {
            return Self::activation(ws, name);
        }
        Self::activation(ws, after_position(name, position)?)
    }

    /// [`Layer::ends_with`] of this layer as the child at `position` of a sequence: unless it
    /// is [`Layer::NAMED`], it is called `position`.
    fn ends_with_at(name: &str, position: usize) -> bool {
        if Self::NAMED {
            return Self::ends_with(name);
        }
        is_position(name, position) || after_position(name, position).is_some_and(Self::ends_with)
    }

    /// Draws fresh random parameters (see each layer for the scheme: convolutions and fully
    /// connected layers draw PyTorch's default, weights and biases alike).
    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R);

    /// Calls `visit` on every layer of the network that is not a combinator, in the network's
    /// order: `Chain`, `Residual`, `Concat`, `Named`, `NoBias` and `Lanes` pass it to their
    /// parts. Settings that are values rather than parameters (a [`Dropout`](crate::Dropout)'s
    /// `p`, a [`LocalResponseNorm`](crate::LocalResponseNorm)'s constants, a batch norm's
    /// `momentum`) are set this way across a network, by downcasting:
    ///
    /// ```
    /// use constnet::{sequential, Dropout, Layer, Linear, zeroed_box};
    /// type Net = sequential![Linear<f32, 4, 4>, Dropout<[f32; 4]>, Linear<f32, 4, 2>, Dropout<[f32; 2]>];
    /// let mut net = zeroed_box::<Net>();
    /// let mut seen = 0;
    /// net.visit_layers_mut(&mut |layer| {
    ///     seen += 1;
    ///     if let Some(drop) = layer.downcast_mut::<Dropout<[f32; 4]>>() {
    ///         drop.p = 0.5;
    ///     }
    /// });
    /// assert_eq!((seen, net.first.first.then.p, net.then.p), (4, 0.5, 0.0));
    /// ```
    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        visit(self)
    }

    /// Number of scalar parameters.
    fn param_count(&self) -> usize {
        (0..Self::PARAM_TENSORS).map(|i| self.param(i).len()).sum()
    }

    /// Sets every parameter, buffer and counter to zero (used on gradient values before a
    /// mini-batch: their buffer slots gather batch statistics).
    fn zero_params(&mut self) {
        for i in 0..Self::PARAM_TENSORS {
            self.param_mut(i).fill(Self::Scalar::zero());
        }
        for i in 0..Self::BUFFER_TENSORS {
            self.buffer_mut(i).fill(Self::Scalar::zero());
        }
        for i in 0..Self::COUNTERS {
            *self.counter_mut(i) = 0;
        }
    }

    /// Adds every parameter, buffer and counter of `other` to `self` (the sum of two
    /// gradient values, for instance two threads' parts of a batch).
    fn add_grads(&mut self, other: &Self) {
        for i in 0..Self::PARAM_TENSORS {
            for (s, &o) in self.param_mut(i).iter_mut().zip(other.param(i)) {
                *s = *s + o;
            }
        }
        add_buffers_and_counters(self, other);
    }
}

/// Adds every buffer and counter of `other` to `sum` (the part of [`Layer::add_grads`]
/// that is not parameters: the trainer shares the parameters' sum out among its threads).
pub(crate) fn add_buffers_and_counters<L: Layer>(sum: &mut L, other: &L) {
    for i in 0..L::BUFFER_TENSORS {
        for (s, &o) in sum.buffer_mut(i).iter_mut().zip(other.buffer(i)) {
            *s = *s + o;
        }
    }
    for i in 0..L::COUNTERS {
        *sum.counter_mut(i) += other.counter(i);
    }
}

/// Whether `name` is the decimal `position`.
fn is_position(name: &str, position: usize) -> bool {
    name.parse::<usize>() == Ok(position)
        && !name.starts_with('+')
        && (name == "0" || !name.starts_with('0'))
}

/// `name` after `position` and a dot (`"3.conv1"` at 3 → `"conv1"`).
fn after_position(name: &str, position: usize) -> Option<&str> {
    let (head, rest) = name.split_once('.')?;
    is_position(head, position).then_some(rest)
}

/// Panics with a clear message on a parameter index that does not exist.
#[cold]
#[track_caller]
pub(crate) fn no_such_param(layer: &str, i: usize) -> ! {
    panic!("{layer} has no parameter tensor {i}")
}

/// Panics with a clear message on a buffer or counter index that does not exist.
#[cold]
#[track_caller]
pub(crate) fn no_such_tensor(kind: &str, i: usize) -> ! {
    panic!("this layer has no {kind} {i}")
}

/// PyTorch's default initialisation of `nn.Conv2d` and `nn.Linear`, weights and biases
/// alike: every value drawn from U(−b, b) with b = 1 / √fan_in, which gives variance
/// 1 / (3·fan_in), a sixth of He (Kaiming) uniform's 2 / fan_in (b = √(6 / fan_in), what the
/// layers drew before, with zero biases).
///
/// PyTorch's `reset_parameters` (`torch/nn/modules/conv.py`, `_ConvNd`, and
/// `torch/nn/modules/linear.py`) draws the weight with `init.kaiming_uniform_(weight,
/// a=math.sqrt(5))`: gain √(2 / (1 + a²)) = √(1/3) and bound gain·√(3 / fan_in) = 1 / √fan_in;
/// then the bias with `init.uniform_(bias, -bound, bound)`, bound = 1 / √fan_in. `fan_in` is
/// what one output sees: `C_in / groups · K · K` for a convolution, `in_features` for a
/// linear layer. (The numbers differ from PyTorch's own, whose generator this is not.)
pub(crate) fn torch_default_uniform<T: Scalar, R: Rng + ?Sized>(
    values: &mut [T],
    fan_in: usize,
    rng: &mut R,
) {
    use rand::RngExt;
    let bound = 1.0 / num_traits::Float::sqrt(fan_in as f64);
    for v in values {
        *v = T::from_f64(rng.random_range(-bound..bound));
    }
}

/// A layer's output kept in a workspace, found by name ([`Layer::activation`]): as its own
/// type, or flat.
#[derive(Clone, Copy)]
pub struct Activation<'a, T> {
    value: &'a dyn core::any::Any,
    flat: &'a [T],
    dims: &'static [usize],
}

impl<'a, T> Activation<'a, T> {
    /// The activation `x`.
    pub fn of<X: Tensor<Scalar = T>>(x: &'a X) -> Self {
        Self {
            value: x,
            flat: x.flat(),
            dims: X::DIMS,
        }
    }

    /// Its dimensions, outermost first ([`Tensor::DIMS`]: `[C, H, W]` for feature maps).
    pub fn dims(&self) -> &'static [usize] {
        self.dims
    }

    /// Its elements in row-major order.
    pub fn flat(&self) -> &'a [T] {
        self.flat
    }

    /// The activation as tensor type `X`, or `None` if it is of another type.
    pub fn get<X: 'static>(&self) -> Option<&'a X> {
        self.value.downcast_ref()
    }
}

impl<T> fmt::Debug for Activation<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Activation({} values)", self.flat.len())
    }
}

/// Which list of a layer's tensors: trained parameters, floating-point buffers, or integer
/// counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// [`Layer::param`].
    Param,
    /// [`Layer::buffer`].
    Buffer,
    /// [`Layer::counter`].
    Counter,
}

/// A tensor's shape as PyTorch stores it: up to four dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; 4],
    rank: usize,
}

/// How many tensors of `kind` layer `L` has.
pub const fn count<L: Layer>(kind: TensorKind) -> usize {
    match kind {
        TensorKind::Param => L::PARAM_TENSORS,
        TensorKind::Buffer => L::BUFFER_TENSORS,
        TensorKind::Counter => L::COUNTERS,
    }
}

impl Shape {
    /// The shape with these dimensions.
    ///
    /// # Panics
    /// With more than four dimensions.
    pub const fn new(dims: &[usize]) -> Self {
        assert!(dims.len() <= 4, "at most four dimensions");
        let mut d = [0; 4];
        let mut i = 0;
        while i < dims.len() {
            d[i] = dims[i];
            i += 1;
        }
        Self {
            dims: d,
            rank: dims.len(),
        }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// The number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Whether the shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Mean and variance of `values`.
    fn moments(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    /// 20,000 draws at LeNet conv2's fan-in, 150: all within ±1/√150 (He-uniform's bound is
    /// √6 times wider), the largest near it, the mean near zero and the variance 1/450
    /// (He-uniform's is 2/150, six times more: the test fails on He-uniform draws, as its end
    /// checks). The variance's relative standard error is √(0.8 / 20,000) ≈ 0.6%, so 3% is
    /// five of them.
    #[test]
    fn torch_default_uniform_has_pytorchs_bound_and_variance() {
        let fan_in = 150;
        let mut values = vec![0.0f64; 20_000];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        torch_default_uniform(&mut values, fan_in, &mut rng);
        let bound = 1.0 / (fan_in as f64).sqrt();
        assert!(values.iter().all(|v| v.abs() < bound));
        assert!(values.iter().fold(0.0f64, |m, v| m.max(v.abs())) > 0.999 * bound);
        let (mean, var) = moments(&values);
        let want = 1.0 / (3.0 * fan_in as f64);
        assert!(
            mean.abs() < 5.0 * (want / values.len() as f64).sqrt(),
            "mean {mean}"
        );
        assert!(
            (var / want - 1.0).abs() < 0.03,
            "variance {var}, want {want}"
        );
        // He-uniform, for contrast, fails both the bound and the variance.
        use rand::RngExt;
        let he = (6.0 / fan_in as f64).sqrt();
        values.fill_with(|| rng.random_range(-he..he));
        assert!(values.iter().any(|v| v.abs() >= bound));
        assert!((moments(&values).1 / want - 1.0).abs() > 1.0);
    }
}
