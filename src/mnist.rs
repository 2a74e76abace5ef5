//! Reading MNIST-style data sets from IDX files (needs the `std` feature).
//!
//! MNIST, Fashion-MNIST and their relatives ship as four IDX files: images
//! (`*-images-idx3-ubyte`, magic `0x00000803`, then the count, rows and columns as big-endian
//! `u32`, then one byte per pixel) and labels (`*-labels-idx1-ubyte`, magic `0x00000801`, then
//! the count, then one byte per label). Each file may be gzip-compressed; compression is
//! recognised by the gzip magic bytes `1f 8b`, whatever the file is called.
//!
//! A [`Dataset`] keeps the raw 28×28 bytes (60,000 Fashion-MNIST images take 47 MB, not the
//! 188 MB of `f32` images) and turns one image at a time into LeNet-5's input with
//! [`Dataset::write_image`]: padded by 2 zero pixels on each side to 32×32 and scaled to
//! `[0, 1]`, with no allocation.
//!
//! ```
//! use constnet::mnist;
//!
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
//! let (train, test) = mnist::load_dir(&dir)?;
//! assert_eq!((train.len(), test.len()), (8000, 2000));
//!
//! let mut image = [[[0.0f32; 32]; 32]; 1]; // a constnet::Image<f32>
//! train.write_image(0, &mut image);
//! assert_eq!(train.label(0), 9);
//! assert!(image[0][0].iter().all(|&p| p == 0.0)); // the padding
//! assert!(image[0].as_flattened().iter().any(|&p| p > 0.5)); // the ink
//! # Ok::<(), mnist::IdxError>(())
//! ```
//!
//! # Untrusted files
//! Loading never panics and never allocates on the word of a header: a header that claims
//! 4 billion images costs only the bytes the file really holds. The loader reads (or
//! decompresses) the file's real bytes, stopping one byte past what the header declares, and
//! checks every size against those bytes before keeping anything. A gzip file that really
//! decompresses to that much data does take the memory it needs (reading stops one byte past
//! what the header declares).
//!
//! The loader is strict: it rejects any file that is not exactly its header plus the data the
//! header declares ([`IdxErrorKind::TrailingBytes`], [`IdxErrorKind::CountExceedsData`]),
//! images other than 28×28, labels above 9, and image and label files of different lengths.
//! IDX files have no slack, so any extra byte means a wrong count or a damaged file, and
//! ignoring it would hide that. After the first gzip member another may follow (as `gunzip`
//! accepts); anything else after the compressed data is reported as corrupt gzip.

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::lenet::Image;
use crate::scalar::Scalar;
use crate::tensor::Tensor;

/// Side of an MNIST image in pixels.
pub const SIDE: usize = 28;
/// Pixels in one MNIST image (28×28).
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes; labels are `0..CLASSES`.
pub const CLASSES: usize = 10;
/// Magic number of an IDX images file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX labels file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The most images (or labels) an IDX file may declare: over sixteen times MNIST's 60,000
/// (EMNIST's largest digits set holds 240,000). A header declaring more is refused before
/// any data is read or decompressed ([`IdxErrorKind::TooManyItems`]), so a file costs at most
/// this many images' memory (784 MB) however large it claims or decompresses to be.
pub const MAX_ITEMS: u32 = 1_000_000;

