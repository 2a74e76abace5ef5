//! constnet's own weights format: self-describing, checksummed, loadable with no allocation.
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"CONSTNET"
//!      8     4  format version, u32 little-endian (currently 1)
//!     12     1  scalar width in bytes: 4 (f32) or 8 (f64)
//!     13     3  reserved, zero
//!     16     4  D = architecture descriptor length in bytes, u32 LE
//!     20     4  P = number of parameters (scalars), u32 LE
//!     24     D  architecture descriptor, UTF-8, e.g.
//!               "Conv2d(1,6,5,1,0,32,32,28,28) > Relu(4704) > MaxPool2d(6,28,28,2,2,14,14) > …"
//!   24+D     Z  zero padding so the parameters start at a multiple of 8
//!      …  P·w   parameters, little-endian, in `Layer::param` order (PyTorch layouts)
//!      …     4  CRC-32 (IEEE) of every byte before it, u32 LE
//! ```
//!
//! [`load_weights`] checks everything (size, magic, version, scalar width, descriptor,
//! parameter count, checksum) *before* it writes a single parameter, so a bad file leaves the
//! network as it was. It reads from a `&[u8]`, so firmware can `include_bytes!` a file.

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "alloc")]
use alloc::{string::String, vec::Vec};
use core::fmt::{self, Write};

use crate::chain::Chain;
use crate::layer::Layer;
#[cfg(feature = "std")]
use crate::read::read_at_most;
use crate::scalar::Scalar;
use crate::tensor::Tensor;
use crate::{Conv2d, Flatten, Linear, MaxPool2d, Relu, Softmax};

/// The file's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"CONSTNET";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 24;

/// A layer (or network) that can write a description of its shapes, stored in weight files
/// so that weights never load into a network of another shape.
pub trait Describe {
    /// Writes the description, e.g. `Linear(400,120)`; chains join theirs with ` > `.
    fn describe(out: &mut dyn Write) -> fmt::Result;
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Describe for Conv2d<T, CI, CO, K, S, P, H, W, OH, OW>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Conv2d({CI},{CO},{K},{S},{P},{H},{W},{OH},{OW})")
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
> Describe for MaxPool2d<T, C, H, W, K, S, OH, OW, P, CEIL>
{
    /// Padding and ceil mode are written only when used, so the files of unpadded
    /// networks (LeNet-5's) keep their descriptor.
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "MaxPool2d({C},{H},{W},{K},{S},{OH},{OW}")?;
        if P > 0 || CEIL {
            write!(out, ",pad={P},ceil={CEIL}")?;
        }
        write!(out, ")")
    }
}

impl<X: Tensor> Describe for Relu<X> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Relu({})", X::LEN)
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, const N: usize> Describe
    for Flatten<T, C, H, W, N>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Flatten({C},{H},{W},{N})")
    }
}

impl<T: Scalar, const IN: usize, const OUT: usize> Describe for Linear<T, IN, OUT> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Linear({IN},{OUT})")
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize, E: crate::BatchNormEps> Describe
    for crate::BatchNorm2d<T, C, H, W, E>
{
    /// `eps` and `momentum` are values of the network's definition, not of its weights.
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "BatchNorm2d({C},{H},{W})")
    }
}

impl<
    T: Scalar,
    const C: usize,
    const H: usize,
    const W: usize,
    const K: usize,
    const S: usize,
    const OH: usize,
    const OW: usize,
    const P: usize,
    const CEIL: bool,
    const INCLUDE_PAD: bool,
> Describe for crate::AvgPool2d<T, C, H, W, K, S, OH, OW, P, CEIL, INCLUDE_PAD>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(
            out,
            "AvgPool2d({C},{H},{W},{K},{S},{OH},{OW},pad={P},ceil={CEIL},include_pad={INCLUDE_PAD})"
        )
    }
}

impl<T: Scalar, const C: usize, const H: usize, const W: usize> Describe
    for crate::GlobalAvgPool2d<T, C, H, W>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "GlobalAvgPool2d({C},{H},{W})")
    }
}

/// `alpha`, `beta` and `k` are values of the network's definition, not of its weights.
impl<T: Scalar, const C: usize, const H: usize, const W: usize, const SIZE: usize> Describe
    for crate::LocalResponseNorm<T, C, H, W, SIZE>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "LocalResponseNorm({C},{H},{W},{SIZE})")
    }
}

impl<
    T: Scalar,
    const CI: usize,
    const CO: usize,
    const G: usize,
    const CIG: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    const OH: usize,
    const OW: usize,
> Describe for crate::GroupedConv2d<T, CI, CO, G, CIG, K, S, P, H, W, OH, OW>
{
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(
            out,
            "GroupedConv2d({CI},{CO},{G},{K},{S},{P},{H},{W},{OH},{OW})"
        )
    }
}

impl<X: Tensor> Describe for crate::Dropout<X> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Dropout({})", X::LEN)
    }
}

impl<T: Scalar, const N: usize> Describe for Softmax<T, N> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Softmax({N})")
    }
}

