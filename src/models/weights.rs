//! Where weights come from: seeded random values generated on the device, or a
//! safetensors checkpoint with Hugging Face names (one file, or shards listed by
//! model.safetensors.index.json).

use crate::backend::{self, Backend};
use crate::rng::child_seed;
use crate::tensor::{DType, Tensor};
use safetensors::tensor::{Metadata, TensorInfo};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What went wrong reading a checkpoint directory; every message starts with "weights:".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("weights: {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("weights: {path}: {what}")]
    Bad { path: String, what: String },
    #[error("weights: {dir}: no *.safetensors files")]
    NoShards { dir: String },
    #[error("weights: tensor `{name}` is in both {first} and {second}")]
    Duplicate { name: String, first: String, second: String },
    #[error("weights: {dir}: no tensor `{name}`")]
    Missing { dir: String, name: String },
    #[error("weights: `{name}` is {have:?}, the model needs {want:?}")]
    Shape { name: String, have: Vec<usize>, want: Vec<usize> },
}

impl Error {
    pub(crate) fn bad(path: &Path, what: impl Into<String>) -> Error {
        Error::Bad { path: path.display().to_string(), what: what.into() }
    }
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.display().to_string(), source }
    }
}

impl From<Error> for backend::Error {
    fn from(e: Error) -> Self {
        backend::Error::Load(Box::new(e))
    }
}

impl From<Error> for crate::config::ConfigError {
    fn from(e: Error) -> Self {
        crate::config::ConfigError::Invalid(e.to_string())
    }
}

/// One safetensors file: its header, read once; tensor bytes are read when asked for.
struct Shard {
    path: PathBuf,
    /// Where the data section starts (8-byte length + JSON header).
    data_start: u64,
    meta: Metadata,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard, Error> {
        let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
        let mut n = [0u8; 8];
        f.read_exact(&mut n).map_err(|_| Error::bad(path, "not a safetensors file (shorter than 8 bytes)"))?;
        let n = u64::from_le_bytes(n);
        let size = f.metadata().map_err(Error::io(path))?.len();
        if n > size.saturating_sub(8) {
            return Err(Error::bad(path, format!("not a safetensors file (header of {n} bytes in {size})")));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).map_err(Error::io(path))?;
        let meta: Metadata = serde_json::from_slice(&header)
            .map_err(|e| Error::bad(path, format!("not a safetensors file (header: {e})")))?;
        if 8 + n + meta.data_len() as u64 != size {
            let want = 8 + n + meta.data_len() as u64;
            return Err(Error::bad(path, format!("truncated or padded: {size} bytes, header describes {want}")));
        }
        Ok(Shard { path: path.to_path_buf(), data_start: 8 + n, meta })
    }

    fn read(&self, info: &TensorInfo) -> Result<Vec<u8>, Error> {
        let (start, end) = info.data_offsets;
        let mut f = std::fs::File::open(&self.path).map_err(Error::io(&self.path))?;
        f.seek(SeekFrom::Start(self.data_start + start as u64)).map_err(Error::io(&self.path))?;
        let mut bytes = vec![0u8; end - start];
        f.read_exact(&mut bytes).map_err(Error::io(&self.path))?;
        Ok(bytes)
    }
}

/// A checkpoint directory's tensors: name -> shard, duplicates refused.
pub struct Checkpoint {
    pub dir: PathBuf,
    shards: Vec<Shard>,
    owner: HashMap<String, usize>,
}

