//! The main job: train LeNet-5 on 28×28 IDX images, report test accuracy, save the weights.
//! The same command with ResNet-20 is `train-resnet20` (`src/bin/train_resnet20.rs`, which
//! includes this file): its kernels are a binary of their own, so that building the main job
//! does not compile them (about 20 s instead of 38 after a change to the library).
//!
//! ```text
//! cargo run --release --bin train                      # bundled 8,000/2,000 MNIST digits
//! cargo run --release --bin train -- --data /usr/share/datasets/fashion-mnist --epochs 10 --no-augment
//! cargo run --release --bin train-resnet20 -- --data /usr/share/datasets/fashion-mnist
//! cargo run --release --bin train -- --eval lenet5.cnet
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use constnet::augment::Augment;
use constnet::lenet::Image;
use constnet::mnist::{Dataset, load_dir, load_test_dir};
use constnet::optim::{Optimizer, Schedule};
use constnet::state_dict::load_state_dict;
use constnet::train::{
    CLASSES, Classifier, Evaluation, Leftovers, MICRO_BATCH, OneByOne, TrainConfig, Trainer,
    WholeMicroBatches, evaluate_with,
};
use constnet::viz::{EpochRow, plot_curves, write_curves_csv};
use constnet::weights::{Describe, MAGIC, load_file, load_lenet5, save_file};
use constnet::{BatchLayer, Layer, LeNet5, Loss, Network, ResNet20};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

const HELP: &str = "\
Train LeNet-5 (or ResNet-20) on MNIST-format images (bundled: 8,000 train / 2,000 test
real MNIST digits).

USAGE: cargo run --release --bin train -- [OPTIONS]
       cargo run --release --bin train-resnet20 -- [OPTIONS]

OPTIONS:
  --model NAME        lenet5 | resnet20 (He et al.'s CIFAR ResNet-20 with batch norm,
                      on the images padded to 32x32; only train-resnet20 has it)
                      [default: lenet5 for train, resnet20 for train-resnet20]
  --data DIR          IDX directory (train-/t10k- images and labels, raw or .gz)
                      [default: the bundled data/mnist-10k]
  --epochs N          passes over the training set [default: 15 for lenet5, 12 for
                      resnet20]
  --batch N           images per mini-batch [default: 32 for lenet5, 128 for
                      resnet20, which needs a multiple of 16]
  --lr X              base learning rate [default: 0.001 for adam, 0.05 for sgd
                      (0.1 for resnet20)]
  --optimizer NAME    adam | sgd (sgd = momentum 0.9) [default: adam for lenet5, sgd
                      for resnet20]
  --momentum X        sgd's momentum [default: 0.9]
  --weight-decay X    L2 weight decay, added to the gradients [default: 0 for
                      lenet5, 5e-4 for resnet20]
  --schedule NAME     cosine | step | constant (step = x0.1 every 5 epochs) [default: cosine]
  --loss NAME         ce (cross-entropy) | sse (the article's 1/2 sum (t - p)^2) [default: ce]
  --shift PX          random translation of training images, up to PX pixels [default: 2]
  --rotate DEG        random rotation of training images, up to DEG degrees [default: 10
                      for lenet5, 0 for resnet20]
  --scale FRAC        random scaling of training images, by up to ±FRAC [default: 0.1
                      for lenet5, 0 for resnet20]
  --no-augment        train on the images as they are (same as --shift 0 --rotate 0
                      --scale 0)
  --seed N            seed of weights, shuffles and shifts [default: 1]
  --threads N         worker threads per batch [default: the number of cores];
                      results depend on the seed and N, never on timing (so a
                      default run's on the machine's core count); at most one per 16
                      images of a batch is started (--batch 32 runs 2), as more
                      would have nothing to do
  --out FILE          where to save the weights [default: MODEL.cnet, e.g. lenet5.cnet]
  --curves PREFIX     per-epoch loss and accuracy go to PREFIX.csv and a plot to
                      PREFIX.png, updated every epoch [default: OUT without its
                      extension + \"-curves\", e.g. lenet5-curves.csv; a PREFIX
                      ending in .csv or .png stands for both files]
  --force             overwrite --out (and the --curves files) if they exist
  --eval FILE         only evaluate saved weights (of --model) on the test set
                      (constnet's format, or a PyTorch state_dict saved as .safetensors)
  -h, --help          this text";

/// The networks this command trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Model {
    LeNet5,
    ResNet20,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::LeNet5 => "lenet5",
            Model::ResNet20 => "resnet20",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Model::LeNet5 => "LeNet-5",
            Model::ResNet20 => "ResNet-20",
        }
    }
}

