//! Any network's PyTorch `state_dict` as safetensors, by the names its type gives its parts
//! ([`crate::named`]): parameters, buffers and counters, in and out.
//!
//! PyTorch side: `save_file(model.state_dict(), "model.safetensors")` (from
//! `safetensors.torch`), and `model.load_state_dict(load_file(...))` for what
//! [`save_state_dict`] writes. Floating-point tensors are F32 or F64 (converted to the
//! network's scalar type); counters (`num_batches_tracked`) are I64 scalars, as PyTorch
//! stores them.
//!
//! ```
//! use constnet::state_dict::{load_state_dict, save_state_dict};
//! use constnet::{name, sequential, BatchNorm2d, Conv2d, Layer, Named, zeroed_box};
//! use rand::SeedableRng;
//!
//! name!(Conv = "conv");
//! name!(Bn = "bn");
//! type Net = sequential![Named<Conv, Conv2d<f32, 3, 4, 3, 1, 1, 8, 8, 8, 8>>, Named<Bn, BatchNorm2d<f32, 4, 8, 8>>];
//! let mut net = zeroed_box::<Net>();
//! net.init(&mut rand::rngs::StdRng::seed_from_u64(1));
//! net.then.num_batches_tracked = 12;
//! let bytes = save_state_dict(&*net)?;
//! let mut copy = zeroed_box::<Net>();
//! copy.init(&mut rand::rngs::StdRng::seed_from_u64(2)); // eps and momentum are not in the file
//! load_state_dict(&mut *copy, &bytes)?;
//! assert_eq!(copy, net);
//! # Ok::<(), constnet::pytorch::SafetensorsError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::layer::{Layer, Shape, TensorKind, count};
use crate::scalar::Scalar;

/// One tensor of a network: its kind, index, name and shape.
struct Entry {
    kind: TensorKind,
    index: usize,
    name: String,
    shape: Shape,
}

/// Every tensor of `net` with its PyTorch name and shape, in `state_dict` order within each
/// kind; an error if two share a name (parts that need names: see [`crate::named`]).
fn entries<L: Layer>(net: &L) -> Result<Vec<Entry>, SafetensorsError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for kind in [TensorKind::Param, TensorKind::Buffer, TensorKind::Counter] {
        for index in 0..count::<L>(kind) {
            let mut name = String::new();
            L::tensor_name(kind, index, &mut name).expect("a String takes any name");
            if !seen.insert(name.clone()) {
                return Err(SafetensorsError::Invalid(format!(
                    "two tensors of the network are both called `{name}`: name its parts (constnet::Named)"
                )));
            }
            let shape = net.tensor_shape(kind, index);
            out.push(Entry {
                kind,
                index,
                name,
                shape,
            });
        }
    }
    Ok(out)
}

fn floats<'a, L: Layer>(net: &'a L, e: &Entry) -> &'a [L::Scalar] {
    match e.kind {
        TensorKind::Param => net.param(e.index),
        _ => net.buffer(e.index),
    }
}

