//! See the network: draw every layer of a trained LeNet-5 on one digit, as PNG files.
//!
//! ```text
//! cargo run --release --bin visualize                       # the first "8" of the test set
//! cargo run --release --bin visualize -- --index 0 --out viz-7 --force
//! cargo run --release --bin visualize -- --weights lenet.safetensors
//! cargo run --release --bin visualize -- --serve            # the live page, http://127.0.0.1:2828/
//! cargo run --release --bin visualize -- --model resnet20 --layer layer1 --layer layer3 \
//!     --weights resnet20.safetensors --data /usr/share/datasets/fashion-mnist
//! cargo run --release --bin visualize -- --model resnet18 --weights resnet18.safetensors \
//!     --image cat.jpg --labels imagenet_classes.txt   # the top 5 classes of a photo
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
  --model NAME     lenet5 (the default: every layer, as above), or any of the later
                   networks: alexnet, alexnet2012, zfnet, vgg16, resnet18, resnet20,
                   googlenet, densenet121; with --layer
  --layer NAME     (with --model) draw the feature maps of the layer called NAME, as
                   torchvision names it (conv1, layer1, layer2.0.conv1, features.0,
                   inception3a, ...); repeat for more. --weights is then a torchvision
                   state_dict saved as safetensors; without it the weights are random.
                   The digit is the network's input: padded to 32×32 (resnet20, 1
                   channel), or enlarged to 224×224 (227 for alexnet2012) in 3 channels
  --image FILE     (with --model, not resnet20) a photo (PNG or JPEG) as the input
                   instead of a digit, by torchvision's ImageNet evaluation transform:
                   shorter side resized to 256, centre 224×224 (227) cropped, normalised
                   by ImageNet's mean and deviation (googlenet: then transform_input, as
                   its torchvision weights expect). Prints the top 5 classes; --layer is
                   then optional
  --labels FILE    class names for the top 5, one per line (ImageNet's 1000 in
                   torchvision's order); without it, class numbers
  -h, --help       this text

Writes input.png, conv1.png, pool1.png, conv2.png, pool2.png, fc.png, output.png,
filters_conv1.png, filters_conv2.png and composite.png; with --model, MODEL-LAYER.png
for each --layer.";

struct Args {
    weights: PathBuf,
    index: Option<usize>,
    data: PathBuf,
    out: PathBuf,
    force: bool,
    serve: bool,
    port: u16,
    host: std::net::IpAddr,
    model: String,
    layers: Vec<String>,
    weights_given: bool,
    image: Option<PathBuf>,
    labels: Option<PathBuf>,
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
        model: "lenet5".into(),
        layers: Vec::new(),
        weights_given: false,
        image: None,
        labels: None,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("weights") => {
                args.weights = p.value()?.into();
                args.weights_given = true;
            }
            Long("model") => args.model = p.value()?.string()?,
            Long("layer") => args.layers.push(p.value()?.string()?),
            Long("image") => args.image = Some(p.value()?.into()),
            Long("labels") => args.labels = Some(p.value()?.into()),
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
    if args.model != "lenet5" {
        return later::run(&args);
    }
    if !args.layers.is_empty() {
        return Err("--layer goes with --model (LeNet-5 draws every layer)".into());
    }
    if args.image.is_some() {
        return Err("--image goes with --model (a photo for the ImageNet networks)".into());
    }
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

/// `--model`: the feature maps of named layers of the later networks.
mod later {
    use std::path::PathBuf;

    use std::path::Path;

    use constnet::mnist::load_test_dir;
    use constnet::photo::{Photo, googlenet_transform_input, imagenet_input};
    use constnet::state_dict::load_state_dict;
    use constnet::viz::{self, Grid};
    use constnet::{
        AlexNet, AlexNet2012, DenseNet121, GoogLeNet, Layer, Network, ResNet18, ResNet20, Tensor,
        Vgg16, ZfNet, tensor_names, zeroed_box,
    };
    use rand::SeedableRng;

    use super::Args;

    type Error = Box<dyn std::error::Error>;

    pub fn run(args: &Args) -> Result<(), Error> {
        if args.layers.is_empty() && args.image.is_none() {
            return Err(
                "--model needs at least one --layer NAME, or an --image to classify".into(),
            );
        }
        if args.labels.is_some() && args.image.is_none() {
            return Err("--labels names the classes of an --image".into());
        }
        if args.serve {
            return Err("--serve shows LeNet-5 only".into());
        }
        let rng = &mut rand::rngs::StdRng::seed_from_u64(0);
        macro_rules! models {
            ($($name:literal => $ty:ty),+ $(,)?) => {
                match args.model.as_str() {
                    $($name => draw(args, &mut *<$ty>::new_boxed(rng)),)+
                    other => Err(format!(
                        "--model {other}: not one of lenet5, {}",
                        [$($name),+].join(", ")
                    ).into()),
                }
            };
        }
        models! {
            "alexnet" => AlexNet<f32>,
            "alexnet2012" => AlexNet2012<f32>,
            "zfnet" => ZfNet<f32>,
            "vgg16" => Vgg16<f32>,
            "resnet18" => ResNet18<f32>,
            "resnet20" => ResNet20<f32, 1, 10>,
            "googlenet" => GoogLeNet<f32>,
            "densenet121" => DenseNet121<f32>,
        }
    }

    /// The test digit as the network's input: nearest-neighbour to its size, in every channel.
    fn input<X: Tensor<Scalar = f32>>(digit: &[[f32; 32]; 32]) -> Box<X> {
        let mut x = zeroed_box::<X>();
        let &[c, h, w] = X::DIMS else {
            unreachable!("the networks read C×H×W maps")
        };
        let flat = x.flat_mut();
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    flat[(ch * h + y) * w + xx] = digit[y * 32 / h][xx * 32 / w];
                }
            }
        }
        x
    }

    fn draw<L: Layer<Scalar = f32>>(args: &Args, net: &mut L) -> Result<(), Error> {
        let labels = match &args.labels {
            Some(path) => Some(read_labels(path)?),
            None => None,
        };
        let (x, about) = match &args.image {
            Some(path) => (
                photo_input::<L::Input>(path, &args.model)?,
                path.display().to_string(),
            ),
            None => {
                let (x, index, label) = digit_input::<L::Input>(args)?;
                (x, format!("test image {index} (label {label})"))
            }
        };
        // The input first: a bad photo or index is reported before gigabytes of weights load.
        if args.weights_given {
            let bytes = std::fs::read(&args.weights)
                .map_err(|e| format!("{}: {e}", args.weights.display()))?;
            load_state_dict(net, &bytes).map_err(|e| format!("{}: {e}", args.weights.display()))?;
        } else {
            eprintln!("note: no --weights: {} has random weights", args.model);
        }
        let mut y = zeroed_box::<L::Output>();
        let mut ws = zeroed_box::<L::Workspace>();
        // An evaluation pass that keeps every named layer's output: `infer` may skip those a
        // fused epilogue replaces (a batch norm's, before its ReLU).
        net.forward_in(&constnet::Pass::eval(), &x, &mut y, &mut ws);

        let mut files: Vec<(PathBuf, viz::Canvas)> = Vec::new();
        for name in &args.layers {
            let Some(act) = L::activation(&ws, name) else {
                let mut known: Vec<String> = tensor_names::<L>()
                    .into_iter()
                    .filter_map(|n| n.strip_suffix(".weight").map(str::to_string))
                    .collect();
                known.truncate(12);
                return Err(format!(
                    "{}: no layer called `{name}` (layers with weights include: {}, …)",
                    args.model,
                    known.join(", ")
                )
                .into());
            };
            let &[c, h, _] = act.dims() else {
                return Err(format!("`{name}` is a vector, not feature maps").into());
            };
            let columns = (c as f64).sqrt().ceil() as usize;
            let zoom = (96 / h).max(1);
            let canvas = viz::activation_tiles(
                &act,
                Grid {
                    zoom,
                    gap: 2,
                    columns,
                },
            )
            .expect("C×H×W maps draw");
            files.push((
                args.out.join(format!("{}-{}.png", args.model, name)),
                canvas,
            ));
        }
        if let Some((path, _)) = files.iter().find(|(p, _)| p.exists() && !args.force) {
            return Err(format!(
                "not overwriting {} (pass --force to replace it)",
                path.display()
            )
            .into());
        }
        if !files.is_empty() {
            std::fs::create_dir_all(&args.out)
                .map_err(|e| format!("{}: cannot create the directory: {e}", args.out.display()))?;
        }
        for (path, canvas) in &files {
            canvas.save_png(path, args.force)?;
            println!("wrote {}", path.display());
        }
        if args.image.is_some() {
            print_top5(y.flat(), labels.as_deref(), &about)?;
        } else {
            println!("{about}");
        }
        Ok(())
    }

    /// The test image `--index` (the first by default) as the network's input, its index and
    /// label.
    fn digit_input<X: Tensor<Scalar = f32>>(args: &Args) -> Result<(Box<X>, usize, usize), Error> {
        let test = load_test_dir(&args.data)?;
        let index = match args.index {
            Some(i) if i < test.len() => i,
            Some(i) => {
                return Err(format!("--index {i}: the test set has {} images", test.len()).into());
            }
            None if test.is_empty() => {
                return Err(
                    format!("{}: the test set holds no images", args.data.display()).into(),
                );
            }
            None => 0,
        };
        let digit = test.image::<f32>(index);
        Ok((input::<X>(&digit[0]), index, test.label(index)))
    }

    /// A photo as the input of an ImageNet network (`3 × H × W`), as torchvision's
    /// evaluation transform makes it.
    fn photo_input<X: Tensor<Scalar = f32>>(path: &Path, model: &str) -> Result<Box<X>, Error> {
        let &[3, h, w] = X::DIMS else {
            return Err(format!(
                "--image: {model} does not read photos (its input is {:?}); use --index",
                X::DIMS
            )
            .into());
        };
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let photo = Photo::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut x = zeroed_box::<X>();
        imagenet_input(&photo, h, w, x.flat_mut())?;
        if model == "googlenet" {
            googlenet_transform_input(x.flat_mut());
        }
        Ok(x)
    }

    /// One class name per line; as many lines as classes are asked for.
    fn read_labels(path: &Path) -> Result<Vec<String>, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--labels {}: {e}", path.display()))?;
        Ok(text.lines().map(|l| l.trim().to_string()).collect())
    }

    /// Prints the five most probable classes of `probs`, with their names if given.
    fn print_top5(probs: &[f32], labels: Option<&[String]>, about: &str) -> Result<(), Error> {
        if let Some(names) = labels
            && names.len() != probs.len()
        {
            return Err(format!(
                "--labels: {} names for {} classes",
                names.len(),
                probs.len()
            )
            .into());
        }
        if probs.iter().any(|p| !p.is_finite()) {
            return Err("the network's output is not finite (NaN or infinite weights?)".into());
        }
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        println!("{about}: top 5 of {} classes", probs.len());
        for &class in order.iter().take(5) {
            let name = labels.map_or(String::new(), |n| format!("  {}", n[class]));
            println!("{:>6.2}%  class {class:>4}{name}", 100.0 * probs[class]);
        }
        Ok(())
    }
}
