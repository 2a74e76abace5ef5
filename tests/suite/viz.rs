//! The `viz` pictures show exactly what the network computes: every tile pixel of the bundled
//! "8" is checked against `LeNet5::activations` under the documented grey scaling, and bad
//! weights files give errors that name the file.
#![cfg(feature = "viz")]

use std::path::{Path, PathBuf};

use constnet::viz::{self, Canvas, Figure, Grid, Region};
use constnet::weights::LoadError;
use constnet::{Layer, LeNet5};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn default_weights() -> PathBuf {
    root().join("data/embedded/lenet5-mnist10k.cnet")
}

/// The network, the first "8" of the bundled test set and its index.
fn eight() -> (Box<LeNet5<f32>>, constnet::Image<f32>, usize) {
    let net = constnet::weights::load_lenet5(default_weights()).expect("bundled weights load");
    let (_, test) = constnet::mnist::load_dir(root().join("data/mnist-10k")).unwrap();
    let i = (0..test.len()).find(|&i| test.label(i) == 8).unwrap();
    (net, test.image(i), i)
}

/// A scratch directory of this test, removed first if left over.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("constnet-viz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn layer_max(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Checks every pixel of a tile grid in `figure`'s region `name`: inside tile `i`, value
/// `(r, c)`'s `zoom × zoom` square has grey `to_gray(values[i][r][c])`; every other pixel is
/// the panel colour. So the region holds exactly `count` tiles, each the right map.
fn check_tiles(
    figure: &Figure,
    name: &str,
    grid: Grid,
    values: &[f32],
    (count, h, w): (usize, usize, usize),
    to_gray: impl Fn(f64) -> u8,
) {
    assert_eq!(values.len(), count * h * w);
    let region = figure
        .region(name)
        .unwrap_or_else(|| panic!("no region {name}"));
    assert_eq!(
        (region.width, region.height),
        grid.size(count, h, w),
        "{name}: size"
    );
    let mut expected = vec![None; region.width * region.height];
    for i in 0..count {
        let (x0, y0) = grid.tile_origin(i, h, w);
        for r in 0..h {
            for c in 0..w {
                let g = to_gray(f64::from(values[(i * h + r) * w + c]));
                for dy in 0..grid.zoom {
                    for dx in 0..grid.zoom {
                        let (x, y) = (x0 + c * grid.zoom + dx, y0 + r * grid.zoom + dy);
                        expected[y * region.width + x] = Some(g);
                    }
                }
            }
        }
    }
    let mut tiles_seen = 0;
    for y in 0..region.height {
        for x in 0..region.width {
            let got = figure.canvas.get(region.x + x, region.y + y);
            match expected[y * region.width + x] {
                Some(g) => {
                    assert_eq!(got, [g; 3], "{name}: pixel ({x}, {y}) of the region");
                    tiles_seen += 1;
                }
                None => assert_eq!(got, viz::PANEL, "{name}: gap pixel ({x}, {y})"),
            }
        }
    }
    assert_eq!(tiles_seen, count * h * w * grid.zoom * grid.zoom);
}

fn check_strip(figure: &Figure, name: &str, values: &[f32]) {
    let s = viz::FC_STRIP;
    let region = figure.region(name).unwrap();
    assert_eq!(
        (region.width, region.height),
        s.size(values.len()),
        "{name}: size"
    );
    let m = layer_max(values);
    for (i, &v) in values.iter().enumerate() {
        let x = region.x + s.cell_x(i);
        let a = f64::from(v);
        let g = viz::activation_gray(a, m);
        assert_eq!(
            figure.canvas.get(x, region.y + s.bar),
            [g; 3],
            "{name}[{i}] square"
        );
        assert_eq!(
            figure
                .canvas
                .get(x + s.cell - 1, region.y + s.bar + s.cell - 1),
            [g; 3]
        );
        let bar = (s.bar as f64 * a / m).round().clamp(0.0, s.bar as f64) as usize;
        let column: usize = (0..s.bar)
            .filter(|&y| figure.canvas.get(x, region.y + y) == viz::BAR)
            .count();
        assert_eq!(column, bar, "{name}[{i}] bar height");
    }
}

