//! Photos as network inputs: PNG and JPEG decoding, and torchvision's ImageNet evaluation
//! transform (`Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(mean, std)`), so
//! that the later networks with torchvision's weights classify a photo as PyTorch does.
//!
//! ```
//! use constnet::photo::{Photo, imagenet_input};
//! // A 300×200 photo of one orange colour.
//! let photo = Photo::new(300, 200, [255, 128, 0].repeat(300 * 200)).unwrap();
//! let mut x = vec![0.0f32; 3 * 224 * 224];
//! imagenet_input(&photo, 224, 224, &mut x).unwrap();
//! // Red: (1.0 − 0.485) / 0.229 in every pixel of the first channel.
//! assert!((x[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
//! assert!((x[224 * 224 - 1] - x[0]).abs() < 1e-5);
//! ```

use std::fmt;

/// ImageNet's channel means, as torchvision normalises (red, green, blue).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The shorter side a photo is resized to before the centre crop (torchvision's
/// `Resize(256)` before `CenterCrop(224)`; Caffe's AlexNet crops 227 from the same 256).
pub const RESIZE: usize = 256;

/// A decoded photo: 8-bit RGB, row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct Photo {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// What can go wrong reading a photo.
#[derive(Debug)]
pub enum PhotoError {
    /// Neither PNG nor JPEG (by the first bytes).
    UnknownFormat,
    /// The PNG or JPEG decoder refused the bytes.
    Decode(String),
    /// A width or height of 0, or pixel data of the wrong length.
    Size {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Bytes of pixel data given.
        bytes: usize,
    },
    /// The output buffer's length is not 3 × height × width.
    Output {
        /// Its length.
        len: usize,
        /// The length needed.
        expected: usize,
    },
}

impl fmt::Display for PhotoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFormat => write!(f, "not a PNG or JPEG file"),
            Self::Decode(e) => write!(f, "cannot decode the image: {e}"),
            Self::Size {
                width,
                height,
                bytes,
            } => write!(
                f,
                "a {width}×{height} RGB image needs {} bytes of pixels, not {bytes}",
                width * height * 3
            ),
            Self::Output { len, expected } => {
                write!(f, "the input buffer holds {len} values, not {expected}")
            }
        }
    }
}

impl std::error::Error for PhotoError {}

impl Photo {
    /// A photo from `width × height` RGB pixels, row by row.
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self, PhotoError> {
        if width == 0 || height == 0 || rgb.len() != width * height * 3 {
            return Err(PhotoError::Size {
                width,
                height,
                bytes: rgb.len(),
            });
        }
        Ok(Self { width, height, rgb })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, RGB row by row.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// Decodes a PNG (any colour type and depth: grey and palette images become RGB, alpha
    /// is dropped, 16-bit samples keep their high byte) or a baseline or progressive JPEG
    /// (grey, RGB or CMYK).
    pub fn decode(bytes: &[u8]) -> Result<Self, PhotoError> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            decode_png(bytes)
        } else if bytes.starts_with(&[0xff, 0xd8]) {
            decode_jpeg(bytes)
        } else {
            Err(PhotoError::UnknownFormat)
        }
    }

    /// The photo resized so that its shorter side is `shorter` pixels (the longer one in
    /// proportion, rounded down), by Pillow's bilinear filter, which widens with the
    /// reduction so that a downscaled photo does not alias: torchvision's `Resize(shorter)`
    /// on a PIL image. Values are 0–255 as `f32`, RGB row by row.
    pub fn resized(&self, shorter: usize) -> (usize, usize, Vec<f32>) {
        let (w, h) = if self.width <= self.height {
            (shorter, (shorter * self.height / self.width).max(1))
        } else {
            ((shorter * self.width / self.height).max(1), shorter)
        };
        let src: Vec<f32> = self.rgb.iter().map(|&v| f32::from(v)).collect();
        // Horizontal pass, then vertical, as Pillow.
        let across = resample(&src, self.width, self.height, w, Axis::Horizontal);
        let both = resample(&across, w, self.height, h, Axis::Vertical);
        (w, h, both)
    }
}