impl Checkpoint {
    /// The shards named by model.safetensors.index.json when present, else every
    /// *.safetensors file in `dir`. Only headers are read.
    pub fn open(dir: &Path) -> Result<Checkpoint, Error> {
        let index = dir.join("model.safetensors.index.json");
        let (paths, claimed) = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(Error::io(&index))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad(&index, e.to_string()))?;
            let map = v["weight_map"].as_object().ok_or_else(|| Error::bad(&index, "no `weight_map` object"))?;
            let mut claimed = HashMap::new();
            for (name, file) in map {
                let file =
                    file.as_str().ok_or_else(|| Error::bad(&index, format!("`{name}`: file is not a string")))?;
                claimed.insert(name.clone(), dir.join(file));
            }
            let mut paths: Vec<PathBuf> = claimed.values().cloned().collect();
            paths.sort();
            paths.dedup();
            (paths, Some(claimed))
        } else {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(Error::io(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            paths.sort();
            (paths, None)
        };
        if paths.is_empty() {
            return Err(Error::NoShards { dir: dir.display().to_string() });
        }
        let shards = paths.iter().map(|p| Shard::open(p)).collect::<Result<Vec<_>, _>>()?;
        let mut owner: HashMap<String, usize> = HashMap::new();
        for (i, s) in shards.iter().enumerate() {
            for name in s.meta.offset_keys() {
                if let Some(&j) = owner.get(&name) {
                    let (first, second) = (shards[j].path.display().to_string(), s.path.display().to_string());
                    return Err(Error::Duplicate { name, first, second });
                }
                owner.insert(name, i);
            }
        }
        // The index is what loaders trust: a tensor it places in a file must be there.
        for (name, file) in claimed.iter().flatten() {
            if owner.get(name).map(|&i| &shards[i].path) != Some(file) {
                let what = format!("lists `{name}` in {}, which does not hold it", file.display());
                return Err(Error::bad(&index, what));
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), shards, owner })
    }

    fn info(&self, name: &str) -> Result<(&Shard, &TensorInfo), Error> {
        let missing = || Error::Missing { dir: self.dir.display().to_string(), name: name.into() };
        let s = &self.shards[*self.owner.get(name).ok_or_else(missing)?];
        Ok((s, s.meta.info(name).expect("owner came from this header")))
    }

    /// Every tensor in `want` is present with that shape and an element type we read.
    pub fn check(&self, want: &[(String, Vec<usize>)]) -> Result<(), Error> {
        for (name, shape) in want {
            let (s, info) = self.info(name)?;
            if &info.shape != shape {
                return Err(Error::Shape { name: name.clone(), have: info.shape.clone(), want: shape.clone() });
            }
            if !matches!(info.dtype, safetensors::Dtype::F32 | safetensors::Dtype::BF16 | safetensors::Dtype::F16) {
                let what = format!("`{name}` is {:?}; f32, bf16 and f16 are read", info.dtype);
                return Err(Error::bad(&s.path, what));
            }
        }
        Ok(())
    }

    /// Tensors of the checkpoint that `want` does not name, sorted.
    pub fn unused(&self, want: &[(String, Vec<usize>)]) -> Vec<&str> {
        let wanted: std::collections::HashSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
        let mut left: Vec<&str> = self.owner.keys().map(|n| n.as_str()).filter(|n| !wanted.contains(n)).collect();
        left.sort();
        left
    }

    /// Shape and f32 values of tensor `name`.
    pub fn read(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
        let (s, info) = self.info(name)?;
        let bytes = s.read(info)?;
        let data = to_f32(info.dtype, &bytes).map_err(|e| Error::bad(&s.path, format!("`{name}`: {e}")))?;
        Ok((info.shape.clone(), data))
    }
}

pub enum Source {
    Random {
        seed: u64,
    },
    /// Tensors are read and converted one at a time when asked for, so an 8B bf16
    /// checkpoint never sits in host memory whole, nor as f32.
    Loaded(Checkpoint),
}

impl Source {
    pub fn load(dir: &Path) -> Result<Source, Error> {
        Ok(Source::Loaded(Checkpoint::open(dir)?))
    }

    /// The tensor `name` of `shape`: random with std `std`, or loaded (shape checked).
    pub fn get(&self, b: &dyn Backend, name: &str, shape: &[usize], dtype: DType, std: f32) -> backend::Result<Tensor> {
        match self {
            Source::Random { seed } => b.random(shape, dtype, child_seed(*seed, name), std),
            Source::Loaded(ck) => {
                let (s, v) = ck.read(name)?;
                if s.as_slice() != shape {
                    return Err(Error::Shape { name: name.into(), have: s, want: shape.to_vec() }.into());
                }
                b.upload(&v, shape, dtype)
            }
        }
    }

    /// An RMSNorm weight: 1 + small seeded noise when random (so a wrong index shows).
    pub fn norm(&self, b: &dyn Backend, name: &str, h: usize, dtype: DType) -> backend::Result<Tensor> {
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
