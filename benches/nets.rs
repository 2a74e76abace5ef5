//! The article's later networks and LeNet-5, `f32`, at the sizes of the performance issue's
//! table: each network's inference of one image (evaluation mode), ResNet-18's training step
//! at batch 8, ResNet-20's (1×32×32, 10 classes) inference and training step at batch 64, and
//! LeNet-5's at batch 64. A training step is what PyTorch's loop does: the forward pass in
//! training mode, the cross-entropy, the backward pass and an SGD update with momentum 0.9
//! and weight decay 5·10⁻⁴.
//!
//! ```text
//! cargo bench --bench nets                           # the table's cases, one thread
//! cargo bench --bench nets -- resnet20               # the cases whose name contains it
//! cargo bench --bench nets -- --all                  # and every network's step at batch 2
//! cargo bench --bench nets -- --tsv > constnet.tsv   # for compare/nets_torch.py
//! cargo bench --bench nets -- --sizes                # README's table of sizes
//! cargo bench --bench nets --features threads -- --threads=2   # two threads inside the large layers
//! ```
//!
//! Each case runs once to warm up, then again until 2 s have passed and at least 5 calls
//! were timed (at most 200); it prints the median and the fastest call. `compare/nets_torch.py`
//! times the same cases in PyTorch and, given this program's `--tsv` output, prints both
//! side by side with the ratios.
//!
//! This program is also the compile-cost check of BENCHMARKS.md: it instantiates every
//! network's inference, training forward and backward passes in `f32`. It is a bench target
//! (`harness = false`), not an example, because `cargo test` builds every example: this one
//! alone cost a fresh clone's `cargo test` 68 s of compilation.

#[path = "peak.rs"]
mod peak;
use peak::{CHAINS, Peak, ROUNDS};

use std::hint::black_box;
use std::time::Instant;

use constnet::simd;
use constnet::{
    AlexNet, AlexNet2012, BatchLayer, DenseNet121, GoogLeNet, Layer, LeNet5, Loss, Network,
    Optimizer, OptimizerState, Pass, ResNet18, ResNet20, Scalar, Tensor, TensorKind, Vgg16, ZfNet,
    layer::count, zeroed_box,
};
use rand::{Rng, RngExt, SeedableRng};

/// The options of one run.
struct Options {
    /// Run only the cases whose name contains this.
    only: Option<String>,
    /// Also every network's training step at batch 2.
    all: bool,
    /// Tab-separated lines instead of a table.
    tsv: bool,
}

impl Options {
    fn wants(&self, case: &str, extra: bool) -> bool {
        match &self.only {
            Some(only) => case.contains(only.as_str()),
            None => !extra || self.all,
        }
    }
}

