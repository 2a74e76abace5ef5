//! # constnet
//!
//! Convolutional networks whose every tensor shape is a const generic parameter.
//!
//! * **Shapes are types.** [`Conv2d`], [`MaxPool2d`], [`AvgPool2d`], [`GlobalAvgPool2d`],
//!   [`LocalResponseNorm`], [`Relu`], [`Flatten`], [`Linear`] and [`Softmax`] carry their
//!   channels, kernel, stride, padding and sizes as const parameters;
//!   tensors are plain nested arrays. A network whose shapes do not fit together does not
//!   compile, on stable Rust: layer-to-layer agreement is type equality, and each layer's own
//!   formula (a convolution's output size, a flatten's length) is a compile-time assertion
//!   that names the layer and the formula.
//! * **No heap in the hot path.** [`Layer::forward`], [`Layer::backward`] and [`Sgd::step`]
//!   work on fixed-size arrays and never allocate. Without the default `std` feature the crate
//!   is `no_std` and needs no allocator.
//! * **Fast where it counts.** `f32` passes run SIMD kernels picked at run time (AVX-512,
//!   AVX2+FMA, SSE2; see [`simd`]) with default cargo flags; [`BatchLayer`] runs mini-batches
//!   (fully connected layers as matrix products, convolutions wrapped in [`Lanes`] with 16
//!   images per AVX-512 vector, see [`lanes`]) and [`Chain::train_sgd`] fuses a batch-1 SGD step. The plain loops stay as each layer's `*_reference` methods, and `f64` runs them.
//! * **Correct by property.** Every layer's gradients are checked against finite differences,
//!   and LeNet-5 against PyTorch's numbers.
//!
//! ```
//! use constnet::{Layer, LeNet5, Loss, Sgd};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let mut net = LeNet5::<f32>::new_boxed(&mut rng);
//! let mut grads = constnet::zeroed_box::<LeNet5<f32>>();
//! let mut ws = LeNet5::<f32>::workspace();
//!
//! let mut image = [[[0.0f32; 32]; 32]; 1];
//! image[0][8..24].iter_mut().for_each(|row| row[15] = 1.0); // a "1"
//! let before = net.backprop(&image, 1, Loss::CrossEntropy, &mut ws, &mut grads, None);
//! for _ in 0..20 {
//!     grads.zero_params();
//!     net.backprop(&image, 1, Loss::CrossEntropy, &mut ws, &mut grads, None);
//!     Sgd { lr: 0.01 }.step(&mut *net, &grads);
//! }
//! let after = net.backprop(&image, 1, Loss::CrossEntropy, &mut ws, &mut grads, None);
//! assert!(after < before);
//! assert_eq!(net.classify(&image, &mut ws), Some(1));
//! ```
//!
//! ## Shape errors
//! A mistake in a layer's own numbers is reported by the build with the layer and formula:
//!
//! ```text
//! error[E0080]: evaluation panicked: Conv2d: output height OH must equal ⌊(H + 2·P − K) / S⌋ + 1
//! ```
//!
//! `cargo check` sees it too once the network is named in a constant:
//! `const _: () = <MyNet as constnet::Layer>::CHECK;`. See [`shape_errors`] for each mistake.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
// `unsafe` lives in three audited modules only: `zeroed` (building big values on the
// heap), `simd` (run-time-dispatched intrinsics) and `columns` (two threads writing one
// matrix, each its own columns). The compiler enforces it.
#![deny(unsafe_code)]

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod adaptive_avgpool2d;
pub mod alexnet;
#[cfg(feature = "std")]
pub mod augment;
pub mod avgpool2d;
mod avgpool2d_f32;
pub mod batch;
mod batch_by_sample;
pub mod batchnorm2d;
mod batchnorm2d_batch;
mod batchnorm_kernel;
pub mod chain;
pub mod classifier;
#[allow(unsafe_code)]
mod columns;
pub mod concat;
pub mod conv2d;
mod conv2d_f32;
pub mod conv_channels;
mod conv_fast;
mod conv_fast_backward;
pub mod conv_gemm;
mod conv_gemm_micro;
pub mod conv_kernel;
mod conv_lanes;
mod conv_lanes_backward;
pub mod conv_reference;
pub mod conv_winograd;
pub mod conv_winograd4;
pub mod conv_winograd_channels;
pub mod conv_winograd_grad;
pub mod conv_winograd_grad_channels;
mod conv_winograd_tiles;
pub mod densenet;
pub mod dropout;
pub mod flatten;
pub mod fused;
pub mod fusion;
pub mod global_avgpool2d;
pub mod googlenet;
pub mod grouped_conv2d;
mod identity;
mod lane_layer;
mod lane_layout;
pub mod lanes;
pub mod layer;
pub mod lenet;
pub mod linear;
mod linear_kernel;
mod linear_lanes;
#[cfg(feature = "cli")]
pub mod live;
pub mod loss;
pub mod lrn;
pub mod lrn_kernel;
pub mod maxpool2d;
#[cfg(feature = "std")]
pub mod mnist;
pub mod mode;
pub mod named;
pub mod network;
pub mod no_bias;
pub mod optim;
mod pairs;
#[cfg(feature = "viz")]
pub mod photo;
mod place;
#[cfg(feature = "std")]
#[allow(unsafe_code)]
mod pool;
pub mod pool_kernel;
mod pool_lenet;
#[cfg(feature = "safetensors")]
pub mod pytorch;
#[cfg(feature = "std")]
mod read;
pub mod relu;
pub mod residual;
pub mod resnet;
pub mod scalar;
pub mod shape;
pub mod shape_errors;
#[allow(unsafe_code)]
pub mod simd;
pub mod softmax;
#[cfg(feature = "safetensors")]
pub mod state_dict;
pub mod tap;
pub mod tensor;
#[cfg(feature = "std")]
#[allow(unsafe_code)]
mod tensor_parts;
#[cfg(feature = "std")]
pub mod threads;
#[cfg(feature = "std")]
pub mod train;
#[cfg(feature = "std")]
mod update;
pub mod vgg;
#[cfg(feature = "viz")]
pub mod viz;
pub mod weights;
#[allow(unsafe_code)]
pub mod zeroed;
pub mod zfnet;

