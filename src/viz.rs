//! Pictures of the network: LeNet-5's feature maps, learned filters and fully connected
//! layers on one digit (as in the article's Figures 18–20), and training curves, as PNG.
//!
//! Everything is drawn on a [`Canvas`] (8-bit RGB) with an 8×8 bitmap font, so there are no
//! font files and no system dependencies. Activations always come from the library's own
//! forward pass: [`render`] runs [`LeNet5::probabilities`] and reads every layer with
//! [`LeNet5::activations`].
//!
//! ## Grey levels
//!
//! * **Activations** (input, feature maps, fully connected layers): a value `a` of a layer whose
//!   largest value is `m` is drawn as grey `round(255 · a / m)`, clamped to `0..=255`; if
//!   `m ≤ 0` every value is black. `m` is taken over the whole layer (all maps of a
//!   convolution together), so brightness compares across the maps of one layer.
//!   See [`activation_gray`] and [`max_value`].
//! * **Output probabilities** are absolute: grey `round(255 · p)` (that is `m = 1`), and the
//!   predicted class is framed in [`HIGHLIGHT`].
//! * **Filter weights** are signed: grey `round(127.5 · (1 + w / M))`, clamped, where `M` is the
//!   largest `|w|` of that convolution's weights: `−M` is black, `0` is mid-grey (128), `+M` is
//!   white; if `M = 0` every weight is mid-grey. See [`weight_gray`].
//!
//! Each activation or weight is a `zoom × zoom` square of one grey ([`Grid`]), so a 5×5 map
//! at zoom 20 ([`POOL2_GRID`]) is 100×100 pixels.
//!
//! ```
//! use constnet::viz;
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
//! let net = constnet::weights::load_lenet5(root.join("data/embedded/lenet5-mnist10k.cnet"))?;
//! let (_, test) = constnet::mnist::load_dir(root.join("data/mnist-10k"))?;
//! let eight = (0..test.len()).find(|&i| test.label(i) == 8).unwrap();
//! let pictures = viz::render(&net, &test.image::<f32>(eight), "a handwritten 8");
//! assert_eq!(pictures.prediction, Some(8));
//! // The pooled 16@5×5 maps: two rows of 8 tiles of 5·20 pixels, 15 pixels apart.
//! let pool2 = pictures.composite.region("pool2").unwrap();
//! assert_eq!((pool2.width, pool2.height), (8 * 100 + 7 * 15, 2 * 100 + 15));
//! let png = pictures.composite.canvas.png_bytes();
//! assert!(png.starts_with(b"\x89PNG"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::layer::Layer;
use crate::lenet::{Image, LeNet5, LeNet5Activations};
use crate::scalar::Scalar;
use crate::tensor::{Maps, argmax};

/// An 8-bit RGB colour.
pub type Rgb = [u8; 3];

/// Background of every picture.
pub const BACKGROUND: Rgb = [18, 21, 28];
/// Background of a grid of tiles, between the tiles (lighter than black, so that an all-zero
/// map is still seen as a black square).
pub const PANEL: Rgb = [52, 58, 72];
/// Main text.
pub const TEXT: Rgb = [236, 239, 244];
/// Secondary text (shapes, notes).
pub const DIM_TEXT: Rgb = [150, 160, 178];
/// The bars of a fully connected layer ([`vector_strip`]).
pub const BAR: Rgb = [150, 172, 210];
/// The predicted class.
pub const HIGHLIGHT: Rgb = [255, 184, 28];
/// The loss curve.
pub const LOSS_COLOR: Rgb = [255, 112, 82];
/// The test-accuracy curve.
pub const TEST_ACC_COLOR: Rgb = [84, 178, 255];
/// The training-accuracy curve.
pub const TRAIN_ACC_COLOR: Rgb = [120, 220, 160];

/// Height (and width) of one glyph of the bitmap font at scale 1, in pixels.
pub const GLYPH: usize = 8;

// ---------------------------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------------------------

