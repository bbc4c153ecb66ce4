#!/usr/bin/env bash
# After driver.rs builds every TMA map through one function: the GPU op tests (flash sm90, grouped bf16/FP8).
set -uo pipefail
cd "$(dirname "$0")/../.."
export RWM_KERNEL_CACHE=/tmp/rwm-kernels
.dev/lead/backend_ops --test-threads 1 > $OUT/backend_ops.log 2>&1; echo "backend_ops exit $?"; grep -E "test result|FAILED|panicked" $OUT/backend_ops.log | head
