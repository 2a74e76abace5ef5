//! PyTorch interop: LeNet-5 `state_dict`s saved as safetensors, in and out.
//!
//! PyTorch side (the names and layouts constnet expects):
//!
//! ```text
//! class LeNet5(nn.Module):           # conv1, conv2, fc1, fc2, fc3 as in the article
//!     ...
//! from safetensors.torch import save_file
//! save_file(model.state_dict(), "lenet.safetensors")
//! ```
//!
//! Tensors: `conv1.weight [6,1,5,5]`, `conv1.bias [6]`, `conv2.weight [16,6,5,5]`,
//! `conv2.bias [16]`, `fc1.weight [120,400]`, `fc1.bias [120]`, `fc2.weight [100,120]`,
//! `fc2.bias [100]`, `fc3.weight [10,100]`, `fc3.bias [10]`; dtype F32 or F64.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::layer::Layer;
use crate::lenet::LeNet5;
use crate::scalar::Scalar;
use crate::state_dict::values;

/// LeNet-5's parameter tensors as PyTorch names them, with their shapes, in
/// [`Layer::param`] order: what its type's names give ([`crate::named`], checked by a test).
pub const LENET5_TENSORS: [(&str, &[usize]); 10] = [
    ("conv1.weight", &[6, 1, 5, 5]),
    ("conv1.bias", &[6]),
    ("conv2.weight", &[16, 6, 5, 5]),
    ("conv2.bias", &[16]),
    ("fc1.weight", &[120, 400]),
    ("fc1.bias", &[120]),
    ("fc2.weight", &[100, 120]),
    ("fc2.bias", &[100]),
    ("fc3.weight", &[10, 100]),
    ("fc3.bias", &[10]),
];

pub use crate::state_dict::SafetensorsError;