/// A picture: `width × height` RGB pixels, row-major. Drawing outside it is clipped.
///
/// ```
/// use constnet::viz::{Canvas, TEXT};
/// let mut c = Canvas::new(100, 20, [0, 0, 0]);
/// c.fill_rect(10, 5, 3, 2, [255, 0, 0]);
/// assert_eq!(c.get(11, 6), [255, 0, 0]);
/// let w = c.text(0, 0, "conv1 6@28×28", 1, TEXT);
/// assert_eq!(w, 13 * 8);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Canvas {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl fmt::Debug for Canvas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canvas")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl Canvas {
    /// A canvas filled with `color`.
    ///
    /// # Panics
    /// If `width` or `height` is zero (PNG has no empty images).
    pub fn new(width: usize, height: usize, color: Rgb) -> Self {
        assert!(
            width > 0 && height > 0,
            "Canvas: width and height must be at least 1 (got {width}×{height})"
        );
        let data = color.repeat(width * height);
        Self {
            width,
            height,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, RGB, row after row (`3 · width · height` bytes).
    pub fn pixels(&self) -> &[u8] {
        &self.data
    }

    /// The colour at `(x, y)`.
    ///
    /// # Panics
    /// If `(x, y)` is outside the canvas.
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        assert!(
            x < self.width && y < self.height,
            "Canvas::get: ({x}, {y}) is outside {}×{}",
            self.width,
            self.height
        );
        let i = 3 * (y * self.width + x);
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Sets `(x, y)` to `color`; does nothing outside the canvas.
    pub fn set(&mut self, x: usize, y: usize, color: Rgb) {
        if x < self.width && y < self.height {
            let i = 3 * (y * self.width + x);
            self.data[i..i + 3].copy_from_slice(&color);
        }
    }

    fn set_signed(&mut self, x: i64, y: i64, color: Rgb) {
        if x >= 0 && y >= 0 {
            self.set(x as usize, y as usize, color);
        }
    }

    /// Fills the `w × h` rectangle whose top-left corner is `(x, y)` (clipped).
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, color: Rgb) {
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        for yy in y.min(y1)..y1 {
            for xx in x.min(x1)..x1 {
                let i = 3 * (yy * self.width + xx);
                self.data[i..i + 3].copy_from_slice(&color);
            }
        }
    }

    /// Draws the outline of the `w × h` rectangle at `(x, y)`, `thickness` pixels wide, inside
    /// the rectangle.
    pub fn stroke_rect(
        &mut self,
        x: usize,
        y: usize,
        w: usize,
        h: usize,
        thickness: usize,
        color: Rgb,
    ) {
        let t = thickness.min(w).min(h);
        self.fill_rect(x, y, w, t, color);
        self.fill_rect(x, (y + h).saturating_sub(t), w, t, color);
        self.fill_rect(x, y, t, h, color);
        self.fill_rect((x + w).saturating_sub(t), y, t, h, color);
    }

    /// Draws a straight line from `(x0, y0)` to `(x1, y1)` (pixel centres), `width` pixels
    /// thick, as a row of filled squares (no anti-aliasing).
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), width: usize, color: Rgb) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let steps = (dx.abs().max(dy.abs()) * 2.0).ceil().max(1.0) as usize;
        let half = (width.max(1) as i64 - 1) / 2;
        let extra = (width.max(1) as i64 - 1) - half;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (cx, cy) = (
                (from.0 + t * dx).round() as i64,
                (from.1 + t * dy).round() as i64,
            );
            for yy in cy - half..=cy + extra {
                for xx in cx - half..=cx + extra {
                    self.set_signed(xx, yy, color);
                }
            }
        }
    }

    /// Draws a dashed line, `width` pixels thick: `dash` pixels drawn, `dash` pixels skipped.
    pub fn dashed_line(
        &mut self,
        from: (f64, f64),
        to: (f64, f64),
        dash: usize,
        width: usize,
        color: Rgb,
    ) {
        let (dx, dy) = (to.0 - from.0, to.1 - from.1);
        let length = (dx * dx + dy * dy).sqrt();
        let dash = dash.max(1) as f64;
        let mut s = 0.0;
        while s < length {
            let e = (s + dash).min(length);
            let p = |d: f64| (from.0 + dx * d / length, from.1 + dy * d / length);
            self.line(p(s), p(e), width, color);
            s += 2.0 * dash;
        }
    }

    /// Copies `src` with its top-left corner at `(x, y)` (clipped).
    pub fn blit(&mut self, src: &Canvas, x: usize, y: usize) {
        if x >= self.width || y >= self.height {
            return;
        }
        let w = src.width.min(self.width - x);
        for row in 0..src.height.min(self.height - y) {
            let d = 3 * ((y + row) * self.width + x);
            let s = 3 * row * src.width;
            self.data[d..d + 3 * w].copy_from_slice(&src.data[s..s + 3 * w]);
        }
    }

    /// Writes `text` with the 8×8 bitmap font, each font pixel a `scale × scale` square, with
    /// its top-left corner at `(x, y)`. Covers ASCII and Latin-1 (`×`, `·`, `µ`, …); other
    /// characters are drawn as `?`. Returns the width drawn, [`text_width`]`(text, scale)`.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, color: Rgb) -> usize {
        let scale = scale.max(1);
        for (k, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            let gx = x + k * GLYPH * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH {
                    if bits & (1 << col) != 0 {
                        self.fill_rect(gx + col * scale, y + row * scale, scale, scale, color);
                    }
                }
            }
        }
        text_width(text, scale)
    }

    /// The picture as PNG bytes (8-bit RGB).
    pub fn png_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_png(&mut out)
            .expect("PNG encoding into memory cannot fail for a non-empty canvas");
        out
    }

    fn write_png<W: io::Write>(&self, w: W) -> Result<(), png::EncodingError> {
        let too_big = |_| png::EncodingError::from(io::Error::other("canvas too large for PNG"));
        let width = u32::try_from(self.width).map_err(too_big)?;
        let height = u32::try_from(self.height).map_err(too_big)?;
        let mut encoder = png::Encoder::new(w, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.data)?;
        writer.finish()
    }

    /// Saves the picture as a PNG file. An existing file is kept (and an error of kind
    /// [`io::ErrorKind::AlreadyExists`] returned) unless `overwrite`; with `overwrite` the new
    /// file is written beside it and renamed over it, so no half-written file is left.
    ///
    /// # Errors
    /// [`SaveError`], naming the file.
    pub fn save_png(&self, path: impl AsRef<Path>, overwrite: bool) -> Result<(), SaveError> {
        let path = path.as_ref();
        let err = |error| SaveError {
            path: path.to_path_buf(),
            error,
        };
        let bytes = self.png_bytes();
        if overwrite {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".partial");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, &bytes).map_err(err)?;
            std::fs::rename(&tmp, path).map_err(err)
        } else {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(err)?;
            file.write_all(&bytes).map_err(|e| {
                let _ = std::fs::remove_file(path); // ours, just created
                err(e)
            })
        }
    }
}

/// Why a picture could not be saved.
#[derive(Debug)]
pub struct SaveError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong; [`io::ErrorKind::AlreadyExists`] if the file exists and overwriting
    /// was not asked for.
    pub error: io::Error,
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error.kind() == io::ErrorKind::AlreadyExists {
            write!(
                f,
                "{}: the file already exists; not overwriting it",
                self.path.display()
            )
        } else {
            write!(
                f,
                "{}: cannot write the picture: {}",
                self.path.display(),
                self.error
            )
        }
    }
}

impl std::error::Error for SaveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Width of `text` in the bitmap font at `scale`: `8 · scale` pixels per character.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * GLYPH * scale.max(1)
}

fn glyph(ch: char) -> [u8; 8] {
    use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
    match u32::from(ch) {
        c @ 0x20..0x7F => BASIC_LEGACY[c as usize],
        c @ 0xA0..=0xFF => LATIN_LEGACY[(c - 0xA0) as usize],
        _ => BASIC_LEGACY[usize::from(b'?')],
    }
}

// ---------------------------------------------------------------------------------------------
// Grey levels
// ---------------------------------------------------------------------------------------------

/// The grey of activation `a` in a layer whose largest value is `m`: `round(255 · a / m)`,
/// clamped to `0..=255`; 0 if `m ≤ 0` (or either is NaN).
///
/// ```
/// use constnet::viz::activation_gray;
/// assert_eq!(activation_gray(2.0, 4.0), 128); // 127.5 rounds up
/// assert_eq!(activation_gray(4.0, 4.0), 255);
/// assert_eq!(activation_gray(-1.0, 4.0), 0);
/// assert_eq!(activation_gray(1.0, 0.0), 0);
/// ```
pub fn activation_gray(a: f64, m: f64) -> u8 {
    if m > 0.0 {
        // NaN clamps to NaN, which casts to 0.
        (255.0 * a / m).round().clamp(0.0, 255.0) as u8
    } else {
        0
    }
}

