//! The training driver: shuffled mini-batches, data-parallel threads with a fixed-order
//! reduction, learning-rate schedules, divergence detection, and evaluation.
//!
//! Results depend only on the configuration (seed, thread count, …), never on timing: each
//! thread takes a fixed contiguous slice of the batch, sums its samples' gradients in order,
//! and the per-thread sums are added in thread order. The threads are a pool started with
//! the trainer (none with one thread); they share the sum and the optimizer's step out by
//! ranges of every tensor, which leaves each weight's arithmetic as on one thread.

use std::fmt;
use std::sync::{RwLock, RwLockWriteGuard};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::augment::{Augment, mix, warp_digit};
use crate::batch::BatchLayer;
use crate::chain::{Chain, ChainWorkspace};
use crate::layer::Layer;
use crate::lenet::Image;
use crate::loss::Loss;
use crate::mnist::Dataset;
use crate::mode::{Pass, Train};
use crate::optim::{Optimizer, OptimizerState, Schedule};
use crate::pool::Pool;
use crate::scalar::Scalar;
use crate::softmax::Softmax;
use crate::tensor::argmax;
use crate::tensor_parts::Places;
use crate::update::{Grads, read, update};
use crate::zeroed::zeroed_box;

/// Number of classes of the digit data sets.
pub const CLASSES: usize = 10;

/// A classifier of 32×32 images into [`CLASSES`] classes, ending in a softmax (for
/// example [`LeNet5`](crate::LeNet5)).
pub type Classifier<B, T> = Chain<B, Softmax<T, CLASSES>>;

/// Names the layers of a classifier before its softmax: `<Classifier<B, T> as Body>::Layers`
/// is `B`, the first parameter of [`Trainer`].
pub trait Body {
    /// Every layer before the softmax.
    type Layers;
}

impl<B, S> Body for Chain<B, S> {
    type Layers = B;
}

/// The trainer of [`LeNet5`](crate::LeNet5) in `T`.
pub type LeNet5Trainer<T> = Trainer<<crate::LeNet5<T> as Body>::Layers, T>;

/// The trainer of the CIFAR-style [`ResNet20`](crate::ResNet20) on one-channel 32×32 images
/// in `T`: batch norm in training mode, so it takes whole micro-batches only
/// ([`WholeMicroBatches`]).
pub type ResNet20Trainer<T> =
    Trainer<crate::resnet::ResNet20Logits<T, 1, CLASSES>, T, WholeMicroBatches>;

/// What a trainer does with the samples that do not fill a [`MICRO_BATCH`]: the last ones of
/// a worker's part of a batch. A type parameter of [`Trainer`], so that a network whose
/// training pass needs a batch (batch norm's statistics: a training pass over one sample
/// does not compile) is never asked for one.
pub trait Leftovers<B, T>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    /// Whether epochs leave the leftovers out: each epoch then takes the first
    /// `⌊n / MICRO_BATCH⌋ · MICRO_BATCH` images of its shuffled order, and batches must be
    /// a multiple of [`MICRO_BATCH`] images.
    const WHOLE: bool;

    /// Forward and backward over one sample: adds its gradients to `grads`; returns its
    /// loss and predicted class. Only called when [`Leftovers::WHOLE`] is false.
    fn one(
        net: &Classifier<B, T>,
        sample: (&Image<T>, usize),
        loss: Loss,
        ws: &mut <Classifier<B, T> as Layer>::Workspace,
        grads: &mut Classifier<B, T>,
    ) -> (T, Option<usize>);
}

/// Leftovers go through the network one at a time (LeNet-5 and any network without batch
/// statistics): every image of an epoch is used.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneByOne;

impl<B, T> Leftovers<B, T> for OneByOne
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    const WHOLE: bool = false;

    fn one(
        net: &Classifier<B, T>,
        (image, label): (&Image<T>, usize),
        loss: Loss,
        ws: &mut <Classifier<B, T> as Layer>::Workspace,
        grads: &mut Classifier<B, T>,
    ) -> (T, Option<usize>) {
        let l = net.backprop(image, label, loss, ws, grads, None);
        (l, argmax(&ws.then))
    }
}

/// Networks with batch norm train on whole micro-batches of [`MICRO_BATCH`] images only:
/// each micro-batch is normalised with its own statistics (as each GPU's share of a batch
/// is in PyTorch's `DistributedDataParallel`), an epoch leaves out the last
/// `n mod MICRO_BATCH` images of its shuffled order (a different few each epoch; none of
/// Fashion-MNIST's 60,000 or the bundled 8,000), and the batch size must be a multiple of
/// [`MICRO_BATCH`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WholeMicroBatches;