/// How a stack runs its batches is not part of its weights: the same as `Net`.
impl<Net: Describe> Describe for crate::Lanes<Net> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        Net::describe(out)
    }
}

impl<X: Tensor> Describe for crate::Identity<X> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        write!(out, "Identity({})", X::LEN)
    }
}

/// Names are not part of the weights: the same as `L` (so LeNet-5's files kept their
/// descriptor when its layers were named).
impl<N, L: Describe> Describe for crate::Named<N, L> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        L::describe(out)
    }
}

impl<L: Describe> Describe for crate::NoBias<L> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        out.write_str("NoBias(")?;
        L::describe(out)?;
        out.write_str(")")
    }
}

impl<F: Describe, S: Describe> Describe for crate::Residual<F, S> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        out.write_str("Residual(")?;
        F::describe(out)?;
        out.write_str(" + ")?;
        S::describe(out)?;
        out.write_str(")")
    }
}

macro_rules! describe_concat {
    ($first:ident $(, $b:ident)*) => {
        impl<$first: Describe, $($b: Describe,)* Out: Tensor> Describe for crate::Concat<($first, $($b,)*), Out> {
            fn describe(out: &mut dyn Write) -> fmt::Result {
                out.write_str("Concat(")?;
                $first::describe(out)?;
                $(
                    out.write_str(" | ")?;
                    $b::describe(out)?;
                )*
                write!(out, " -> {})", Out::LEN)
            }
        }
    };
}
describe_concat!(A, B);
describe_concat!(A, B, C);
describe_concat!(A, B, C, D);

impl<A: Describe, B: Describe> Describe for Chain<A, B> {
    fn describe(out: &mut dyn Write) -> fmt::Result {
        A::describe(out)?;
        out.write_str(" > ")?;
        B::describe(out)
    }
}

/// Why bytes could not be loaded as weights for a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsError {
    /// Fewer bytes than the header or the declared contents need.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// The first 8 bytes are not `CONSTNET`: not a constnet weights file.
    BadMagic,
    /// A format version this crate does not read.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// The file holds `f32` weights and the network is `f64`, or the reverse.
    ScalarMismatch {
        /// Scalar width in the file (bytes).
        file: u8,
        /// Scalar width of the network (bytes).
        network: u8,
    },
    /// The file was saved from a network of another architecture (layer kinds or shapes).
    ArchitectureMismatch {
        /// First byte of the descriptor where file and network differ.
        at: usize,
    },
    /// The parameter count disagrees with the network's.
    ParamCountMismatch {
        /// Parameters in the file.
        file: usize,
        /// Parameters in the network.
        network: usize,
    },
    /// The checksum does not match: the file is corrupt.
    Checksum {
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },
    /// Bytes after the checksum.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The reserved header bytes are not zero.
    BadHeader,
    /// A parameter or buffer is NaN or infinite (the checksum matched: the network it was
    /// saved from had diverged).
    NonFinite {
        /// Which tensor: [`Layer::param`] order, then the [`Layer::buffer`]s numbered after
        /// the parameters.
        tensor: usize,
        /// Index within that tensor.
        index: usize,
    },
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, found } => {
                write!(f, "truncated weights: need {needed} bytes, found {found}")
            }
            Self::BadMagic => f.write_str("not a constnet weights file (bad magic)"),
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "weights format version {found} is not supported (this crate reads {VERSION})"
                )
            }
            Self::ScalarMismatch { file, network } => write!(
                f,
                "weights hold {}-byte scalars but the network uses {}-byte scalars (f32 vs f64)",
                file, network
            ),
            Self::ArchitectureMismatch { at } => write!(
                f,
                "weights were saved from a different network architecture (descriptors differ at byte {at})"
            ),
            Self::ParamCountMismatch { file, network } => write!(
                f,
                "weights hold {file} parameters but the network has {network}"
            ),
            Self::Checksum { stored, computed } => write!(
                f,
                "weights are corrupt: checksum {computed:#010x} does not match the stored {stored:#010x}"
            ),
            Self::TrailingBytes { extra } => {
                write!(f, "{extra} unexpected bytes after the weights")
            }
            Self::BadHeader => f.write_str("weights header has non-zero reserved bytes"),
            Self::NonFinite { tensor, index } => write!(
                f,
                "weights hold a NaN or infinite value (tensor {tensor}, index {index}): \
                 they come from a network that diverged"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WeightsError {}

/// CRC-32 (IEEE 802.3, reflected, as zlib and PNG use).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Counts the bytes written.
struct Count(usize);
impl Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Compares what is written with expected bytes, remembering the first difference.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
    differs_at: Option<usize>,
}
impl Write for Compare<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.differs_at.is_none() && self.expected.get(self.pos) != Some(&b) {
                self.differs_at = Some(self.pos);
            }
            self.pos += 1;
        }
        Ok(())
    }
}

fn descriptor_len<L: Describe>() -> usize {
    let mut n = Count(0);
    let _ = L::describe(&mut n); // `Count` never fails
    n.0
}