/// The grey of weight `w` in a layer whose largest `|w|` is `m`: `round(127.5 · (1 + w / m))`,
/// clamped to `0..=255`, so `−m` is black, `0` is mid-grey 128 and `+m` is white; 128 if
/// `m ≤ 0`.
///
/// ```
/// use constnet::viz::weight_gray;
/// assert_eq!((weight_gray(-0.5, 0.5), weight_gray(0.0, 0.5), weight_gray(0.5, 0.5)), (0, 128, 255));
/// ```
pub fn weight_gray(w: f64, m: f64) -> u8 {
    if m > 0.0 {
        (127.5 * (1.0 + w / m)).round().clamp(0.0, 255.0) as u8
    } else {
        128
    }
}

/// The largest value of `values` as `f64`, or 0 if there are none (NaNs are ignored).
pub fn max_value<T: Scalar>(values: &[T]) -> f64 {
    let m = values
        .iter()
        .map(|&v| wide(v))
        .fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY { 0.0 } else { m }
}

/// The largest `|value|` of `values` as `f64`, or 0 if there are none.
pub fn max_abs<T: Scalar>(values: &[T]) -> f64 {
    values.iter().map(|&v| wide(v).abs()).fold(0.0, f64::max)
}

/// A scalar as `f64` (`Scalar::to_f64`, not `NumCast`'s).
fn wide<T: Scalar>(v: T) -> f64 {
    Scalar::to_f64(v)
}

fn gray(g: u8) -> Rgb {
    [g, g, g]
}

// ---------------------------------------------------------------------------------------------
// Tiles, strips, nodes
// ---------------------------------------------------------------------------------------------

/// How a set of equally sized maps is laid out as tiles: each value a `zoom × zoom` square,
/// tiles `gap` pixels apart, `columns` tiles per row (left to right, then top to bottom).
/// The space between tiles is [`PANEL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// Pixels per value, along each side.
    pub zoom: usize,
    /// Pixels between tiles.
    pub gap: usize,
    /// Tiles per row (at least 1).
    pub columns: usize,
}

impl Grid {
    /// Size in pixels `(width, height)` of `count` tiles of `h × w` values.
    pub fn size(&self, count: usize, h: usize, w: usize) -> (usize, usize) {
        let columns = self.columns.max(1).min(count.max(1));
        let rows = count.max(1).div_ceil(columns);
        (
            columns * w * self.zoom + (columns - 1) * self.gap,
            rows * h * self.zoom + (rows - 1) * self.gap,
        )
    }

    /// Top-left pixel `(x, y)` of tile `i` when the tiles are `h × w` values; value `(r, c)`
    /// of that tile covers `x + c·zoom .. x + (c+1)·zoom` and `y + r·zoom .. y + (r+1)·zoom`.
    pub fn tile_origin(&self, i: usize, h: usize, w: usize) -> (usize, usize) {
        let columns = self.columns.max(1);
        (
            (i % columns) * (w * self.zoom + self.gap),
            (i / columns) * (h * self.zoom + self.gap),
        )
    }
}

/// Draws `count` tiles of `h × w` values from `values` (tile after tile, row-major), each
/// value's grey given by `to_gray`.
fn tiles<T: Scalar>(
    values: &[T],
    count: usize,
    h: usize,
    w: usize,
    grid: Grid,
    to_gray: impl Fn(f64) -> u8,
) -> Canvas {
    assert_eq!(
        values.len(),
        count * h * w,
        "tiles: {count} tiles of {h}×{w} values"
    );
    let (width, height) = grid.size(count, h, w);
    let mut canvas = Canvas::new(width, height, PANEL);
    for (i, tile) in values.chunks_exact(h * w).enumerate() {
        let (x0, y0) = grid.tile_origin(i, h, w);
        for (k, v) in tile.iter().enumerate() {
            let (r, c) = (k / w, k % w);
            let g = gray(to_gray(wide(*v)));
            canvas.fill_rect(
                x0 + c * grid.zoom,
                y0 + r * grid.zoom,
                grid.zoom,
                grid.zoom,
                g,
            );
        }
    }
    canvas
}

/// The `C` maps of one layer as grey tiles: value `a` drawn as
/// [`activation_gray`]`(a, m)` where `m` is the largest value of all `C` maps together.
///
/// ```
/// use constnet::viz::{Grid, activation_grid, activation_gray};
/// let maps = [[[0.0f32, 1.0], [2.0, 4.0]]; 3]; // 3 maps of 2×2
/// let grid = Grid { zoom: 8, gap: 2, columns: 3 };
/// let c = activation_grid(&maps, grid);
/// assert_eq!((c.width(), c.height()), (3 * 16 + 2 * 2, 16));
/// let (x, y) = grid.tile_origin(2, 2, 2);
/// assert_eq!(c.get(x + 8 + 3, y + 7), [64; 3]); // value (0, 1) = 1.0 of 4.0
/// ```
pub fn activation_grid<T: Scalar, const C: usize, const H: usize, const W: usize>(
    maps: &Maps<T, C, H, W>,
    grid: Grid,
) -> Canvas {
    let values = maps.as_flattened().as_flattened();
    let m = max_value(values);
    tiles(values, C, H, W, grid, |a| activation_gray(a, m))
}

/// A named layer's feature maps ([`Layer::activation`]) as grey
/// tiles, drawn as [`activation_grid`] draws them (the scale's white is the largest value of
/// all the maps); `None` if the activation is not `C`×`H`×`W` maps (a vector).
///
/// ```
/// use constnet::viz::{Grid, activation_tiles};
/// use constnet::Activation;
/// let maps = [[[0.0f32, 1.0], [2.0, 4.0]]; 3];
/// let c = activation_tiles(&Activation::of(&maps), Grid { zoom: 8, gap: 2, columns: 3 }).unwrap();
/// assert_eq!((c.width(), c.height()), (3 * 16 + 2 * 2, 16));
/// assert!(activation_tiles(&Activation::of(&[1.0f32; 4]), Grid { zoom: 1, gap: 0, columns: 1 }).is_none());
/// ```
pub fn activation_tiles<T: Scalar>(act: &crate::Activation<'_, T>, grid: Grid) -> Option<Canvas> {
    let &[c, h, w] = act.dims() else {
        return None;
    };
    let values = act.flat();
    let m = max_value(values);
    Some(tiles(values, c, h, w, grid, |a| activation_gray(a, m)))
}

