//! LeNet-5 inference with only `core`: no `std`, no allocator.
//!
//! The weights (constnet's format) and ten test digits are baked in with `include_bytes!`;
//! the caller provides the memory for the network and its workspace (a `static`, a stack
//! frame, a linker section), and nothing here allocates. `cargo test` in this folder runs it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use constnet::weights::{WeightsError, load_weights};
use constnet::{Image, Layer, LeNet5};

/// A trained `LeNet5<f32>` (98.30% on the bundled test digits).
pub const WEIGHTS: &[u8] = include_bytes!("../../../data/embedded/lenet5-mnist10k.cnet");
/// Ten test digits: 10 labels, then 10 × 784 pixels.
pub const DIGITS: &[u8] = include_bytes!("../../../data/embedded/digits10.u8");
/// Number of digits in [`DIGITS`].
pub const COUNT: usize = 10;

/// The workspace type of LeNet-5 in `f32`.
pub type Workspace = <LeNet5<f32> as Layer>::Workspace;

/// Digit `i` of [`DIGITS`] as LeNet-5's input (padded by 2, scaled to [0, 1]), and its label.
pub fn digit(i: usize) -> (Image<f32>, usize) {
    let mut image = [[[0.0f32; 32]; 32]; 1];
    let pixels = &DIGITS[COUNT + i * 784..COUNT + (i + 1) * 784];
    for (r, row) in pixels.chunks_exact(28).enumerate() {
        for (c, &p) in row.iter().enumerate() {
            image[0][r + 2][c + 2] = f32::from(p) / 255.0;
        }
    }
    (image, usize::from(DIGITS[i]))
}

/// Loads [`WEIGHTS`] into `net` and classifies every digit: `(predicted, label)` pairs.
///
/// # Errors
/// If the baked-in weights do not fit `LeNet5<f32>`.
pub fn classify_all(
    net: &mut LeNet5<f32>,
    ws: &mut Workspace,
) -> Result<[(Option<usize>, usize); COUNT], WeightsError> {
    load_weights(net, WEIGHTS)?;
    let mut out = [(None, 0); COUNT];
    for (i, o) in out.iter_mut().enumerate() {
        let (image, label) = digit(i);
        *o = (net.classify(&image, ws), label);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use constnet::Zeroable;

    #[test]
    fn baked_in_lenet_classifies_the_baked_in_digits() {
        // 255 KB of network and 124 KB of workspace: run on a thread with room for both.
        let results = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(|| {
                let mut net = LeNet5::<f32>::zeroed();
                let mut ws = Workspace::zeroed();
                classify_all(&mut net, &mut ws)
            })
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        let right = results.iter().filter(|(p, l)| *p == Some(*l)).count();
        assert!(right >= 9, "{results:?}");
    }
}
