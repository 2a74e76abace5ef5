//! The main job's command (`train`) with ResNet-20, He et al.'s CIFAR network with batch
//! norm, as its default network: `train` leaves ResNet-20 out, so that building it does not
//! compile the larger networks' kernels.
//!
//! ```text
//! cargo run --release --bin train-resnet20 -- --data /usr/share/datasets/fashion-mnist --threads 2
//! cargo run --release --bin train-resnet20 -- --data /usr/share/datasets/fashion-mnist --eval resnet20.cnet
//! ```

use std::process::ExitCode;

#[path = "train.rs"]
mod train;

fn main() -> ExitCode {
    train::main_with::<true>(train::Model::ResNet20)
}