impl<B, T> Leftovers<B, T> for WholeMicroBatches
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    const WHOLE: bool = true;

    fn one(
        _: &Classifier<B, T>,
        _: (&Image<T>, usize),
        _: Loss,
        _: &mut <Classifier<B, T> as Layer>::Workspace,
        _: &mut Classifier<B, T>,
    ) -> (T, Option<usize>) {
        unreachable!("whole micro-batches leave no sample over")
    }
}

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per mini-batch (the last batch of an epoch may be smaller).
    pub batch: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Update rule.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Error to minimise.
    pub loss: Loss,
    /// Seed of the initial weights, the shuffles and the augmentation.
    pub seed: u64,
    /// Worker threads per batch (1 = no extra threads).
    pub threads: usize,
    /// Random distortion of each training image (shift, rotation, scale); evaluation
    /// images are never distorted.
    pub augment: Augment,
}

impl Default for TrainConfig {
    /// The defaults of `cargo run --release --bin train`: Adam at 1e-3 with cosine
    /// decay, batch 32, 15 epochs, cross-entropy, digits shifted by up to 2 pixels,
    /// rotated by up to 10° and scaled by up to ±10%, one thread.
    fn default() -> Self {
        Self {
            epochs: 15,
            batch: 32,
            lr: 1e-3,
            optimizer: Optimizer::ADAM,
            schedule: Schedule::Cosine,
            loss: Loss::CrossEntropy,
            seed: 1,
            threads: 1,
            augment: Augment {
                shift: 2.0,
                rotate: 10.0,
                scale: 0.1,
            },
        }
    }
}

/// Training stopped because the loss stopped being a finite number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diverged {
    /// Epoch (from 1).
    pub epoch: usize,
    /// Batch within the epoch (from 1).
    pub batch: usize,
    /// The mean loss of that batch (NaN or infinite).
    pub loss: f64,
    /// The learning rate in use.
    pub lr: f64,
}

impl fmt::Display for Diverged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "training diverged: the loss became {} at epoch {}, batch {} (learning rate {}); \
             the weights were not updated with it. Try a lower learning rate (--lr).",
            self.loss, self.epoch, self.batch, self.lr
        )
    }
}

impl std::error::Error for Diverged {}

/// Progress within an epoch, reported after every batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Epoch (from 1).
    pub epoch: usize,
    /// Images done in this epoch.
    pub images: usize,
    /// Images in the epoch.
    pub total: usize,
    /// Mean loss over the images done in this epoch.
    pub loss: f64,
    /// Training accuracy over the images done in this epoch.
    pub accuracy: f64,
    /// Images per second in this epoch so far.
    pub images_per_second: f64,
}

/// Accuracy and confusion matrix on a data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Correctly classified images.
    pub correct: usize,
    /// Images evaluated.
    pub total: usize,
    /// `confusion[true][predicted]` counts.
    pub confusion: [[u32; CLASSES]; CLASSES],
    /// Images with no class: their probabilities were NaN (counted as wrong, and in no
    /// column of `confusion`).
    pub unclassified: usize,
}

impl Evaluation {
    /// Fraction correct, in `[0, 1]`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

impl fmt::Display for Evaluation {
    /// The confusion matrix, true classes in rows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "true\\pred")?;
        for c in 0..CLASSES {
            write!(f, "{c:>6}")?;
        }
        writeln!(f)?;
        for (t, row) in self.confusion.iter().enumerate() {
            write!(f, "{t:>9}")?;
            for n in row {
                write!(f, "{n:>6}")?;
            }
            writeln!(f)?;
        }
        if self.unclassified > 0 {
            writeln!(
                f,
                "{} images had NaN probabilities and no class",
                self.unclassified
            )?;
        }
        Ok(())
    }
}

/// Samples a worker pushes through the network together ([`BatchLayer`]): with AVX-512,
/// LeNet-5's layers then run one sample per vector lane ([`crate::lanes`]; the whole
/// training step ~28% faster than micro-batches of 8), the fully connected layers read their
/// weights once per 16 images instead of once per image, and the images' activations stay
/// in the L2 cache between the forward and the backward pass. (With AVX2 the convolutions
/// run sample by sample, where 16 measured 0.4–2.7% slower than 8; in `f64` 1% faster.)
pub const MICRO_BATCH: usize = 16;

