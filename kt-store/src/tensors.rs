//! Named tensor sets in the safetensors layout: what model weights travel as.
//!
//! A [`TensorSet`] is built from named tensors (dtype, shape, bytes) and written once,
//! straight into the store's memory, in the layout of the `safetensors` crate (an 8-byte
//! header length, a JSON header padded to 8 bytes, then the tensors ordered by dtype
//! alignment), so that a getter reads it with [`safetensors::SafeTensors`] as zero-copy
//! views into the mapped value, and a candle or PyTorch program could read the same
//! bytes.

use std::borrow::Cow;

use kt_core::Error;
pub use safetensors::{Dtype, SafeTensors};

/// One tensor of a set.
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Named tensors, to put under one key.
#[derive(Default)]
pub struct TensorSet {
    tensors: Vec<Tensor>,
    metadata: std::collections::HashMap<String, String>,
}

impl TensorSet {
    /// An empty set.
    pub fn new() -> Self {
        TensorSet::default()
    }

    /// Adds a tensor of `dtype` and `shape` whose little-endian bytes are `data`.
    pub fn add(
        mut self,
        name: impl Into<String>,
        dtype: Dtype,
        shape: &[usize],
        data: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let name = name.into();
        let data = data.into();
        let elements: usize = shape.iter().product();
        let expected = elements * dtype.bitsize() / 8;
        if data.len() != expected {
            return Err(Error::invalid_options(format!(
                "tensor '{name}' of shape {shape:?} and dtype {dtype:?} needs {expected} bytes, \
                 not {}",
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::invalid_options(format!(
                "the tensor set already has a tensor named '{name}'"
            )));
        }
        self.tensors.push(Tensor {
            name,
            dtype,
            shape: shape.to_vec(),
            data,
        });
        Ok(self)
    }

    /// Adds an `f32` tensor.
    pub fn add_f32(
        self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
    ) -> Result<Self, Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(name, Dtype::F32, shape, bytes)
    }

    /// Attaches free-form metadata (the safetensors header's `__metadata__`).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// The header (length prefix and padded JSON), and the tensors in the order their
    /// bytes follow it.
    fn layout(&self) -> Result<(Vec<u8>, Vec<&Tensor>), Error> {
        // safetensors orders tensors by descending dtype alignment, then by name.
        let mut ordered: Vec<&Tensor> = self.tensors.iter().collect();
        ordered.sort_by(|a, b| b.dtype.cmp(&a.dtype).then(a.name.cmp(&b.name)));
        // Views with no bytes: the crate writes the header from their sizes alone.
        let sized = ordered.iter().map(|tensor| {
            (
                tensor.name.as_str(),
                Sized {
                    dtype: tensor.dtype,
                    shape: &tensor.shape,
                    len: tensor.data.len(),
                },
            )
        });
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        let header = safetensors::serialize(sized, metadata).map_err(|error| Error::Encode {
            what: "a tensor set's header".into(),
            message: error.to_string(),
        })?;
        Ok((header, ordered))
    }

    /// The size of the encoded set.
    pub(crate) fn encoded_len(&self) -> Result<usize, Error> {
        let (header, _) = self.layout()?;
        Ok(header.len() + self.tensors.iter().map(|t| t.data.len()).sum::<usize>())
    }

    /// Writes the encoded set into `out`, which is [`TensorSet::encoded_len`] long.
    pub(crate) fn write_into(&self, out: &mut [u8]) -> Result<(), Error> {
        let (header, ordered) = self.layout()?;
        let mut at = header.len();
        out[..at].copy_from_slice(&header);
        for tensor in ordered {
            out[at..at + tensor.data.len()].copy_from_slice(&tensor.data);
            at += tensor.data.len();
        }
        Ok(())
    }
}

/// A tensor's dtype and shape with its length but none of its bytes.
struct Sized<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    len: usize,
}

impl safetensors::View for Sized<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// Reads `bytes` as a tensor set.
pub(crate) fn read<'a>(bytes: &'a [u8], key: &str) -> Result<SafeTensors<'a>, Error> {
    SafeTensors::deserialize(bytes).map_err(|error| Error::Decode {
        what: format!("the tensor set under '{key}'"),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_written_in_place_reads_back_with_the_safetensors_crate() {
        let set = TensorSet::new()
            .add_f32("layer.1.w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .expect("added")
            .add("tokens", Dtype::U8, &[4], vec![9, 8, 7, 6])
            .expect("added")
            .add_f32("bias", &[2], &[0.5, -0.5])
            .expect("added")
            .metadata("step", "12");
        let mut out = vec![0u8; set.encoded_len().expect("sized")];
        set.write_into(&mut out).expect("written");
        let read = read(&out, "w").expect("readable");
        assert_eq!(read.len(), 3);
        let w = read.tensor("layer.1.w").expect("present");
        assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[2usize, 3][..]));
        let values: Vec<f32> = w
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            read.tensor("tokens").expect("present").data(),
            &[9, 8, 7, 6]
        );
        assert_eq!(read.tensor("bias").expect("present").data().len(), 8);
        // The same bytes as the crate's own serializer writes.
        let (_, metadata) = SafeTensors::read_metadata(&out).expect("header");
        assert_eq!(
            metadata
                .metadata()
                .as_ref()
                .and_then(|m| m.get("step"))
                .map(String::as_str),
            Some("12")
        );
    }

    #[test]
    fn wrong_sizes_and_duplicate_names_are_refused() {
        let error = TensorSet::new()
            .add("x", Dtype::F32, &[3], vec![0u8; 8])
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("needs 12 bytes, not 8"),
            "{error}"
        );
        let error = TensorSet::new()
            .add_f32("x", &[1], &[1.0])
            .and_then(|s| s.add_f32("x", &[1], &[2.0]))
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("already has a tensor named 'x'"),
            "{error}"
        );
    }
}