struct Args {
    model: Model,
    data: PathBuf,
    config: TrainConfig,
    out: PathBuf,
    force: bool,
    eval: Option<PathBuf>,
    curves: Option<PathBuf>,
}

/// The command line, `model` the default network.
fn parse(model: Model) -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = TrainConfig {
        // one worker per core (at most one per micro-batch of the batch is started)
        threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(256)),
        ..TrainConfig::default()
    };
    let mut data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    let (mut out, mut force, mut eval, mut lr) = (None, false, None, None);
    let (mut model, mut epochs, mut batch, mut sgd) = (model, None, None, None);
    let (mut momentum, mut weight_decay) = (0.9, None);
    let (mut shift, mut rotate, mut scale) = (None, None, None);
    let mut curves = None;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("model") => {
                model = match p.value()?.string()?.as_str() {
                    "lenet5" => Model::LeNet5,
                    "resnet20" => Model::ResNet20,
                    other => {
                        return Err(format!("unknown model '{other}' (lenet5 | resnet20)").into());
                    }
                }
            }
            Long("data") => data = p.value()?.into(),
            Long("epochs") => epochs = Some(p.value()?.parse()?),
            Long("batch") => batch = Some(p.value()?.parse()?),
            Long("lr") => lr = Some(p.value()?.parse()?),
            Long("optimizer") => {
                sgd = match p.value()?.string()?.as_str() {
                    "adam" => Some(false),
                    "sgd" => Some(true),
                    other => return Err(format!("unknown optimizer '{other}' (adam | sgd)").into()),
                }
            }
            Long("momentum") => momentum = p.value()?.parse()?,
            Long("weight-decay") => weight_decay = Some(p.value()?.parse()?),
            Long("schedule") => {
                config.schedule = match p.value()?.string()?.as_str() {
                    "cosine" => Schedule::Cosine,
                    "step" => Schedule::Step {
                        every: 5,
                        gamma: 0.1,
                    },
                    "constant" => Schedule::Constant,
                    other => return Err(format!("unknown schedule '{other}'").into()),
                }
            }
            Long("loss") => {
                config.loss = match p.value()?.string()?.as_str() {
                    "ce" => Loss::CrossEntropy,
                    "sse" => Loss::HalfSse,
                    other => return Err(format!("unknown loss '{other}' (ce | sse)").into()),
                }
            }
            Long("shift") => shift = Some(p.value()?.parse()?),
            Long("rotate") => rotate = Some(p.value()?.parse()?),
            Long("scale") => scale = Some(p.value()?.parse()?),
            Long("no-augment") => (shift, rotate, scale) = (Some(0.0), Some(0.0), Some(0.0)),
            Long("seed") => config.seed = p.value()?.parse()?,
            Long("threads") => config.threads = p.value()?.parse()?,
            Long("out") => out = Some(p.value()?.into()),
            Long("force") => force = true,
            Long("eval") => eval = Some(p.value()?.into()),
            Long("curves") => curves = Some(p.value()?.into()),
            Short('h') | Long("help") => {
                println!("{HELP}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    // Each model's defaults, where the command line said nothing.
    let resnet = model == Model::ResNet20;
    config.epochs = epochs.unwrap_or(if resnet { 12 } else { config.epochs });
    config.batch = batch.unwrap_or(if resnet { 128 } else { config.batch });
    let weight_decay = weight_decay.unwrap_or(if resnet { 5e-4 } else { 0.0 });
    if !((0.0..1.0).contains(&weight_decay) && (0.0..1.0).contains(&momentum)) {
        return Err("--weight-decay and --momentum must be in 0..1".into());
    }
    config.optimizer = if sgd.unwrap_or(resnet) {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        }
    } else {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    };
    let lenet_augment = config.augment;
    config.augment = Augment {
        shift: shift.unwrap_or(lenet_augment.shift),
        rotate: rotate.unwrap_or(if resnet { 0.0 } else { lenet_augment.rotate }),
        scale: scale.unwrap_or(if resnet { 0.0 } else { lenet_augment.scale }),
    };
    if config.epochs == 0 || config.batch == 0 || config.threads == 0 {
        return Err("--epochs, --batch and --threads must be at least 1".into());
    }
    if resnet && !config.batch.is_multiple_of(MICRO_BATCH) {
        return Err(format!(
            "--batch must be a multiple of {MICRO_BATCH} for resnet20: its batch norm normalises \
             each micro-batch of {MICRO_BATCH} images with their own statistics"
        )
        .into());
    }
    let a = config.augment;
    if !(0.0..=4.0).contains(&a.shift)
        || !(0.0..=45.0).contains(&a.rotate)
        || !(0.0..0.5).contains(&a.scale)
    {
        return Err(
            "--shift must be in 0..=4 pixels, --rotate in 0..=45 degrees, --scale in 0..0.5".into(),
        );
    }
    if config.threads > 256 {
        return Err("--threads must be at most 256".into());
    }
    config.lr = lr.unwrap_or(match config.optimizer {
        Optimizer::Adam { .. } => 1e-3,
        Optimizer::Sgd { .. } if resnet => 0.1,
        Optimizer::Sgd { .. } => 0.05,
    });
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err("--lr must be a positive number".into());
    }
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.cnet", model.name())));
    Ok(Args {
        model,
        data,
        config,
        out,
        force,
        eval,
        curves,
    })
}

