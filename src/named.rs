//! Names for a network's parts, as PyTorch spells them: `conv1.weight`,
//! `layer1.0.downsample.1.running_var`.
//!
//! A name is a type ([`name!`](crate::name)), so it appears in the network's type and in
//! compile errors (`Named<Conv1, Conv2d<f32, 1, 6, 5, …>>`), and costs nothing at run time.
//! The rules follow PyTorch's `state_dict`:
//!
//! * a layer's own tensors are `weight`, `bias`, `running_mean`, `running_var` and
//!   `num_batches_tracked` ([`Layer::tensor_name`]);
//! * [`Named<N, L>`] puts `N`'s name and a dot before `L`'s names;
//! * a [`Chain`](crate::Chain) (any nesting of `sequential!`) is one `nn.Sequential`: its
//!   layers are numbered 0, 1, 2, … (ReLUs and poolings count), or called by their names
//!   when [`Named`];
//! * [`Block<L>`] makes `L` one numbered child of the sequence around it (a ResNet stage's
//!   blocks are `layer1.0`, `layer1.1`, each a chain of its own);
//! * [`Residual`](crate::Residual) and [`Concat`](crate::Concat) add nothing, in a sequence
//!   too: their parts are named (`conv1` … `downsample`; `branch1` … `branch4`), as the
//!   attributes of torchvision's `BasicBlock` and `Inception` are;
//! * names that would repeat (two unnamed chains side by side) are refused when a
//!   `state_dict` is written or read.
//!
//! ```
//! use constnet::{name, sequential, tensor_names, BatchNorm2d, Block, Conv2d, Layer, Maps, Named, Relu};
//! name!(Conv1 = "conv1");
//! name!(Bn1 = "bn1");
//! name!(Layer1 = "layer1");
//! type Unit = sequential![Named<Conv1, Conv2d<f32, 4, 4, 3, 1, 1, 8, 8, 8, 8>>, Named<Bn1, BatchNorm2d<f32, 4, 8, 8>>, Relu<Maps<f32, 4, 8, 8>>];
//! type Stage = Named<Layer1, sequential![Block<Unit>, Block<Unit>]>;
//! let names = tensor_names::<Stage>();
//! // Parameters first, then buffers, then counters, each in the network's order.
//! assert_eq!(names[0], "layer1.0.conv1.weight");
//! assert_eq!(names[2], "layer1.0.bn1.weight");
//! assert_eq!(names[4], "layer1.1.conv1.weight");
//! assert_eq!(names[9], "layer1.0.bn1.running_var");
//! assert_eq!(names[13], "layer1.1.bn1.num_batches_tracked");
//! ```

#[cfg(feature = "alloc")]
extern crate alloc;

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use rand::Rng;

use crate::batch::BatchLayer;
use crate::fused::SgdLayer;
use crate::fusion::{ChannelAffine, Epilogue, Fusion};
use crate::lanes::LaneLayer;
use crate::layer::{Activation, Layer, Shape, TensorKind};
use crate::mode::{Mode, Pass};

/// A name for a part of a network, as a type. Declare one with [`name!`](crate::name).
pub trait Label: Send + Sync + 'static {
    /// The name (`None` for [`Unnamed`]: the part is numbered by its position).
    const NAME: Option<&'static str>;
}

/// Declares a name type: `name!(Conv1 = "conv1");` makes `Conv1`, for
/// [`Named<Conv1, _>`](Named).
#[macro_export]
macro_rules! name {
    ($(#[$doc:meta])* $vis:vis $ty:ident = $name:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $ty;
        impl $crate::named::Label for $ty {
            const NAME: Option<&'static str> = Some($name);
        }
    };
}

/// The label of a [`Block`]: numbered by its position in the sequence around it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unnamed;

impl Label for Unnamed {
    const NAME: Option<&'static str> = None;
}

/// Layer `L` called `N` ([`name!`](crate::name)): its tensors' names get `N`'s name as a
/// prefix, and a sequence calls it by that name instead of its position. Otherwise it is
/// `L` (it dereferences to it) and runs as `L`, on `L`'s workspaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Named<N, L> {
    /// The layer.
    pub layer: L,
    name: PhantomData<N>,
}

/// `L` as one numbered child of the sequence around it, whose own parts are numbered from 0
/// (see [`crate::named`]).
pub type Block<L> = Named<Unnamed, L>;

impl<N, L> Named<N, L> {
    /// `layer` with the name `N`.
    pub const fn new(layer: L) -> Self {
        Self {
            layer,
            name: PhantomData,
        }
    }
}

impl<N, L> Deref for Named<N, L> {
    type Target = L;
    fn deref(&self) -> &L {
        &self.layer
    }
}

impl<N, L> DerefMut for Named<N, L> {
    fn deref_mut(&mut self) -> &mut L {
        &mut self.layer
    }
}