#[test]
fn composite_tiles_are_the_forward_pass_activations_of_the_bundled_eight() {
    let (net, image, index) = eight();
    let pictures = viz::render(&net, &image, &format!("test digit {index} (label 8)"));

    // The library's own forward pass and workspace, independently of `render`.
    let mut ws = LeNet5::<f32>::workspace();
    let probs = net.probabilities(&image, &mut ws);
    let a = LeNet5::<f32>::activations(&ws);
    assert_eq!(
        pictures.prediction,
        Some(8),
        "the trained network reads the 8"
    );
    assert_eq!(pictures.confidence, f64::from(probs[8]));

    let act = |values: &[f32]| {
        let m = layer_max(values);
        move |v: f64| viz::activation_gray(v, m)
    };
    let input = image.as_flattened().as_flattened();
    let relu1 = a.relu1.as_flattened().as_flattened();
    let pool1 = a.pool1.as_flattened().as_flattened();
    let relu2 = a.relu2.as_flattened().as_flattened();
    let pool2 = a.pool2.as_flattened().as_flattened();
    let layers = [
        (
            "input",
            viz::INPUT_GRID,
            input,
            (1, 32, 32),
            &pictures.input,
        ),
        (
            "conv1",
            viz::CONV1_GRID,
            relu1,
            (6, 28, 28),
            &pictures.conv1,
        ),
        (
            "pool1",
            viz::POOL1_GRID,
            pool1,
            (6, 14, 14),
            &pictures.pool1,
        ),
        (
            "conv2",
            viz::CONV2_GRID,
            relu2,
            (16, 10, 10),
            &pictures.conv2,
        ),
        ("pool2", viz::POOL2_GRID, pool2, (16, 5, 5), &pictures.pool2),
    ];
    // The composite and each single-layer figure hold the same drawings.
    for (name, grid, values, shape, single) in layers {
        for figure in [&pictures.composite, single] {
            check_tiles(figure, name, grid, values, shape, act(values));
        }
    }
    for figure in [&pictures.composite, &pictures.fc] {
        check_strip(figure, "fc1", a.relu3);
        check_strip(figure, "fc2", a.relu4);
    }

    // A 5×5 map is big enough to see: at least 8 pixels per activation.
    const { assert!(viz::POOL2_GRID.zoom >= 8 && viz::CONV2_GRID.zoom >= 8) };

    // Layers appear top to bottom in the composite, in the network's order.
    let names: Vec<&str> = pictures.composite.regions.iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "output"
        ]
    );
    for pair in pictures.composite.regions.windows(2) {
        assert!(pair[0].y + pair[0].height <= pair[1].y, "{pair:?}");
    }
}

#[test]
fn the_output_node_of_the_prediction_is_bright_and_highlighted() {
    let (net, image, _) = eight();
    let pictures = viz::render(&net, &image, "an 8");
    let mut ws = LeNet5::<f32>::workspace();
    let probs = net.probabilities(&image, &mut ws);
    for figure in [&pictures.composite, &pictures.output] {
        let r: &Region = figure.region("output").unwrap();
        for (i, &p) in probs.iter().enumerate() {
            // Square i starts at (NODE_FRAME + i·(NODE + NODE_GAP), NODE_FRAME).
            let x = r.x + viz::NODE_FRAME + i * (viz::NODE + viz::NODE_GAP);
            let y = r.y + viz::NODE_FRAME;
            let g = (255.0 * f64::from(p)).round() as u8;
            assert_eq!(
                figure.canvas.get(x + viz::NODE / 2, y + viz::NODE / 2),
                [g; 3]
            );
            let frame = figure.canvas.get(x - 2, y - 2);
            assert_eq!(frame == viz::HIGHLIGHT, i == 8, "class {i} frame");
        }
        let bright = figure
            .canvas
            .get(r.x + 4 + 8 * (viz::NODE + viz::NODE_GAP) + 5, r.y + 9);
        assert!(bright[0] >= 250, "the 8 node is (nearly) white: {bright:?}");
    }
}

#[test]
fn filters_are_drawn_with_the_signed_mapping() {
    let (net, image, _) = eight();
    let pictures = viz::render(&net, &image, "an 8");
    let w1 = net.param(0);
    let w2 = net.param(2);
    assert_eq!((w1.len(), w2.len()), (6 * 25, 16 * 6 * 25));
    let signed = |w: &[f32]| {
        let m = w.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
        move |v: f64| viz::weight_gray(v, m)
    };
    check_tiles(
        &pictures.filters_conv1,
        "filters_conv1",
        viz::FILTERS1_GRID,
        w1,
        (6, 5, 5),
        signed(w1),
    );
    check_tiles(
        &pictures.filters_conv2,
        "filters_conv2",
        viz::FILTERS2_GRID,
        w2,
        (96, 5, 5),
        signed(w2),
    );
    // 16 filters, one row each, 6 input maps per row.
    let r = pictures.filters_conv2.region("filters_conv2").unwrap();
    assert_eq!((r.width, r.height), (6 * 50 + 5 * 6, 16 * 50 + 15 * 6));
}

