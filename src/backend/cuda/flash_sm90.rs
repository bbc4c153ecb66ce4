//! Launch of the warp-specialised Hopper flash attention (kernels/flash_attention_sm90.cu): three
//! tensor maps over q [sq, hq, d], k and v [sk, hkv, d] (boxes of 64 columns x 1 head x 128 rows,
//! 128-byte swizzle, zero fill past sq / sk), then the same scalars as the mma.sync kernel.

use super::variants::FlashKernel;
use super::*;
use crate::ops::attention::Dims;

/// What the launch needs besides the tensors.
pub(crate) struct FlashArgs {
    pub delta: i64,
    pub causal: bool,
    pub scale_log2: f32,
    pub f32_out: bool,
}

/// TMA needs 16-byte aligned bases (a row view of d = 128 always is; the check keeps any
/// other view on the mma.sync kernel).
pub(crate) fn tma_aligned(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p.is_multiple_of(16))
}

impl CudaBackend {
    /// Runs `fk` (an sm90 kernel) on device pointers q, k, v, out, lse.
    pub(crate) fn flash_sm90(&self, fk: &FlashKernel, ptrs: [u64; 5], n: Dims, a: FlashArgs) -> Result<()> {
        let [qp, kp, vp, op, lp] = ptrs;
        let mut mq = tensor_map_heads(qp, n.sq, n.hq, n.d)?;
        let mut mk = tensor_map_heads(kp, n.sk, n.hkv, n.d)?;
        let mut mv = tensor_map_heads(vp, n.sk, n.hkv, n.d)?;
        let grid = (n.hq as u32, n.sq.div_ceil(fk.block_q()) as u32, 1);
        check("attention", grid.1 <= 65535, || format!("sq = {} needs more than 65535 query tiles", n.sq))?;
        let mut slots =
            [op, lp, n.sq as u64, n.sk as u64, n.hq as u64, n.hkv as u64, a.delta as u64, a.causal as u64, a.scale_log2
                .to_bits()
                as u64];
        let [s0, s1, s2, s3, s4, s5, s6, s7, s8] = &mut slots;
        let mut params: [*mut std::ffi::c_void; 12] = [
            &mut mq as *mut _ as *mut _,
            &mut mk as *mut _ as *mut _,
            &mut mv as *mut _ as *mut _,
            s0 as *mut u64 as *mut _,
            s1 as *mut u64 as *mut _,
            s2 as *mut u64 as *mut _,
            s3 as *mut u64 as *mut _,
            s4 as *mut u64 as *mut _,
            s5 as *mut u64 as *mut _,
            s6 as *mut u64 as *mut _,
            s7 as *mut u64 as *mut _,
            s8 as *mut u64 as *mut _,
        ];
        let name = if a.f32_out { fk.name_f32o } else { fk.name };
        // SAFETY: the parameters of the F3 kernels in kernels/flash_attention_sm90.cu: three 128-byte
        // tensor maps, two pointers, four ints, an i64, an int and a float (4-byte ones read from the
        // low half of their slots).
        unsafe { self.launch_params((fk.file(), name), grid, fk.threads(), fk.smem(), 1, &mut params) }
    }
}

// sys: move to driver.rs
/// A 3-D TMA tensor map over a bf16 tensor [s, h, d] (d contiguous) at `ptr`: boxes of 64 columns
/// (128 bytes) x 1 head x 128 rows, 128-byte swizzle, zeros past the edges.
fn tensor_map_heads(ptr: u64, s: usize, h: usize, d: usize) -> Result<sys::CUtensorMap> {
    let mut map = sys::CUtensorMap { opaque: [0; 16] };
    let dims = [d as u64, h as u64, s as u64];
    let strides = [(d * 2) as u64, (h * d * 2) as u64];
    let boxes = [64u32, 1, 128];
    let elem = [1u32, 1, 1];
    // SAFETY: every pointer is to a live local array of the length the rank (3) implies.
    unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut map,
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            3,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            elem.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()
    }
    .map_err(|e| cuda_err(format!("tensor map [{s}, {h}, {d}]"), e))?;
    Ok(map)
}
