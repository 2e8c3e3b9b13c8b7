#!/usr/bin/env bash
# nccl-ranks.sh N COMMAND...: starts N ranks of COMMAND on this machine as torchrun does (RANK, WORLD_SIZE, LOCAL_RANK,
# LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT), each rank's output prefixed with "[rank R]". With
# HOSTID_PER_RANK=1 rank R also gets NCCL_HOSTID=bert-rank-R, so that NCCL takes the ranks for separate hosts (issue 15's
# experiment of two ranks on one GPU). Exits with the first non-zero exit status of a rank (0 when all succeed); a
# TERM (the stage's time limit) ends every rank.
set -uo pipefail
n=$1; shift
port=${MASTER_PORT:-$((29500 + RANDOM % 2000))}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT TERM INT
for ((r = 0; r < n; r++)); do
  (
    export RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
    [[ "${HOSTID_PER_RANK:-0}" == 1 ]] && export NCCL_HOSTID="bert-rank-$r"
    exec "$@"
  ) > >(sed -u "s/^/[rank $r] /") 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
  wait "$p"
  code=$?
  [[ $rc != 0 ]] || rc=$code
done
exit "$rc"