/// Zero pixels added on each side to make LeNet-5's 32×32 input.
const PAD: usize = 2;
const _: () = assert!(
    SIDE + 2 * PAD == 32,
    "an MNIST image padded by PAD must fill Image"
);

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Labelled 28×28 grey images, as bytes (one per pixel, 0 = background, 255 = full ink).
///
/// Memory: 785 bytes per image. Build one with [`load_dir`], [`Dataset::load`] or
/// [`Dataset::from_idx_bytes`].
///
/// ```
/// use constnet::mnist::Dataset;
///
/// // A one-image data set, built in memory: images header, 784 pixels, labels header, label.
/// let mut images = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
/// images.extend((0..784).map(|i| (i % 256) as u8));
/// let labels = [0, 0, 8, 1, 0, 0, 0, 1, 7];
/// let data = Dataset::from_idx_bytes(&images, &labels)?;
///
/// assert_eq!((data.len(), data.label(0)), (1, 7));
/// assert_eq!(data.pixels(0)[255], 255);
/// let image = data.image::<f64>(0); // 32×32: pixel 255 (row 9, column 3) lands at (11, 5)
/// assert_eq!(image[0][2 + 255 / 28][2 + 255 % 28], 1.0);
/// # Ok::<(), constnet::mnist::IdxError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Dataset {
    /// `len() * PIXELS` bytes, image after image, each row-major.
    pixels: Vec<u8>,
    /// One label in `0..CLASSES` per image.
    labels: Vec<u8>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Loads an images file and a labels file, each raw or gzip-compressed.
    ///
    /// # Errors
    /// Any [`IdxError`]: a file that cannot be read, is not the IDX file expected, is damaged,
    /// or does not agree with the other.
    pub fn load(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self, IdxError> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        let pixels = read_idx(open(images)?, images, Kind::Images)?;
        let labels_bytes = read_idx(open(labels)?, labels, Kind::Labels)?;
        Self::from_parts(pixels, labels_bytes, images, labels)
    }

    /// Parses an images file and a labels file already in memory, each raw or gzip-compressed.
    /// Errors name the files `<images bytes>` and `<labels bytes>`.
    ///
    /// # Errors
    /// As [`Dataset::load`], except that there is no I/O to fail.
    pub fn from_idx_bytes(images: &[u8], labels: &[u8]) -> Result<Self, IdxError> {
        let (images_name, labels_name) = (Path::new("<images bytes>"), Path::new("<labels bytes>"));
        let pixels = read_idx(images, images_name, Kind::Images)?;
        let labels_bytes = read_idx(labels, labels_name, Kind::Labels)?;
        Self::from_parts(pixels, labels_bytes, images_name, labels_name)
    }

    fn from_parts(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        images_file: &Path,
        labels_file: &Path,
    ) -> Result<Self, IdxError> {
        let images = pixels.len() / PIXELS;
        if images != labels.len() {
            return Err(IdxError::new(
                images_file,
                IdxErrorKind::CountMismatch {
                    images,
                    labels: labels.len(),
                    labels_file: labels_file.to_path_buf(),
                },
            ));
        }
        Ok(Self { pixels, labels })
    }

    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The class of image `i`, in `0..CLASSES`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }

    /// Every label, in image order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The raw pixels of image `i`, row-major, 0 (background) to 255 (ink).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn pixels(&self, i: usize) -> &[u8; PIXELS] {
        &self.pixels.as_chunks::<PIXELS>().0[i]
    }

    /// Writes image `i` as LeNet-5's input: the 28×28 digit at rows and columns `2..30` of a
    /// 32×32 map whose 2-pixel border is zero, each pixel scaled to `pixel / 255`. Every
    /// element of `out` is written; nothing is allocated.
    ///
    /// # Panics
    /// If `i >= self.len()` (before `out` is touched).
    pub fn write_image<T: Scalar>(&self, i: usize, out: &mut Image<T>) {
        let pixels = self.pixels(i);
        out.fill_zero();
        let digit_rows = &mut out[0][PAD..PAD + SIDE];
        for (row, src) in digit_rows.iter_mut().zip(pixels.as_chunks::<SIDE>().0) {
            for (o, &p) in row[PAD..PAD + SIDE].iter_mut().zip(src) {
                *o = T::from_f64(f64::from(p) / 255.0);
            }
        }
    }

    /// Image `i` as LeNet-5's input, returned by value (4 KiB in `f32`); see
    /// [`Dataset::write_image`] to fill an existing buffer instead.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image<T: Scalar>(&self, i: usize) -> Image<T> {
        let mut out = [[[T::zero(); 32]; 32]; 1];
        self.write_image(i, &mut out);
        out
    }
}

/// Loads the training and test sets from a directory in the layout MNIST and Fashion-MNIST
/// are distributed in: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each raw or with `.gz`. The
/// variant with a dot before `idx` (`train-images.idx3-ubyte`), used by some copies, is
/// accepted too. Where several variants exist, the first in that order wins (raw before
/// `.gz`). Returns `(train, test)`.
///
/// ```
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k");
/// let (train, test) = constnet::mnist::load_dir(&dir)?;
/// assert_eq!(train.len() + test.len(), 10_000);
/// # Ok::<(), constnet::mnist::IdxError>(())
/// ```
///
/// # Errors
/// [`IdxErrorKind::Io`] with [`io::ErrorKind::NotFound`] naming the first candidate when none
/// of a file's names exists, and any error of [`Dataset::load`].
pub fn load_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset), IdxError> {
    let dir = dir.as_ref();
    let train = Dataset::load(
        find(dir, "train-images", "idx3-ubyte")?,
        find(dir, "train-labels", "idx1-ubyte")?,
    )?;
    Ok((train, load_test_dir(dir)?))
}

