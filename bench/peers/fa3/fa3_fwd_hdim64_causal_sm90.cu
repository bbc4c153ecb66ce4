// One FA3 (hopper/) forward instantiation: bf16, head dim 64, causal, no varlen/paged/split/softcap/packgqa/cluster.
// It is exactly the run_flash_fwd<...> that run_mha_fwd_<90, bfloat16_t, 64, 64, false, false, false, false> (FA3's
// instantiations/flash_fwd_hdim64_bf16_sm90.cu) reaches for params.is_causal with FA3 built with
// FLASHATTENTION_DISABLE_{LOCAL,VARLEN,APPENDKV,CLUSTER}: ClusterM=1 (Enable_cluster is false when causal anyway),
// HasQv=false (only for hdim 64 with hdim_v >= 256), V_colmajor=false (bf16). Instantiating it directly compiles the
// causal kernel only (the run_mha_fwd_ TU would compile the non-causal one too).
#include "flash_fwd_launch_template.h"

void fa3_run_fwd_hdim64_causal_bf16(Flash_fwd_params &params, cudaStream_t stream) {
    run_flash_fwd<90, 64, 64, /*ClusterM=*/1, cutlass::bfloat16_t, cutlass::bfloat16_t,
                  /*Is_causal=*/true, /*Is_local=*/false, /*Has_softcap=*/false, /*Varlen=*/false,
                  /*PagedKVNonTMA=*/false, /*AppendKV=*/false, /*HasQv=*/false, /*PackGQA=*/false,
                  /*Split=*/false, /*V_colmajor=*/false>(params, stream);
}