#[derive(Clone, Copy)]
enum Axis {
    Horizontal,
    Vertical,
}

/// Pillow's bilinear coefficients for `n_out` outputs from `n_in` inputs: for each output,
/// its first input and its normalised weights.
fn coefficients(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle's radius, 1, widened
    (0..n_out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(n_in);
            let mut w: Vec<f64> = (lo..hi)
                .map(|i| (1.0 - ((i as f64 - center + 0.5) / filterscale).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= sum);
            (lo, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Resamples RGB `src` (`w × h`) along one axis to `n` pixels there.
fn resample(src: &[f32], w: usize, h: usize, n: usize, axis: Axis) -> Vec<f32> {
    match axis {
        Axis::Horizontal => {
            let k = coefficients(w, n);
            let mut out = vec![0.0; n * h * 3];
            for y in 0..h {
                let row = &src[y * w * 3..(y + 1) * w * 3];
                for (x, (lo, ws)) in k.iter().enumerate() {
                    for c in 0..3 {
                        out[(y * n + x) * 3 + c] = ws
                            .iter()
                            .enumerate()
                            .map(|(i, wt)| wt * row[(lo + i) * 3 + c])
                            .sum();
                    }
                }
            }
            out
        }
        Axis::Vertical => {
            let k = coefficients(h, n);
            let mut out = vec![0.0; w * n * 3];
            for (y, (lo, ws)) in k.iter().enumerate() {
                let dst = &mut out[y * w * 3..(y + 1) * w * 3];
                for (i, wt) in ws.iter().enumerate() {
                    let row = &src[(lo + i) * w * 3..(lo + i + 1) * w * 3];
                    dst.iter_mut().zip(row).for_each(|(d, s)| *d += wt * s);
                }
            }
            out
        }
    }
}

/// torchvision's `CenterCrop` offset: `int(round((n − crop) / 2))`, Python's rounding of
/// halves to even.
fn crop_offset(n: usize, crop: usize) -> usize {
    let d = n.saturating_sub(crop);
    let k = d / 2;
    if d % 2 == 1 && k % 2 == 1 { k + 1 } else { k }
}

/// Writes `photo` as a `3 × h × w` network input to `out` (channel by channel, row by row):
/// the shorter side resized to [`RESIZE`] (or to `max(h, w)` if that is larger), the centre
/// `h × w` cropped, values scaled to 0–1 and normalised by [`IMAGENET_MEAN`] and
/// [`IMAGENET_STD`]: torchvision's evaluation transform for its ImageNet weights.
pub fn imagenet_input(
    photo: &Photo,
    h: usize,
    w: usize,
    out: &mut [f32],
) -> Result<(), PhotoError> {
    if out.len() != 3 * h * w {
        return Err(PhotoError::Output {
            len: out.len(),
            expected: 3 * h * w,
        });
    }
    let (rw, rh, rgb) = photo.resized(RESIZE.max(h).max(w));
    let (top, left) = (crop_offset(rh, h), crop_offset(rw, w));
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let v = rgb[((top + y) * rw + left + x) * 3 + c] / 255.0;
                out[(c * h + y) * w + x] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    Ok(())
}

/// torchvision's `GoogLeNet(transform_input=True)`, which its ImageNet weights expect: maps an
/// ImageNet-normalised input (`3 × h × w`, channel by channel) to the normalisation of the
/// TensorFlow weights it was ported from, `(v − 0.5) / 0.5` of the 0–1 values.
pub fn googlenet_transform_input(x: &mut [f32]) {
    let plane = x.len() / 3;
    for (c, channel) in x.chunks_exact_mut(plane).enumerate() {
        let scale = IMAGENET_STD[c] / 0.5;
        let shift = (IMAGENET_MEAN[c] - 0.5) / 0.5;
        channel.iter_mut().for_each(|v| *v = *v * scale + shift);
    }
}

fn decode_png(bytes: &[u8]) -> Result<Photo, PhotoError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| PhotoError::Decode(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| PhotoError::Decode("the image is too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| PhotoError::Decode(e.to_string()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(PhotoError::Decode("an unexpanded palette".into()));
        }
    };
    let rgb = buf[..w * h * channels]
        .chunks_exact(channels)
        .flat_map(|p| match channels {
            1 | 2 => [p[0]; 3],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    Photo::new(w, h, rgb)
}

fn decode_jpeg(bytes: &[u8]) -> Result<Photo, PhotoError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let pixels = decoder
        .decode()
        .map_err(|e| PhotoError::Decode(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| PhotoError::Decode("no image header".into()))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v; 3]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels.chunks_exact(2).flat_map(|v| [v[0]; 3]).collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                p[..3]
                    .iter()
                    .map(move |&c| (u16::from(c) * k / 255) as u8)
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    Photo::new(w, h, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pillow's bilinear weights: a 2× reduction averages each output's two inputs with
    /// their neighbours at a quarter (the triangle of radius 2 at ±0.5 and ±1.5), and an
    /// enlargement interpolates between the two nearest inputs.
    #[test]
    fn coefficients_are_pillows() {
        let k = coefficients(8, 4);
        assert_eq!(k[1].0, 1);
        let w = &k[1].1;
        assert_eq!(w.len(), 4);
        assert!((w[0] - 0.125).abs() < 1e-6 && (w[1] - 0.375).abs() < 1e-6);
        // The first output is clipped at the edge and renormalised.
        assert_eq!(k[0].0, 0);
        assert!((k[0].1.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let up = coefficients(2, 4);
        // Output 1's centre is at input 0.75: 3/4 of input 0's... weights 0.75 and 0.25.
        assert_eq!(up[1].0, 0);
        assert!((up[1].1[0] - 0.75).abs() < 1e-6 && (up[1].1[1] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn crops_round_halves_to_even_as_python() {
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(341, 224), 58); // 58.5 → 58
        assert_eq!(crop_offset(342, 224), 59);
        assert_eq!(crop_offset(227, 224), 2); // 1.5 → 2
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn bad_sizes_and_formats_are_errors() {
        assert!(matches!(
            Photo::new(2, 2, vec![0; 11]),
            Err(PhotoError::Size { bytes: 11, .. })
        ));
        assert!(matches!(
            Photo::new(0, 5, vec![]),
            Err(PhotoError::Size { .. })
        ));
        assert!(matches!(
            Photo::decode(b"GIF89a"),
            Err(PhotoError::UnknownFormat)
        ));
        assert!(matches!(
            Photo::decode(b"\x89PNG\r\n\x1a\nnot really"),
            Err(PhotoError::Decode(_))
        ));
        assert!(matches!(
            Photo::decode(&[0xff, 0xd8, 0, 0]),
            Err(PhotoError::Decode(_))
        ));
        let photo = Photo::new(1, 1, vec![1, 2, 3]).unwrap();
        assert!(matches!(
            imagenet_input(&photo, 4, 4, &mut [0.0; 47]),
            Err(PhotoError::Output {
                len: 47,
                expected: 48
            })
        ));
    }

    /// `transform_input` maps the ImageNet normalisation of a 0–1 value `v` to `(v − 0.5) / 0.5`.
    #[test]
    fn googlenets_transform_input_renormalises() {
        let v = [0.2f32, 0.7, 1.0];
        let mut x: Vec<f32> = (0..3)
            .map(|c| (v[c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
            .collect();
        googlenet_transform_input(&mut x);
        for c in 0..3 {
            assert!((x[c] - (v[c] - 0.5) / 0.5).abs() < 1e-6);
        }
    }
}
