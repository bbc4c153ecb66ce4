//! Where weights come from: seeded random values generated on the device, or a
//! safetensors checkpoint with Hugging Face names.

use crate::backend::{Backend, Error, Result};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub enum Source {
    Random {
        seed: u64,
    },
    /// name -> (shape, f32 values) read from *.safetensors files.
    Loaded(HashMap<String, (Vec<usize>, Vec<f32>)>),
}

impl Source {
    pub fn load(dir: &Path) -> Result<Source> {
        let err = |what: String| Error::Unavailable(format!("weights in {}: {what}", dir.display()));
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(err("no *.safetensors files".into()));
        }
        let mut map = HashMap::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| err(format!("{}: {e}", f.display())))?;
            let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("{}: {e}", f.display())))?;
            for (name, view) in st.tensors() {
                let data = to_f32(view.dtype(), view.data()).map_err(|e| err(format!("{name}: {e}")))?;
                map.insert(name, (view.shape().to_vec(), data));
            }
        }
        Ok(Source::Loaded(map))
    }

    /// The tensor `name` of `shape`: random with std `std`, or loaded (shape checked).
    pub fn get(&self, b: &dyn Backend, name: &str, shape: &[usize], dtype: DType, std: f32) -> Result<Tensor> {
        match self {
            Source::Random { seed } => b.random(shape, dtype, child_seed(*seed, name), std),
            Source::Loaded(map) => {
                let (s, v) =
                    map.get(name).ok_or_else(|| Error::Unavailable(format!("checkpoint has no tensor `{name}`")))?;
                if s.as_slice() != shape {
                    return Err(Error::Shape {
                        op: "load",
                        detail: format!("`{name}` is {s:?}, model needs {shape:?}"),
                    });
                }
                b.upload(v, shape, dtype)
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
            Source::Loaded(_) => self.get(b, name, &[h], dtype, 0.0),
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