/// Calls `f` once, then until 2 s have passed and at least 5 calls were timed (at most
/// 200); returns the median and the fastest call, in seconds.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut secs = Vec::new();
    let start = Instant::now();
    while secs.len() < 200 && (secs.len() < 5 || start.elapsed().as_secs_f64() < 2.0) {
        let t = Instant::now();
        f();
        secs.push(t.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    (secs[secs.len() / 2], secs[0])
}

/// Prints one case: its name, the images per call, and the median and fastest call.
fn report(options: &Options, case: &str, images: usize, (median, fastest): (f64, f64)) {
    if options.tsv {
        println!(
            "{case}\t{images}\t{:.6}\t{:.6}",
            median * 1e3,
            fastest * 1e3
        );
    } else {
        let per_image = median * 1e3 / images as f64;
        println!(
            "| {case} | {:.3} | {:.3} | {per_image:.4} |",
            median * 1e3,
            fastest * 1e3
        );
    }
}

/// `n` random inputs in [−1, 1), on the heap.
fn inputs<X: Tensor, const N: usize>(rng: &mut impl Rng) -> Box<[X; N]> {
    let mut x = zeroed_box::<[X; N]>();
    for v in Tensor::flat_slice_mut(&mut x[..]) {
        *v = X::Scalar::from_f64(rng.random_range(-1.0..1.0));
    }
    x
}

/// The inference of one image by a network ending in a softmax, in evaluation mode.
fn infer_one<L: Layer>(options: &Options, case: &str, net: &L, rng: &mut impl Rng) {
    let x = inputs::<L::Input, 1>(rng);
    let mut y = zeroed_box::<L::Output>();
    let mut ws = zeroed_box::<L::Workspace>();
    let t = time(|| net.infer(black_box(&x[0]), &mut y, &mut ws));
    report(options, case, 1, t);
}

/// The inference of a batch of `N` images.
fn infer_batch<L: BatchLayer<N>, const N: usize>(
    options: &Options,
    case: &str,
    net: &L,
    rng: &mut impl Rng,
) {
    let x = inputs::<L::Input, N>(rng);
    let mut y = zeroed_box::<[L::Output; N]>();
    let mut ws = zeroed_box::<L::BatchWorkspace>();
    let t = time(|| net.infer_batch(black_box(&x), &mut y, &mut ws));
    report(options, case, N, t);
}

/// A network that ends in a softmax over `C` classes: its body and the softmax.
type Classifier<B, const C: usize> = constnet::Chain<B, constnet::Softmax<f32, C>>;

/// One training step over `M · N` images as `M` micro-batches of `N` (the gradients summed,
/// as the trainer sums its micro-batches), then one SGD update with momentum.
fn train_step<B, const C: usize, const N: usize, const M: usize>(
    options: &Options,
    case: &str,
    net: &mut Classifier<B, C>,
    rng: &mut impl Rng,
) where
    B: BatchLayer<N, Scalar = f32, Output = [f32; C]>,
    Classifier<B, C>: BatchLayer<N, Scalar = f32>,
{
    let xs: Vec<Box<[B::Input; N]>> = (0..M).map(|_| inputs::<B::Input, N>(rng)).collect();
    let labels: [usize; N] = core::array::from_fn(|n| n % C);
    let mut ws = Classifier::<B, C>::batch_workspace::<N>();
    let mut grads = zeroed_box::<Classifier<B, C>>();
    let mut state = zeroed_box::<OptimizerState<Classifier<B, C>>>();
    let sgd = Optimizer::Sgd {
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let mut step = 0;
    let t = time(|| {
        step += 1;
        grads.zero_params();
        for (k, x) in xs.iter().enumerate() {
            let pass = Pass::train(7, (step * M + k) as u64);
            let loss = Loss::CrossEntropy;
            net.backprop_batch_in(&pass, black_box(x), &labels, loss, &mut ws, &mut grads);
        }
        state.step(&sgd, 0.01, 1.0 / (M * N) as f64, net, &grads);
    });
    report(options, case, M * N, t);
}

/// Prints one core's FMA peak in GFLOP/s (`peak` in `--tsv`: GFLOP/s in the median's place).
fn peak(options: &Options) {
    let flops = (2 * simd::current().lanes() * ROUNDS * CHAINS) as f64;
    let (median, fastest) = time(|| {
        black_box(simd::dispatch(Peak(black_box(1.0))));
    });
    let (gflops, best) = (flops / median / 1e9, flops / fastest / 1e9);
    if options.tsv {
        println!("peak\t0\t{gflops:.1}\t{best:.1}");
    } else {
        println!(
            "| one core's FMA peak ({:?}), GFLOP/s | {gflops:.1} | {best:.1} | |",
            simd::current()
        );
    }
}

/// One row of README's table: the counts of a zeroed network (never written, so its pages
/// stay untouched) and the sizes of the network and its workspaces.
fn sizes_row<L: BatchLayer<2>>(name: &str) {
    let net = zeroed_box::<L>();
    let buffers: usize = (0..count::<L>(TensorKind::Buffer))
        .map(|i| net.buffer(i).len())
        .sum::<usize>()
        + count::<L>(TensorKind::Counter);
    println!(
        "| {name} | {} | {buffers} | {} | {} | {} |",
        net.param_count(),
        mib(size_of::<L>()),
        mib(size_of::<L::Workspace>()),
        mib(size_of::<L::BatchWorkspace>()),
    );
}

/// MiB, to one decimal.
fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// For each network: its inference of one image if it is in the table (`infer`), its
/// training step at batch 2 (with `--all`), and its row of `--sizes`.
macro_rules! networks {
    ($options:ident, $rng:ident, $sizes:ident;
     $($name:literal => $ty:ty, infer: $infer:literal;)+) => {
        $(
            if $sizes {
                sizes_row::<$ty>($name);
            } else {
                let case = concat!($name, "/infer/1");
                let train = concat!($name, "/train/2");
                let (run_infer, run_train) = ($options.wants(case, !$infer), $options.wants(train, true));
                if run_infer || run_train {
                    let mut net = <$ty>::new_boxed($rng);
                    if run_infer {
                        infer_one(&$options, case, &*net, $rng);
                    }
                    if run_train {
                        train_step::<_, _, 2, 1>(&$options, train, &mut net, $rng);
                    }
                }
            }
        )+
    };
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = args
        .iter()
        .find_map(|a| a.strip_prefix("--threads="))
        .map_or(1, |n| n.parse().expect("--threads=N takes a number"));
    // Threads inside a layer (`constnet::threads`): today the large convolutions' forward
    // passes, so the batch-1 inferences and the forward half of ResNet-18's training step.
    #[cfg(feature = "threads")]
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| constnet::threads::within_layers(threads, || run(&args)));
    }
    // Without the feature a split layer runs its halves one after the other: not a timing
    // of two threads.
    #[cfg(not(feature = "threads"))]
    {
        assert!(
            threads == 1,
            "--threads={threads} needs the threads feature: \
             cargo bench --bench nets --features threads -- --threads={threads}"
        );
        run(&args);
    }
}