/// Convolution filters as grey tiles, `weights` in PyTorch's layout
/// `[out_channels][in_channels][k][k]` (as [`Layer::param`] gives them): one tile per
/// (output, input) channel pair, in that order, so with `grid.columns == in_channels` each
/// row is one filter. Weight `w` is drawn as [`weight_gray`]`(w, M)`, `M` the largest `|w|`.
///
/// # Panics
/// If `weights.len() != out_channels · in_channels · k · k`.
pub fn filter_grid<T: Scalar>(
    weights: &[T],
    out_channels: usize,
    in_channels: usize,
    k: usize,
    grid: Grid,
) -> Canvas {
    let m = max_abs(weights);
    tiles(weights, out_channels * in_channels, k, k, grid, |w| {
        weight_gray(w, m)
    })
}

/// How a vector (a fully connected layer) is drawn: one column per neuron, `cell` pixels wide
/// and `gap` apart; a grey square `cell × cell` (grey as for [`activation_gray`], `m` the
/// vector's largest value) under a bar of height `round(bar · a / m)` (clamped to
/// `0..=bar`) in [`BAR`]. The gaps between the squares are [`PANEL`], the space above them
/// [`BACKGROUND`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strip {
    /// Width of a neuron's column and side of its grey square.
    pub cell: usize,
    /// Pixels between columns.
    pub gap: usize,
    /// Height of the bar of the largest value (0: squares only).
    pub bar: usize,
}

impl Strip {
    /// Size in pixels `(width, height)` of a strip of `n` neurons.
    pub fn size(&self, n: usize) -> (usize, usize) {
        let n = n.max(1);
        (n * self.cell + (n - 1) * self.gap, self.bar + self.cell)
    }

    /// Left pixel column of neuron `i`; its grey square starts at row `bar`.
    pub fn cell_x(&self, i: usize) -> usize {
        i * (self.cell + self.gap)
    }
}

/// A fully connected layer's activations as a [`Strip`].
pub fn vector_strip<T: Scalar>(values: &[T], strip: Strip) -> Canvas {
    let (width, height) = strip.size(values.len());
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    canvas.fill_rect(0, strip.bar, width, strip.cell, PANEL);
    let m = max_value(values);
    for (i, v) in values.iter().enumerate() {
        let a = wide(*v);
        let x = strip.cell_x(i);
        let g = activation_gray(a, m);
        canvas.fill_rect(x, strip.bar, strip.cell, strip.cell, gray(g));
        let bar = if m > 0.0 {
            (strip.bar as f64 * a / m)
                .round()
                .clamp(0.0, strip.bar as f64) as usize
        } else {
            0
        };
        canvas.fill_rect(x, strip.bar - bar, strip.cell, bar, BAR);
    }
    canvas
}

/// Side of an output node's square in [`output_nodes`].
pub const NODE: usize = 48;
/// Pixels between output nodes.
pub const NODE_GAP: usize = 22;
/// Width of the [`HIGHLIGHT`] frame around the predicted output node (and of the margin
/// around all nodes).
pub const NODE_FRAME: usize = 4;

/// The class probabilities as one node per class: a [`NODE`]-pixel square of grey
/// `round(255 · p)` with the class digit under it; the `predicted` node is framed and
/// labelled in [`HIGHLIGHT`] with its probability (none is, for `None`: probabilities that
/// are NaN name no class). Square `i` starts at pixel
/// `(NODE_FRAME + i · (NODE + NODE_GAP), NODE_FRAME)` ([`NODE_FRAME`]).
pub fn output_nodes<T: Scalar>(probs: &[T], predicted: Option<usize>) -> Canvas {
    let n = probs.len().max(1);
    let width = 2 * NODE_FRAME + n * NODE + (n - 1) * NODE_GAP;
    let height = 2 * NODE_FRAME + NODE + 6 + 2 * GLYPH + 4 + GLYPH * 2;
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    for (i, p) in probs.iter().enumerate() {
        let p = wide(*p);
        let x = NODE_FRAME + i * (NODE + NODE_GAP);
        let y = NODE_FRAME;
        if Some(i) == predicted {
            canvas.fill_rect(
                x - NODE_FRAME,
                y - NODE_FRAME,
                NODE + 2 * NODE_FRAME,
                NODE + 2 * NODE_FRAME,
                HIGHLIGHT,
            );
        } else {
            canvas.stroke_rect(x - 1, y - 1, NODE + 2, NODE + 2, 1, PANEL);
        }
        canvas.fill_rect(x, y, NODE, NODE, gray(activation_gray(p, 1.0)));
        let digit = i.to_string();
        let color = if Some(i) == predicted {
            HIGHLIGHT
        } else {
            DIM_TEXT
        };
        let tx = x + (NODE - text_width(&digit, 2)) / 2;
        let ty = y + NODE + NODE_FRAME + 6;
        canvas.text(tx, ty, &digit, 2, color);
        if Some(i) == predicted {
            let pct = format!("{:.1}%", 100.0 * p);
            let w = text_width(&pct, 2);
            let px = (x + NODE / 2)
                .saturating_sub(w / 2)
                .min(width.saturating_sub(w));
            canvas.text(px, ty + 2 * GLYPH + 4, &pct, 2, HIGHLIGHT);
        }
    }
    canvas
}

// ---------------------------------------------------------------------------------------------
// LeNet-5 pictures
// ---------------------------------------------------------------------------------------------

