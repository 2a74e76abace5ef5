//! The training driver on the bundled real digits: it learns (with both losses), it is
//! bit-for-bit reproducible for a given seed and thread count, and it stops cleanly when the
//! loss diverges.

use constnet::augment::Augment;
use constnet::mnist::{Dataset, load_dir};
use constnet::optim::{Optimizer, Schedule};
use constnet::train::{LeNet5Trainer, TrainConfig};
use constnet::{Layer, LeNet5, Loss, Network};
use rand::SeedableRng;
use std::sync::LazyLock;

static DATA: LazyLock<(Dataset, Dataset)> =
    LazyLock::new(|| load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k")).unwrap());

/// The first `n` images of `data`, re-encoded as IDX.
fn first(data: &Dataset, n: usize) -> Dataset {
    let mut images = vec![0, 0, 8, 3];
    images.extend_from_slice(&(n as u32).to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        images.extend_from_slice(data.pixels(i));
        labels.push(data.label(i) as u8);
    }
    Dataset::from_idx_bytes(&images, &labels).unwrap()
}

fn trainer(config: TrainConfig) -> LeNet5Trainer<f32> {
    let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    LeNet5Trainer::new(net, config)
}

fn train_and_test(config: TrainConfig, images: usize) -> f64 {
    let (train, test) = &*DATA;
    let train = first(train, images);
    let mut t = trainer(config);
    for epoch in 1..=config.epochs {
        t.train_epoch(&train, epoch, |_| {}).unwrap();
    }
    t.evaluate(test).accuracy()
}

#[test]
fn two_epochs_on_2000_digits_learn_with_cross_entropy() {
    let config = TrainConfig {
        epochs: 2,
        augment: Augment::NONE,
        ..TrainConfig::default()
    };
    let accuracy = train_and_test(config, 2000);
    // Observed with PyTorch's default initialisation: 78.6–84.9% over seeds 1–6 (80.75% for
    // seed 1, on AVX-512); chance is 10%. (He-uniform, 6 times the initial variance, learned
    // faster in these 126 steps: 85.4–90.4%; both end alike after the main job's 15 epochs.)
    assert!(accuracy > 0.75, "test accuracy {accuracy}");
}

#[test]
fn two_epochs_on_2000_digits_learn_with_the_articles_half_sse() {
    let config = TrainConfig {
        epochs: 2,
        augment: Augment::NONE,
        loss: Loss::HalfSse,
        ..TrainConfig::default()
    };
    let accuracy = train_and_test(config, 2000);
    // Observed with PyTorch's default initialisation: 77.0–85.2% over seeds 1–6 (82.0% for
    // seed 1); chance is 10%.
    assert!(accuracy > 0.75, "test accuracy {accuracy}");
}

fn weights_after(config: TrainConfig) -> Box<LeNet5<f32>> {
    let train = first(&DATA.0, 300);
    let mut t = trainer(config);
    t.train_epoch(&train, 1, |_| {}).unwrap();
    t.train_epoch(&train, 2, |_| {}).unwrap();
    t.net
}

#[test]
fn same_seed_and_threads_give_bit_identical_weights() {
    // Batch 48 is split into parts of 48 (1 thread), 32 + 16 (2) and 16 + 16 + 16 (3).
    for threads in [1, 2, 3] {
        let config = TrainConfig {
            epochs: 2,
            batch: 48,
            threads,
            ..TrainConfig::default()
        };
        let (a, b) = (weights_after(config), weights_after(config));
        for i in 0..LeNet5::<f32>::PARAM_TENSORS {
            let same = a
                .param(i)
                .iter()
                .zip(b.param(i))
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "threads {threads}: parameter tensor {i} differs between runs"
            );
        }
        let other = weights_after(TrainConfig {
            seed: config.seed + 1,
            ..config
        });
        assert_ne!(a, other, "a different seed must give different weights");
    }
}