fn run(args: &[String]) {
    let flag = |f: &str| args.iter().any(|a| a == f);
    let options = Options {
        only: args.iter().find(|a| !a.starts_with("--")).cloned(),
        all: flag("--all"),
        tsv: flag("--tsv"),
    };
    let sizes = flag("--sizes");
    let rng = &mut rand::rngs::StdRng::seed_from_u64(2026);
    if sizes {
        println!(
            "| network | parameters | buffer values | weights (f32) | workspace, 1 image | batch workspace, 2 images |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
    } else if !options.tsv {
        println!("| case | ms per call (median) | fastest | ms per image |");
        println!("|---|---:|---:|---:|");
    }
    if !sizes && options.wants("peak", false) {
        peak(&options);
    }
    networks! { options, rng, sizes;
        "alexnet" => AlexNet<f32>, infer: true;
        "alexnet2012" => AlexNet2012<f32>, infer: false;
        "zfnet" => ZfNet<f32>, infer: false;
        "vgg16" => Vgg16<f32>, infer: true;
        "resnet18" => ResNet18<f32>, infer: true;
        "resnet20" => ResNet20<f32, 1, 10>, infer: false;
        "googlenet" => GoogLeNet<f32>, infer: true;
        "densenet121" => DenseNet121<f32>, infer: true;
    }
    if sizes {
        return;
    }
    if options.wants("resnet18/train/8", false) {
        let mut net = ResNet18::<f32>::new_boxed(rng);
        train_step::<_, _, 8, 1>(&options, "resnet18/train/8", &mut net, rng);
    }
    let (resnet20_infer, resnet20_train) = ("resnet20/infer/64", "resnet20/train/64");
    if options.wants(resnet20_infer, false) || options.wants(resnet20_train, false) {
        let mut net = ResNet20::<f32, 1, 10>::new_boxed(rng);
        if options.wants(resnet20_infer, false) {
            infer_batch::<_, 64>(&options, resnet20_infer, &*net, rng);
        }
        if options.wants(resnet20_train, false) {
            train_step::<_, _, 64, 1>(&options, resnet20_train, &mut net, rng);
        }
    }
    let (lenet_infer, lenet_train) = ("lenet5/infer/64", "lenet5/train/64");
    if options.wants(lenet_infer, false) || options.wants(lenet_train, false) {
        let mut net = LeNet5::<f32>::new_boxed(rng);
        if options.wants(lenet_infer, false) {
            infer_batch::<_, 64>(&options, lenet_infer, &*net, rng);
        }
        if options.wants(lenet_train, false) {
            // four micro-batches of 16, as the trainer runs a batch of 64
            train_step::<_, _, 16, 4>(&options, lenet_train, &mut net, rng);
        }
    }
}