/// Loads a `state_dict` saved with `safetensors.torch.save_file` into `net`: every
/// parameter, buffer and counter by its PyTorch name ([`Layer::tensor_name`]). Every tensor
/// is checked before anything is written, so on error `net` is unchanged.
///
/// # Errors
/// A missing or unexpected tensor, a wrong shape or dtype (a counter must be I64, the others
/// F32 or F64), a NaN or infinite value, a negative counter (each naming the tensor), or
/// bytes that are not safetensors.
pub fn load_state_dict<L: Layer>(net: &mut L, bytes: &[u8]) -> Result<(), SafetensorsError> {
    let entries = entries(net)?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| SafetensorsError::Invalid(e.to_string()))?;
    let mut views = Vec::with_capacity(entries.len());
    for e in &entries {
        let tensor = || e.name.clone();
        let view = st
            .tensor(&e.name)
            .map_err(|_| SafetensorsError::Missing { tensor: tensor() })?;
        let dtype_ok = match e.kind {
            TensorKind::Counter => view.dtype() == Dtype::I64,
            _ => matches!(view.dtype(), Dtype::F32 | Dtype::F64),
        };
        if !dtype_ok {
            return Err(SafetensorsError::Dtype {
                tensor: tensor(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != e.shape.dims() {
            return Err(SafetensorsError::Shape {
                tensor: tensor(),
                found: view.shape().to_vec(),
                expected: e.shape.dims().to_vec(),
            });
        }
        if e.kind == TensorKind::Counter {
            if i64::from_le_bytes(view.data().try_into().expect("an I64 scalar")) < 0 {
                return Err(SafetensorsError::NonFinite {
                    tensor: tensor(),
                    index: 0,
                });
            }
        } else if let Some(index) = values::<L::Scalar>(&view).position(|v| !v.to_f64().is_finite())
        {
            return Err(SafetensorsError::NonFinite {
                tensor: tensor(),
                index,
            });
        }
        views.push(view);
    }
    let mut names = st.names();
    names.sort();
    if let Some(extra) = names
        .into_iter()
        .find(|n| !entries.iter().any(|e| e.name == **n))
    {
        return Err(SafetensorsError::Unexpected {
            tensor: extra.to_string(),
        });
    }
    for (e, view) in entries.iter().zip(&views) {
        match e.kind {
            TensorKind::Counter => {
                let v = i64::from_le_bytes(view.data().try_into().expect("an I64 scalar"));
                *net.counter_mut(e.index) = v as u64;
            }
            kind => {
                let dst = if kind == TensorKind::Param {
                    net.param_mut(e.index)
                } else {
                    net.buffer_mut(e.index)
                };
                for (w, v) in dst.iter_mut().zip(values::<L::Scalar>(view)) {
                    *w = v;
                }
            }
        }
    }
    Ok(())
}

/// `net`'s `state_dict` as safetensors bytes, as `safetensors.torch.save_file` writes it:
/// every parameter and buffer in the network's scalar type (F32 or F64) and every counter as
/// an I64 scalar, under its PyTorch name.
///
/// # Errors
/// [`SafetensorsError::NonFinite`], naming the tensor, if a parameter or buffer is NaN or
/// infinite (the network diverged); [`SafetensorsError::Invalid`] if two tensors share a
/// name.
pub fn save_state_dict<L: Layer>(net: &L) -> Result<Vec<u8>, SafetensorsError> {
    let entries = entries(net)?;
    let wide = core::mem::size_of::<L::Scalar>() == 8;
    let mut data = Vec::with_capacity(entries.len());
    for e in &entries {
        let mut bytes = Vec::new();
        if e.kind == TensorKind::Counter {
            bytes.extend_from_slice(&(net.counter(e.index) as i64).to_le_bytes());
        } else {
            let values = floats(net, e);
            if let Some(index) = values.iter().position(|w| !w.to_f64().is_finite()) {
                return Err(SafetensorsError::NonFinite {
                    tensor: e.name.clone(),
                    index,
                });
            }
            for &w in values {
                if wide {
                    bytes.extend_from_slice(&w.to_f64().to_le_bytes());
                } else {
                    bytes.extend_from_slice(&(w.to_f64() as f32).to_le_bytes());
                }
            }
        }
        data.push(bytes);
    }
    let float = if wide { Dtype::F64 } else { Dtype::F32 };
    let views = entries
        .iter()
        .zip(&data)
        .map(|(e, bytes)| {
            let dtype = if e.kind == TensorKind::Counter {
                Dtype::I64
            } else {
                float
            };
            TensorView::new(dtype, e.shape.dims().to_vec(), bytes)
                .map(|v| (e.name.as_str(), v))
                .map_err(|err| SafetensorsError::Invalid(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| SafetensorsError::Invalid(e.to_string()))
}

/// Why a safetensors file could not be loaded (or written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafetensorsError {
    /// The bytes are not a valid safetensors file.
    Invalid(String),
    /// A tensor the network needs is not in the file.
    Missing {
        /// Its name.
        tensor: String,
    },
    /// The file has a tensor the network does not.
    Unexpected {
        /// Its name.
        tensor: String,
    },
    /// A tensor has another shape than the network's.
    Shape {
        /// Its name.
        tensor: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the network needs.
        expected: Vec<usize>,
    },
    /// A tensor's element type is not F32 or F64.
    Dtype {
        /// Its name.
        tensor: String,
        /// The element type in the file.
        found: String,
    },
    /// A value is NaN or infinite, or an F64 value too large for an `f32` network (when
    /// loading); a parameter is NaN or infinite (when saving).
    NonFinite {
        /// The tensor's name.
        tensor: String,
        /// Index of the value in the flattened tensor.
        index: usize,
    },
    /// A part of the file is larger than any file the network can load: the header (over
    /// [`MAX_HEADER_LEN`](crate::pytorch::MAX_HEADER_LEN)), the data the header declares (over the network's parameters in
    /// F64), or the file itself (longer than its header declares). Reading stopped there.
    TooLarge {
        /// Which part: "the header", "the data its header declares" or "the file".
        part: &'static str,
        /// Its size in bytes, where known (declared by the header, or a regular file's size).
        size: Option<u64>,
        /// The most it may hold, in bytes.
        limit: u64,
    },
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "not a valid safetensors file: {e}"),
            Self::Missing { tensor } => write!(f, "tensor `{tensor}` is missing"),
            Self::Unexpected { tensor } => {
                write!(f, "tensor `{tensor}` is not a parameter of this network")
            }
            Self::Shape {
                tensor,
                found,
                expected,
            } => {
                write!(
                    f,
                    "tensor `{tensor}` has shape {found:?}, the network needs {expected:?}"
                )
            }
            Self::Dtype { tensor, found } => {
                write!(
                    f,
                    "tensor `{tensor}` has dtype {found}; the network needs F32 or F64 (I64 for a counter such as `num_batches_tracked`)"
                )
            }
            Self::NonFinite { tensor, index } => write!(
                f,
                "tensor `{tensor}` holds a NaN or infinite value at index {index} (or one too \
                 large for the network's scalar type)"
            ),
            Self::TooLarge { part, size, limit } => {
                match size {
                    Some(size) => write!(f, "{part} is {size} bytes")?,
                    None => write!(
                        f,
                        "{part} is more than {limit} bytes (reading stopped there)"
                    )?,
                }
                write!(
                    f,
                    ", where a file this network can load holds at most {limit}"
                )
            }
        }
    }
}

impl std::error::Error for SafetensorsError {}

/// The values of an F32 or F64 tensor, converted to `T` (an F64 value beyond `f32`'s range
/// becomes infinite in an `f32` network).
pub(crate) fn values<'a, T: Scalar>(view: &'a TensorView<'_>) -> impl Iterator<Item = T> + 'a {
    let wide = view.dtype() == Dtype::F64;
    view.data()
        .chunks_exact(if wide { 8 } else { 4 })
        .map(move |b| {
            T::from_f64(if wide {
                f64::from_le_bytes(b.try_into().expect("chunks of 8"))
            } else {
                f64::from(f32::from_le_bytes(b.try_into().expect("chunks of 4")))
            })
        })
}
