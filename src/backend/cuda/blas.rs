//! cuBLASLt GEMMs with a cached plan (descriptors, layouts and the heuristic's
//! first algorithm) per problem, and one workspace for all of them.

use super::cuda_err;
use crate::backend::{Error, Result};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// cuBLASLt's recommended workspace on Hopper.
pub const WORKSPACE_BYTES: usize = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    F32,
    Bf16,
    E4m3,
}

impl Ty {
    fn raw(self) -> sys::cudaDataType {
        match self {
            Ty::F32 => sys::cudaDataType::CUDA_R_32F,
            Ty::Bf16 => sys::cudaDataType::CUDA_R_16BF,
            Ty::E4m3 => sys::cudaDataType::CUDA_R_8F_E4M3,
        }
    }
}

/// A column-major problem D[m, n] = alpha * op(A) op(B), op(A) [m, k], op(B) [k, n],
/// optionally batched with element strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: Ty,
    pub b: Ty,
    pub d: Ty,
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: i64,
    pub ldb: i64,
    pub ldd: i64,
    pub batch: i32,
    pub stride_a: i64,
    pub stride_b: i64,
    pub stride_d: i64,
}

impl Gemm {
    /// Row-major y [m, n] = x [m, k] times w [n, k] transposed (nn.Linear). In
    /// column-major terms y^T = w x^T: A = w read transposed, B = x: the "TN" case.
    pub fn linear(m: usize, n: usize, k: usize, x: Ty, w: Ty, y: Ty) -> Gemm {
        Gemm {
            m: n as u64,
            n: m as u64,
            k: k as u64,
            a: w,
            b: x,
            d: y,
            trans_a: true,
            trans_b: false,
            lda: k as i64,
            ldb: k as i64,
            ldd: n as i64,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_d: 0,
        }
    }
}

fn ok(r: sys::cublasStatus_t, op: &str) -> Result<()> {
    if r == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Cuda { op: format!("cuBLASLt {op}"), msg: format!("{r:?}") })
    }
}

struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created by this module and destroyed once.
        unsafe {
            for l in self.layouts {
                sys::cublasLtMatrixLayoutDestroy(l);
            }
            sys::cublasLtMatmulDescDestroy(self.desc);
        }
    }
}

struct Inner {
    handle: sys::cublasLtHandle_t,
    plans: HashMap<Gemm, Plan>,
}

// SAFETY: the handle and descriptors are only used under the mutex.
unsafe impl Send for Inner {}

pub(crate) struct Blas {
    stream: Arc<CudaStream>,
    workspace: CudaSlice<u8>,
    inner: Mutex<Inner>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created in Blas::new.
        unsafe { sys::cublasLtDestroy(self.handle) };
    }
}

fn attr<T>(desc: sys::cublasLtMatmulDesc_t, a: sys::cublasLtMatmulDescAttributes_t, v: &T) -> Result<()> {
    // SAFETY: v points to a value of the type the attribute expects.
    ok(
        unsafe { sys::cublasLtMatmulDescSetAttribute(desc, a, v as *const T as *const c_void, size_of::<T>()) },
        "set desc attribute",
    )
}