/// The architecture descriptor of `L`, as stored in its weight files.
#[cfg(feature = "alloc")]
pub fn describe<L: Describe>() -> String {
    let mut s = String::new();
    let _ = L::describe(&mut s); // writing to a String never fails
    s
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The architecture descriptor stored in weight bytes, if the header is readable.
pub fn file_descriptor(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < HEADER || bytes[..8] != MAGIC {
        return None;
    }
    let d = u32_at(bytes, 16) as usize;
    core::str::from_utf8(bytes.get(HEADER..HEADER.checked_add(d)?)?).ok()
}

/// Loads weights saved by [`save_weights`] into `net`, with no allocation.
///
/// Everything is checked before any parameter is written: on error `net` is unchanged.
///
/// ```
/// use constnet::weights::{load_weights, save_weights, WeightsError};
/// use constnet::{Layer, Linear, zeroed_box};
///
/// let mut a = zeroed_box::<Linear<f32, 3, 2>>();
/// a.bias = [1.0, 2.0];
/// let bytes = save_weights(&*a).unwrap();
///
/// let mut b = zeroed_box::<Linear<f32, 3, 2>>();
/// load_weights(&mut *b, &bytes).unwrap();
/// assert_eq!(a, b);
///
/// let mut other = zeroed_box::<Linear<f32, 2, 3>>();
/// assert!(matches!(load_weights(&mut *other, &bytes), Err(WeightsError::ArchitectureMismatch { .. })));
/// ```
pub fn load_weights<L: Layer + Describe>(net: &mut L, bytes: &[u8]) -> Result<(), WeightsError> {
    let found = bytes.len();
    if found < HEADER {
        if found >= 8 && bytes[..8] != MAGIC {
            return Err(WeightsError::BadMagic);
        }
        return Err(WeightsError::Truncated {
            needed: HEADER,
            found,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(WeightsError::BadMagic);
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(WeightsError::UnsupportedVersion { found: version });
    }
    let width = core::mem::size_of::<L::Scalar>();
    if bytes[12] as usize != width {
        return Err(WeightsError::ScalarMismatch {
            file: bytes[12],
            network: width as u8,
        });
    }
    if bytes[13..16] != [0, 0, 0] {
        return Err(WeightsError::BadHeader);
    }
    let d = u32_at(bytes, 16) as usize;
    let p = u32_at(bytes, 20) as usize;
    let expected_d = descriptor_len::<L>();
    let present = found - HEADER;
    let mut cmp = Compare {
        expected: &bytes[HEADER..HEADER + d.min(present)],
        pos: 0,
        differs_at: None,
    };
    let _ = L::describe(&mut cmp); // `Compare` never fails
    match cmp.differs_at {
        Some(at) if at >= present && d > present => {
            // Cut inside the descriptor: report the size the whole file would need.
            let params = p.saturating_mul(width).saturating_add(4);
            return Err(WeightsError::Truncated {
                needed: padded(HEADER.saturating_add(d).min(usize::MAX - 8)).saturating_add(params),
                found,
            });
        }
        Some(at) => return Err(WeightsError::ArchitectureMismatch { at }),
        None if d != expected_d => {
            return Err(WeightsError::ArchitectureMismatch {
                at: expected_d.min(d),
            });
        }
        None => {}
    }
    // From here `d` is our own descriptor's length. `p` comes from the header: it is only
    // compared, never used to allocate, and saturates so a lying value cannot overflow.
    let params_at = padded(HEADER + d);
    let needed = params_at
        .saturating_add(p.saturating_mul(width))
        .saturating_add(buffers_len(net))
        .saturating_add(4);
    let count = net.param_count();
    if p != count {
        return Err(WeightsError::ParamCountMismatch {
            file: p,
            network: count,
        });
    }
    if found < needed {
        return Err(WeightsError::Truncated { needed, found });
    }
    if found > needed {
        return Err(WeightsError::TrailingBytes {
            extra: found - needed,
        });
    }
    if bytes[HEADER + d..params_at].iter().any(|&b| b != 0) {
        return Err(WeightsError::BadHeader);
    }
    let body = needed - 4;
    let stored = u32_at(bytes, body);
    let computed = crc32(&bytes[..body]);
    if stored != computed {
        return Err(WeightsError::Checksum { stored, computed });
    }
    // Every value is checked before any is written: `net` is unchanged on error.
    let mut at = params_at;
    for tensor in 0..L::PARAM_TENSORS + L::BUFFER_TENSORS {
        for index in 0..scalars(net, tensor).len() {
            if !read_scalar::<L::Scalar>(&bytes[at..at + width])
                .to_f64()
                .is_finite()
            {
                return Err(WeightsError::NonFinite { tensor, index });
            }
            at += width;
        }
    }
    let mut at = params_at;
    for i in 0..L::PARAM_TENSORS + L::BUFFER_TENSORS {
        let values = if i < L::PARAM_TENSORS {
            net.param_mut(i)
        } else {
            net.buffer_mut(i - L::PARAM_TENSORS)
        };
        for w in values {
            *w = read_scalar(&bytes[at..at + width]);
            at += width;
        }
    }
    for i in 0..L::COUNTERS {
        let b: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
        *net.counter_mut(i) = u64::from_le_bytes(b);
        at += 8;
    }
    Ok(())
}

/// Parameter tensor `tensor`, or buffer `tensor − PARAM_TENSORS` after the parameters: the
/// order in which a weights file stores them.
fn scalars<L: Layer>(net: &L, tensor: usize) -> &[L::Scalar] {
    if tensor < L::PARAM_TENSORS {
        net.param(tensor)
    } else {
        net.buffer(tensor - L::PARAM_TENSORS)
    }
}

/// The bytes a file spends on `net`'s buffers and counters (after its parameters; none for a
/// network without batch normalisation, whose files are as before).
fn buffers_len<L: Layer>(net: &L) -> usize {
    let scalars: usize = (0..L::BUFFER_TENSORS).map(|i| net.buffer(i).len()).sum();
    scalars * core::mem::size_of::<L::Scalar>() + L::COUNTERS * 8
}

fn read_scalar<T: Scalar>(b: &[u8]) -> T {
    match b.len() {
        4 => T::from_f64(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        _ => T::from_f64(f64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])),
    }
}

/// The size in bytes of `net`'s weights in constnet's format: what [`save_weights`] writes,
/// and so the only size [`load_weights`] accepts for this network.
pub fn weights_len<L: Layer + Describe>(net: &L) -> usize {
    padded(HEADER + descriptor_len::<L>())
        + net.param_count() * core::mem::size_of::<L::Scalar>()
        + buffers_len(net)
        + 4
}

/// The first parameter or buffer of `net` that is NaN or infinite, as (tensor, index):
/// [`Layer::param`] tensors first, then [`Layer::buffer`]s numbered after them.
#[cfg(feature = "alloc")]
fn first_non_finite<L: Layer>(net: &L) -> Option<(usize, usize)> {
    (0..L::PARAM_TENSORS + L::BUFFER_TENSORS).find_map(|tensor| {
        scalars(net, tensor)
            .iter()
            .position(|w| !w.to_f64().is_finite())
            .map(|index| (tensor, index))
    })
}

/// Serialises `net`'s parameters in constnet's weights format.
///
/// # Errors
/// [`WeightsError::NonFinite`] if a parameter is NaN or infinite (the network diverged):
/// [`load_weights`] would refuse the bytes, so they are not written.
///
/// ```
/// use constnet::weights::{save_weights, WeightsError};
/// use constnet::{Layer, Linear, zeroed_box};
///
/// let mut net = zeroed_box::<Linear<f32, 3, 2>>();
/// net.bias[1] = f32::NAN;
/// assert_eq!(save_weights(&*net), Err(WeightsError::NonFinite { tensor: 1, index: 1 }));
/// ```
#[cfg(feature = "alloc")]
pub fn save_weights<L: Layer + Describe>(net: &L) -> Result<Vec<u8>, WeightsError> {
    if let Some((tensor, index)) = first_non_finite(net) {
        return Err(WeightsError::NonFinite { tensor, index });
    }
    let desc = describe::<L>();
    let width = core::mem::size_of::<L::Scalar>();
    let count = net.param_count();
    let params_at = padded(HEADER + desc.len());
    let mut out = Vec::with_capacity(weights_len(net));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[width as u8, 0, 0, 0]);
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(desc.as_bytes());
    out.resize(params_at, 0);
    for i in 0..L::PARAM_TENSORS + L::BUFFER_TENSORS {
        for &w in scalars(net, i) {
            if width == 4 {
                out.extend_from_slice(&(w.to_f64() as f32).to_le_bytes());
            } else {
                out.extend_from_slice(&w.to_f64().to_le_bytes());
            }
        }
    }
    for i in 0..L::COUNTERS {
        out.extend_from_slice(&net.counter(i).to_le_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Why [`load_lenet5`] could not load a file.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read (missing, a directory, no permission).
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file starts with constnet's magic but is not LeNet-5 weights (corrupt, truncated,
    /// another architecture, `f64`); the error names the file.
    Constnet(FileError),
    /// The file is a safetensors file, but not a LeNet-5 `state_dict` this crate can load:
    /// a tensor is missing, extra, of another shape or dtype, or holds a non-finite value.
    #[cfg(feature = "safetensors")]
    Safetensors {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it, naming the tensor.
        error: crate::pytorch::SafetensorsError,
    },
    /// The file is neither constnet's format nor a safetensors file.
    Unrecognized {
        /// The file.
        path: std::path::PathBuf,
        /// Why it is not a LeNet-5 safetensors file (or that safetensors support is off).
        reason: String,
    },
}

#[cfg(feature = "std")]
impl LoadError {
    /// The file that could not be loaded.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Io { path, .. } | Self::Unrecognized { path, .. } => path,
            #[cfg(feature = "safetensors")]
            Self::Safetensors { path, .. } => path,
            Self::Constnet(
                FileError::Io { path, .. }
                | FileError::TooLarge { path, .. }
                | FileError::Weights { path, .. },
            ) => path,
        }
    }
}

#[cfg(feature = "std")]
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => {
                write!(
                    f,
                    "{}: cannot read the weights file: {error}",
                    path.display()
                )
            }
            Self::Constnet(e) => write!(f, "{e}"),
            #[cfg(feature = "safetensors")]
            Self::Safetensors { path, error } => write!(
                f,
                "{}: not LeNet-5 weights this crate can load: {error}",
                path.display()
            ),
            Self::Unrecognized { path, reason } => write!(
                f,
                "{}: not a weights file: neither constnet weights (no CONSTNET magic) nor a \
                 LeNet-5 safetensors state_dict ({reason})",
                path.display()
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            Self::Constnet(e) => Some(e),
            #[cfg(feature = "safetensors")]
            Self::Safetensors { error, .. } => Some(error),
            Self::Unrecognized { .. } => None,
        }
    }
}