/// Loads only the test set (`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, named as for
/// [`load_dir`]) of a directory: what evaluating saved weights needs.
///
/// # Errors
/// As [`load_dir`].
pub fn load_test_dir(dir: impl AsRef<Path>) -> Result<Dataset, IdxError> {
    let dir = dir.as_ref();
    Dataset::load(
        find(dir, "t10k-images", "idx3-ubyte")?,
        find(dir, "t10k-labels", "idx1-ubyte")?,
    )
}

/// The first existing file among `{stem}-{kind}`, `{stem}-{kind}.gz`, `{stem}.{kind}`,
/// `{stem}.{kind}.gz` in `dir`.
fn find(dir: &Path, stem: &str, kind: &str) -> Result<PathBuf, IdxError> {
    let names = [
        format!("{stem}-{kind}"),
        format!("{stem}-{kind}.gz"),
        format!("{stem}.{kind}"),
        format!("{stem}.{kind}.gz"),
    ];
    if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
        return Ok(found);
    }
    let message = format!("no file named {} in {}", names.join(", "), dir.display());
    Err(IdxError::new(
        &dir.join(&names[0]),
        IdxErrorKind::Io(io::Error::new(io::ErrorKind::NotFound, message)),
    ))
}

/// What went wrong while loading IDX data, and in which file.
///
/// `Display` gives one line: the file, then the problem with its numbers.
#[derive(Debug)]
pub struct IdxError {
    file: PathBuf,
    kind: IdxErrorKind,
}

impl IdxError {
    fn new(file: &Path, kind: IdxErrorKind) -> Self {
        Self {
            file: file.to_path_buf(),
            kind,
        }
    }

    /// The file the problem is in (`<images bytes>` or `<labels bytes>` for data given to
    /// [`Dataset::from_idx_bytes`]). For [`IdxErrorKind::CountMismatch`], the images file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The problem.
    pub fn kind(&self) -> &IdxErrorKind {
        &self.kind
    }
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.kind)
    }
}

impl Error for IdxError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            IdxErrorKind::Io(e) | IdxErrorKind::CorruptGzip(e) => Some(e),
            _ => None,
        }
    }
}

/// The problems [`IdxError`] reports. Byte counts are of the IDX data, after decompression
/// for a gzip file, header included.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdxErrorKind {
    /// The file could not be opened or read (missing, unreadable, ...).
    Io(io::Error),
    /// The file starts like gzip but its compressed stream is damaged or cut short.
    CorruptGzip(io::Error),
    /// The first four bytes are not the magic number of the IDX file expected.
    BadMagic {
        /// The number found.
        found: u32,
        /// [`IMAGES_MAGIC`] or [`LABELS_MAGIC`].
        expected: u32,
    },
    /// The file ends inside its header (16 bytes for images, 8 for labels).
    TruncatedHeader {
        /// Length of the header.
        expected: usize,
        /// Bytes the file holds.
        actual: usize,
    },
    /// Truncated data: the header declares more items than the file holds (the file was cut
    /// short, or its header is wrong).
    CountExceedsData {
        /// Items (images or labels) the header declares.
        claimed: u32,
        /// Whole items the file holds.
        held: u64,
        /// Bytes the header declares (header included).
        expected_bytes: u64,
        /// Bytes the file holds.
        actual_bytes: u64,
    },
    /// The header declares more items than [`MAX_ITEMS`]: refused before reading the data.
    TooManyItems {
        /// Items (images or labels) the header declares.
        claimed: u32,
        /// [`MAX_ITEMS`].
        max: u32,
    },
    /// The file goes on past the data its header declares.
    TrailingBytes {
        /// Bytes the header declares (header included); the file holds more.
        expected_bytes: u64,
    },
    /// The images are not 28×28.
    BadDimensions {
        /// Rows per image in the header.
        rows: u32,
        /// Columns per image in the header.
        cols: u32,
    },
    /// A label is not a digit class (above 9).
    LabelOutOfRange {
        /// Position of the label in the file (0-based).
        index: usize,
        /// The label found.
        label: u8,
    },
    /// The images file and the labels file hold different numbers of items.
    CountMismatch {
        /// Images in the images file ([`IdxError::file`]).
        images: usize,
        /// Labels in `labels_file`.
        labels: usize,
        /// The labels file.
        labels_file: PathBuf,
    },
}

