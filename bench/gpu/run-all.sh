#!/usr/bin/env bash
# One call on the GPU machine runs every GPU check of the open issues and leaves raw logs in $OUT
# (or ./gpu-out): the GPU tests, compute-sanitizer over them, bert check-kernels (fp32 and bf16),
# a short bert pretrain --device cuda, bert bench for BERT-base/large at S=128/512 beside the
# transformers peer, and the HF parity script. Prepare here first: ../shared/device/pack
# Run there:   bash bench/gpu/run-all.sh    (through .device/run, which sets up .NET and CUDA paths)
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
app=${APP:-.device/app}
commit=$(git rev-parse HEAD 2>/dev/null || cat .device/commit 2>/dev/null || echo unknown)
log() { echo "== $(date -u +%FT%TZ) commit $commit: $*" | tee -a "$out/summary.log"; }

log "GPU tests"
dotnet "$app/Bert.Tests.dll" --filter "TestCategory=Gpu" 2>&1 | tee "$out/gpu-tests.log" | tail -n 8
log "compute-sanitizer memcheck over the GPU tests"
compute-sanitizer --tool memcheck --print-limit 20 dotnet "$app/Bert.Tests.dll" --filter "TestCategory=Gpu" > "$out/sanitizer.log" 2>&1
grep -E "ERROR SUMMARY|total:|failed:" "$out/sanitizer.log" | tee -a "$out/summary.log"
log "check-kernels"
dotnet "$app/bert.dll" check-kernels 2>&1 | tee "$out/check-kernels.log" | tail -n 40
log "pretrain --device cuda (short)"
dotnet "$app/bert.dll" pretrain --device cuda --steps 200 --out /tmp/pt-cuda --data-root /tmp/bert-data 2>&1 | tail -n 12 | tee "$out/pretrain-cuda.log"
for cfg in "base 128 20 256" "base 512 80 32" "large 128 20 256" "large 512 80 32"; do
  set -- $cfg
  log "bert bench $1 S=$2 B=$4"
  dotnet "$app/bert.dll" bench --device cuda --preset "$1" --seq "$2" --predictions "$3" --batch "$4" --steps 10 --breakdown \
    --json "$out/bench-$1-$2.json" 2>&1 | tee -a "$out/bench.log" | tail -n 14
  log "transformers peer $1 S=$2 B=$4"
  python3 bench/reference/hf_gpu_step.py --preset "$1" --seq "$2" --predictions "$3" --batch "$4" 2>&1 | tee -a "$out/hf-peer.log" | tail -n 3
done
log "HF parity (transformers loads our export)"
python3 bench/reference/parity/hf_parity.py --model bench/results/parity/odd/model --inputs bench/results/parity/odd/inputs.json \
  --expected bench/results/parity/odd/bert.json --device cuda --report "$out/hf-parity.json" 2>&1 | tee "$out/hf-parity.log" | tail -n 20
log "done"
