#!/usr/bin/env bash
# Session 10, call 28 (H200): compute-sanitizer memcheck on the grouped GEMM tests (bf16 and FP8, default
# kernels through the backend) after the mbar_wait change; racecheck on the FP8 one as time allows.
cd /work/main || exit 2
LIMIT=130 . bench/device_go.sh
st memcheck
timeout 70 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 grouped_matmul > $G/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY|test result' $G/memcheck.log | tr '\n' ' ')"
st racecheck
timeout "$(left)" compute-sanitizer --tool racecheck $L/backend_ops --test-threads 1 grouped_matmul_fp8 > $G/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|test result' $G/racecheck.log | tr '\n' ' ')"
st done
tar czf $OUT/logs.tgz -C $OUT logs && rm -rf $G
# Then, on the same machine (as run, one line): memcheck on every FP8 and bf16 grouped instantiation:
#   timeout 110 compute-sanitizer --tool memcheck $L/backend_ops --test-threads 1 cuda_fp8_kernel_variants cuda_kernel_variants_grouped > $G/memcheck2.log