pub use adaptive_avgpool2d::AdaptiveAvgPool2d;
pub use alexnet::{AlexNet, AlexNet2012};
pub use avgpool2d::AvgPool2d;
pub use batch::{BatchChainWorkspace, BatchLayer};
pub use batch_by_sample::BatchBySample;
pub use batchnorm2d::{BatchNorm2d, BatchNormEps, BatchNormWorkspace, Eps1e3, Eps1e5};
pub use chain::{Chain, ChainWorkspace};
pub use concat::Concat;
pub use conv_kernel::ConvGeometry;
pub use conv2d::Conv2d;
pub use densenet::DenseNet121;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use fused::SgdLayer;
pub use fusion::{ChannelAffine, Epilogue, Fusion};
pub use global_avgpool2d::GlobalAvgPool2d;
pub use googlenet::{GoogLeNet, GoogLeNetAux};
pub use grouped_conv2d::{DepthwiseConv2d, GroupedConv2d};
pub use lane_layer::LaneLayer;
pub use lane_layout::{BlockOrder, LANES, from_lanes, to_lanes};
pub use lanes::Lanes;
pub use layer::{Activation, Layer, Shape, TensorKind};
pub use lenet::{Image, LeNet5, LeNet5Activations};
pub use linear::Linear;
pub use loss::{Loss, cross_entropy_with_logits, half_sse, one_hot, softmax_loss};
pub use lrn::LocalResponseNorm;
pub use lrn_kernel::LrnGeometry;
pub use maxpool2d::MaxPool2d;
pub use mode::{Eval, Mode, Pass, Train};
#[cfg(feature = "alloc")]
pub use named::tensor_names;
pub use named::{Block, Label, Named, Unnamed};
pub use network::Network;
pub use no_bias::NoBias;
pub use optim::{Optimizer, OptimizerState, Schedule, Sgd};
pub use pool_kernel::PoolGeometry;
pub use relu::Relu;
pub use residual::{Identity, Residual, Skip};
pub use resnet::{ResNet18, ResNet20};
pub use scalar::Scalar;
pub use shape::{conv_out, pool_out};
pub use softmax::Softmax;
pub use tap::Tap;
pub use tensor::{Maps, MapsShape, Tensor, argmax};
pub use vgg::Vgg16;
pub use zeroed::Zeroable;
#[cfg(feature = "alloc")]
pub use zeroed::zeroed_box;
pub use zfnet::ZfNet;