/// The PyTorch names of every tensor of `L`: parameters, then buffers, then counters (the
/// order of [`Layer::param`], [`Layer::buffer`], [`Layer::counter`]).
#[cfg(feature = "alloc")]
pub fn tensor_names<L: Layer>() -> alloc::vec::Vec<alloc::string::String> {
    let mut names = alloc::vec::Vec::new();
    for (kind, n) in [
        (TensorKind::Param, L::PARAM_TENSORS),
        (TensorKind::Buffer, L::BUFFER_TENSORS),
        (TensorKind::Counter, L::COUNTERS),
    ] {
        for i in 0..n {
            let mut name = alloc::string::String::new();
            L::tensor_name(kind, i, &mut name).expect("a String takes any name");
            names.push(name);
        }
    }
    names
}

impl<N: Label, L: Layer> Layer for Named<N, L> {
    type Scalar = L::Scalar;
    type Input = L::Input;
    type Output = L::Output;
    type Workspace = L::Workspace;
    const CHECK: () = L::CHECK;
    const PARAM_TENSORS: usize = L::PARAM_TENSORS;
    const BUFFER_TENSORS: usize = L::BUFFER_TENSORS;
    const COUNTERS: usize = L::COUNTERS;
    const NAMED: bool = N::NAME.is_some();

    fn forward(&self, x: &L::Input, y: &mut L::Output, ws: &mut L::Workspace) {
        self.layer.forward(x, y, ws);
    }

    fn forward_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
    ) {
        self.layer.forward_in(pass, x, y, ws);
    }

    fn infer(&self, x: &L::Input, y: &mut L::Output, ws: &mut L::Workspace) {
        self.layer.infer(x, y, ws);
    }

    const EPILOGUE: Option<Epilogue> = L::EPILOGUE;
    const APPLIES_EPILOGUES: bool = L::APPLIES_EPILOGUES;

    fn infer_fused(
        &self,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut L::Workspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.layer.infer_fused(x, y, ws, fusion);
    }

    fn channel_affine<R>(&self, f: impl FnOnce(ChannelAffine<'_, L::Scalar>) -> R) -> Option<R> {
        self.layer.channel_affine(f)
    }

    const APPLIES_CHANNEL_AFFINE: bool = L::APPLIES_CHANNEL_AFFINE;

    fn backward(
        &self,
        x: &L::Input,
        ws: &mut L::Workspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut Self,
    ) {
        self.layer.backward(x, ws, g, gi, &mut grads.layer);
    }

    fn param(&self, i: usize) -> &[L::Scalar] {
        self.layer.param(i)
    }

    fn param_mut(&mut self, i: usize) -> &mut [L::Scalar] {
        self.layer.param_mut(i)
    }

    fn buffer(&self, i: usize) -> &[L::Scalar] {
        self.layer.buffer(i)
    }

    fn buffer_mut(&mut self, i: usize) -> &mut [L::Scalar] {
        self.layer.buffer_mut(i)
    }

    fn counter(&self, i: usize) -> u64 {
        self.layer.counter(i)
    }

    fn counter_mut(&mut self, i: usize) -> &mut u64 {
        self.layer.counter_mut(i)
    }

    fn update_buffers(&mut self, stats: &Self) {
        self.layer.update_buffers(&stats.layer);
    }

    fn tensor_name(kind: TensorKind, i: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        if let Some(name) = N::NAME {
            write!(out, "{name}.")?;
        }
        L::tensor_name(kind, i, out)
    }

    fn tensor_shape(&self, kind: TensorKind, i: usize) -> Shape {
        self.layer.tensor_shape(kind, i)
    }

    /// A path through this part starts with its name (`layer1.conv1`); a [`Block`] is
    /// transparent.
    fn activation<'a>(ws: &'a L::Workspace, path: &str) -> Option<Activation<'a, L::Scalar>> {
        match N::NAME {
            Some(name) => L::activation(ws, strip(path, name)?),
            None => L::activation(ws, path),
        }
    }

    fn ends_with(path: &str) -> bool {
        match N::NAME {
            Some(name) => path == name || strip(path, name).is_some_and(L::ends_with),
            None => L::ends_with(path),
        }
    }

    fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.layer.init(rng);
    }

    fn visit_layers_mut(&mut self, visit: &mut dyn FnMut(&mut dyn core::any::Any)) {
        self.layer.visit_layers_mut(visit);
    }
}

/// `path` without `name` and the dot after it.
fn strip<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    path.strip_prefix(name)?.strip_prefix('.')
}

impl<N: Label, L: BatchLayer<B>, const B: usize> BatchLayer<B> for Named<N, L> {
    type BatchWorkspace = L::BatchWorkspace;
    const WHOLE_BATCH: bool = L::WHOLE_BATCH;
    const INFER_WHOLE_BATCH: bool = L::INFER_WHOLE_BATCH;

    fn infer_sample_fused(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.layer.infer_sample_fused(n, x, y, ws, fusion);
    }

