//! See the network: draw every layer of a trained LeNet-5 on one digit, as PNG files.
//!
//! ```text
//! cargo run --release --bin visualize                       # the first "8" of the test set
//! cargo run --release --bin visualize -- --index 0 --out viz-7 --force
//! cargo run --release --bin visualize -- --weights lenet.safetensors
//! cargo run --release --bin visualize -- --serve            # the live page, http://127.0.0.1:2828/
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use constnet::mnist::load_test_dir;
use constnet::viz;

const HELP: &str = "\
Draw every layer of a trained LeNet-5 on one test digit (like the article's Figures 18-20).

USAGE: cargo run --release --bin visualize -- [OPTIONS]

OPTIONS:
  --weights FILE   LeNet-5 weights: constnet's format, or a PyTorch state_dict saved as
                   safetensors [default: data/embedded/lenet5-mnist10k.cnet]
  --index N        which test digit [default: the first 8 of the test set]
  --data DIR       IDX directory (train-/t10k- images and labels) [default: data/mnist-10k]
  --out DIR        where to write the PNGs (created if missing) [default: viz]
  --force          overwrite PNGs that already exist in DIR
  --serve          instead of PNGs, serve the live page: draw a digit, watch every layer
  --port N         the live page's port; 0 picks a free one [default: 2828]
  --host ADDR      the address to listen on; anything but loopback must be asked for here
                   [default: 127.0.0.1]
  -h, --help       this text

Writes input.png, conv1.png, pool1.png, conv2.png, pool2.png, fc.png, output.png,
filters_conv1.png, filters_conv2.png and composite.png.";

struct Args {
    weights: PathBuf,
    index: Option<usize>,
    data: PathBuf,
    out: PathBuf,
    force: bool,
    serve: bool,
    port: u16,
    host: std::net::IpAddr,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = Args {
        weights: root.join("data/embedded/lenet5-mnist10k.cnet"),
        index: None,
        data: root.join("data/mnist-10k"),
        out: PathBuf::from("viz"),
        force: false,
        serve: false,
        port: constnet::live::DEFAULT_PORT,
        host: std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("weights") => args.weights = p.value()?.into(),
            Long("index") => args.index = Some(p.value()?.parse()?),
            Long("data") => args.data = p.value()?.into(),
            Long("out") => args.out = p.value()?.into(),
            Long("force") => args.force = true,
            Long("serve") => args.serve = true,
            Long("port") => args.port = p.value()?.parse()?,
            Long("host") => args.host = p.value()?.parse()?,
            Short('h') | Long("help") => {
                println!("{HELP}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let net = constnet::weights::load_lenet5(&args.weights)?;
    let test = load_test_dir(&args.data)?;
    if test.is_empty() {
        return Err(format!("{}: the test set holds no images", args.data.display()).into());
    }
    if args.serve {
        let app = constnet::live::App::new(net, test);
        return Ok(constnet::live::run(app, args.host, args.port)?);
    }
    let index = match args.index {
        Some(i) if i < test.len() => i,
        Some(i) => {
            return Err(format!("--index {i}: the test set has {} digits", test.len()).into());
        }
        None => (0..test.len())
            .find(|&i| test.label(i) == 8)
            .ok_or("the test set has no 8; pass --index")?,
    };
    let label = test.label(index);
    let about = format!("test digit {index} (label {label})");
    let pictures = viz::render(&net, &test.image::<f32>(index), &about);

    let files: Vec<(PathBuf, &viz::Figure)> = pictures
        .named()
        .into_iter()
        .map(|(stem, figure)| (args.out.join(format!("{stem}.png")), figure))
        .collect();
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, _)| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "not overwriting existing files (pass --force to replace them): {}",
                existing.join(", ")
            )
            .into());
        }
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("{}: cannot create the directory: {e}", args.out.display()))?;
    for (path, figure) in &files {
        figure.canvas.save_png(path, args.force)?;
    }
    match pictures.prediction {
        Some(class) => println!(
            "{about}: predicted {class} ({:.2}%), weights {}",
            100.0 * pictures.confidence,
            args.weights.display()
        ),
        None => println!(
            "{about}: no prediction (the probabilities are NaN), weights {}",
            args.weights.display()
        ),
    }
    println!(
        "wrote {} PNGs to {}/ (see composite.png)",
        files.len(),
        args.out.display()
    );
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