/// The input image, 32×32 at zoom 4.
pub const INPUT_GRID: Grid = Grid {
    zoom: 4,
    gap: 0,
    columns: 1,
};
/// First convolution (after ReLU), 6@28×28: one row of 6 tiles at zoom 5 (905 pixels wide).
pub const CONV1_GRID: Grid = Grid {
    zoom: 5,
    gap: 13,
    columns: 6,
};
/// First max-pool, 6@14×14: one row of 6 tiles at zoom 10 (lined up with [`CONV1_GRID`]).
pub const POOL1_GRID: Grid = Grid {
    zoom: 10,
    gap: 13,
    columns: 6,
};
/// Second convolution (after ReLU), 16@10×10: two rows of 8 tiles at zoom 10 (905 pixels
/// wide, like [`CONV1_GRID`]).
pub const CONV2_GRID: Grid = Grid {
    zoom: 10,
    gap: 15,
    columns: 8,
};
/// Second max-pool, 16@5×5: two rows of 8 tiles at zoom 20 (lined up with [`CONV2_GRID`]).
pub const POOL2_GRID: Grid = Grid {
    zoom: 20,
    gap: 15,
    columns: 8,
};
/// The fully connected layers (120 and 100 neurons).
pub const FC_STRIP: Strip = Strip {
    cell: 6,
    gap: 1,
    bar: 44,
};
/// The 6 filters of the first convolution (1×5×5 each), zoom 16.
pub const FILTERS1_GRID: Grid = Grid {
    zoom: 16,
    gap: 10,
    columns: 6,
};
/// The 16 filters of the second convolution (6×5×5 each): one row per filter, one column
/// per input channel, zoom 10.
pub const FILTERS2_GRID: Grid = Grid {
    zoom: 10,
    gap: 6,
    columns: 6,
};

/// A part of a [`Figure`]: where a layer's tiles (or strip, or nodes) are, exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The layer: `input`, `conv1`, `pool1`, `conv2`, `pool2`, `fc1`, `fc2`, `output`,
    /// `filters_conv1` or `filters_conv2`.
    pub name: &'static str,
    /// Left pixel column.
    pub x: usize,
    /// Top pixel row.
    pub y: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A labelled picture and where each layer is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    /// The picture.
    pub canvas: Canvas,
    /// Where each layer's body (the drawing made by [`activation_grid`], [`filter_grid`],
    /// [`vector_strip`] or [`output_nodes`]) was copied, top to bottom.
    pub regions: Vec<Region>,
}

impl Figure {
    /// The region of layer `name`, if the figure has it.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }
}

/// One row of a figure: a label (name and shape) and a body.
struct Row<'a> {
    name: &'static str,
    label: String,
    shape: String,
    body: &'a Canvas,
}

const MARGIN: usize = 28;
const LABEL_COLUMN: usize = 232;
const ROW_GAP: usize = 26;
const LABEL_SCALE: usize = 2;

