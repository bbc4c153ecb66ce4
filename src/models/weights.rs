//! Where weights come from: seeded random values generated on the device, or a
//! safetensors checkpoint with Hugging Face names.

use crate::backend::{Backend, Error, Result};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use std::path::Path;

pub enum Source {
    Random {
        seed: u64,
    },
    /// The raw bytes of every *.safetensors file; tensors are converted one at a time
    /// when asked for, so an 8B bf16 checkpoint never exists as f32 all at once.
    Loaded {
        dir: String,
        files: Vec<Vec<u8>>,
    },
}

impl Source {
    pub fn load(dir: &Path) -> Result<Source> {
        let err = |what: String| Error::Unavailable(format!("weights in {}: {what}", dir.display()));
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(err("no *.safetensors files".into()));
        }
        let mut files = Vec::with_capacity(paths.len());
        for f in paths {
            let bytes = std::fs::read(&f).map_err(|e| err(format!("{}: {e}", f.display())))?;
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("{}: {e}", f.display())))?;
            files.push(bytes);
        }
        Ok(Source::Loaded { dir: dir.display().to_string(), files })
    }

    /// Shape and f32 values of checkpoint tensor `name`.
    fn read(dir: &str, files: &[Vec<u8>], name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        for bytes in files {
            let st = safetensors::SafeTensors::deserialize(bytes).expect("checked when loaded");
            if let Ok(view) = st.tensor(name) {
                let data = to_f32(view.dtype(), view.data())
                    .map_err(|e| Error::Unavailable(format!("weights in {dir}: `{name}`: {e}")))?;
                return Ok((view.shape().to_vec(), data));
            }
        }
        Err(Error::Unavailable(format!("weights in {dir}: no tensor `{name}`")))
    }

    /// The tensor `name` of `shape`: random with std `std`, or loaded (shape checked).
    pub fn get(&self, b: &dyn Backend, name: &str, shape: &[usize], dtype: DType, std: f32) -> Result<Tensor> {
        match self {
            Source::Random { seed } => b.random(shape, dtype, child_seed(*seed, name), std),
            Source::Loaded { dir, files } => {
                let (s, v) = Self::read(dir, files, name)?;
                if s.as_slice() != shape {
                    let detail = format!("`{name}` is {s:?}, model needs {shape:?}");
                    return Err(Error::Shape { op: "load", detail });
                }
                b.upload(&v, shape, dtype)
            }
        }
    }

    /// An RMSNorm weight: 1 + small seeded noise when random (so a wrong index shows).
    pub fn norm(&self, b: &dyn Backend, name: &str, h: usize, dtype: DType) -> Result<Tensor> {
        match self {
            Source::Random { seed } => {
                let v: Vec<f32> =
                    crate::rng::fill_uniform(child_seed(*seed, name), h, 0.1).iter().map(|x| 1.0 + x).collect();
                b.upload(&v, &[h], dtype)
            }
            Source::Loaded { .. } => self.get(b, name, &[h], dtype, 0.0),
        }
    }
}

fn to_f32(dtype: safetensors::Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    use safetensors::Dtype as D;
    Ok(match dtype {
        D::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        D::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        D::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(format!("unsupported dtype {other:?} (f32, bf16, f16 are)")),
    })
}