/// Loads named tensors into `net`'s parameter tensors, `spec[i]` giving the name and shape
/// of [`Layer::param`]`(i)`. Every tensor is checked before any parameter is written, so on
/// error `net` is unchanged.
///
/// # Errors
/// A missing or unexpected tensor, a wrong shape or dtype (each naming the tensor), or bytes
/// that are not safetensors.
///
/// # Panics
/// If `spec` does not describe `L` (one entry per parameter tensor, each shape holding
/// exactly that tensor's length): a programming error, not a property of the file.
pub fn load_named<L: Layer>(
    net: &mut L,
    bytes: &[u8],
    spec: &[(&str, &[usize])],
) -> Result<(), SafetensorsError> {
    assert_eq!(
        spec.len(),
        L::PARAM_TENSORS,
        "one name per parameter tensor"
    );
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| SafetensorsError::Invalid(e.to_string()))?;
    let mut views = Vec::with_capacity(spec.len());
    for (i, &(name, shape)) in spec.iter().enumerate() {
        assert_eq!(
            shape.iter().product::<usize>(),
            net.param(i).len(),
            "spec for `{name}` does not fit parameter tensor {i}"
        );
        let view = st.tensor(name).map_err(|_| SafetensorsError::Missing {
            tensor: name.to_string(),
        })?;
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F64) {
            return Err(SafetensorsError::Dtype {
                tensor: name.to_string(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != shape {
            return Err(SafetensorsError::Shape {
                tensor: name.to_string(),
                found: view.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        if let Some(index) = values::<L::Scalar>(&view).position(|v| !v.to_f64().is_finite()) {
            return Err(SafetensorsError::NonFinite {
                tensor: name.to_string(),
                index,
            });
        }
        views.push(view);
    }
    let mut names = st.names();
    names.sort();
    if let Some(extra) = names
        .into_iter()
        .find(|n| !spec.iter().any(|(s, _)| s == n))
    {
        return Err(SafetensorsError::Unexpected {
            tensor: extra.to_string(),
        });
    }
    for (i, view) in views.iter().enumerate() {
        for (w, v) in net.param_mut(i).iter_mut().zip(values::<L::Scalar>(view)) {
            *w = v;
        }
    }
    Ok(())
}

/// Serialises `net`'s parameter tensors under the names and shapes of `spec`, in the
/// network's own element type (F32 or F64).
///
/// # Errors
/// [`SafetensorsError::NonFinite`], naming the tensor, if a parameter is NaN or infinite
/// (the network diverged): [`load_named`] would refuse the bytes.
pub fn save_named<L: Layer>(
    net: &L,
    spec: &[(&str, &[usize])],
) -> Result<Vec<u8>, SafetensorsError> {
    assert_eq!(
        spec.len(),
        L::PARAM_TENSORS,
        "one name per parameter tensor"
    );
    for (i, &(name, _)) in spec.iter().enumerate() {
        if let Some(index) = net.param(i).iter().position(|w| !w.to_f64().is_finite()) {
            return Err(SafetensorsError::NonFinite {
                tensor: name.to_string(),
                index,
            });
        }
    }
    let wide = core::mem::size_of::<L::Scalar>() == 8;
    let data: Vec<Vec<u8>> = (0..L::PARAM_TENSORS)
        .map(|i| {
            let values = net.param(i);
            let mut bytes = Vec::with_capacity(values.len() * if wide { 8 } else { 4 });
            for &w in values {
                if wide {
                    bytes.extend_from_slice(&w.to_f64().to_le_bytes());
                } else {
                    bytes.extend_from_slice(&(w.to_f64() as f32).to_le_bytes());
                }
            }
            bytes
        })
        .collect();
    let dtype = if wide { Dtype::F64 } else { Dtype::F32 };
    let views = spec
        .iter()
        .zip(&data)
        .map(|(&(name, shape), bytes)| {
            TensorView::new(dtype, shape.to_vec(), bytes)
                .map(|v| (name, v))
                .map_err(|e| SafetensorsError::Invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| SafetensorsError::Invalid(e.to_string()))
}

/// The largest safetensors header (its JSON) this crate reads: LeNet-5's takes under 1 KiB,
/// so this leaves ample room for `__metadata__`.
pub const MAX_HEADER_LEN: u64 = 1 << 20;

/// The `safetensors` crate's own limit on a header: a file claiming more is not safetensors.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// Reads one safetensors file from `reader`, whose first bytes are already in `bytes`:
/// the 8-byte header length, the header (at most [`MAX_HEADER_LEN`]), then the data the
/// header declares (at most `max_data`) and one byte more, which is refused. `size` is the
/// file's size, if known, for the error. A file whose header cannot be read is returned as
/// read so far, for [`SafeTensors::deserialize`] to say what is wrong with it.
pub(crate) fn read_safetensors(
    mut reader: impl std::io::Read,
    mut bytes: Vec<u8>,
    max_data: u64,
    size: Option<u64>,
) -> std::io::Result<Result<Vec<u8>, SafetensorsError>> {
    use crate::read::read_at_most;
    use std::io::Read as _;
    read_at_most(&mut reader, &mut bytes, 7)?;
    let Some(len) = bytes.first_chunk::<8>() else {
        return Ok(Ok(bytes));
    };
    let header = u64::from_le_bytes(*len);
    if header > SAFETENSORS_MAX_HEADER {
        // Beyond what any safetensors file may hold (text, say): not safetensors at all.
        return Ok(Ok(bytes));
    }
    if header > MAX_HEADER_LEN {
        return Ok(Err(SafetensorsError::TooLarge {
            part: "the header",
            size: Some(header),
            limit: MAX_HEADER_LEN,
        }));
    }
    // The header, and not a byte more.
    (&mut reader)
        .take(8 + header - bytes.len() as u64)
        .read_to_end(&mut bytes)?;
    let Some(data) = bytes
        .get(8..8 + header as usize)
        .and_then(declared_data_len)
    else {
        return Ok(Ok(bytes));
    };
    if data > max_data {
        return Ok(Err(SafetensorsError::TooLarge {
            part: "the data its header declares",
            size: Some(data),
            limit: max_data,
        }));
    }
    let limit = 8 + header + data;
    if !read_at_most(reader, &mut bytes, limit)? {
        return Ok(Err(SafetensorsError::TooLarge {
            part: "the file",
            size,
            limit,
        }));
    }
    Ok(Ok(bytes))
}

/// The data size a safetensors header declares: the end of its last tensor. `None` if the
/// header is not a JSON object of tensors with offsets (the file is then invalid anyway).
fn declared_data_len(header: &[u8]) -> Option<u64> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    map.iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, tensor)| tensor.get("data_offsets")?.get(1)?.as_u64())
        .try_fold(0, |end, e| Some(end.max(e?)))
}

impl<T: Scalar> LeNet5<T> {
    /// Loads a PyTorch LeNet-5 `state_dict` saved with `safetensors` (see the
    /// [module docs](crate::pytorch) for names and shapes). On error the network is unchanged.
    ///
    /// ```
    /// use constnet::LeNet5;
    /// let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pytorch-lenet-mnist10k/lenet.safetensors"))?;
    /// let mut net = constnet::zeroed_box::<LeNet5<f32>>();
    /// net.load_safetensors(&bytes)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_safetensors(&mut self, bytes: &[u8]) -> Result<(), SafetensorsError> {
        crate::state_dict::load_state_dict(self, bytes)
    }

    /// The network as a PyTorch-compatible `state_dict` in safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, SafetensorsError> {
        crate::state_dict::save_state_dict(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::testing::Endless;
    use crate::zeroed_box;
    use rand::SeedableRng;

    #[test]
    fn lenet_names_and_shapes_come_from_its_type() {
        let net = zeroed_box::<LeNet5<f32>>();
        let names = crate::tensor_names::<LeNet5<f32>>();
        assert_eq!(names.len(), LENET5_TENSORS.len());
        for (i, (name, shape)) in LENET5_TENSORS.iter().enumerate() {
            assert_eq!(names[i], *name);
            assert_eq!(net.tensor_shape(crate::TensorKind::Param, i).dims(), *shape);
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(1));
        let bytes = net.to_safetensors().unwrap();
        let mut back = zeroed_box::<LeNet5<f32>>();
        back.load_safetensors(&bytes).unwrap();
        assert_eq!(net, back);
        // f32 weights load into an f64 network, exactly.
        let mut wide = zeroed_box::<LeNet5<f64>>();
        wide.load_safetensors(&bytes).unwrap();
        for i in 0..LeNet5::<f32>::PARAM_TENSORS {
            let narrowed: Vec<f32> = wide.param(i).iter().map(|&w| w as f32).collect();
            assert_eq!(narrowed, net.param(i));
        }
    }

    fn with(tensors: &[(&str, Dtype, Vec<usize>)]) -> Vec<u8> {
        let data: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, d, s)| vec![0u8; s.iter().product::<usize>() * d.bitsize() / 8])
            .collect();
        let views: Vec<_> = tensors
            .iter()
            .zip(&data)
            .map(|((n, d, s), b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    fn lenet_tensors() -> Vec<(&'static str, Dtype, Vec<usize>)> {
        LENET5_TENSORS
            .iter()
            .map(|(n, s)| (*n, Dtype::F32, s.to_vec()))
            .collect()
    }

    #[test]
    fn every_defect_names_its_tensor() {
        let mut net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(2));
        let before = net.clone();

        let mut t = lenet_tensors();
        t.remove(4);
        let e = net.load_safetensors(&with(&t)).unwrap_err();
        assert_eq!(
            e,
            SafetensorsError::Missing {
                tensor: "fc1.weight".into()
            }
        );

        let mut t = lenet_tensors();
        t.push(("fc4.weight", Dtype::F32, vec![2, 2]));
        let e = net.load_safetensors(&with(&t)).unwrap_err();
        assert_eq!(
            e,
            SafetensorsError::Unexpected {
                tensor: "fc4.weight".into()
            }
        );

        let mut t = lenet_tensors();
        t[2].2 = vec![16, 6, 3, 3];
        let e = net.load_safetensors(&with(&t)).unwrap_err();
        assert!(
            matches!(&e, SafetensorsError::Shape { tensor, .. } if tensor == "conv2.weight"),
            "{e}"
        );
        assert!(e.to_string().contains("[16, 6, 3, 3]"));

        let mut t = lenet_tensors();
        t[9].1 = Dtype::F16;
        let e = net.load_safetensors(&with(&t)).unwrap_err();
        assert!(
            matches!(&e, SafetensorsError::Dtype { tensor, .. } if tensor == "fc3.bias"),
            "{e}"
        );

        let e = net.load_safetensors(b"not safetensors").unwrap_err();
        assert!(matches!(e, SafetensorsError::Invalid(_)));
        assert_eq!(net, before);
    }

    /// A NaN or an infinity anywhere, or an F64 value beyond `f32`'s range, is refused with
    /// the tensor and the index, and the network is left unchanged.
    #[test]
    fn non_finite_values_are_refused() {
        let mut net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(4));
        let before = net.clone();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // `to_safetensors` refuses such a network: serialise the tensors directly.
            let mut source = net.clone();
            source.param_mut(4)[7] = bad;
            let data: Vec<Vec<u8>> = (0..LeNet5::<f32>::PARAM_TENSORS)
                .map(|i| {
                    source
                        .param(i)
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .collect()
                })
                .collect();
            let views = LENET5_TENSORS
                .iter()
                .zip(&data)
                .map(|(&(name, shape), bytes)| {
                    (
                        name,
                        TensorView::new(Dtype::F32, shape.to_vec(), bytes).unwrap(),
                    )
                });
            let bytes = safetensors::serialize(views, None).unwrap();
            let e = net.load_safetensors(&bytes).unwrap_err();
            assert_eq!(
                e,
                SafetensorsError::NonFinite {
                    tensor: "fc1.weight".into(),
                    index: 7
                }
            );
            assert!(e.to_string().contains("`fc1.weight`"), "{e}");
            assert_eq!(net, before);
        }
        // 1e300 in F64 is finite, but not as an f32: refused by an f32 network only.
        let mut wide = zeroed_box::<LeNet5<f64>>();
        wide.param_mut(9)[3] = 1e300;
        let bytes = wide.to_safetensors().unwrap();
        let e = net.load_safetensors(&bytes).unwrap_err();
        assert_eq!(
            e,
            SafetensorsError::NonFinite {
                tensor: "fc3.bias".into(),
                index: 3
            }
        );
        assert_eq!(net, before);
        zeroed_box::<LeNet5<f64>>()
            .load_safetensors(&bytes)
            .unwrap();
    }

    /// What `load_safetensors` refuses as non-finite, `to_safetensors` refuses too, with the
    /// same error naming the tensor and the index.
    #[test]
    fn non_finite_parameters_are_refused_at_save_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut net = LeNet5::<f32>::new_boxed(&mut rng);
            net.param_mut(7)[42] = bad as f32;
            let mut wide = LeNet5::<f64>::new_boxed(&mut rng);
            wide.param_mut(0)[0] = bad;
            assert_eq!(
                net.to_safetensors(),
                Err(SafetensorsError::NonFinite {
                    tensor: "fc2.bias".into(),
                    index: 42
                })
            );
            assert_eq!(
                wide.to_safetensors(),
                Err(SafetensorsError::NonFinite {
                    tensor: "conv1.weight".into(),
                    index: 0
                })
            );
        }
    }

    /// A safetensors stream is read no further than its header and the data it declares,
    /// plus one byte: an endless tail, a huge header or huge declared data is refused
    /// without being read.
    #[test]
    fn reading_stops_at_the_declared_size() {
        let net = LeNet5::<f32>::new_boxed(&mut rand::rngs::StdRng::seed_from_u64(6));
        let file = net.to_safetensors().unwrap();
        let max_data = (net.param_count() * 8) as u64;
        let read = |prefix: &[u8]| {
            let mut reader = Endless { prefix, read: 0 };
            let result = read_safetensors(&mut reader, Vec::new(), max_data, None).unwrap();
            (result, reader.read)
        };
        // A valid file, then zeros forever (as /dev/zero after it).
        let (result, consumed) = read(&file);
        let limit = file.len() as u64;
        assert_eq!(
            result,
            Err(SafetensorsError::TooLarge {
                part: "the file",
                size: None,
                limit
            })
        );
        assert_eq!(consumed, limit + 1);
        // The file alone is read whole and loads.
        let mut reader = &file[..];
        let bytes = read_safetensors(&mut reader, Vec::new(), max_data, None)
            .unwrap()
            .unwrap();
        assert_eq!(bytes, file);
        zeroed_box::<LeNet5<f32>>()
            .load_safetensors(&bytes)
            .unwrap();
        // A header over MAX_HEADER_LEN: refused after its 8 bytes.
        let (result, consumed) = read(&(MAX_HEADER_LEN + 1).to_le_bytes());
        assert_eq!(
            result,
            Err(SafetensorsError::TooLarge {
                part: "the header",
                size: Some(MAX_HEADER_LEN + 1),
                limit: MAX_HEADER_LEN
            })
        );
        assert_eq!(consumed, 8);
        // A header length of a terabyte (text, say) is not safetensors: 8 bytes are read,
        // and loading them says the file is invalid.
        let (result, consumed) = read(&(1u64 << 40).to_le_bytes());
        let e = zeroed_box::<LeNet5<f32>>()
            .load_safetensors(&result.unwrap())
            .unwrap_err();
        assert!(matches!(e, SafetensorsError::Invalid(_)), "{e}");
        assert_eq!(consumed, 8);
        // A header declaring 10 GB of data: refused after the header.
        let header = br#"{"fc1.weight":{"dtype":"F32","shape":[2500000000],"data_offsets":[0,10000000000]}}"#;
        let mut huge = (header.len() as u64).to_le_bytes().to_vec();
        huge.extend_from_slice(header);
        let (result, consumed) = read(&huge);
        assert_eq!(
            result,
            Err(SafetensorsError::TooLarge {
                part: "the data its header declares",
                size: Some(10_000_000_000),
                limit: max_data
            })
        );
        assert_eq!(consumed, huge.len() as u64);
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("10000000000 bytes")
        );
    }
}
