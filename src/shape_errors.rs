//! What a shape mistake looks like, and proof that each one is caught at compile time.
//!
//! Two kinds of rule keep a network's shapes consistent:
//!
//! * **Between layers**, `Chain<A, B>` requires `B: Layer<Input = A::Output>`. A channel count,
//!   map size or vector length that differs from the previous layer's output is an ordinary
//!   type error (`E0271: type mismatch resolving … == [[[f32; 14]; 14]; 6]`), reported by
//!   `cargo check` and the IDE like any other.
//! * **Within a layer**, the const parameters must obey the layer's formula (a convolution's
//!   or a pooling's output size, a flatten length). Those are compile-time
//!   assertions evaluated when the layer is used (`cargo build`, `cargo test`), with a message
//!   naming the layer and the formula. `cargo check` only evaluates them when the network is
//!   named in a constant, so add this line beside your network's type:
//!
//! ```
//! # use constnet::{Layer, LeNet5};
//! const _: () = <LeNet5<f32> as Layer>::CHECK;
//! ```
//!
//! Each mistake below is a `compile_fail` test, and each has a compiling twin that differs
//! only in the wrong number, so the failure is the shape rule's and not a typo's.
//!
//! ## 1. Wrong convolution output size
//! ⌊(32 + 2·0 − 5) / 1⌋ + 1 = 28, not 27:
//! ```compile_fail
//! use constnet::{Conv2d, Layer};
//! const _: () = <Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 27, 27> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{Conv2d, Layer};
//! const _: () = <Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28> as Layer>::CHECK;
//! ```
//! The build says:
//! ```text
//! error[E0080]: evaluation panicked: Conv2d: output height OH must equal ⌊(H + 2·P − K) / S⌋ + 1
//! ```
//! The stride need not divide, as in PyTorch: ResNet-18's stem maps 224 to
//! ⌊(224 + 6 − 7) / 2⌋ + 1 = 112 (111.5 rounded down), and 113 does not compile:
//! ```compile_fail
//! use constnet::{Conv2d, Layer};
//! const _: () = <Conv2d<f32, 3, 64, 7, 2, 3, 224, 224, 113, 113> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{Conv2d, Layer};
//! const _: () = <Conv2d<f32, 3, 64, 7, 2, 3, 224, 224, 112, 112> as Layer>::CHECK;
//! ```
//!
//! ## 2. Channel mismatch between layers
//! The second convolution expects 3 input channels, the first pool gives 6:
//! ```compile_fail
//! use constnet::{sequential, Conv2d, Layer, Maps, MaxPool2d, Relu};
//! type Net = sequential![
//!     Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>,
//!     Relu<Maps<f32, 6, 28, 28>>,
//!     MaxPool2d<f32, 6, 28, 28, 2, 2, 14, 14>,
//!     Conv2d<f32, 3, 16, 5, 1, 0, 14, 14, 10, 10>,
//! ];
//! const _: () = <Net as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{sequential, Conv2d, Layer, Maps, MaxPool2d, Relu};
//! type Net = sequential![
//!     Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>,
//!     Relu<Maps<f32, 6, 28, 28>>,
//!     MaxPool2d<f32, 6, 28, 28, 2, 2, 14, 14>,
//!     Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>,
//! ];
//! const _: () = <Net as Layer>::CHECK;
//! ```
//! The build (and `cargo check`) says:
//! ```text
//! error[E0271]: type mismatch resolving `<Conv2d<f32, 3, 16, 5, 1, 0, 14, 14, 10, 10> as Layer>::Input == [[[f32; 14]; 14]; 6]`
//!   = note: expected array `[[[f32; 14]; 14]; 6]`
//!              found array `[[[f32; 14]; 14]; 3]`
//! ```
//!
//! ## 3. Wrong pooling output size
//! A 2×2 window with stride 2 over a 29×29 map gives ⌊27 / 2⌋ + 1 = 14 (PyTorch's floor
//! rule: the last row and column are not read), not 15:
//! ```compile_fail
//! use constnet::{Layer, MaxPool2d};
//! const _: () = <MaxPool2d<f32, 6, 29, 29, 2, 2, 15, 15> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{Layer, MaxPool2d};
//! const _: () = <MaxPool2d<f32, 6, 29, 29, 2, 2, 14, 14> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: MaxPool2d: output height OH must equal ⌊(H − K) / S⌋ + 1
//! ```
//!
//! A pooling's padding may be at most half its window, as in PyTorch: a 3×3 window with
//! padding 2 does not compile, with padding 1 (ResNet-18's max-pool) it does:
//! ```compile_fail
//! use constnet::{Layer, MaxPool2d};
//! const _: () = <MaxPool2d<f32, 64, 112, 112, 3, 2, 57, 57, 2> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{Layer, MaxPool2d};
//! const _: () = <MaxPool2d<f32, 64, 112, 112, 3, 2, 56, 56, 1> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: MaxPool2d: padding P must be at most half the window K (PyTorch's rule)
//! ```
//!
//! ## 4. Wrong flatten size
//! 16·5·5 = 400, not 256:
//! ```compile_fail
//! use constnet::{Flatten, Layer};
//! const _: () = <Flatten<f32, 16, 5, 5, 256> as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{Flatten, Layer};
//! const _: () = <Flatten<f32, 16, 5, 5, 400> as Layer>::CHECK;
//! ```
//! ```text
//! error[E0080]: evaluation panicked: Flatten: output length N must equal C·H·W of the input maps
//! ```
//!
//! ## 5. Wrong fully connected input
//! The first linear layer expects 256 values, the flatten gives 400:
//! ```compile_fail
//! use constnet::{sequential, Flatten, Layer, Linear};
//! type Head = sequential![Flatten<f32, 16, 5, 5, 400>, Linear<f32, 256, 120>];
//! const _: () = <Head as Layer>::CHECK;
//! ```
//! ```
//! use constnet::{sequential, Flatten, Layer, Linear};
//! type Head = sequential![Flatten<f32, 16, 5, 5, 400>, Linear<f32, 400, 120>];
//! const _: () = <Head as Layer>::CHECK;
//! ```
//! ```text
//! error[E0271]: type mismatch resolving `<Linear<f32, 256, 120> as Layer>::Input == [f32; 400]`
//! ```
//!
//! ## 6. Without the `CHECK` constant, using the layer is enough
//! A build fails as soon as a pass of a misshapen layer is compiled, even if no constant names it:
//! ```compile_fail
//! use constnet::{zeroed_box, Conv2d, Layer};
//! let conv = zeroed_box::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 27, 27>>();
//! let mut out = [[[0.0f32; 27]; 27]; 6];
//! conv.forward(&[[[0.0; 32]; 32]; 1], &mut out, &mut ());
//! ```
//! ```
//! use constnet::{zeroed_box, Conv2d, Layer};
//! let conv = zeroed_box::<Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>>();
//! let mut out = [[[0.0f32; 28]; 28]; 6];
//! conv.forward(&[[[0.0; 32]; 32]; 1], &mut out, &mut ());
//! ```