fn report(test: &Evaluation) {
    println!("confusion matrix (rows: true class, columns: predicted):\n{test}");
    println!(
        "test accuracy: {:.2}% ({}/{})",
        100.0 * test.accuracy(),
        test.correct,
        test.total
    );
}

/// Whether the weights and the curves can be written where asked, checked before training
/// so that a bad path does not throw a finished run away: none of them is a directory, each
/// one's directory exists and takes new files, and the weights are not also a curves file
/// (compared after resolving `..` and symbolic links).
fn check_writable(out: &Path, curves: &[&Path]) -> Result<(), String> {
    let mut resolved = Vec::new();
    for path in std::iter::once(out).chain(curves.iter().copied()) {
        if path.is_dir() {
            return Err(format!("{} is a directory, not a file", path.display()));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // A short probe file of our own in that directory, removed at once.
        let probe = dir.join(format!(".constnet-probe-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let _ = std::fs::remove_file(&probe);
        let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        resolved.push(path.file_name().map(|name| dir.join(name)));
    }
    if let Some(clash) = curves
        .iter()
        .zip(&resolved[1..])
        .find(|(_, r)| r.is_some() && **r == resolved[0])
    {
        return Err(format!(
            "--out {} is the same file as the training curves {}; pick another --out or --curves",
            out.display(),
            clash.0.display()
        ));
    }
    Ok(())
}

/// Loads weights for `net` from `path`: constnet's format (by its magic bytes), or else a
/// PyTorch `state_dict` in safetensors. `net` is unchanged on error.
fn load_into<L: Layer + Describe>(
    net: &mut L,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut magic = Vec::new();
    (&mut file)
        .take(MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if magic == MAGIC {
        return Ok(load_file(net, path)?);
    }
    // A safetensors file of these parameters in f64, with a generous header, at most.
    let limit = (16 * net.param_count() + (1 << 20)) as u64;
    let mut bytes = magic;
    (&mut file)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{}: larger than any weights of this network",
            path.display()
        )
        .into());
    }
    load_state_dict(net, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// What `train` says of `--model resnet20`.
const RESNET20_ELSEWHERE: &str = "ResNet-20 trains with `cargo run --release --bin \
    train-resnet20` (the same options): its kernels are a binary of their own, so that \
    building the main job does not compile them";

/// Trains or evaluates as `args` say; ResNet-20 only `WITH_RESNET20` (the `train-resnet20`
/// binary: `if const`, so `train` does not compile it).
fn run<const WITH_RESNET20: bool>(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if const { !WITH_RESNET20 } && args.model == Model::ResNet20 {
        return Err(RESNET20_ELSEWHERE.into());
    }
    if let Some(weights) = &args.eval {
        let test = load_test_dir(&args.data)?;
        if test.is_empty() {
            return Err(format!("{}: the test set holds no images", args.data.display()).into());
        }
        match args.model {
            Model::LeNet5 => {
                let net = load_lenet5(weights)?;
                report(&evaluate_with(&net, &test, &mut LeNet5::<f32>::workspace()));
            }
            Model::ResNet20 if const { WITH_RESNET20 } => {
                let mut net = constnet::zeroed_box::<ResNet20<f32, 1, CLASSES>>();
                load_into(&mut *net, weights)?;
                report(&evaluate_with(
                    &net,
                    &test,
                    &mut ResNet20::<f32, 1, CLASSES>::workspace(),
                ));
            }
            Model::ResNet20 => return Err(RESNET20_ELSEWHERE.into()),
        }
        return Ok(());
    }
    let (train, test): (Dataset, Dataset) = load_dir(&args.data)?;
    if train.len() < MICRO_BATCH || test.is_empty() {
        return Err(format!(
            "{}: the training set holds fewer than {MICRO_BATCH} images, or the test set none",
            args.data.display()
        )
        .into());
    }
    let rng = &mut rand::rngs::StdRng::seed_from_u64(args.config.seed);
    match args.model {
        Model::LeNet5 => {
            train_model::<_, OneByOne>(&args, LeNet5::<f32>::new_boxed(rng), &train, &test)
        }
        Model::ResNet20 if const { WITH_RESNET20 } => train_model::<_, WholeMicroBatches>(
            &args,
            ResNet20::<f32, 1, CLASSES>::new_boxed(rng),
            &train,
            &test,
        ),
        Model::ResNet20 => Err(RESNET20_ELSEWHERE.into()),
    }
}

/// Trains `net` as `args` say, then saves it: the progress bar, per-epoch accuracies,
/// curves and the confusion matrix are the same for every model.
fn train_model<B, R>(
    args: &Args,
    net: Box<Classifier<B, f32>>,
    train: &Dataset,
    test: &Dataset,
) -> Result<(), Box<dyn std::error::Error>>
where
    B: BatchLayer<MICRO_BATCH, Scalar = f32, Input = Image<f32>, Output = [f32; CLASSES]>,
    R: Leftovers<B, f32>,
    Classifier<B, f32>: Describe,
{
    // A directory is refused below as such: --force would not help.
    if args.out.exists() && !args.out.is_dir() && !args.force {
        return Err(format!(
            "{} already exists; not overwriting it (pass --force to replace it, or --out FILE)",
            args.out.display()
        )
        .into());
    }
    // Training curves go beside the weights unless --curves names another prefix.
    // A prefix given as one of the two files (`--curves run.csv`) means that file's stem,
    // not `run.csv.csv`.
    let prefix = match &args.curves {
        Some(p) if matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "png")) => {
            p.with_extension("")
        }
        Some(p) => p.clone(),
        None => {
            let mut p = args.out.with_extension("").into_os_string();
            p.push("-curves");
            p.into()
        }
    };
    let with = |ext: &str| {
        let mut p = prefix.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let (csv, png) = (with(".csv"), with(".png"));
    {
        for f in [&csv, &png] {
            if f.exists() && !f.is_dir() && !args.force {
                return Err(format!(
                    "{} already exists; not overwriting it (pass --force)",
                    f.display()
                )
                .into());
            }
        }
    }
    check_writable(&args.out, &[&csv, &png])?;
    let c = args.config;
    let mut trainer = Trainer::<B, f32, R>::with_leftovers(net, c);
    println!(
        "training {} on {} ({} train / {} test images): {} epochs, batch {}, {:?} lr {} {:?}, loss {:?}, augment {:?}, seed {}, {} thread(s)",
        args.model.title(),
        args.data.display(),
        train.len(),
        test.len(),
        c.epochs,
        c.batch,
        c.optimizer,
        c.lr,
        c.schedule,
        c.loss,
        c.augment,
        c.seed,
        trainer.workers()
    );
    let style =
        ProgressStyle::with_template("epoch {prefix:>2} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> ");
    let start = Instant::now();
    let mut last = None;
    let mut rows = Vec::new();
    for epoch in 1..=c.epochs {
        let bar = ProgressBar::new(train.len() as u64).with_style(style.clone());
        bar.set_prefix(epoch.to_string());
        let mut summary = None;
        trainer.train_epoch(train, epoch, |p| {
            bar.set_position(p.images as u64);
            bar.set_message(format!(
                "loss {:.4}  {:.0} img/s",
                p.loss, p.images_per_second
            ));
            summary = Some(*p);
        })?;
        bar.finish_and_clear();
        let eval = trainer.evaluate(test);
        let p = summary.expect("an epoch has at least one batch");
        println!(
            "epoch {epoch:>2}: train loss {:.4}, train accuracy {:.2}%, test accuracy {:.2}%, {:.0} img/s",
            p.loss,
            100.0 * p.accuracy,
            100.0 * eval.accuracy(),
            p.images_per_second
        );
        rows.push(EpochRow {
            epoch,
            train_loss: p.loss,
            train_accuracy: p.accuracy,
            test_accuracy: eval.accuracy(),
        });
        write_curves_csv(&rows, &csv)?;
        plot_curves(&rows).save_png(&png, true)?;
        last = Some(eval);
    }
    println!("trained in {:.1} s", start.elapsed().as_secs_f64());
    save_file(&*trainer.net, &args.out, args.force)?;
    println!(
        "saved weights to {}, training curves to {} and {}",
        args.out.display(),
        csv.display(),
        png.display()
    );
    report(&last.expect("at least one epoch"));
    Ok(())
}

/// The command of `model` by default, ResNet-20 in it only `WITH_RESNET20`.
pub(crate) fn main_with<const WITH_RESNET20: bool>(model: Model) -> ExitCode {
    let args = match parse(model) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match run::<WITH_RESNET20>(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// Also a module of `train-resnet20`, which has a `main` of its own.
#[allow(dead_code)]
fn main() -> ExitCode {
    main_with::<false>(Model::LeNet5)
}
