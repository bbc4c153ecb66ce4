//! The one-rank communicator: every collective is the identity.

use super::{Comm, Pending, Result};
use crate::backend::Backend;
use crate::tensor::Tensor;
use std::sync::Arc;

pub struct SingleComm {
    backend: Arc<dyn Backend>,
}

impl SingleComm {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        SingleComm { backend }
    }
    fn copy(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.backend.concat_rows(&[x])?)
    }
}

struct Ready(Tensor);

impl Pending for Ready {
    fn wait(self: Box<Self>) -> Result<Tensor> {
        Ok(self.0)
    }
}

impl Comm for SingleComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn name(&self) -> &'static str {
        "single"
    }
    fn all_to_all_v(&self, send: &Tensor, _send_rows: &[usize], _recv_rows: &[usize]) -> Result<Tensor> {
        self.copy(send)
    }
    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        self.copy(x)
    }
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        self.copy(x)
    }
    fn sendrecv_start(&self, x: &Tensor, _to: usize, _from: usize) -> Result<Box<dyn Pending>> {
        Ok(Box::new(Ready(self.copy(x)?)))
    }
    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>> {
        Ok(counts.to_vec())
    }
    fn gather_bytes(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        Ok(Some(vec![bytes.to_vec()]))
    }
    fn broadcast_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn split(&self, _color: usize, _key: usize) -> Result<Box<dyn Comm>> {
        Ok(Box::new(SingleComm::new(self.backend.clone())))
    }
}