impl fmt::Display for IdxErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::CorruptGzip(e) => write!(f, "corrupt gzip data: {e}"),
            Self::BadMagic { found, expected } => {
                let what = |m: u32| match m {
                    IMAGES_MAGIC => " (IDX images)",
                    LABELS_MAGIC => " (IDX labels)",
                    _ => "",
                };
                write!(
                    f,
                    "bad magic number {found:#010x}{}, expected {expected:#010x}{}",
                    what(*found),
                    what(*expected)
                )?;
                if !what(*found).is_empty() {
                    write!(f, ": are the images and labels files swapped?")?;
                }
                Ok(())
            }
            Self::TruncatedHeader { expected, actual } => write!(
                f,
                "truncated header: an IDX header needs {expected} bytes, the file holds {actual}"
            ),
            Self::CountExceedsData {
                claimed,
                held,
                expected_bytes,
                actual_bytes,
            } => write!(
                f,
                "truncated data: the header declares {claimed} items ({expected_bytes} bytes) \
                 but the file holds {actual_bytes} bytes ({held} whole items)"
            ),
            Self::TooManyItems { claimed, max } => write!(
                f,
                "the header declares {claimed} items, more than the {max} this loader accepts \
                 (a damaged header, or not an MNIST-sized data set)"
            ),
            Self::TrailingBytes { expected_bytes } => write!(
                f,
                "trailing bytes: the file goes on past the {expected_bytes} bytes its header \
                 declares"
            ),
            Self::BadDimensions { rows, cols } => {
                write!(f, "images are {rows}×{cols}, expected {SIDE}×{SIDE}")
            }
            Self::LabelOutOfRange { index, label } => {
                write!(f, "label {index} is {label}, expected 0 to {}", CLASSES - 1)
            }
            Self::CountMismatch {
                images,
                labels,
                labels_file,
            } => write!(
                f,
                "holds {images} images but {} holds {labels} labels",
                labels_file.display()
            ),
        }
    }
}

/// The two kinds of IDX file a data set needs.
#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }
    fn header_len(self) -> usize {
        match self {
            Kind::Images => 16,
            Kind::Labels => 8,
        }
    }
    fn item_len(self) -> u64 {
        match self {
            Kind::Images => PIXELS as u64,
            Kind::Labels => 1,
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>, IdxError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| IdxError::new(path, IdxErrorKind::Io(e)))
}

/// An error of the underlying reader, marked so that it is told apart from the gzip
/// decoder's own errors once it has passed through the decoder.
#[derive(Debug)]
struct SourceError(io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for SourceError {}

struct Marked<R>(R);

impl<R: Read> Read for Marked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), SourceError(e)))
    }
}

/// An I/O error of the file itself, or else a complaint of the gzip decoder.
fn classify(e: io::Error) -> IdxErrorKind {
    let kind = e.kind();
    match e.into_inner() {
        Some(inner) => match inner.downcast::<SourceError>() {
            Ok(source) => IdxErrorKind::Io(source.0),
            Err(other) => IdxErrorKind::CorruptGzip(io::Error::new(kind, other)),
        },
        None => IdxErrorKind::CorruptGzip(io::Error::from(kind)),
    }
}

