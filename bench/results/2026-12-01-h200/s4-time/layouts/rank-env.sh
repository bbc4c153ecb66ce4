#!/usr/bin/env bash
# One NCCL "host" per rank, all on the loopback interface.
export NCCL_HOSTID="h${OMPI_COMM_WORLD_RANK:?run under mpirun}" NCCL_SOCKET_IFNAME=lo
exec "$@"