    fn infer_batch_fused(
        &self,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut Self::BatchWorkspace,
        fusion: Fusion<'_, L::Scalar>,
    ) {
        self.layer.infer_batch_fused(x, y, ws, fusion);
    }

    fn forward_batch(
        &self,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.forward_batch(x, y, ws);
    }

    fn forward_batch_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.forward_batch_in(pass, x, y, ws);
    }

    fn backward_batch(
        &self,
        x: &[L::Input; B],
        ws: &mut Self::BatchWorkspace,
        g: &[L::Output; B],
        gi: Option<&mut [L::Input; B]>,
        grads: &mut Self,
    ) {
        self.layer.backward_batch(x, ws, g, gi, &mut grads.layer);
    }

    fn prepare_forward(&self, ws: &mut Self::BatchWorkspace) {
        self.layer.prepare_forward(ws);
    }

    fn prepare_backward(&self, ws: &mut Self::BatchWorkspace) {
        self.layer.prepare_backward(ws);
    }

    fn infer_batch(
        &self,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.infer_batch(x, y, ws);
    }

    fn forward_sample(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.forward_sample(n, x, y, ws);
    }

    fn forward_sample_in<M: Mode>(
        &self,
        pass: &Pass<M>,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.forward_sample_in(pass, n, x, y, ws);
    }

    fn infer_sample(
        &self,
        n: usize,
        x: &L::Input,
        y: &mut L::Output,
        ws: &mut Self::BatchWorkspace,
    ) {
        self.layer.infer_sample(n, x, y, ws);
    }

    fn backward_sample(
        &self,
        n: usize,
        x: &L::Input,
        ws: &mut Self::BatchWorkspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        grads: &mut Self,
    ) {
        self.layer
            .backward_sample(n, x, ws, g, gi, &mut grads.layer);
    }
}

impl<N: Label, L: SgdLayer> SgdLayer for Named<N, L> {
    fn backward_sgd(
        &mut self,
        x: &L::Input,
        ws: &mut L::Workspace,
        g: &L::Output,
        gi: Option<&mut L::Input>,
        lr: L::Scalar,
    ) {
        self.layer.backward_sgd(x, ws, g, gi, lr);
    }
}

/// Every lane pass and fusion hook of `L`, so that naming a layer changes nothing in how
/// LeNet-5's stack runs.
impl<N: Label, L: LaneLayer<B>, const B: usize> LaneLayer<B> for Named<N, L> {
    type LaneWorkspace = L::LaneWorkspace;
    const LANE_EPILOGUE: Option<Fusion<'static, L::Scalar>> = L::LANE_EPILOGUE;
    const ENDS_IN_RELU: bool = L::ENDS_IN_RELU;
    const MASKS_FOR_FREE: bool = L::MASKS_FOR_FREE;

    fn forward_lanes(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut L::LaneWorkspace,
    ) {
        self.layer.forward_lanes(block, x, y, ws);
    }

    fn infer_lanes(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: &mut [L::Output; B],
        ws: &mut L::LaneWorkspace,
    ) {
        self.layer.infer_lanes(block, x, y, ws);
    }

    fn backward_lanes(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: &[L::Output; B],
        ws: &mut L::LaneWorkspace,
        g: &[L::Output; B],
        gi: Option<&mut [L::Input; B]>,
        grads: &mut Self,
    ) {
        self.layer
            .backward_lanes(block, x, y, ws, g, gi, &mut grads.layer);
    }

    fn fuses(&self, epilogue: Fusion<'_, L::Scalar>) -> bool {
        self.layer.fuses(epilogue)
    }

    fn forward_lanes_then(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: &mut [L::Scalar],
        ws: &mut L::LaneWorkspace,
        epilogue: Fusion<'_, L::Scalar>,
        infer: bool,
    ) -> bool {
        self.layer
            .forward_lanes_then(block, x, y, ws, epilogue, infer)
    }

    fn backward_lanes_then(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: Option<&[L::Scalar]>,
        ws: &mut L::LaneWorkspace,
        g: &[L::Scalar],
        epilogue: Fusion<'_, L::Scalar>,
        gi: Option<&mut [L::Input; B]>,
        grads: &mut Self,
    ) -> bool {
        let grads = &mut grads.layer;
        self.layer
            .backward_lanes_then(block, x, y, ws, g, epilogue, gi, grads)
    }

    fn backward_lanes_masked(
        &self,
        block: usize,
        x: &[L::Input; B],
        y: &[L::Output; B],
        ws: &mut L::LaneWorkspace,
        g: &[L::Output; B],
        gi: &mut [L::Input; B],
        grads: &mut Self,
    ) {
        self.layer
            .backward_lanes_masked(block, x, y, ws, g, gi, &mut grads.layer);
    }
}

crate::zeroable!(impl [N, L: crate::zeroed::Zeroable] for Named [N, L] { layer, name });