impl Blas {
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: out-parameter.
        ok(unsafe { sys::cublasLtCreate(&mut handle) }, "create")?;
        // SAFETY: scratch memory only cuBLASLt writes.
        let workspace = unsafe { stream.alloc::<u8>(WORKSPACE_BYTES) }.map_err(|e| cuda_err("workspace", e))?;
        Ok(Blas { stream, workspace, inner: Mutex::new(Inner { handle, plans: HashMap::new() }) })
    }

    fn plan(handle: sys::cublasLtHandle_t, g: &Gemm) -> Result<Plan> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        let mut desc = std::ptr::null_mut();
        // SAFETY: out-parameters; every created object is owned by the returned Plan.
        unsafe {
            ok(
                sys::cublasLtMatmulDescCreate(
                    &mut desc,
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    sys::cudaDataType::CUDA_R_32F,
                ),
                "desc create",
            )?;
        }
        let mut plan =
            Plan { desc, layouts: [std::ptr::null_mut(); 3], algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] } };
        // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 (an int32 attribute).
        let op = |t: bool| t as i32;
        attr(desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &op(g.trans_a))?;
        attr(desc, A::CUBLASLT_MATMUL_DESC_TRANSB, &op(g.trans_b))?;
        let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
        let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
        let shapes =
            [(g.a, ar, ac, g.lda, g.stride_a), (g.b, br, bc, g.ldb, g.stride_b), (g.d, g.m, g.n, g.ldd, g.stride_d)];
        for (i, (t, r, c, ld, stride)) in shapes.into_iter().enumerate() {
            // SAFETY: out-parameter; attributes point to values of the expected types.
            unsafe {
                ok(sys::cublasLtMatrixLayoutCreate(&mut plan.layouts[i], t.raw(), r, c, ld), "layout create")?;
                if g.batch > 1 {
                    use sys::cublasLtMatrixLayoutAttribute_t as L;
                    let l = plan.layouts[i];
                    let set = |a, p: *const c_void, n| ok(sys::cublasLtMatrixLayoutSetAttribute(l, a, p, n), "layout");
                    set(L::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &g.batch as *const i32 as _, 4)?;
                    set(L::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride as *const i64 as _, 8)?;
                }
            }
        }
        if g.a == Ty::E4m3 {
            // Placeholders: the real scale pointers are set per call.
            let null: u64 = 0;
            attr(desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &null)?;
            attr(desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &null)?;
        }
        let mut pref = std::ptr::null_mut();
        let mut results = [sys::cublasLtMatmulHeuristicResult_t {
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
            workspaceSize: 0,
            state: sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS,
            wavesCount: 0.0,
            reserved: [0; 4],
        }; 4];
        let mut found = 0;
        // SAFETY: out-parameters sized as declared; pref destroyed below.
        unsafe {
            ok(sys::cublasLtMatmulPreferenceCreate(&mut pref), "preference")?;
            let ws = WORKSPACE_BYTES as u64;
            let r = sys::cublasLtMatmulPreferenceSetAttribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const u64 as *const c_void,
                8,
            );
            let l = plan.layouts;
            let h = sys::cublasLtMatmulAlgoGetHeuristic(
                handle,
                desc,
                l[0],
                l[1],
                l[2],
                l[2],
                pref,
                results.len() as i32,
                results.as_mut_ptr(),
                &mut found,
            );
            sys::cublasLtMatmulPreferenceDestroy(pref);
            ok(r, "preference attribute")?;
            ok(h, &format!("heuristic for {g:?}"))?;
        }
        if found == 0 {
            return Err(Error::Unsupported { op: "matmul", what: format!("no cuBLASLt algorithm for {g:?}") });
        }
        plan.algo = results[0].algo;
        Ok(plan)
    }

    /// D = alpha * op(A) op(B) on the backend's stream. `scales` are the device
    /// f32 scale pointers of A and B when they are FP8.
    pub fn run(&self, g: &Gemm, a: u64, b: u64, d: u64, alpha: f32, scales: Option<(u64, u64)>) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        let handle = inner.handle;
        if !inner.plans.contains_key(g) {
            let p = Self::plan(handle, g)?;
            inner.plans.insert(*g, p);
        }
        let plan = &inner.plans[g];
        if let Some((sa, sb)) = scales {
            use sys::cublasLtMatmulDescAttributes_t as A;
            attr(plan.desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa)?;
            attr(plan.desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb)?;
        }
        let beta = 0f32;
        let (ws, _sync) = self.workspace.device_ptr(&self.stream);
        self.stream.context().bind_to_thread().map_err(|e| cuda_err("bind", e))?;
        let l = plan.layouts;
        // SAFETY: pointers are live device buffers of the sizes the plan describes (checked by callers);
        // C aliases D and is not read since beta is 0.
        let r = unsafe {
            sys::cublasLtMatmul(
                handle,
                plan.desc,
                &alpha as *const f32 as *const c_void,
                a as *const c_void,
                l[0],
                b as *const c_void,
                l[1],
                &beta as *const f32 as *const c_void,
                d as *const c_void,
                l[2],
                d as *mut c_void,
                l[2],
                &plan.algo,
                ws as *mut c_void,
                WORKSPACE_BYTES,
                self.stream.cu_stream() as sys::cudaStream_t,
            )
        };
        ok(r, "matmul")
    }
}