#[test]
fn every_picture_saves_as_a_png_of_its_size_and_is_not_overwritten_silently() {
    let (net, image, _) = eight();
    let pictures = viz::render(&net, &image, "an 8");
    let dir = scratch("save");
    let stems: Vec<&str> = pictures.named().iter().map(|(s, _)| *s).collect();
    assert_eq!(
        stems,
        [
            "input",
            "conv1",
            "pool1",
            "conv2",
            "pool2",
            "fc",
            "output",
            "filters_conv1",
            "filters_conv2",
            "composite"
        ]
    );
    for (stem, figure) in pictures.named() {
        let path = dir.join(format!("{stem}.png"));
        figure.canvas.save_png(&path, false).unwrap();
        let decoded = decode(&path);
        assert_eq!(decoded, figure.canvas, "{stem}.png holds the canvas");
    }
    // A second save without overwrite keeps the file and says so; with it, replaces it.
    let path = dir.join("composite.png");
    let other = Canvas::new(3, 2, [9, 9, 9]);
    let err = other.save_png(&path, false).unwrap_err();
    assert_eq!(err.error.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("composite.png"), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(decode(&path), pictures.composite.canvas);
    other.save_png(&path, true).unwrap();
    assert_eq!(decode(&path), other);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn decode(path: &Path) -> Canvas {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut canvas = Canvas::new(w, h, [0; 3]);
    for y in 0..h {
        for x in 0..w {
            let i = 3 * (y * w + x);
            canvas.set(x, y, [buf[i], buf[i + 1], buf[i + 2]]);
        }
    }
    canvas
}

#[test]
fn missing_or_wrong_weights_files_give_errors_that_name_the_file() {
    let dir = scratch("load");

    let missing = dir.join("no-such-weights.cnet");
    let err = constnet::weights::load_lenet5(&missing).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
    assert_eq!(err.path(), missing);
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-weights.cnet") && msg.contains("cannot read"),
        "{msg}"
    );

    let text = dir.join("notes.txt");
    std::fs::write(&text, "these are not weights").unwrap();
    let err = constnet::weights::load_lenet5(&text).unwrap_err();
    assert!(matches!(err, LoadError::Unrecognized { .. }), "{err:?}");
    assert_eq!(err.path(), text);
    let msg = err.to_string();
    assert!(
        msg.contains("notes.txt") && msg.contains("not a weights file"),
        "{msg}"
    );

    // constnet's magic but cut short: the weights module's error, naming the file.
    let bytes = std::fs::read(default_weights()).unwrap();
    let truncated = dir.join("truncated.cnet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = constnet::weights::load_lenet5(&truncated).unwrap_err();
    assert!(matches!(err, LoadError::Constnet(_)), "{err:?}");
    assert_eq!(err.path(), truncated);
    let msg = err.to_string();
    assert!(
        msg.contains("truncated.cnet") && msg.contains("truncated weights"),
        "{msg}"
    );

    // A directory is not a file.
    let err = constnet::weights::load_lenet5(&dir).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");

    // A safetensors state_dict with a NaN: the problem itself, naming file and tensor.
    #[cfg(feature = "safetensors")]
    {
        // `to_safetensors` refuses a NaN: write it into the saved bytes (F32, little-endian).
        let net = constnet::weights::load_lenet5(default_weights()).unwrap();
        let mut bytes = net.to_safetensors().unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let start = header["conv1.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        let at = 8 + n + start + 3 * 4;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let nan = dir.join("nan.safetensors");
        std::fs::write(&nan, bytes).unwrap();
        let err = constnet::weights::load_lenet5(&nan).unwrap_err();
        assert!(matches!(err, LoadError::Safetensors { .. }), "{err:?}");
        assert_eq!(err.path(), nan);
        let msg = err.to_string();
        assert!(
            msg.contains("nan.safetensors") && msg.contains("`conv1.weight`"),
            "{msg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "safetensors")]
#[test]
fn pytorch_safetensors_weights_load_too() {
    let path = root().join("tests/data/pytorch-lenet-mnist10k/lenet.safetensors");
    let net = constnet::weights::load_lenet5(&path).unwrap();
    let (_, image, _) = eight();
    let pictures = viz::render(&net, &image, "an 8");
    assert!(pictures.confidence > 0.0 && pictures.confidence <= 1.0);
    let r = pictures.composite.region("pool2").unwrap();
    assert_eq!((r.width, r.height), viz::POOL2_GRID.size(16, 5, 5));
}

#[test]
fn training_curves_csv_and_plot() {
    let rows: Vec<viz::EpochRow> = (1..=15)
        .map(|e| viz::EpochRow {
            epoch: e,
            train_loss: 0.9 / e as f64,
            train_accuracy: 0.8 + 0.012 * e as f64,
            test_accuracy: 0.85 + 0.0085 * e as f64,
        })
        .collect();
    let dir = scratch("curves");
    let csv = dir.join("curves.csv");
    viz::write_curves_csv(&rows, &csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("epoch,train_loss,train_accuracy,test_accuracy")
    );
    let back: Vec<viz::EpochRow> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            viz::EpochRow {
                epoch: f[0].parse().unwrap(),
                train_loss: f[1].parse().unwrap(),
                train_accuracy: f[2].parse().unwrap(),
                test_accuracy: f[3].parse().unwrap(),
            }
        })
        .collect();
    assert_eq!(back, rows, "the CSV reads back exactly");

    let plot = viz::plot_curves(&rows);
    assert_eq!((plot.width(), plot.height()), viz::PLOT_SIZE);
    let count = |c: viz::Rgb| plot.pixels().chunks(3).filter(|p| *p == c).count();
    assert!(count(viz::LOSS_COLOR) > 500, "the loss curve is drawn");
    assert!(
        count(viz::TEST_ACC_COLOR) > 500,
        "the test-accuracy curve is drawn"
    );
    let png = dir.join("curves.png");
    plot.save_png(&png, false).unwrap();
    assert_eq!(decode(&png), plot);
    std::fs::remove_dir_all(&dir).unwrap();
}