/// Reads one byte of every cache line of the images `part` of `data`. The shuffled images
/// lie anywhere in a dataset much larger than the caches (Fashion-MNIST: 47 MB); read one
/// after the other, each waits for memory in turn (a tenth of a training epoch), while
/// these independent reads are in flight together.
fn touch_images(data: &Dataset, part: &[u32]) {
    let mut sum = 0u8;
    for &i in part {
        for &byte in data.pixels(i as usize).iter().step_by(64) {
            sum ^= byte;
        }
    }
    core::hint::black_box(sum);
}

/// One worker's buffers, each allocated once: gradients, a per-sample workspace (for a
/// remainder smaller than [`MICRO_BATCH`]), a batch workspace and the batch's images; and
/// what its latest part of a batch or of an evaluation gave.
struct Worker<B, T>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    grads: Box<Classifier<B, T>>,
    ws: Box<<Classifier<B, T> as Layer>::Workspace>,
    batch_ws: Box<<Classifier<B, T> as BatchLayer<MICRO_BATCH>>::BatchWorkspace>,
    images: Box<[Image<T>; MICRO_BATCH]>,
    /// The summed loss and the number of right predictions of its part of the last batch.
    result: (f64, usize),
    /// Its part of the last evaluation.
    evaluation: Option<Evaluation>,
}

impl<B, T> Grads<Classifier<B, T>> for Worker<B, T>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    fn grads(&self) -> &Classifier<B, T> {
        &self.grads
    }
    fn grads_mut(&mut self) -> &mut Classifier<B, T> {
        &mut self.grads
    }
}

impl<B, T> Worker<B, T>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    fn new() -> Self {
        Self {
            grads: zeroed_box(),
            ws: zeroed_box(),
            batch_ws: zeroed_box(),
            images: zeroed_box(),
            result: (0.0, 0),
            evaluation: None,
        }
    }

    /// Zeroes the gradients, then adds those of the images `part` of `data` (distorted as
    /// configured); returns the summed loss and the number of correct predictions.
    fn accumulate<R: Leftovers<B, T>>(
        &mut self,
        net: &Classifier<B, T>,
        data: &Dataset,
        part: &[u32],
        epoch: usize,
        c: &TrainConfig,
        pass: Pass<Train>,
    ) -> (f64, usize) {
        self.grads.zero_params();
        let (mut loss, mut right) = (0.0, 0);
        let mut chunks = part.chunks_exact(MICRO_BATCH);
        for (k, chunk) in (&mut chunks).enumerate() {
            touch_images(data, chunk);
            let mut labels = [0; MICRO_BATCH];
            for ((image, label), &i) in self.images.iter_mut().zip(&mut labels).zip(chunk) {
                let i = i as usize;
                warp_digit(data.pixels(i), &c.augment.draw(c.seed, epoch, i), image);
                *label = data.label(i);
            }
            let l = net.backprop_batch_in(
                &pass.offset(k * MICRO_BATCH),
                &self.images,
                &labels,
                c.loss,
                &mut self.batch_ws,
                &mut self.grads,
            );
            loss += l.to_f64();
            right += labels
                .iter()
                .zip(&self.batch_ws.then)
                .filter(|(l, p)| argmax(*p) == Some(**l))
                .count();
        }
        let image = &mut self.images[0];
        for &i in chunks.remainder() {
            let i = i as usize;
            warp_digit(data.pixels(i), &c.augment.draw(c.seed, epoch, i), image);
            let label = data.label(i);
            let (l, class) = R::one(net, (image, label), c.loss, &mut self.ws, &mut self.grads);
            loss += l.to_f64();
            right += usize::from(class == Some(label));
        }
        (loss, right)
    }
}

/// A worker's buffers, locked for writing (the lock is never contended: each worker is
/// taken by one thread per hand-over; a panic elsewhere leaves them valid).
fn write<W>(w: &RwLock<W>) -> RwLockWriteGuard<'_, W> {
    w.write().unwrap_or_else(|e| e.into_inner())
}