/// Lays rows out top to bottom under a title: labels in a left column, bodies beside them.
fn stack(title: &str, subtitle: &str, rows: &[Row<'_>], footer: &[&str]) -> Figure {
    let body_width = rows.iter().map(|r| r.body.width()).max().unwrap_or(1);
    let title_h = 3 * GLYPH
        + 10
        + if subtitle.is_empty() {
            0
        } else {
            2 * GLYPH + 8
        };
    let width = (2 * MARGIN + LABEL_COLUMN + body_width)
        .max(2 * MARGIN + text_width(title, 3))
        .max(2 * MARGIN + text_width(subtitle, 2))
        .max(
            footer
                .iter()
                .map(|l| 2 * MARGIN + text_width(l, 1))
                .max()
                .unwrap_or(0),
        );
    let label_h = 2 * GLYPH * LABEL_SCALE + 6;
    let rows_h: usize = rows
        .iter()
        .map(|r| r.body.height().max(label_h) + ROW_GAP)
        .sum();
    let footer_h = if footer.is_empty() {
        0
    } else {
        footer.len() * (GLYPH + 6) + 4
    };
    let height = MARGIN + title_h + ROW_GAP + rows_h + footer_h + MARGIN - ROW_GAP;
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    canvas.text(MARGIN, MARGIN, title, 3, TEXT);
    if !subtitle.is_empty() {
        canvas.text(MARGIN, MARGIN + 3 * GLYPH + 10, subtitle, 2, DIM_TEXT);
    }
    let mut regions = Vec::with_capacity(rows.len());
    let mut y = MARGIN + title_h + ROW_GAP;
    let body_x = MARGIN + LABEL_COLUMN;
    for row in rows {
        let h = row.body.height().max(label_h);
        let label_y = y + (h - label_h) / 2;
        canvas.text(MARGIN, label_y, &row.label, LABEL_SCALE, TEXT);
        canvas.text(
            MARGIN,
            label_y + GLYPH * LABEL_SCALE + 6,
            &row.shape,
            LABEL_SCALE,
            DIM_TEXT,
        );
        let by = y + (h - row.body.height()) / 2;
        canvas.blit(row.body, body_x, by);
        regions.push(Region {
            name: row.name,
            x: body_x,
            y: by,
            width: row.body.width(),
            height: row.body.height(),
        });
        y += h + ROW_GAP;
    }
    for (k, line) in footer.iter().enumerate() {
        canvas.text(MARGIN, y + k * (GLYPH + 6), line, 1, DIM_TEXT);
    }
    Figure { canvas, regions }
}

/// All pictures of one LeNet-5 forward pass (see [`render`]).
#[derive(Clone, Debug)]
pub struct Pictures {
    /// The class the network predicts; `None` if its probabilities are NaN (see
    /// [`crate::argmax`]).
    pub prediction: Option<usize>,
    /// Its probability (NaN without a prediction).
    pub confidence: f64,
    /// The input, 1@32×32.
    pub input: Figure,
    /// First convolution after ReLU, 6@28×28.
    pub conv1: Figure,
    /// First max-pool, 6@14×14.
    pub pool1: Figure,
    /// Second convolution after ReLU, 16@10×10.
    pub conv2: Figure,
    /// Second max-pool, 16@5×5.
    pub pool2: Figure,
    /// Both hidden fully connected layers after ReLU (regions `fc1` and `fc2`).
    pub fc: Figure,
    /// The class probabilities.
    pub output: Figure,
    /// The first convolution's 6 filters, 1×5×5.
    pub filters_conv1: Figure,
    /// The second convolution's 16 filters, 6×5×5 (one row each).
    pub filters_conv2: Figure,
    /// Everything from input to output, top to bottom, like the article's Figure 18.
    pub composite: Figure,
}

impl Pictures {
    /// Every figure with its file stem (`input`, `conv1`, …, `composite`), in the order above.
    pub fn named(&self) -> [(&'static str, &Figure); 10] {
        [
            ("input", &self.input),
            ("conv1", &self.conv1),
            ("pool1", &self.pool1),
            ("conv2", &self.conv2),
            ("pool2", &self.pool2),
            ("fc", &self.fc),
            ("output", &self.output),
            ("filters_conv1", &self.filters_conv1),
            ("filters_conv2", &self.filters_conv2),
            ("composite", &self.composite),
        ]
    }
}

const ACTIVATION_NOTE: &str = "grey = round(255·a/m), m = largest value of the layer (black if m <= 0); output grey = round(255·p)";
const WEIGHT_NOTE: &str =
    "grey = round(127.5·(1 + w/M)), M = largest |w| of the layer: black -M, mid-grey 0, white +M";

/// Runs `net` on `image` (its own forward pass and workspace: [`LeNet5::probabilities`], then
/// [`LeNet5::activations`]) and draws every layer. `about` names the input in the titles
/// (e.g. `"test digit 61 (label 8)"`).
pub fn render<T: Scalar>(net: &LeNet5<T>, image: &Image<T>, about: &str) -> Pictures {
    let mut ws = LeNet5::<T>::workspace();
    net.probabilities(image, &mut ws);
    let acts = LeNet5::<T>::activations(&ws);
    render_activations(net, image, &acts, about)
}

/// As [`render`], from activations already computed by a forward pass of `net` on `image`.
pub fn render_activations<T: Scalar>(
    net: &LeNet5<T>,
    image: &Image<T>,
    acts: &LeNet5Activations<'_, T>,
    about: &str,
) -> Pictures {
    let prediction = argmax(acts.probs);
    let confidence = prediction.map_or(f64::NAN, |p| wide(acts.probs[p]));
    let input = activation_grid(image, INPUT_GRID);
    let conv1 = activation_grid(acts.relu1, CONV1_GRID);
    let pool1 = activation_grid(acts.pool1, POOL1_GRID);
    let conv2 = activation_grid(acts.relu2, CONV2_GRID);
    let pool2 = activation_grid(acts.pool2, POOL2_GRID);
    let fc1 = vector_strip(acts.relu3, FC_STRIP);
    let fc2 = vector_strip(acts.relu4, FC_STRIP);
    let output = output_nodes(acts.probs, prediction);
    // Parameter tensors 0 and 2 are conv1.weight [6,1,5,5] and conv2.weight [16,6,5,5].
    let filters1 = filter_grid(net.param(0), 6, 1, 5, FILTERS1_GRID);
    let filters2 = filter_grid(net.param(2), 16, 6, 5, FILTERS2_GRID);

    let row = |name, label: &str, shape: &str, body| Row {
        name,
        label: label.to_string(),
        shape: shape.to_string(),
        body,
    };
    let layers = [
        row("input", "input", "1@32×32", &input),
        row("conv1", "conv1 + ReLU", "6@28×28", &conv1),
        row("pool1", "max-pool 2×2", "6@14×14", &pool1),
        row("conv2", "conv2 + ReLU", "16@10×10", &conv2),
        row("pool2", "max-pool 2×2", "16@5×5", &pool2),
        row("fc1", "fc1 + ReLU", "120", &fc1),
        row("fc2", "fc2 + ReLU", "100", &fc2),
        row("output", "output", "softmax 10", &output),
    ];
    let verdict = match prediction {
        Some(class) => format!("{about}: predicted {class} ({:.1}%)", 100.0 * confidence),
        None => format!("{about}: no prediction (the probabilities are NaN)"),
    };
    let single = |rows: &[Row<'_>], note: &str| {
        let title = match rows {
            [r] => format!("{}  {}", r.label, r.shape),
            _ => "fully connected layers".to_string(),
        };
        stack(&title, &verdict, rows, &[note])
    };
    let filters_conv1 = stack(
        "conv1 filters",
        "6 filters of 1×5×5",
        &[row("filters_conv1", "conv1", "6@1×5×5", &filters1)],
        &[WEIGHT_NOTE],
    );
    let filters_conv2 = stack(
        "conv2 filters",
        "16 filters of 6×5×5: one row per filter, one column per input map",
        &[row("filters_conv2", "conv2", "16@6×5×5", &filters2)],
        &[WEIGHT_NOTE],
    );
    let composite = stack(
        "LeNet-5, layer by layer",
        &verdict,
        &layers,
        &[ACTIVATION_NOTE],
    );
    Pictures {
        prediction,
        confidence,
        input: single(&layers[0..1], ACTIVATION_NOTE),
        conv1: single(&layers[1..2], ACTIVATION_NOTE),
        pool1: single(&layers[2..3], ACTIVATION_NOTE),
        conv2: single(&layers[3..4], ACTIVATION_NOTE),
        pool2: single(&layers[4..5], ACTIVATION_NOTE),
        fc: single(&layers[5..7], ACTIVATION_NOTE),
        output: single(
            &layers[7..8],
            "grey = round(255·p); the predicted class is framed",
        ),
        filters_conv1,
        filters_conv2,
        composite,
    }
}

// ---------------------------------------------------------------------------------------------
// Training curves
// ---------------------------------------------------------------------------------------------

/// One epoch of training, for [`write_curves_csv`] and [`plot_curves`]. Accuracies are
/// fractions in `0..=1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRow {
    /// Epoch number (the first is usually 1).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch.
    pub train_accuracy: f64,
    /// Test accuracy after the epoch.
    pub test_accuracy: f64,
}

/// The CSV text of `rows`: a header `epoch,train_loss,train_accuracy,test_accuracy`, then one
/// line per row (numbers as Rust prints them, so they read back exactly).
pub fn curves_csv(rows: &[EpochRow]) -> String {
    let mut out = String::from("epoch,train_loss,train_accuracy,test_accuracy\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{}\n",
            r.epoch, r.train_loss, r.train_accuracy, r.test_accuracy
        ));
    }
    out
}

/// Writes [`curves_csv`]`(rows)` to `path`, replacing the file if it exists (write it once per
/// epoch with all rows so far; check for an existing file before the first epoch if it must
/// not be overwritten).
///
/// # Errors
/// Any I/O error of writing the file.
pub fn write_curves_csv(rows: &[EpochRow], path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::write(path, curves_csv(rows))
}

/// Steps of 1, 2 or 5 × 10ᵏ giving about `target` intervals over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Decimals needed to print multiples of `step`.
fn decimals(step: f64) -> usize {
    (-step.log10().floor()).max(0.0) as usize
}

/// Width and height of [`plot_curves`]'s picture.
pub const PLOT_SIZE: (usize, usize) = (920, 540);