/// Loads an `f32` LeNet-5 from the file at `path`: constnet's weights format (detected by
/// [`MAGIC`]) or, with the `safetensors` feature, a PyTorch
/// `state_dict` saved as safetensors.
///
/// Reads at most what the largest valid file holds, plus one byte: for constnet's format,
/// one byte more than LeNet-5's weights take ([`weights_len`]); for safetensors, the header
/// (at most `pytorch::MAX_HEADER_LEN` bytes), then the data it declares (at most
/// LeNet-5's parameters in `f64`) and one byte more. Anything larger, or a device such as
/// `/dev/zero`, is refused having cost no more memory than a valid file.
///
/// # Errors
/// [`LoadError`], whose message names the file.
#[cfg(feature = "std")]
pub fn load_lenet5(
    path: impl AsRef<std::path::Path>,
) -> Result<Box<crate::LeNet5<f32>>, LoadError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let size = regular_file_size(&file);
    load_lenet5_sized(file, path, size)
}

/// [`load_lenet5`] from any reader (a pipe, a socket, a buffer), named `path` in errors,
/// reading no more of it than [`load_lenet5`] reads of a file.
#[cfg(feature = "std")]
pub fn load_lenet5_reader(
    reader: impl std::io::Read,
    path: impl AsRef<std::path::Path>,
) -> Result<Box<crate::LeNet5<f32>>, LoadError> {
    load_lenet5_sized(reader, path.as_ref(), None)
}