/// Trains a classifier: owns the network, its optimizer state and per-thread buffers.
///
/// ```no_run
/// use constnet::train::{LeNet5Trainer, TrainConfig};
/// use constnet::LeNet5;
/// let (train, test) = constnet::mnist::load_dir("data/mnist-10k")?;
/// let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
/// let mut trainer = LeNet5Trainer::<f32>::new(LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(config.seed)), config);
/// # use rand::SeedableRng;
/// for epoch in 1..=config.epochs {
///     trainer.train_epoch(&train, epoch, |_| {})?;
///     println!("test accuracy {:.2}%", 100.0 * trainer.evaluate(&test).accuracy());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `R` says what happens to the samples that do not fill a micro-batch ([`Leftovers`]):
/// [`OneByOne`] for networks that can train on one sample, [`WholeMicroBatches`] for those
/// with batch norm ([`ResNet20Trainer`]).
pub struct Trainer<B, T, R = OneByOne>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
    R: Leftovers<B, T>,
{
    /// The network being trained.
    pub net: Box<Classifier<B, T>>,
    /// The configuration it was created with.
    pub config: TrainConfig,
    state: Box<OptimizerState<Classifier<B, T>>>,
    workers: Vec<RwLock<Worker<B, T>>>,
    /// One thread per worker, the calling thread the first.
    pool: Pool,
    /// Where the network's tensors are (scratch of [`update`]).
    places: Places,
    step: usize,
    leftovers: core::marker::PhantomData<R>,
}

impl<B, T> Trainer<B, T, OneByOne>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    /// A trainer for `net` (already initialised) with `config`, for a network that can train
    /// on one sample (the leftovers of a batch go [`OneByOne`]); see
    /// [`Trainer::with_leftovers`] for the others.
    ///
    /// # Panics
    /// If `config.augment` is out of range (negative, or a scale of 1 or more).
    pub fn new(net: Box<Classifier<B, T>>, config: TrainConfig) -> Self {
        Self::with_leftovers(net, config)
    }
}

