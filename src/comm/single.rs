//! The one-rank world: every collective is the identity (a copy). Also the host-tensor
//! helpers that the MPI communicator shares.

use super::{Comm, Error, Pending, Result};
use crate::tensor::{Data, Tensor};

/// Borrowed host storage of a tensor.
pub(crate) enum Host<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
}

pub(crate) fn host<'a>(t: &'a Tensor, rank: usize, op: &'static str) -> Result<Host<'a>> {
    match &t.data {
        Data::Host(v) => Ok(Host::F32(v)),
        Data::HostI32(v) => Ok(Host::I32(v)),
        Data::Device(_) => Err(Error::Failed {
            rank,
            op,
            msg: format!("{t:?} is in GPU memory; host communicators move host tensors (use NCCL for GPU tensors)"),
        }),
    }
}

/// (rows, elements per row) of a tensor seen as rows along its first dimension.
pub(crate) fn rows(t: &Tensor, rank: usize, op: &'static str) -> Result<(usize, usize)> {
    match t.shape.split_first() {
        Some((&r, rest)) => Ok((r, rest.iter().product())),
        None => {
            Err(Error::Failed { rank, op, msg: "a scalar has no rows; give the tensor at least one dimension".into() })
        }
    }
}

pub(crate) fn copy(t: &Tensor, rank: usize, op: &'static str) -> Result<Tensor> {
    Ok(match host(t, rank, op)? {
        Host::F32(v) => Tensor::host(&t.shape, t.dtype, v.to_vec()),
        Host::I32(v) => Tensor::host_i32(&t.shape, v.to_vec()),
    })
}

fn check(ok: bool, op: &'static str, msg: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::Failed { rank: 0, op, msg: msg() }) }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SingleComm;

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

    fn all_to_all_v(&self, send: &Tensor, send_rows: &[usize], recv_rows: &[usize]) -> Result<Tensor> {
        let (n, _) = rows(send, 0, "all_to_all_v")?;
        check(send_rows == [n] && recv_rows == [n], "all_to_all_v", || {
            format!("one rank: send_rows {send_rows:?} and recv_rows {recv_rows:?} must both be [{n}]")
        })?;
        copy(send, 0, "all_to_all_v")
    }
    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        rows(x, 0, "all_gather")?;
        copy(x, 0, "all_gather")
    }
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        copy(x, 0, "all_reduce_sum")
    }
    fn sendrecv_start(&self, x: &Tensor, to: usize, from: usize) -> Result<Box<dyn Pending>> {
        check(to == 0 && from == 0, "sendrecv_start", || format!("one rank: to {to} and from {from} must be 0"))?;
        Ok(Box::new(Ready(copy(x, 0, "sendrecv_start")?)))
    }
    fn all_to_all_counts(&self, counts: &[usize]) -> Result<Vec<usize>> {
        check(counts.len() == 1, "all_to_all_counts", || format!("one rank: {} counts given", counts.len()))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, cpu::CpuBackend};
    use crate::tensor::DType;

    #[test]
    fn collectives_are_copies() {
        let b = CpuBackend::new();
        let x = b.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F32).unwrap();
        let c = SingleComm;
        assert_eq!(b.download(&c.all_to_all_v(&x, &[2], &[2]).unwrap()).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert!(c.all_to_all_v(&x, &[1], &[2]).is_err());
        assert_eq!(c.all_gather(&x).unwrap().shape(), [2, 2]);
        let p = c.sendrecv_start(&x, 0, 0).unwrap();
        assert_eq!(b.download(&p.wait().unwrap()).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert!(c.sendrecv_start(&x, 1, 0).is_err());
        assert_eq!(c.all_to_all_counts(&[7]).unwrap(), [7]);
        assert_eq!(c.gather_bytes(b"ab").unwrap(), Some(vec![b"ab".to_vec()]));
        let i = b.upload_i32(&[5, 6], &[2]).unwrap();
        assert_eq!(b.download_i32(&c.all_reduce_sum(&i).unwrap()).unwrap(), [5, 6]);
    }
}