#[test]
fn threads_change_only_the_summation_order() {
    // Data-parallel gradients are the same sums in another order: close, not identical.
    let config = TrainConfig {
        epochs: 2,
        batch: 48,
        ..TrainConfig::default()
    };
    let one = weights_after(config);
    let two = weights_after(TrainConfig {
        threads: 2,
        ..config
    });
    assert_ne!(
        one, two,
        "two threads must split the batch (and so sum in another order)"
    );
    let worst = (0..LeNet5::<f32>::PARAM_TENSORS)
        .flat_map(|i| {
            one.param(i)
                .iter()
                .zip(two.param(i))
                .map(|(a, b)| (a - b).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "threads 1 vs 2 differ by {worst}");
}

#[test]
fn evaluation_on_threads_counts_what_one_thread_counts() {
    // The same trained network, evaluated by 1, 2 and 3 threads (each a contiguous share of
    // the 2,000 test images), and by `evaluate_with` on one workspace.
    let net = weights_after(TrainConfig::default());
    let test = &DATA.1;
    let mut ws = LeNet5::<f32>::workspace();
    let alone = constnet::train::evaluate_with(&net, test, &mut ws);
    assert!(alone.correct > 0 && alone.correct < alone.total);
    for threads in [1, 2, 3] {
        let config = TrainConfig {
            threads,
            batch: 48,
            ..TrainConfig::default()
        };
        let mut t = LeNet5Trainer::new(net.clone(), config);
        let e = t.evaluate(test);
        assert_eq!(e.total, test.len(), "{threads} threads");
        assert_eq!(e.correct, alone.correct, "{threads} threads");
        assert_eq!(e.unclassified, alone.unclassified, "{threads} threads");
        assert_eq!(e.confusion, alone.confusion, "{threads} threads");
    }
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_finite_weights() {
    let config = TrainConfig {
        lr: 1e12,
        optimizer: Optimizer::SGD_MOMENTUM,
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    let train = first(&DATA.0, 640);
    let mut t = trainer(config);
    let err = t.train_epoch(&train, 1, |_| {}).unwrap_err();
    assert_eq!(err.epoch, 1);
    assert!(
        err.batch >= 2,
        "the first batch starts from sane weights: {err:?}"
    );
    assert!(!err.loss.is_finite());
    let finite =
        (0..LeNet5::<f32>::PARAM_TENSORS).all(|i| t.net.param(i).iter().all(|w| w.is_finite()));
    assert!(finite, "the diverging batch must not have been applied");
    let message = err.to_string();
    assert!(
        message.contains("epoch 1, batch") && message.contains("lower learning rate"),
        "{message}"
    );
}

/// A NaN in a hidden layer's weights (here one of conv1's 150) must stop training too: the
/// ReLUs pass it on, so the loss turns NaN, rather than zeroing it and training on.
#[test]
fn a_nan_weight_in_a_hidden_layer_stops_training() {
    let train = first(&DATA.0, 128);
    for tensor in [0, 4] {
        // conv1's weights, fc1's weights
        let mut t = trainer(TrainConfig::default());
        t.net.param_mut(tensor)[7] = f32::NAN;
        let err = t.train_epoch(&train, 1, |_| {}).unwrap_err();
        assert_eq!((err.epoch, err.batch), (1, 1), "tensor {tensor}: {err:?}");
        assert!(err.loss.is_nan());
    }
}

/// A small classifier with dropout, trained by the same driver.
type DropNet = constnet::sequential![
    constnet::Flatten<f64, 1, 32, 32, 1024>,
    constnet::Dropout<[f64; 1024]>,
    constnet::Linear<f64, 1024, 10>,
];

fn dropout_weights_after(config: TrainConfig) -> Box<constnet::train::Classifier<DropNet, f64>> {
    let train = first(&DATA.0, 96);
    let mut net = constnet::zeroed_box::<constnet::train::Classifier<DropNet, f64>>();
    net.init(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    net.first.first.then = constnet::Dropout::new(0.5);
    let mut t = constnet::train::Trainer::new(net, config);
    t.train_epoch(&train, 1, |_| {}).unwrap();
    t.net
}

/// The trainer passes each step's seed to the network: dropout masks follow the seed, not
/// the thread that runs a sample, so a seed gives the same weights run after run, and one
/// or two threads (a batch of 48 split 32 + 16) give the same masks, differing only by the
/// order of the gradient sums.
#[test]
fn dropout_masks_follow_the_seed_and_not_the_thread_split() {
    let config = TrainConfig {
        batch: 48,
        augment: Augment::NONE,
        optimizer: Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    let (a, b) = (dropout_weights_after(config), dropout_weights_after(config));
    assert!(a == b, "the same seed must give the same weights");
    let two = dropout_weights_after(TrainConfig {
        threads: 2,
        ..config
    });
    let worst = (0..<DropNet as Layer>::PARAM_TENSORS)
        .flat_map(|i| {
            a.param(i)
                .iter()
                .zip(two.param(i))
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0f64, f64::max);
    assert!(
        worst < 1e-12,
        "one and two threads differ by {worst}: other masks"
    );
    // Without dropout the same runs give other weights: the masks did something.
    let mut plain = constnet::zeroed_box::<constnet::train::Classifier<DropNet, f64>>();
    plain.init(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    let mut t = constnet::train::Trainer::new(plain, config);
    t.train_epoch(&first(&DATA.0, 96), 1, |_| {}).unwrap();
    assert!(*t.net != *a, "dropout must change the training");
}

/// ResNet-20 (batch norm in training mode) trains on whole micro-batches of 16: an epoch of
/// 70 images takes 64 of them in two steps of 32, folds each step's batch statistics into
/// the running ones once, and is bit-for-bit reproducible for a seed and thread count.
#[test]
fn resnet20_trains_on_whole_micro_batches_and_updates_batch_norm_buffers() {
    use constnet::layer::{TensorKind, count};
    use constnet::train::{MICRO_BATCH, ResNet20Trainer};
    type Net = constnet::ResNet20<f32, 1, 10>;
    let (train, _) = &*DATA;
    let train = first(train, 70);
    let config = TrainConfig {
        epochs: 1,
        batch: 32,
        lr: 0.05,
        optimizer: Optimizer::SGD_MOMENTUM,
        augment: Augment::NONE,
        threads: 2,
        ..TrainConfig::default()
    };
    let run = || {
        let net = Net::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
        let mut t = ResNet20Trainer::<f32>::with_leftovers(net, config);
        let mut seen = Vec::new();
        t.train_epoch(&train, 1, |p| seen.push((p.images, p.total)))
            .unwrap();
        (t, seen)
    };
    let (t, seen) = run();
    assert_eq!(MICRO_BATCH, 16);
    assert_eq!(seen, [(32, 64), (64, 64)]);
    let fresh = Net::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    // every batch norm counted two steps, and its running statistics moved
    let counters = count::<Net>(TensorKind::Counter);
    assert_eq!(counters, 21, "ResNet-20 has 21 batch norms");
    for i in 0..counters {
        assert_eq!(t.net.counter(i), 2, "num_batches_tracked of batch norm {i}");
    }
    for i in 0..count::<Net>(TensorKind::Buffer) {
        assert_ne!(t.net.buffer(i), fresh.buffer(i), "buffer {i} did not move");
    }
    let (again, _) = run();
    let bits = |net: &Net| -> Vec<u32> {
        (0..Net::PARAM_TENSORS)
            .flat_map(|i| net.param(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .chain((0..count::<Net>(TensorKind::Buffer)).flat_map(|i| {
                net.buffer(i)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            }))
            .collect()
    };
    assert_eq!(bits(&t.net), bits(&again.net));
}

#[test]
#[should_panic(expected = "must be a multiple of 16")]
fn resnet20_refuses_a_batch_that_is_not_whole_micro_batches() {
    let net =
        constnet::ResNet20::<f32, 1, 10>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
    let config = TrainConfig {
        batch: 24,
        ..TrainConfig::default()
    };
    let _ = constnet::train::ResNet20Trainer::<f32>::with_leftovers(net, config);
}
