#!/usr/bin/env bash
# Preflight of one GB200 NVL72 compute tray, run once per node before the job (the NVL72 sbatch
# scripts do: srun --ntasks-per-node=1 launch/nvl72-preflight.sh). Multi-node NVLink needs
#   - an IMEX channel: /dev/nvidia-caps-imex-channels/channelN, created by the nvidia-imex
#     service (without it CUDA cannot import memory from another tray and NCCL falls back or hangs);
#   - the GPUs' NVLink fabric registered in a clique (`nvidia-smi -q`: Fabric State Completed,
#     a ClusterUUID and CliqueId that every tray of the job shares).
# Prints one line "HOST CLUSTER_UUID CLIQUE_ID" (the caller checks that all lines agree), or
# says what is missing on stderr and exits 1.
set -euo pipefail

host="$(hostname)"
fail() {
    echo "preflight: ${host}: $*" >&2
    exit 1
}

# RWM_IMEX_CHANNELS_DIR: another folder to look in (tests/launch.rs fakes a tray with it).
imex_dir="${RWM_IMEX_CHANNELS_DIR:-/dev/nvidia-caps-imex-channels}"
shopt -s nullglob
channels=("$imex_dir"/channel*)
if [ "${#channels[@]}" -eq 0 ]; then
    fail "no IMEX channel in ${imex_dir} (is the nvidia-imex service running, with a channel created?)"
fi
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found"

# `nvidia-smi -q` lists, per GPU, a Fabric section: State, Status, CliqueId, ClusterUUID.
fabric="$(nvidia-smi -q | grep -i -E 'cliqueid|clusteruuid' || true)"
field() {
    printf '%s\n' "$fabric" | grep -i "$1" | sed 's/.*:[[:space:]]*//' | sort -u
}
cliques="$(field 'cliqueid')"
uuids="$(field 'clusteruuid')"
if [ -z "$cliques" ] || [ -z "$uuids" ]; then
    fail "nvidia-smi -q shows no NVLink clique: the GPUs are not in a multi-node NVLink fabric"
fi
if [ "$(printf '%s\n' "$cliques" | wc -l)" -ne 1 ] || [ "$(printf '%s\n' "$uuids" | wc -l)" -ne 1 ]; then
    fail "the GPUs of this tray disagree on their clique: $(echo "$uuids" "$cliques" | tr '\n' ' ')"
fi
case "$uuids" in
    *N/A*|00000000-0000-0000-0000-000000000000) fail "NVLink fabric not registered (ClusterUUID ${uuids})" ;;
esac
echo "${host} ${uuids} ${cliques}"
