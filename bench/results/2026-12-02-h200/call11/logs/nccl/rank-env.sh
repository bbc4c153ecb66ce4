#!/usr/bin/env bash
# One NCCL "host" per rank, all on the loopback interface; the ranks' CUDA contexts created in
# rank order (RWM_SERIAL_CONTEXTS: the GPU's time slices then visit the ranks in ring order, and a
# CP ring's step takes one value instead of one of two, BENCHMARKS.md step-time section).
export NCCL_HOSTID="h${OMPI_COMM_WORLD_RANK:?run under mpirun}" NCCL_SOCKET_IFNAME=lo RWM_SERIAL_CONTEXTS=1
exec "$@"
