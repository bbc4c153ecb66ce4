#!/usr/bin/env bash
# Call 1 (est): memory traces of llama's graph variants and moe balanced EP 2; the new FP8 rows.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export RWM_KERNEL_CACHE=/tmp/rwm-kernels RUST_LOG=warn NCCL_DEBUG=WARN RWM_TIMEOUT_S=120
B=$PWD/.dev/est/rwm-dist; O=$OUT; cd /tmp
C="run --backend cuda --profile bench --iters 1 --warmup 0"
topo=$O/one-gpu-x2.toml
printf 'name = "one-gpu-x2"\nnodes = 2\ngpus_per_node = 1\ngpus = 2\n[gpu]\nmodel = "GPU"\nmemory_gb = 1\nnetwork_gb_per_s = 1\n[[nvlink_domain]]\nname = "node0"\nnodes = [0]\n[[nvlink_domain]]\nname = "node1"\nnodes = [1]\n' > $topo
ep2() { mpirun -np 2 --bind-to none bash -c 'NCCL_HOSTID=h$OMPI_COMM_WORLD_RANK NCCL_SOCKET_IFNAME=lo exec "$@"' rank $B $C --topology $topo "$@" </dev/null; }
t0=$(date +%s)
mkdir -p $O/tr $O/rows
RWM_MEM_TRACE=1 $B $C --target llama --layers 2 --output $O/tr/llama-L2-S8K.jsonl 2> $O/tr/llama-L2-S8K.log
RWM_MEM_TRACE=1 $B $C --target llama --layers 4 --variant optimized --output $O/tr/llama-L4-S8K.jsonl 2> $O/tr/llama-L4-S8K.log
RWM_MEM_TRACE=1 $B $C --target llama --layers 2 --seq-len 2048 --variant optimized --output $O/tr/llama-L2-S2K.jsonl 2> $O/tr/llama-L2-S2K.log
echo "llama traces $(( $(date +%s) - t0 )) s"
RWM_MEM_TRACE=1 ep2 --target moe --variant balanced --output $O/tr/moe-ep2.jsonl 2> $O/tr/moe-ep2.log
RWM_MEM_TRACE=1 $B $C --target moe --variant balanced --output $O/tr/moe-ep1.jsonl 2> $O/tr/moe-ep1.log
echo "moe traces $(( $(date +%s) - t0 )) s"
$B $C --target moe --dtype fp8 --output $O/rows/moe-fp8.jsonl > $O/rows/moe-fp8.log 2>&1
ep2 --target moe --dtype fp8 --output $O/rows/moe-ep2-fp8.jsonl > $O/rows/moe-ep2-fp8.log 2>&1
$B $C --target gpt4 --seq-len 8192 --layers 4 --set gpt4.num_experts=8 --dtype fp8 --output $O/rows/gpt4-fp8-a.jsonl > $O/rows/gpt4-fp8-a.log 2>&1
$B $C --target gpt4 --seq-len 4096 --layers 1 --set gpt4.num_experts=64 --dtype fp8 --output $O/rows/gpt4-fp8-b.jsonl > $O/rows/gpt4-fp8-b.log 2>&1
ep2 --target gpt4 --seq-len 8192 --layers 2 --set gpt4.num_experts=16 --dtype fp8 --output $O/rows/gpt4-ep2-fp8.jsonl > $O/rows/gpt4-ep2-fp8.log 2>&1
echo "rows $(( $(date +%s) - t0 )) s"
cd $O && tar czf tr.tgz tr && tar czf rows.tgz rows && rm -rf tr rows
grep -h "graph allocs\|captured" /dev/null
python3 - <<'PY'
import json,glob,tarfile,io,os
t=tarfile.open(os.environ['OUT']+'/rows.tgz')
for m in t.getmembers():
    if m.name.endswith('.jsonl'):
        for l in t.extractfile(m).read().decode().splitlines():
            r=json.loads(l); print(m.name, r['variant'], r['rank'], r['peak_mem_bytes'], r['est_mem_bytes'], r['est_err'], r['status'])
t=tarfile.open(os.environ['OUT']+'/tr.tgz')
for m in t.getmembers():
    if m.name.endswith('.log'):
        for l in t.extractfile(m).read().decode().splitlines():
            if ' graph allocs' in l or 'captured' in l or ' read ' in l or 'error' in l.lower(): print(m.name, l[:300])
PY
