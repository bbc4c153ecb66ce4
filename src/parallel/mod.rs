//! Parallelism around single-device layers (torchtitan style): the model code calls
//! the `Backend` ops for one device; these wrappers split the work over a group of
//! ranks and move data with a `Comm`. `expert`: expert parallelism for MoE layers;
//! `context`: context-parallel causal attention (ring and all-gather); `groups`: the
//! communicators of the layout's groups.

pub mod context;
pub mod eplb;
pub mod expert;
pub mod groups;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{param} = {value}: {allowed}")]
    Invalid { param: &'static str, value: String, allowed: String },
    #[error(transparent)]
    Comm(#[from] crate::comm::Error),
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid(param: &'static str, value: impl ToString, allowed: impl Into<String>) -> Error {
    Error::Invalid { param, value: value.to_string(), allowed: allowed.into() }
}