#[cfg(feature = "std")]
fn load_lenet5_sized(
    mut reader: impl std::io::Read,
    path: &std::path::Path,
    size: Option<u64>,
) -> Result<Box<crate::LeNet5<f32>>, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut net = crate::zeroed_box::<crate::LeNet5<f32>>();
    let mut bytes = Vec::new();
    read_at_most(&mut reader, &mut bytes, MAGIC.len() as u64 - 1).map_err(io)?;
    if bytes.starts_with(&MAGIC) {
        let limit = weights_len(&*net) as u64;
        if !read_at_most(reader, &mut bytes, limit).map_err(io)? {
            return Err(LoadError::Constnet(FileError::TooLarge {
                path: path.to_path_buf(),
                limit,
                size,
            }));
        }
        load_bytes_from(&mut *net, &bytes, path).map_err(LoadError::Constnet)?;
        return Ok(net);
    }
    #[cfg(feature = "safetensors")]
    let result = {
        // Every tensor in F64: the most data a LeNet-5 state_dict holds.
        let max_data = (net.param_count() * 8) as u64;
        let read = crate::pytorch::read_safetensors(reader, bytes, max_data, size).map_err(io)?;
        match read.and_then(|bytes| net.load_safetensors(&bytes)) {
            // Not safetensors at all: say it is neither format.
            Err(crate::pytorch::SafetensorsError::Invalid(reason)) => Err(reason),
            // A safetensors file with a problem: report the problem itself.
            Err(error) => {
                return Err(LoadError::Safetensors {
                    path: path.to_path_buf(),
                    error,
                });
            }
            Ok(()) => Ok(()),
        }
    };
    #[cfg(not(feature = "safetensors"))]
    let result: Result<(), String> = {
        let _ = (reader, size); // nothing more to read: the format is not known
        Err("safetensors support is not compiled in: enable the `safetensors` feature".into())
    };
    result.map_err(|reason| LoadError::Unrecognized {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(net)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::read::testing::Endless;
    use crate::{LeNet5, zeroed_box};
    use rand::SeedableRng;

    /// A NaN or infinite parameter (saved from a diverged network) is refused with where it
    /// is, and the network is left unchanged, although the checksum matches.
    #[test]
    fn non_finite_parameters_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let target = LeNet5::<f32>::new_boxed(&mut rng);
        for bad in [f32::NAN, f32::INFINITY] {
            // `save_weights` refuses such a network: write the value into saved bytes.
            let source = LeNet5::<f32>::new_boxed(&mut rng);
            let bytes = with_value(save_weights(&*source).unwrap(), &source, 2, 11, bad);
            let mut net = target.clone();
            let e = load_weights(&mut *net, &bytes).unwrap_err();
            assert_eq!(
                e,
                WeightsError::NonFinite {
                    tensor: 2,
                    index: 11
                }
            );
            assert!(e.to_string().contains("diverged"), "{e}");
            assert_eq!(net, target);
        }
    }

    /// `bytes` (saved from `net`) with parameter `index` of tensor `tensor` set to `value`,
    /// and the checksum made to match.
    fn with_value(
        mut bytes: Vec<u8>,
        net: &LeNet5<f32>,
        tensor: usize,
        index: usize,
        value: f32,
    ) -> Vec<u8> {
        let before: usize = (0..tensor).map(|t| net.param(t).len()).sum();
        let at = padded(HEADER + describe::<LeNet5<f32>>().len()) + (before + index) * 4;
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let body = bytes.len() - 4;
        let crc = crc32(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// What `load_weights` refuses, `save_weights` and `save_file` refuse too, with the same
    /// error, writing nothing and leaving an existing file as it was.
    #[test]
    fn non_finite_parameters_are_refused_at_save_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let dir = std::env::temp_dir().join(format!("constnet-save-nan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (fresh, existing) = (dir.join("new.cnet"), dir.join("old.cnet"));
        std::fs::write(&existing, b"keep me").unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut net = LeNet5::<f32>::new_boxed(&mut rng);
            net.param_mut(4)[123] = bad;
            let expected = WeightsError::NonFinite {
                tensor: 4,
                index: 123,
            };
            assert_eq!(save_weights(&*net), Err(expected));
            for (path, overwrite) in [(&fresh, false), (&fresh, true), (&existing, true)] {
                match save_file(&*net, path, overwrite).unwrap_err() {
                    FileError::Weights { error, path: p, .. } => {
                        assert_eq!((error, &p), (expected, path));
                    }
                    e => panic!("{e}"),
                }
            }
            assert!(!fresh.exists());
            assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
        }
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["old.cnet"], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An endless stream is refused having been read one byte past the largest valid size,
    /// whichever format it starts like: constnet's (the weights' size is fixed by the
    /// network), safetensors (see `pytorch`), or none (refused after 8 bytes).
    #[test]
    fn endless_input_is_read_only_to_the_largest_valid_size() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let good = save_weights(&*LeNet5::<f32>::new_boxed(&mut rng)).unwrap();
        let limit = good.len() as u64;
        assert_eq!(limit, weights_len(&*zeroed_box::<LeNet5<f32>>()) as u64);

        let mut net = LeNet5::<f32>::new_boxed(&mut rng);
        let before = net.clone();
        for prefix in [&MAGIC[..], &good[..]] {
            let mut endless = Endless { prefix, read: 0 };
            let e = load_reader(&mut *net, &mut endless, "endless").unwrap_err();
            assert!(
                matches!(e, FileError::TooLarge { limit: l, size: None, .. } if l == limit),
                "{e}"
            );
            assert_eq!(endless.read, limit + 1);
            assert_eq!(net, before);

            let mut endless = Endless { prefix, read: 0 };
            let e = load_lenet5_reader(&mut endless, "endless").unwrap_err();
            assert!(
                matches!(e, LoadError::Constnet(FileError::TooLarge { limit: l, .. }) if l == limit),
                "{e}"
            );
            assert_eq!(endless.read, limit + 1);
        }
        let mut zeros = Endless {
            prefix: &[],
            read: 0,
        };
        let e = load_lenet5_reader(&mut zeros, "/dev/zero").unwrap_err();
        assert!(matches!(e, LoadError::Unrecognized { .. }), "{e}");
        assert_eq!(zeros.read, 8);
        // The exact bytes still load.
        load_reader(&mut *net, &good[..], "good").unwrap();
        assert_ne!(net, before);
    }

    /// A large file on disk (sparse: it takes no room) is refused with both sizes, having
    /// cost one byte more than valid weights to read.
    #[test]
    fn a_large_file_is_refused_with_both_sizes() {
        let dir = std::env::temp_dir().join(format!("constnet-large-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.cnet");
        let size = 900_000_000;
        let file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, &MAGIC).unwrap();
        file.set_len(size).unwrap();
        drop(file);
        let limit = weights_len(&*zeroed_box::<LeNet5<f32>>()) as u64;
        let e = load_lenet5(&path).unwrap_err();
        match &e {
            LoadError::Constnet(FileError::TooLarge {
                path: p,
                limit: l,
                size: s,
            }) => {
                assert_eq!((p, *l, *s), (&path, limit, Some(size)));
            }
            e => panic!("{e}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("big.cnet")
                && msg.contains(&size.to_string())
                && msg.contains(&limit.to_string()),
            "{msg}"
        );
        let mut net = zeroed_box::<LeNet5<f32>>();
        let e = load_file(&mut *net, &path).unwrap_err();
        assert!(
            matches!(e, FileError::TooLarge { size: Some(s), .. } if s == size),
            "{e}"
        );

        // A valid safetensors state_dict, then zeros to 900 MB: read to its declared end.
        #[cfg(feature = "safetensors")]
        {
            let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(8));
            let bytes = net.to_safetensors().unwrap();
            let path = dir.join("big.safetensors");
            std::fs::write(&path, &bytes).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(size)
                .unwrap();
            let e = load_lenet5(&path).unwrap_err();
            let limit = bytes.len() as u64;
            match &e {
                LoadError::Safetensors {
                    error:
                        crate::pytorch::SafetensorsError::TooLarge {
                            part,
                            size: s,
                            limit: l,
                        },
                    ..
                } => assert_eq!((*part, *s, *l), ("the file", Some(size), limit)),
                e => panic!("{e}"),
            }
            let msg = e.to_string();
            assert!(
                msg.contains(&size.to_string()) && msg.contains(&limit.to_string()),
                "{msg}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn lenet_round_trips_exactly_in_f32_and_f64() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = LeNet5::<f32>::new_boxed(&mut rng);
        let bytes = save_weights(&*a).unwrap();
        assert_eq!(
            bytes.len(),
            padded(HEADER + describe::<LeNet5<f32>>().len()) + 63_802 * 4 + 4
        );
        let mut b = zeroed_box::<LeNet5<f32>>();
        load_weights(&mut *b, &bytes).unwrap();
        assert_eq!(a, b);

        let c = LeNet5::<f64>::new_boxed(&mut rng);
        let mut d = zeroed_box::<LeNet5<f64>>();
        load_weights(&mut *d, &save_weights(&*c).unwrap()).unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn descriptor_reads_like_the_network() {
        let d = describe::<LeNet5<f32>>();
        assert!(d.starts_with(
            "Conv2d(1,6,5,1,0,32,32,28,28) > Relu(4704) > MaxPool2d(6,28,28,2,2,14,14)"
        ));
        assert!(d.ends_with("Linear(100,10) > Softmax(10)"));
    }

    #[test]
    fn each_defect_gives_its_error_and_leaves_the_network_alone() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let good = save_weights(&*LeNet5::<f32>::new_boxed(&mut rng)).unwrap();
        let mut net = LeNet5::<f32>::new_boxed(&mut rng);
        let before = net.clone();
        let check = |bytes: &[u8], net: &mut LeNet5<f32>| load_weights(net, bytes).unwrap_err();

        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(check(&bad, &mut net), WeightsError::BadMagic);
        let mut bad = good.clone();
        bad[8] = 2;
        assert_eq!(
            check(&bad, &mut net),
            WeightsError::UnsupportedVersion { found: 2 }
        );
        let mut bad = good.clone();
        bad[100_000] ^= 1;
        assert!(matches!(
            check(&bad, &mut net),
            WeightsError::Checksum { .. }
        ));
        assert!(matches!(
            check(&good[..good.len() - 1], &mut net),
            WeightsError::Truncated { .. }
        ));
        assert!(matches!(
            check(&good[..10], &mut net),
            WeightsError::Truncated { .. }
        ));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            check(&long, &mut net),
            WeightsError::TrailingBytes { extra: 1 }
        );
        let f64_bytes = save_weights(&*LeNet5::<f64>::new_boxed(&mut rng)).unwrap();
        assert_eq!(
            check(&f64_bytes, &mut net),
            WeightsError::ScalarMismatch {
                file: 8,
                network: 4
            }
        );
        assert_eq!(*net, *before);

        // A network with another shape: same layers, fc2 150 wide instead of 100.
        type Wider = crate::sequential![
            Conv2d<f32, 1, 6, 5, 1, 0, 32, 32, 28, 28>, Relu<crate::Maps<f32, 6, 28, 28>>,
            MaxPool2d<f32, 6, 28, 28, 2, 2, 14, 14>, Conv2d<f32, 6, 16, 5, 1, 0, 14, 14, 10, 10>,
            Relu<crate::Maps<f32, 16, 10, 10>>, MaxPool2d<f32, 16, 10, 10, 2, 2, 5, 5>,
            Flatten<f32, 16, 5, 5, 400>, Linear<f32, 400, 120>, Relu<[f32; 120]>,
            Linear<f32, 120, 150>, Relu<[f32; 150]>, Linear<f32, 150, 10>, Softmax<f32, 10>,
        ];
        let mut wider = zeroed_box::<Wider>();
        let err = load_weights(&mut *wider, &good).unwrap_err();
        assert!(
            matches!(err, WeightsError::ArchitectureMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("different network architecture"));
    }
}

/// Why a weights file could not be saved or loaded.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum FileError {
    /// Reading or writing the file failed (including: it exists and overwriting was not asked).
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is larger than weights for this network can be (their size is fixed by the
    /// network): reading stopped one byte past that size.
    TooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// The size of weights for this network, in bytes.
        limit: u64,
        /// The file's size, if it is a regular file (not a pipe or a device).
        size: Option<u64>,
    },
    /// The file's contents are not weights for this network (when loading), or the network's
    /// parameters cannot be saved as weights, being NaN or infinite (when saving).
    Weights {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        error: WeightsError,
        /// The architecture stored in the file, if readable (to show beside the network's).
        file_architecture: Option<String>,
        /// The network's architecture.
        network_architecture: String,
    },
}

#[cfg(feature = "std")]
impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } if error.kind() == std::io::ErrorKind::AlreadyExists => {
                write!(
                    f,
                    "{}: the file already exists; not overwriting it",
                    path.display()
                )
            }
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::TooLarge { path, limit, size } => {
                write!(
                    f,
                    "{}: too large to be weights for this network: ",
                    path.display()
                )?;
                match size {
                    Some(size) => write!(f, "{size} bytes")?,
                    None => write!(f, "more than {limit} bytes (reading stopped there)")?,
                }
                write!(f, ", where its weights take exactly {limit} bytes")
            }
            Self::Weights {
                path,
                error,
                file_architecture,
                network_architecture,
            } => {
                write!(f, "{}: {error}", path.display())?;
                if let (WeightsError::ArchitectureMismatch { .. }, Some(file)) =
                    (error, file_architecture)
                {
                    write!(f, "\n  file:    {file}\n  network: {network_architecture}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            Self::TooLarge { .. } => None,
            Self::Weights { error, .. } => Some(error),
        }
    }
}

/// Saves `net` to `path` in constnet's format. An existing file is kept (and an
/// `AlreadyExists` error returned) unless `overwrite`; with `overwrite` the new file is
/// written beside it and renamed over it, so a crash never leaves a half-written file.
///
/// # Errors
/// [`FileError::Io`] if the file cannot be written (or exists, without `overwrite`), and
/// [`FileError::Weights`] with [`WeightsError::NonFinite`] if a parameter is NaN or infinite:
/// nothing is written then, and an existing file is left as it was.
#[cfg(feature = "std")]
pub fn save_file<L: Layer + Describe>(
    net: &L,
    path: impl AsRef<std::path::Path>,
    overwrite: bool,
) -> Result<(), FileError> {
    use std::io::Write as _;
    let path = path.as_ref();
    let io = |error| FileError::Io {
        path: path.to_path_buf(),
        error,
    };
    let bytes = save_weights(net).map_err(|error| FileError::Weights {
        path: path.to_path_buf(),
        error,
        file_architecture: None,
        network_architecture: describe::<L>(),
    })?;
    if overwrite {
        // A new temporary file beside the target (never someone else's), synced, then
        // renamed over the target: the target is either the old file or the whole new one.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".partial-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    } else {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                let _ = std::fs::remove_file(path); // ours, just created: don't leave it half-written
                io(e)
            })
    }
}

