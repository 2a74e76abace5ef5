//! The main job: train LeNet-5 on handwritten digits, report test accuracy, save the weights.
//!
//! ```text
//! cargo run --release --bin train                      # bundled 8,000/2,000 MNIST digits
//! cargo run --release --bin train -- --data /usr/share/datasets/fashion-mnist --epochs 10 --no-augment
//! cargo run --release --bin train -- --eval lenet5.cnet
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use constnet::augment::Augment;
use constnet::mnist::{Dataset, load_dir, load_test_dir};
use constnet::optim::{Optimizer, Schedule};
use constnet::train::{Evaluation, TrainConfig, Trainer, evaluate_with};
use constnet::viz::{EpochRow, plot_curves, write_curves_csv};
use constnet::weights::{load_lenet5, save_file};
use constnet::{LeNet5, Loss};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;

const HELP: &str = "\
Train LeNet-5 on MNIST-format digits (bundled: 8,000 train / 2,000 test real MNIST digits).

USAGE: cargo run --release --bin train -- [OPTIONS]

OPTIONS:
  --data DIR          IDX directory (train-/t10k- images and labels, raw or .gz)
                      [default: the bundled data/mnist-10k]
  --epochs N          passes over the training set [default: 15]
  --batch N           images per mini-batch [default: 32]
  --lr X              base learning rate [default: 0.001 for adam, 0.05 for sgd]
  --optimizer NAME    adam | sgd (sgd = momentum 0.9) [default: adam]
  --schedule NAME     cosine | step | constant (step = x0.1 every 5 epochs) [default: cosine]
  --loss NAME         ce (cross-entropy) | sse (the article's 1/2 sum (t - p)^2) [default: ce]
  --shift PX          random translation of training digits, up to PX pixels [default: 2]
  --rotate DEG        random rotation of training digits, up to DEG degrees [default: 10]
  --scale FRAC        random scaling of training digits, by up to ±FRAC [default: 0.1]
  --no-augment        train on the images as they are (same as --shift 0 --rotate 0
                      --scale 0); best for Fashion-MNIST
  --seed N            seed of weights, shuffles and shifts [default: 1]
  --threads N         worker threads per batch [default: 1]; at most one per 16
                      images of a batch is started (--batch 32 runs 2), as more
                      would have nothing to do
  --out FILE          where to save the weights [default: lenet5.cnet]
  --curves PREFIX     per-epoch loss and accuracy go to PREFIX.csv and a plot to
                      PREFIX.png, updated every epoch [default: OUT without its
                      extension + \"-curves\", e.g. lenet5-curves.csv]
  --force             overwrite --out (and the --curves files) if they exist
  --eval FILE         only evaluate saved weights on the test set (constnet's
                      format, or a PyTorch state_dict saved as .safetensors)
  -h, --help          this text";

struct Args {
    data: PathBuf,
    config: TrainConfig,
    out: PathBuf,
    force: bool,
    eval: Option<PathBuf>,
    curves: Option<PathBuf>,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut config = TrainConfig::default();
    let mut data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
    let (mut out, mut force, mut eval, mut lr) = (PathBuf::from("lenet5.cnet"), false, None, None);
    let mut curves = None;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("data") => data = p.value()?.into(),
            Long("epochs") => config.epochs = p.value()?.parse()?,
            Long("batch") => config.batch = p.value()?.parse()?,
            Long("lr") => lr = Some(p.value()?.parse()?),
            Long("optimizer") => {
                config.optimizer = match p.value()?.string()?.as_str() {
                    "adam" => Optimizer::ADAM,
                    "sgd" => Optimizer::SGD_MOMENTUM,
                    other => return Err(format!("unknown optimizer '{other}' (adam | sgd)").into()),
                }
            }
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
            Long("shift") => config.augment.shift = p.value()?.parse()?,
            Long("rotate") => config.augment.rotate = p.value()?.parse()?,
            Long("scale") => config.augment.scale = p.value()?.parse()?,
            Long("no-augment") => config.augment = Augment::NONE,
            Long("seed") => config.seed = p.value()?.parse()?,
            Long("threads") => config.threads = p.value()?.parse()?,
            Long("out") => out = p.value()?.into(),
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
    if config.epochs == 0 || config.batch == 0 || config.threads == 0 {
        return Err("--epochs, --batch and --threads must be at least 1".into());
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
        Optimizer::Sgd { .. } => 0.05,
    });
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err("--lr must be a positive number".into());
    }
    Ok(Args {
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

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(weights) = &args.eval {
        let test = load_test_dir(&args.data)?;
        if test.is_empty() {
            return Err(format!("{}: the test set holds no images", args.data.display()).into());
        }
        let net = load_lenet5(weights)?;
        report(&evaluate_with(&net, &test, &mut LeNet5::<f32>::workspace()));
        return Ok(());
    }
    let (train, test): (Dataset, Dataset) = load_dir(&args.data)?;
    if train.is_empty() || test.is_empty() {
        return Err(format!(
            "{}: the training or the test set holds no images",
            args.data.display()
        )
        .into());
    }
    // A directory is refused below as such: --force would not help.
    if args.out.exists() && !args.out.is_dir() && !args.force {
        return Err(format!(
            "{} already exists; not overwriting it (pass --force to replace it, or --out FILE)",
            args.out.display()
        )
        .into());
    }
    // Training curves go beside the weights unless --curves names another prefix.
    let prefix = args.curves.clone().unwrap_or_else(|| {
        let mut p = args.out.with_extension("").into_os_string();
        p.push("-curves");
        p.into()
    });
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
    println!(
        "training LeNet-5 on {} ({} train / {} test images): {} epochs, batch {}, {:?} lr {} {:?}, loss {:?}, augment {:?}, seed {}, {} thread(s)",
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
        c.threads
    );
    let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(c.seed));
    let mut trainer = Trainer::new(net, c);
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
        trainer.train_epoch(&train, epoch, |p| {
            bar.set_position(p.images as u64);
            bar.set_message(format!(
                "loss {:.4}  {:.0} img/s",
                p.loss, p.images_per_second
            ));
            summary = Some(*p);
        })?;
        bar.finish_and_clear();
        let eval = trainer.evaluate(&test);
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

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
