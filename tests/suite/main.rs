//! Every integration test in one binary: each file was its own test binary, and each linked
//! and compiled its own copies of LeNet-5's kernels (15 binaries, 10 minutes for a fresh
//! clone's `cargo test` on 2 cores). One binary compiles each network once.
//!
//! Run one part with `cargo test --test suite lanes::`, or one test by name.

mod block_nets;
mod blocks;
mod blocks_golden;
#[cfg(feature = "cli")]
mod cli;
mod compose;
mod conv_kernels;
mod epilogues;
mod fast_paths;
mod golden_harness;
mod golden_types;
mod googlenet_aux;
mod gradients;
mod lanes;
mod max_pool;
mod mnist_data;
mod names;
mod nets_golden;
mod nets_memory;
mod no_alloc;
mod norm;
mod photo;
mod pytorch_golden;
mod pytorch_trained;
mod stack;
mod structure;
mod training;
mod viz;
mod weights_props;