/// Loads a weights file saved by [`save_file`] into `net` (unchanged on error).
///
/// Reads at most one byte more than weights for `net` take ([`weights_len`]): a larger file
/// (or a device such as `/dev/zero`) is refused with [`FileError::TooLarge`], having cost
/// no more memory than a valid file.
#[cfg(feature = "std")]
pub fn load_file<L: Layer + Describe>(
    net: &mut L,
    path: impl AsRef<std::path::Path>,
) -> Result<(), FileError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|error| FileError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let size = regular_file_size(&file);
    load_reader_sized(net, file, path, size)
}

/// [`load_file`] from any reader (a pipe, a socket, a buffer), named `path` in errors: reads
/// at most one byte more than weights for `net` take, then refuses a longer stream with
/// [`FileError::TooLarge`].
///
/// ```
/// use constnet::weights::{load_reader, weights_len, FileError};
/// use constnet::{Linear, zeroed_box};
///
/// let mut net = zeroed_box::<Linear<f32, 3, 2>>();
/// let endless = std::io::repeat(0);
/// let err = load_reader(&mut *net, endless, "zeros").unwrap_err();
/// assert!(matches!(err, FileError::TooLarge { limit, .. } if limit == weights_len(&*net) as u64));
/// ```
#[cfg(feature = "std")]
pub fn load_reader<L: Layer + Describe>(
    net: &mut L,
    reader: impl std::io::Read,
    path: impl AsRef<std::path::Path>,
) -> Result<(), FileError> {
    load_reader_sized(net, reader, path.as_ref(), None)
}

#[cfg(feature = "std")]
fn load_reader_sized<L: Layer + Describe>(
    net: &mut L,
    reader: impl std::io::Read,
    path: &std::path::Path,
    size: Option<u64>,
) -> Result<(), FileError> {
    let limit = weights_len(net) as u64;
    let mut bytes = Vec::new();
    let fits = read_at_most(reader, &mut bytes, limit).map_err(|error| FileError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if !fits {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
            size,
        });
    }
    load_bytes_from(net, &bytes, path)
}

/// The size of `file` if it is a regular file (a device or a pipe has none worth reporting).
#[cfg(feature = "std")]
pub(crate) fn regular_file_size(file: &std::fs::File) -> Option<u64> {
    file.metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// [`load_weights`] of bytes read from `path`, with an error that names the file and shows
/// both architectures.
#[cfg(feature = "std")]
fn load_bytes_from<L: Layer + Describe>(
    net: &mut L,
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<(), FileError> {
    load_weights(net, bytes).map_err(|error| FileError::Weights {
        path: path.to_path_buf(),
        error,
        file_architecture: file_descriptor(bytes).map(String::from),
        network_architecture: describe::<L>(),
    })
}