/// Reads until `buf` is full or the data ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads one IDX file (raw or gzip) of `kind`, checks it, and returns its data without the
/// header: the pixels of every image, or every label.
fn read_idx(source: impl Read, file: &Path, kind: Kind) -> Result<Vec<u8>, IdxError> {
    let err = |k| IdxError::new(file, k);
    let mut source = Marked(source);
    let mut start = [0u8; 2];
    let n = read_up_to(&mut source, &mut start).map_err(|e| err(classify(e)))?;
    let source = io::Cursor::new(start).take(n as u64).chain(source);
    let mut reader: Box<dyn Read + '_> = if start[..n] == GZIP_MAGIC {
        Box::new(MultiGzDecoder::new(source))
    } else {
        Box::new(source)
    };

    let mut header = [0u8; 16];
    let header = &mut header[..kind.header_len()];
    let got = read_up_to(&mut reader, header).map_err(|e| err(classify(e)))?;
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if got >= 4 && word(0) != kind.magic() {
        return Err(err(IdxErrorKind::BadMagic {
            found: word(0),
            expected: kind.magic(),
        }));
    }
    if got < header.len() {
        return Err(err(IdxErrorKind::TruncatedHeader {
            expected: header.len(),
            actual: got,
        }));
    }
    let claimed = word(4);
    if claimed > MAX_ITEMS {
        return Err(err(IdxErrorKind::TooManyItems {
            claimed,
            max: MAX_ITEMS,
        }));
    }
    if let Kind::Images = kind {
        let (rows, cols) = (word(8), word(12));
        if (rows, cols) != (SIDE as u32, SIDE as u32) {
            return Err(err(IdxErrorKind::BadDimensions { rows, cols }));
        }
    }

    // Read (or decompress) what the file really holds, stopping one byte past what the header
    // declares (at most MAX_ITEMS items): the vector grows with the bytes read, never with the
    // header's claim, and no more is decompressed than the header declares plus one byte.
    let declared = u64::from(claimed) * kind.item_len();
    let mut data = Vec::new();
    reader
        .take(declared + 1)
        .read_to_end(&mut data)
        .map_err(|e| err(classify(e)))?;
    let header_len = kind.header_len() as u64;
    let actual = data.len() as u64;
    if actual > declared {
        return Err(err(IdxErrorKind::TrailingBytes {
            expected_bytes: header_len + declared,
        }));
    }
    if actual < declared {
        return Err(err(IdxErrorKind::CountExceedsData {
            claimed,
            held: actual / kind.item_len(),
            expected_bytes: header_len + declared,
            actual_bytes: header_len + actual,
        }));
    }
    data.shrink_to_fit();
    if let Kind::Labels = kind
        && let Some(index) = data.iter().position(|&l| usize::from(l) >= CLASSES)
    {
        let label = data[index];
        return Err(err(IdxErrorKind::LabelOutOfRange { index, label }));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn images_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [IMAGES_MAGIC, count, rows, cols] {
            v.extend(w.to_be_bytes());
        }
        v.extend(pixels);
        v
    }

    fn labels_file(count: u32, labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [LABELS_MAGIC, count] {
            v.extend(w.to_be_bytes());
        }
        v.extend(labels);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Three images (pixel k of image i is `(k + i) % 256`) labelled 3, 1, 4.
    fn valid() -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..3)
            .flat_map(|i| (0..PIXELS).map(move |k| ((k + i) % 256) as u8))
            .collect();
        (images_file(3, 28, 28, &pixels), labels_file(3, &[3, 1, 4]))
    }

    fn kind_of(r: Result<Dataset, IdxError>) -> (PathBuf, IdxErrorKind, String) {
        let e = r.expect_err("loading should fail");
        let msg = e.to_string();
        (e.file.clone(), e.kind, msg)
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("constnet-mnist-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn valid_raw_and_gzip_give_the_same_data() {
        let (im, lb) = valid();
        let raw = Dataset::from_idx_bytes(&im, &lb).unwrap();
        let gz = Dataset::from_idx_bytes(&gzip(&im), &gzip(&lb)).unwrap();
        assert_eq!(raw, gz);
        assert_eq!((raw.len(), raw.is_empty()), (3, false));
        assert_eq!([raw.label(0), raw.label(1), raw.label(2)], [3, 1, 4]);
        assert_eq!(raw.labels(), &[3, 1, 4]);
        assert_eq!(raw.pixels(2)[0], 2);
        assert_eq!(raw.pixels(2)[783], ((783 + 2) % 256) as u8);
        assert_eq!(format!("{raw:?}"), "Dataset { len: 3, .. }");
    }

    #[test]
    fn an_empty_file_pair_is_an_empty_dataset() {
        let d =
            Dataset::from_idx_bytes(&images_file(0, 28, 28, &[]), &labels_file(0, &[])).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn padding_and_scaling() {
        let mut pixels = vec![0u8; PIXELS];
        let (r, c, p) = (3, 5, 200u8);
        pixels[r * SIDE + c] = p;
        pixels[0] = 255; // top-left corner of the digit
        pixels[PIXELS - 1] = 1; // bottom-right corner
        let d = Dataset::from_idx_bytes(&images_file(1, 28, 28, &pixels), &labels_file(1, &[0]))
            .unwrap();

        let mut out = [[[7.0f32; 32]; 32]; 1]; // stale values everywhere
        d.write_image(0, &mut out);
        assert_eq!(out[0][r + 2][c + 2], f32::from_f64(f64::from(p) / 255.0));
        assert_eq!(out[0][2][2], 1.0);
        assert_eq!(out[0][29][29], f32::from_f64(1.0 / 255.0));
        let nonzero: Vec<(usize, usize)> = (0..32)
            .flat_map(|y| (0..32).map(move |x| (y, x)))
            .filter(|&(y, x)| out[0][y][x] != 0.0)
            .collect();
        assert_eq!(nonzero, [(2, 2), (r + 2, c + 2), (29, 29)]);

        let by_value: Image<f64> = d.image(0);
        assert_eq!(by_value[0][r + 2][c + 2], 200.0 / 255.0);
        assert_eq!(by_value.flat().iter().filter(|&&v| v != 0.0).count(), 3);
    }

    #[test]
    fn every_pixel_value_scales_to_its_fraction_of_255() {
        let pixels: Vec<u8> = (0..PIXELS).map(|k| (k % 256) as u8).collect();
        let d = Dataset::from_idx_bytes(&images_file(1, 28, 28, &pixels), &labels_file(1, &[0]))
            .unwrap();
        let im: Image<f64> = d.image(0);
        for (k, &p) in pixels.iter().enumerate() {
            assert_eq!(im[0][k / SIDE + 2][k % SIDE + 2], f64::from(p) / 255.0);
        }
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let (file, kind, msg) = kind_of(Dataset::load(
            "/nonexistent/imgs-idx3-ubyte",
            "/nonexistent/l",
        ));
        assert_eq!(file, Path::new("/nonexistent/imgs-idx3-ubyte"));
        assert!(matches!(kind, IdxErrorKind::Io(ref e) if e.kind() == io::ErrorKind::NotFound));
        assert!(
            msg.starts_with("/nonexistent/imgs-idx3-ubyte: I/O error"),
            "{msg}"
        );
    }

    #[test]
    fn load_dir_names_the_missing_file() {
        let dir = TempDir::new("missing");
        let e = load_dir(&dir.0).unwrap_err();
        assert_eq!(e.file(), dir.0.join("train-images-idx3-ubyte"));
        assert!(matches!(e.kind(), IdxErrorKind::Io(e) if e.kind() == io::ErrorKind::NotFound));
        assert!(e.to_string().contains("train-images-idx3-ubyte.gz"), "{e}");
        assert!(e.source().is_some());
    }

    #[test]
    fn load_dir_takes_raw_gz_and_dotted_names_and_sniffs_gzip() {
        let dir = TempDir::new("names");
        let (im, lb) = valid();
        let w = |name: &str, bytes: &[u8]| std::fs::write(dir.0.join(name), bytes).unwrap();
        w("train-images-idx3-ubyte", &gzip(&im)); // compressed, without .gz in its name
        w("train-labels-idx1-ubyte.gz", &gzip(&lb));
        w("t10k-images.idx3-ubyte", &im);
        w("t10k-labels.idx1-ubyte.gz", &lb); // raw, despite the name
        let (train, test) = load_dir(&dir.0).unwrap();
        assert_eq!(train, test);
        assert_eq!(train.len(), 3);
    }

    #[test]
    fn bad_magic_says_found_and_expected() {
        let (im, lb) = valid();
        let (file, kind, msg) = kind_of(Dataset::from_idx_bytes(&lb, &im));
        assert_eq!(file, Path::new("<images bytes>"));
        assert!(matches!(
            kind,
            IdxErrorKind::BadMagic {
                found: LABELS_MAGIC,
                expected: IMAGES_MAGIC
            }
        ));
        assert!(
            msg.contains("0x00000801") && msg.contains("0x00000803") && msg.contains("swapped"),
            "{msg}"
        );

        let mut bad = lb.clone();
        bad[..4].copy_from_slice(b"P5\n2");
        let (file, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &bad));
        assert_eq!(file, Path::new("<labels bytes>"));
        assert!(matches!(
            kind,
            IdxErrorKind::BadMagic {
                found: 0x5035_0a32,
                expected: LABELS_MAGIC
            }
        ));
        assert!(!msg.contains("swapped"), "{msg}");
        // the same inside gzip
        let (_, kind, _) = kind_of(Dataset::from_idx_bytes(&im, &gzip(&bad)));
        assert!(matches!(kind, IdxErrorKind::BadMagic { .. }));
    }

    #[test]
    fn truncated_header() {
        let (im, lb) = valid();
        for len in [0, 1, 3] {
            let (_, kind, _) = kind_of(Dataset::from_idx_bytes(&im[..len], &lb));
            assert!(
                matches!(kind, IdxErrorKind::TruncatedHeader { expected: 16, actual } if actual == len)
            );
        }
        let (_, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &gzip(&lb[..7])));
        assert!(matches!(
            kind,
            IdxErrorKind::TruncatedHeader {
                expected: 8,
                actual: 7
            }
        ));
        assert!(msg.contains("8 bytes") && msg.contains("holds 7"), "{msg}");
    }

    #[test]
    fn truncated_data_reports_expected_and_actual_bytes() {
        let (im, lb) = valid();
        let cut = &im[..16 + PIXELS + 100];
        let (_, kind, msg) = kind_of(Dataset::from_idx_bytes(cut, &lb));
        match kind {
            IdxErrorKind::CountExceedsData {
                claimed,
                held,
                expected_bytes,
                actual_bytes,
            } => {
                assert_eq!((claimed, held), (3, 1));
                assert_eq!(
                    (expected_bytes, actual_bytes),
                    (16 + 3 * 784, 16 + 784 + 100)
                );
            }
            k => panic!("{k:?}"),
        }
        assert!(
            msg.contains("2368 bytes") && msg.contains("900 bytes"),
            "{msg}"
        );
        let (_, kind, _) = kind_of(Dataset::from_idx_bytes(&im, &lb[..10]));
        assert!(matches!(
            kind,
            IdxErrorKind::CountExceedsData {
                claimed: 3,
                held: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_header_claiming_the_most_images_allowed_allocates_nothing_and_fails_fast() {
        let (mut im, lb) = valid();
        im[4..8].copy_from_slice(&MAX_ITEMS.to_be_bytes());
        for images in [im.clone(), gzip(&im)] {
            let t = std::time::Instant::now();
            let (_, kind, _) = kind_of(Dataset::from_idx_bytes(&images, &lb));
            assert!(t.elapsed().as_secs_f64() < 1.0);
            match kind {
                IdxErrorKind::CountExceedsData {
                    claimed,
                    held,
                    expected_bytes,
                    ..
                } => {
                    assert_eq!((claimed, held), (MAX_ITEMS, 3));
                    assert_eq!(expected_bytes, 16 + u64::from(MAX_ITEMS) * 784);
                }
                k => panic!("{k:?}"),
            }
        }
    }

    /// A reader of `blocks` copies of `block` after `head`, counting the bytes handed out.
    struct Repeating {
        head: Vec<u8>,
        block: Vec<u8>,
        blocks: usize,
        at: usize,
        read: usize,
    }
    impl Read for Repeating {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let (head, block) = (self.head.len(), self.block.len());
            if self.at >= head + self.blocks * block {
                return Ok(0);
            }
            let (src, pos) = if self.at < head {
                (&self.head, self.at)
            } else {
                (&self.block, (self.at - head) % block)
            };
            let n = buf.len().min(src.len() - pos);
            buf[..n].copy_from_slice(&src[pos..pos + n]);
            self.at += n;
            self.read += n;
            Ok(n)
        }
    }

    /// A header declaring more than `MAX_ITEMS` images, followed by 64 MB of blank images,
    /// raw or as a gzip stream (of stored deflate blocks, made on the fly): refused from the
    /// header alone, without reading or decompressing the data.
    #[test]
    fn a_header_claiming_too_many_items_is_refused_before_the_data_is_read() {
        let blocks = 1000;
        for claimed in [MAX_ITEMS + 1, u32::MAX] {
            let header = images_file(claimed, 28, 28, &[]);
            let mut stored = vec![0x00, 0xff, 0xff, 0x00, 0x00]; // not final, 65,535 bytes
            stored.resize(5 + 65_535, 0);
            let mut gz_head = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
            gz_head.extend([0x00, 16, 0, !16, 0xff]); // a stored block holding the header
            gz_head.extend(&header);
            let raw = Repeating {
                head: header.clone(),
                block: vec![0; 65_536],
                blocks,
                at: 0,
                read: 0,
            };
            let gz = Repeating {
                head: gz_head,
                block: stored,
                blocks,
                at: 0,
                read: 0,
            };
            for (mut source, bound) in [(raw, 16), (gz, 200_000)] {
                let e = read_idx(&mut source, Path::new("bomb"), Kind::Images).unwrap_err();
                assert!(
                    matches!(e.kind(), IdxErrorKind::TooManyItems { claimed: c, max: MAX_ITEMS } if *c == claimed),
                    "{e}"
                );
                assert!(e.to_string().contains(&claimed.to_string()), "{e}");
                assert!(source.read <= bound, "read {} bytes", source.read);
            }
        }
        let labels = labels_file(MAX_ITEMS + 1, &[0; 4]);
        let e = read_idx(&labels[..], Path::new("l"), Kind::Labels).unwrap_err();
        assert!(matches!(e.kind(), IdxErrorKind::TooManyItems { .. }), "{e}");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let (mut im, mut lb) = valid();
        lb.push(0);
        let (_, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &lb));
        assert!(matches!(
            kind,
            IdxErrorKind::TrailingBytes { expected_bytes: 11 }
        ));
        assert!(msg.contains("11 bytes"), "{msg}");
        im.extend([0; 784]); // one whole image too many
        let (_, kind, _) = kind_of(Dataset::from_idx_bytes(&gzip(&im), &lb));
        assert!(matches!(
            kind,
            IdxErrorKind::TrailingBytes {
                expected_bytes: 2368
            }
        ));
    }

    #[test]
    fn dimensions_other_than_28_by_28_are_rejected() {
        let (_, lb) = valid();
        let im = images_file(3, 32, 32, &[0; 3 * 1024]);
        let (_, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &lb));
        assert!(matches!(
            kind,
            IdxErrorKind::BadDimensions { rows: 32, cols: 32 }
        ));
        assert!(msg.contains("32×32") && msg.contains("28×28"), "{msg}");
    }

    #[test]
    fn a_label_above_9_is_reported_with_its_index() {
        let (im, _) = valid();
        let (file, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &labels_file(3, &[3, 9, 10])));
        assert_eq!(file, Path::new("<labels bytes>"));
        assert!(matches!(
            kind,
            IdxErrorKind::LabelOutOfRange {
                index: 2,
                label: 10
            }
        ));
        assert!(msg.contains("label 2 is 10"), "{msg}");
    }

    #[test]
    fn image_and_label_counts_must_agree() {
        let (im, _) = valid();
        let (file, kind, msg) = kind_of(Dataset::from_idx_bytes(&im, &labels_file(2, &[1, 2])));
        assert_eq!(file, Path::new("<images bytes>"));
        assert!(matches!(
            kind,
            IdxErrorKind::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ));
        assert_eq!(
            msg,
            "<images bytes>: holds 3 images but <labels bytes> holds 2 labels"
        );
    }

    #[test]
    fn corrupt_gzip_is_reported_as_such() {
        let (im, lb) = valid();
        let gz = gzip(&im);
        // damage the deflate stream, the checksum, and cut the stream short
        let mut body = gz.clone();
        body[gz.len() / 2] ^= 0x55;
        let mut crc = gz.clone();
        let at = gz.len() - 8;
        crc[at] ^= 1;
        for bad in [
            body,
            crc,
            gz[..gz.len() - 4].to_vec(),
            gz[..12].to_vec(),
            [gz.clone(), vec![1, 2, 3]].concat(),
        ] {
            let e = Dataset::from_idx_bytes(&bad, &lb).unwrap_err();
            match e.kind() {
                IdxErrorKind::CorruptGzip(_) => {
                    assert!(e.to_string().contains("corrupt gzip"), "{e}");
                    assert!(e.source().is_some());
                }
                k => panic!("{k:?}"),
            }
        }
    }

    /// A reader that hands out `ok` bytes of `data`, then fails like a broken disk.
    struct FailingReader<'a> {
        data: &'a [u8],
        ok: usize,
    }
    impl Read for FailingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.ok).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.ok -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_inside_a_gzip_stream_is_io_not_corruption() {
        let (im, _) = valid();
        let gz = gzip(&im);
        for (bytes, ok) in [(&gz, 0), (&gz, 1), (&gz, 40), (&im, 20)] {
            let reader = FailingReader { data: bytes, ok };
            let e = read_idx(reader, Path::new("f"), Kind::Images).unwrap_err();
            match e.kind() {
                IdxErrorKind::Io(inner) => assert_eq!(inner.to_string(), "disk on fire"),
                k => panic!("{ok}: {k:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_file_on_disk() {
        let dir = TempDir::new("ondisk");
        let (im, lb) = valid();
        let imgs = dir.0.join("x-images");
        let lbls = dir.0.join("x-labels");
        std::fs::write(&imgs, &im).unwrap();
        std::fs::write(&lbls, gzip(&labels_file(3, &[1, 2, 200]))).unwrap();
        let e = Dataset::load(&imgs, &lbls).unwrap_err();
        assert_eq!(e.file(), lbls);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: label 2 is 200", lbls.display())),
            "{e}"
        );
        std::fs::write(&lbls, &lb).unwrap();
        assert_eq!(Dataset::load(&imgs, &lbls).unwrap().len(), 3);
    }
}