/// Training curves as a picture ([`PLOT_SIZE`]): training loss (left axis, from 0), and test
/// and training accuracy (right axis, in percent, up to 100%), against the epoch, with
/// ticks, labels and a legend. With no rows, the axes and "no epochs yet".
///
/// ```
/// use constnet::viz::{EpochRow, PLOT_SIZE, plot_curves};
/// let rows: Vec<EpochRow> = (1..=5)
///     .map(|e| EpochRow { epoch: e, train_loss: 1.0 / e as f64, train_accuracy: 0.9, test_accuracy: 0.95 })
///     .collect();
/// let c = plot_curves(&rows);
/// assert_eq!((c.width(), c.height()), PLOT_SIZE);
/// ```
pub fn plot_curves(rows: &[EpochRow]) -> Canvas {
    let (width, height) = PLOT_SIZE;
    let mut c = Canvas::new(width, height, BACKGROUND);
    let (left, right, top, bottom) = (92.0, width as f64 - 104.0, 112.0, height as f64 - 70.0);

    // Ranges.
    let finite = |v: f64| v.is_finite().then_some(v);
    let max_loss = rows
        .iter()
        .filter_map(|r| finite(r.train_loss))
        .fold(0.0, f64::max);
    let loss_step = nice_step(if max_loss > 0.0 { max_loss } else { 1.0 }, 5.0);
    let loss_hi = ((max_loss / loss_step).ceil() * loss_step).max(loss_step);
    let min_acc = rows
        .iter()
        .flat_map(|r| [r.train_accuracy, r.test_accuracy])
        .filter_map(finite)
        .fold(1.0, f64::min)
        .clamp(0.0, 1.0);
    let acc_lo = ((min_acc * 10.0 - 1e-9).floor() / 10.0).clamp(0.0, 0.9);
    let acc_step = nice_step(1.0 - acc_lo, 5.0);
    let (e0, e1) = match (
        rows.iter().map(|r| r.epoch).min(),
        rows.iter().map(|r| r.epoch).max(),
    ) {
        (Some(a), Some(b)) if a < b => (a as f64, b as f64),
        (Some(a), _) => (a as f64 - 0.5, a as f64 + 0.5),
        _ => (0.0, 1.0),
    };
    let epoch_step = nice_step(e1 - e0, 10.0).max(1.0).round();

    let px = |e: f64| left + (e - e0) / (e1 - e0) * (right - left);
    let py_loss = |l: f64| bottom - l / loss_hi * (bottom - top);
    let py_acc = |a: f64| bottom - (a - acc_lo) / (1.0 - acc_lo) * (bottom - top);

    // Grid and ticks.
    let (l, r, t, b) = (left as usize, right as usize, top as usize, bottom as usize);
    let mut k = 0.0;
    while k <= loss_hi + 1e-9 {
        let y = py_loss(k).round();
        c.fill_rect(l, y as usize, r - l, 1, [34, 39, 50]);
        c.fill_rect(l - 6, y as usize, 6, 1, DIM_TEXT);
        let label = format!("{:.*}", decimals(loss_step), k);
        c.text(
            l - 10 - text_width(&label, 1),
            y as usize - GLYPH / 2,
            &label,
            1,
            LOSS_COLOR,
        );
        k += loss_step;
    }
    let mut a = acc_lo;
    while a <= 1.0 + 1e-9 {
        let y = py_acc(a).round() as usize;
        c.fill_rect(r, y, 6, 1, DIM_TEXT);
        let label = format!("{:.*}%", decimals(acc_step * 100.0), a * 100.0);
        c.text(r + 10, y - GLYPH / 2, &label, 1, TEST_ACC_COLOR);
        a += acc_step;
    }
    let mut e = (e0 / epoch_step).ceil() * epoch_step;
    while e <= e1 + 1e-9 {
        let x = px(e).round() as usize;
        c.fill_rect(x, b, 1, 6, DIM_TEXT);
        let label = format!("{e:.0}");
        c.text(x - text_width(&label, 1) / 2, b + 12, &label, 1, DIM_TEXT);
        e += epoch_step;
    }
    // Axes.
    c.fill_rect(l, t, 1, b - t + 1, DIM_TEXT);
    c.fill_rect(r, t, 1, b - t + 1, DIM_TEXT);
    c.fill_rect(l, b, r - l + 1, 1, DIM_TEXT);
    c.text(
        (l + r - text_width("epoch", 2)) / 2,
        b + 32,
        "epoch",
        2,
        DIM_TEXT,
    );
    c.text(l - 60, t - 22, "train loss", 1, LOSS_COLOR);
    c.text(r - 30, t - 22, "accuracy", 1, TEST_ACC_COLOR);

    // Title and legend.
    c.text(24, 20, "Training curves", 2, TEXT);
    let legend: [(&str, Rgb, bool); 3] = [
        ("train loss", LOSS_COLOR, false),
        ("test accuracy", TEST_ACC_COLOR, false),
        ("train accuracy", TRAIN_ACC_COLOR, true),
    ];
    let mut lx = 24;
    for (name, color, dashed) in legend {
        let y = 58.0;
        if dashed {
            c.dashed_line((lx as f64, y), (lx as f64 + 28.0, y), 4, 2, color);
        } else {
            c.line((lx as f64, y), (lx as f64 + 28.0, y), 3, color);
        }
        lx += 36;
        lx += c.text(lx, 54, name, 1, TEXT) + 28;
    }
    if let Some(last) = rows.last() {
        let note = format!(
            "last: loss {:.4}, test {:.2}%",
            last.train_loss,
            100.0 * last.test_accuracy
        );
        c.text(width - 24 - text_width(&note, 1), 54, &note, 1, DIM_TEXT);
    } else {
        let msg = "no epochs yet";
        c.text(
            (l + r - text_width(msg, 2)) / 2,
            (t + b) / 2,
            msg,
            2,
            DIM_TEXT,
        );
    }

    // Series.
    let series = |c: &mut Canvas, y: &dyn Fn(&EpochRow) -> f64, color: Rgb, dashed: bool| {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| y(r).is_finite())
            .map(|r| (px(r.epoch as f64), y(r).clamp(top, bottom)))
            .collect();
        for w in points.windows(2) {
            if dashed {
                c.dashed_line(w[0], w[1], 6, 2, color);
            } else {
                c.line(w[0], w[1], 3, color);
            }
        }
        if !dashed {
            for &(x, y) in &points {
                let (x, y) = (x.round() as usize, y.round() as usize);
                c.fill_rect(x.saturating_sub(3), y.saturating_sub(3), 7, 7, color);
            }
        }
    };
    series(&mut c, &|r| py_acc(r.train_accuracy), TRAIN_ACC_COLOR, true);
    series(&mut c, &|r| py_acc(r.test_accuracy), TEST_ACC_COLOR, false);
    series(&mut c, &|r| py_loss(r.train_loss), LOSS_COLOR, false);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_levels_follow_the_documented_formulas() {
        for (a, m, g) in [
            (0.0, 1.0, 0),
            (1.0, 1.0, 255),
            (0.5, 1.0, 128),
            (0.25, 2.0, 32),
            (3.0, 2.0, 255),
            (-1.0, 2.0, 0),
            (1.0, 0.0, 0),
            (1.0, -1.0, 0),
            (f64::NAN, 1.0, 0),
        ] {
            assert_eq!(activation_gray(a, m), g, "a={a} m={m}");
        }
        for (w, m, g) in [
            (-2.0, 2.0, 0),
            (0.0, 2.0, 128),
            (2.0, 2.0, 255),
            (1.0, 2.0, 191),
            (-1.0, 2.0, 64),
            (5.0, 0.0, 128),
        ] {
            assert_eq!(weight_gray(w, m), g, "w={w} m={m}");
        }
        assert_eq!(max_value::<f32>(&[]), 0.0);
        assert_eq!(max_value(&[-3.0f32, -1.0]), -1.0);
        assert_eq!(max_value(&[-3.0f64, 2.5, f64::NAN]), 2.5);
        assert_eq!(max_abs(&[-3.0f32, 2.0]), 3.0);
    }

    #[test]
    fn grid_sizes_and_tile_pixels() {
        let grid = Grid {
            zoom: 3,
            gap: 2,
            columns: 4,
        };
        assert_eq!(grid.size(6, 2, 5), (4 * 15 + 3 * 2, 2 * 6 + 2));
        assert_eq!(grid.tile_origin(5, 2, 5), (17, 8));
        let mut maps = [[[0.0f64; 5]; 2]; 6];
        maps[5][1][4] = 2.0;
        maps[0][0][0] = 1.0;
        let c = activation_grid(&maps, grid);
        assert_eq!((c.width(), c.height()), grid.size(6, 2, 5));
        assert_eq!(c.get(17 + 12, 8 + 3), [255; 3]);
        assert_eq!(c.get(17 + 14, 8 + 5), [255; 3]);
        assert_eq!(c.get(1, 1), [128; 3]);
        assert_eq!(c.get(15, 0), PANEL); // gap
        assert_eq!(c.get(c.width() - 1, c.height() - 1), PANEL); // no tile 7
    }

    #[test]
    fn filter_tiles_are_signed() {
        let w = [-1.0f32, 0.0, 0.5, 1.0];
        let grid = Grid {
            zoom: 2,
            gap: 1,
            columns: 2,
        };
        let c = filter_grid(&w, 2, 2, 1, grid);
        assert_eq!((c.width(), c.height()), (5, 5));
        assert_eq!(
            [c.get(0, 0), c.get(3, 0), c.get(1, 4), c.get(4, 4)],
            [[0; 3], [128; 3], [191; 3], [255; 3]]
        );
    }

    #[test]
    fn strip_bars_and_cells() {
        let s = Strip {
            cell: 4,
            gap: 1,
            bar: 10,
        };
        let c = vector_strip(&[0.0f32, 1.0, 2.0], s);
        assert_eq!((c.width(), c.height()), (14, 14));
        assert_eq!(c.get(s.cell_x(2), 10), [255; 3]);
        assert_eq!(c.get(s.cell_x(1) + 3, 13), [128; 3]);
        assert_eq!(c.get(s.cell_x(2), 0), BAR); // full bar
        assert_eq!(c.get(s.cell_x(1), 4), BACKGROUND); // half bar: rows 5..10
        assert_eq!(c.get(s.cell_x(1), 5), BAR);
        assert_eq!(c.get(s.cell_x(0), 9), BACKGROUND);
        assert_eq!(c.get(s.cell_x(0), 10), [0; 3]);
        assert_eq!(c.get(s.cell_x(1) - 1, 10), PANEL);
    }

    #[test]
    fn text_uses_the_bitmap_font() {
        let mut c = Canvas::new(40, 10, [0; 3]);
        assert_eq!(c.text(0, 0, "I×?", 1, [255; 3]), 24);
        let lit = c.pixels().chunks(3).filter(|p| p[0] == 255).count();
        assert!(lit > 20, "{lit}");
        // An unknown character is drawn as '?'.
        let mut d = Canvas::new(8, 8, [0; 3]);
        let mut q = Canvas::new(8, 8, [0; 3]);
        d.text(0, 0, "→", 1, [255; 3]);
        q.text(0, 0, "?", 1, [255; 3]);
        assert_eq!(d, q);
    }

    #[test]
    fn png_round_trip() {
        let mut c = Canvas::new(7, 3, [1, 2, 3]);
        c.set(6, 2, [200, 100, 50]);
        let bytes = c.png_bytes();
        let decoder = png::Decoder::new(io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (7, 3, png::ColorType::Rgb)
        );
        assert_eq!(&buf[..info.buffer_size()], c.pixels());
    }

    #[test]
    fn curves_csv_and_plot() {
        let rows = [
            EpochRow {
                epoch: 1,
                train_loss: 0.5,
                train_accuracy: 0.85,
                test_accuracy: 0.9,
            },
            EpochRow {
                epoch: 2,
                train_loss: 0.25,
                train_accuracy: 0.95,
                test_accuracy: 0.975,
            },
        ];
        assert_eq!(
            curves_csv(&rows),
            "epoch,train_loss,train_accuracy,test_accuracy\n1,0.5,0.85,0.9\n2,0.25,0.95,0.975\n"
        );
        for rows in [&rows[..], &rows[..1], &[]] {
            let c = plot_curves(rows);
            assert_eq!((c.width(), c.height()), PLOT_SIZE);
        }
        let c = plot_curves(&rows);
        let count = |color: Rgb| c.pixels().chunks(3).filter(|p| *p == color).count();
        assert!(count(LOSS_COLOR) > 200 && count(TEST_ACC_COLOR) > 200);
    }
}