impl<B, T, R> Trainer<B, T, R>
where
    T: Scalar,
    B: BatchLayer<MICRO_BATCH, Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
    R: Leftovers<B, T>,
{
    /// A trainer for `net` (already initialised) with `config`, and `R` for the samples that
    /// do not fill a micro-batch: `ResNet20Trainer::<f32>::with_leftovers(net, config)`
    /// ([`Trainer::new`] is this with [`OneByOne`]). It runs at most one worker per
    /// [`MICRO_BATCH`] images of a batch (more would have nothing to do), and starts their
    /// threads now (the calling thread is the first worker); they end with the trainer.
    ///
    /// # Panics
    /// If `config.augment` is out of range (negative, or a scale of 1 or more), or if `R`
    /// takes whole micro-batches only and `config.batch` is not a multiple of
    /// [`MICRO_BATCH`].
    pub fn with_leftovers(net: Box<Classifier<B, T>>, config: TrainConfig) -> Self {
        let a = config.augment;
        assert!(
            a.shift >= 0.0 && a.rotate >= 0.0 && (0.0..1.0).contains(&a.scale),
            "TrainConfig::augment out of range: {a:?}"
        );
        assert!(
            !R::WHOLE || config.batch.is_multiple_of(MICRO_BATCH),
            "this network trains on whole micro-batches: the batch ({}) must be a multiple of {MICRO_BATCH}",
            config.batch
        );
        let workers = config
            .threads
            .clamp(1, config.batch.max(1).div_ceil(MICRO_BATCH));
        let pool = Pool::new(workers);
        let workers = (0..workers).map(|_| RwLock::new(Worker::new())).collect();
        Self {
            net,
            config,
            state: zeroed_box(),
            workers,
            pool,
            places: Places::default(),
            step: 0,
            leftovers: core::marker::PhantomData,
        }
    }

    /// Pass number `epoch` (from 1 to `config.epochs`, which the schedule and the seeded
    /// shuffle depend on) over `data` in a seeded random order. `progress` is called after
    /// each batch; an empty `data` does nothing.
    ///
    /// # Errors
    /// [`Diverged`] if a batch's loss is not finite; that batch's update is not applied.
    ///
    /// # Panics
    /// If `epoch` is 0.
    pub fn train_epoch(
        &mut self,
        data: &Dataset,
        epoch: usize,
        mut progress: impl FnMut(&Progress),
    ) -> Result<(), Diverged> {
        assert!(epoch >= 1, "train_epoch: epochs are numbered from 1");
        let c = self.config;
        let batch = c.batch.max(1);
        let mut order: Vec<u32> = (0..data.len() as u32).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(mix(c.seed, epoch as u64, 0));
        order.shuffle(&mut rng);
        if R::WHOLE {
            order.truncate(order.len() / MICRO_BATCH * MICRO_BATCH);
        }
        if order.is_empty() {
            return Ok(());
        }
        let batches = order.len().div_ceil(batch);
        let start = Instant::now();
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        let Self {
            net,
            state,
            workers,
            pool,
            places,
            step,
            ..
        } = self;
        // Each batch is two hand-overs to the pool's threads (the calling thread is the
        // first): the passes, each worker its part of the batch; then the update.
        for (b, indices) in order.chunks(batch).enumerate() {
            let lr = c.schedule.rate(c.lr, epoch - 1, b, batches, c.epochs);
            // Each worker takes a contiguous part, a whole number of micro-batches where
            // possible, its samples numbered from the start of the batch.
            let per = indices
                .len()
                .div_ceil(workers.len())
                .next_multiple_of(MICRO_BATCH)
                .max(1);
            let pass = Pass::train(c.seed, *step as u64);
            {
                let (net, workers) = (&**net, &workers[..]);
                pool.run(&|k| {
                    let part = indices.chunks(per).nth(k).unwrap_or(&[]);
                    let mut w = write(&workers[k]);
                    let result =
                        w.accumulate::<R>(net, data, part, epoch, &c, pass.offset(k * per));
                    w.result = result;
                });
            }
            // Added in worker order.
            let (loss, right) = workers.iter().fold((0.0, 0), |(l, r), w| {
                let (l2, r2) = read(w).result;
                (l + l2, r + r2)
            });
            let mean = loss / indices.len() as f64;
            if !mean.is_finite() {
                return Err(Diverged {
                    epoch,
                    batch: b + 1,
                    loss: mean,
                    lr,
                });
            }
            let scale = 1.0 / indices.len() as f64;
            let rule = state.begin_step(&c.optimizer, lr, scale);
            update(pool, places, rule, &mut **net, &mut **state, workers);
            *step += 1;
            loss_sum += loss;
            correct += right;
            let images = (b * batch + indices.len()).min(order.len());
            progress(&Progress {
                epoch,
                images,
                total: order.len(),
                loss: loss_sum / images as f64,
                accuracy: correct as f64 / images as f64,
                images_per_second: images as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        Ok(())
    }

    /// The workers that train each batch: `config.threads`, but at most one per
    /// [`MICRO_BATCH`] images of a batch (the calling thread is the first).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Accuracy and confusion matrix of the current network on `data` (no augmentation),
    /// with the trainer's threads: each takes a contiguous share of the images.
    pub fn evaluate(&mut self, data: &Dataset) -> Evaluation {
        let share = data.len().div_ceil(self.workers.len()).max(1);
        let (net, workers) = (&*self.net, &self.workers[..]);
        self.pool.run(&|k| {
            let range = (k * share).min(data.len())..((k + 1) * share).min(data.len());
            let mut w = write(&workers[k]);
            let e = evaluate_range(net, data, range, &mut w.ws);
            w.evaluation = Some(e);
        });
        let mut e = Evaluation {
            correct: 0,
            total: data.len(),
            confusion: [[0; CLASSES]; CLASSES],
            unclassified: 0,
        };
        for w in &mut self.workers {
            let part = w
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .evaluation
                .take()
                .expect("every worker evaluates its part");
            e.correct += part.correct;
            e.unclassified += part.unclassified;
            for (row, part) in e.confusion.iter_mut().zip(part.confusion) {
                for (n, m) in row.iter_mut().zip(part) {
                    *n += m;
                }
            }
        }
        e
    }
}

/// Accuracy and confusion matrix of `net` on `data`, using workspace `ws`.
pub fn evaluate_with<B, T>(
    net: &Classifier<B, T>,
    data: &Dataset,
    ws: &mut ChainWorkspace<B, Softmax<T, CLASSES>>,
) -> Evaluation
where
    T: Scalar,
    B: Layer<Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    evaluate_range(net, data, 0..data.len(), ws)
}

/// [`evaluate_with`] on the images `range` of `data` (`total` counts those).
fn evaluate_range<B, T>(
    net: &Classifier<B, T>,
    data: &Dataset,
    range: core::ops::Range<usize>,
    ws: &mut ChainWorkspace<B, Softmax<T, CLASSES>>,
) -> Evaluation
where
    T: Scalar,
    B: Layer<Scalar = T, Input = Image<T>, Output = [T; CLASSES]>,
{
    let mut e = Evaluation {
        correct: 0,
        total: range.len(),
        confusion: [[0; CLASSES]; CLASSES],
        unclassified: 0,
    };
    let mut image = [[[T::zero(); 32]; 32]; 1];
    for i in range {
        data.write_image(i, &mut image);
        let label = data.label(i);
        match net.classify(&image, ws) {
            Some(predicted) => {
                e.confusion[label][predicted] += 1;
                e.correct += usize::from(predicted == label);
            }
            None => e.unclassified += 1,
        }
    }
    e
}
