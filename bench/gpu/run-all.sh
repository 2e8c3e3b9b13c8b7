#!/usr/bin/env bash
# One call on the GPU machine runs the GPU checks of the open issues and leaves raw logs in $OUT
# (or ./gpu-out): the GPU tests, compute-sanitizer over them, bert check-kernels (fp32 and bf16),
# a short bert pretrain --device cuda, bert bench for BERT-base/large at S=128/512 beside the
# transformers peer, and the HF parity script. Every stage has its own time limit, so one hang
# cannot eat the call; every log is also packed into $OUT/logs.tar.gz (the device tool returns
# at most 8 files).
#
# Prepare here first:  RuntimeIdentifier=linux-x64 ../shared/device/pack && git rev-parse HEAD > .device/commit
# Run there:           bash .device/run bash bench/gpu/run-all.sh
# Choose stages:       STAGES="tests kernels pretrain bench hf ops parity tokenizer sanitizer ptxas flash lt graphs graphs-pretrain nccl"
#                      (default: all but ops, sanitizer, ptxas, flash, lt, graphs, graphs-pretrain and nccl); "perf" is another name for "bench". ptxas reports
#                      registers, spills and shared memory per kernel of the PTX that NVRTC wrote to the kernel cache (the kernels
#                      stage fills it).
#                      flash (issue 12) checks the fused attention: its GPU tests, ptxas over its kernels, compute-sanitizer
#                      memcheck and racecheck over them, and bert bench with --fused-attention off and on.
#                      lt (issue 12) checks the cuBLASLt backward (BGRADB) and the padded MLM logits: their GPU tests, then
#                      bert bench BERT-base S=128 plain, with BERT_CUBLASLT=1, with BERT_LOGITS_PADDING=64 and with both.
#                      graphs (issue 12) runs the CUDA-graph GPU tests and bert bench BERT-base S=128 with --cuda-graphs off
#                      and on (about 4 minutes); graphs-pretrain a 200-step bert pretrain (tiny, dropout on, both phases) with
#                      graphs off and on, compared step by step (about 2 minutes).
#                      nccl (issue 15) checks data parallelism over NCCL on the one GPU: the library and its version, the
#                      NCCL tests, a 1-rank pretrain with and without BERT_FORCE_NCCL=1 (bitwise), two ranks on the one
#                      GPU (refused; then as two NCCL hosts), 2 ranks against 1 rank accumulating, dist-check bandwidth.
# Bench options:       BENCH_CONFIGS="preset:seq:predictions:batch ...", BENCH_ARGS="--fused-attention on --cuda-graphs on"
#                      (added to every bert bench of the bench stage); BERT_CUBLASLT=1 / BERT_LOGITS_PADDING=64 pass through.
# Check the plan:      DRY_RUN=1 STAGES="flash" bash bench/gpu/run-all.sh   (logs every command, runs none of them)
set -uo pipefail
# Logs go to a work folder; $OUT receives summary.log and logs.tar.gz (the device tool returns at most 8 files).
final=${OUT:-gpu-out}
out=$(mktemp -d /tmp/gpu-logs.XXXX)
mkdir -p "$final"
app=${APP:-.device/app}
stages=" ${STAGES:-tests kernels pretrain bench hf parity tokenizer} "
stages=${stages/ perf / bench }
# The PTX cache lives with the logs, so the ptxas stage reads exactly what this run compiled.
export BERT_KERNEL_CACHE=$out/ptx-cache
commit=$(cat .device/commit 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
# .device/run puts every directory holding a libcuda on the path, CUDA's forward-compatibility copy
# (cuda/compat) included; on a newer driver that copy fails cuInit with error 803, for torch too.
strip_compat() { echo "${1:-}" | tr ':' '\n' | grep -vE '/(compat|stubs)/?$' | paste -sd: -; }
export LD_LIBRARY_PATH=$(strip_compat "${LD_LIBRARY_PATH:-}") BERT_CUDA_LIBRARY_PATH=$(strip_compat "${BERT_CUDA_LIBRARY_PATH:-}")
log() { echo "== $(date -u +%FT%TZ) commit $commit: $*" | tee -a "$out/summary.log"; }
want() { [[ "$stages" == *" $1 "* ]]; }
# run LIMIT LOGFILE COMMAND...: runs with a time limit, appends the command line and its output to the log.
# With DRY_RUN=1 it only logs the command line (to the log and to summary.log).
run() {
  local limit=$1 file=$2; shift 2
  echo "\$ $*" >> "$out/$file"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "   dry run (limit ${limit}s, $file): $*" | tee -a "$out/summary.log"
    return 0
  fi
  timeout --kill-after=10 "$limit" "$@" >> "$out/$file" 2>&1
  local rc=$?
  echo "[exit $rc]" >> "$out/$file"
  echo "   exit $rc ($file)" | tee -a "$out/summary.log"
  return $rc
}

log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
if want tests; then
  log "GPU tests"
  run "${TESTS_LIMIT:-300}" gpu-tests.log dotnet "$app/Bert.Tests.dll" --filter "TestCategory=Gpu"
  grep -E "^(failed|Test run summary|  total|  failed|  succeeded|  skipped)|failed .*\(" "$out/gpu-tests.log" | head -n 60 | tee -a "$out/summary.log"
fi
# The ptxas binary and the device's sm_XY (empty when either is missing).
find_ptxas() { command -v ptxas || ls /usr/local/cuda*/bin/ptxas 2>/dev/null | head -n 1; }
device_sm() { nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. '; }
if want flash; then
  # Issue 12's fused (flash-style) attention: correctness on the GPU first, then memory and speed in the model.
  log "flash: FlashAttentionTests and FusedAttentionModelTests on the GPU"
  run "${FLASH_TESTS_LIMIT:-240}" flash-tests.log dotnet "$app/Bert.Tests.dll" \
    --filter "TestCategory=Gpu&(FullyQualifiedName~FlashAttentionTests|FullyQualifiedName~FusedAttentionModelTests)"
  grep -E "^(failed|Test run summary|  total|  failed|  succeeded|  skipped)|failed .*\(|TFLOP/s" "$out/flash-tests.log" | head -n 40 | tee -a "$out/summary.log"
  log "flash: ptxas -v over the flash_attention kernels"
  ptxas=$(find_ptxas); sm=$(device_sm)
  if [[ -z "$ptxas" || -z "$sm" ]]; then
    log "flash ptxas skipped: ptxas='${ptxas}' compute capability='${sm}'"
  else
    for ptx in $(grep -l "flash_attention" "$BERT_KERNEL_CACHE"/*.ptx 2>/dev/null); do
      run 120 flash-ptxas.log "$ptxas" -arch="sm_$sm" -v "$ptx" -o /dev/null
    done
    grep -A2 "Compiling entry function 'flash_attention" "$out/flash-ptxas.log" | head -n 20 | tee -a "$out/summary.log"
  fi
  for tool in memcheck racecheck; do
    log "flash: compute-sanitizer $tool over ForwardAndBackwardMatchTheCpuBackendOnTheGpu"
    run "${FLASH_SANITIZER_LIMIT:-240}" "flash-$tool.log" compute-sanitizer --tool "$tool" --print-limit 20 --target-processes all \
      dotnet "$app/Bert.Tests.dll" --filter "FullyQualifiedName~FlashAttentionTests.ForwardAndBackwardMatchTheCpuBackendOnTheGpu"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|total:|failed:|succeeded:" "$out/flash-$tool.log" | tee -a "$out/summary.log"
  done
  for cfg in ${FLASH_BENCH_CONFIGS:-"base:128:20:256" "base:512:80:32"}; do
    IFS=: read -r preset seq pred batch <<< "$cfg"
    for fused in off on; do
      log "flash: bert bench $preset S=$seq B=$batch bf16 --fused-attention $fused"
      run 150 flash-bench.log dotnet "$app/bert.dll" bench --device cuda --precision bf16 --preset "$preset" --seq "$seq" \
        --predictions "$pred" --batch "$batch" --steps 10 --breakdown --fused-attention "$fused" \
        --json "$out/flash-bench-$preset-$seq-$fused.json"
      tail -n 45 "$out/flash-bench.log" | grep -v "^\$ " | grep -E "attention|median|sequences/s|MFU|memory|Attention" | tee -a "$out/summary.log"
    done
  done
fi
if want lt; then
  # Issue 12's cuBLASLt backward (BGRADB bias gradient) and padded MLM logits, both off by default until measured:
  # correctness on the GPU, then bert bench with each option against the plain run (about 4 minutes in all).
  log "lt: LtBackwardTests, PaddedLogitsTests and the cuBLASLt epilogue tests on the GPU"
  run "${LT_TESTS_LIMIT:-240}" lt-tests.log dotnet "$app/Bert.Tests.dll" \
    --filter "TestCategory=Gpu&(FullyQualifiedName~LtBackwardTests|FullyQualifiedName~PaddedLogitsTests|FullyQualifiedName~CublasLtEpiloguesMatchTheReference)"
  grep -E "^(failed|Test run summary|  total|  failed|  succeeded|  skipped)|failed .*\(|padded logits|Lt backward|warning" "$out/lt-tests.log" | head -n 40 | tee -a "$out/summary.log"
  IFS=: read -r preset seq pred batch <<< "${LT_BENCH_CONFIG:-base:128:20:256}"
  for mode in ${LT_MODES:-plain cublaslt padding both}; do
    case $mode in
      plain) vars=(BERT_CUBLASLT=0 BERT_LOGITS_PADDING=0) ;;
      cublaslt) vars=(BERT_CUBLASLT=1 BERT_LOGITS_PADDING=0) ;;
      padding) vars=(BERT_CUBLASLT=0 BERT_LOGITS_PADDING=64) ;;
      both) vars=(BERT_CUBLASLT=1 BERT_LOGITS_PADDING=64) ;;
      *) log "lt: unknown mode $mode (plain, cublaslt, padding, both)"; continue ;;
    esac
    log "lt: bert bench $preset S=$seq B=$batch bf16, $mode (${vars[*]})"
    run 150 lt-bench.log env "${vars[@]}" dotnet "$app/bert.dll" bench --device cuda --precision bf16 --preset "$preset" --seq "$seq" \
      --predictions "$pred" --batch "$batch" --steps 10 --breakdown --json "$out/lt-bench-$preset-$seq-$mode.json"
    tail -n 45 "$out/lt-bench.log" | grep -v "^\$ " | grep -E "gemm options|median|sequences/s|MFU|memory|Linear|Softmax|warning" | tee -a "$out/summary.log"
  done
fi
if want graphs; then
  # Issue 12 item 5: one CUDA graph per training step. Replay vs eager on the GPU (bit-identical weights, moments and
  # metrics over three steps, fp32 and bf16), then the step time of BERT-base S=128 with graphs off and on.
  log "graphs: CudaGraphTests on the GPU"
  run "${GRAPHS_TESTS_LIMIT:-180}" graphs-tests.log dotnet "$app/Bert.Tests.dll" \
    --filter "TestCategory=Gpu&FullyQualifiedName~CudaGraphTests"
  grep -E "^(failed|Test run summary|  total|  failed|  succeeded|  skipped)|failed .*\(|graph of" "$out/graphs-tests.log" | head -n 30 | tee -a "$out/summary.log"
  for cfg in ${GRAPHS_BENCH_CONFIGS:-"base:128:20:256"}; do
    IFS=: read -r preset seq pred batch <<< "$cfg"
    for graphs in off on; do
      log "graphs: bert bench $preset S=$seq B=$batch bf16 --cuda-graphs $graphs"
      run 150 graphs-bench.log dotnet "$app/bert.dll" bench --device cuda --precision bf16 --preset "$preset" --seq "$seq" \
        --predictions "$pred" --batch "$batch" --steps 20 --cuda-graphs "$graphs" \
        --json "$out/graphs-bench-$preset-$seq-$graphs.json"
      tail -n 25 "$out/graphs-bench.log" | grep -v "^\$ " | grep -E "cuda graph|median|sequences/s|MFU|memory" | tee -a "$out/summary.log"
    done
  done
fi
if want graphs-pretrain; then
  # Pretraining with graphs (one per micro-batch shape and one per update): the same run with --cuda-graphs off and on
  # (BERT-Tiny with dropout, both phases, bf16) must write bit-identical losses, accuracies and gradient norms.
  for graphs in off on; do
    log "graphs: bert pretrain --preset tiny --cuda-graphs $graphs"
    rm -rf "/tmp/pt-graphs-$graphs"
    run 150 graphs-pretrain.log dotnet "$app/bert.dll" pretrain --device cuda --precision bf16 --preset tiny \
      --steps "${GRAPHS_PRETRAIN_STEPS:-200}" --checkpoint-every 0 --eval-sequences 256 --tensorboard false \
      --cuda-graphs "$graphs" --out "/tmp/pt-graphs-$graphs" --data-root data
    grep -E "cuda graphs|held-out" "$out/graphs-pretrain.log" | tail -n 3 | tee -a "$out/summary.log"
    cp "/tmp/pt-graphs-$graphs/metrics.jsonl" "$out/graphs-pretrain-$graphs.jsonl" 2>/dev/null
  done
  [[ "${DRY_RUN:-0}" == 1 ]] || python3 - "$out/graphs-pretrain-off.jsonl" "$out/graphs-pretrain-on.jsonl" <<'PY' 2>&1 | tee -a "$out/summary.log"
import json, sys
rows = [[json.loads(l) for l in open(p)] for p in sys.argv[1:]]
keys = [k for k in rows[0][0] if k not in ("seconds", "seq_per_s", "time", "wall_time", "elapsed")
        and isinstance(rows[0][0][k], (int, float))]
diff = [(i, k) for i, (a, b) in enumerate(zip(*rows)) for k in keys if a.get(k) != b.get(k)]
print(f"graphs pretrain: {len(rows[0])} vs {len(rows[1])} steps compared on {keys}: "
      + ("bit-identical" if not diff and len(rows[0]) == len(rows[1]) else f"DIFFER at {diff[:5]}"))
PY
fi
if want kernels; then
  log "check-kernels"
  run 120 check-kernels.log dotnet "$app/bert.dll" check-kernels
  run 120 check-kernels.log dotnet "$app/bert.dll" check-kernels --precision bf16
  tail -n 50 "$out/check-kernels.log"
fi
if want pretrain; then
  log "pretrain --device cuda (short)"
  for precision in ${PRETRAIN_PRECISIONS:-bf16 f32}; do
    run 240 pretrain-cuda.log dotnet "$app/bert.dll" pretrain --device cuda --precision "$precision" --steps 200 \
      --out "/tmp/pt-cuda-$precision" --data-root data
  done
  tail -n 20 "$out/pretrain-cuda.log"
fi
if want bench; then
  for cfg in ${BENCH_CONFIGS:-"base:128:20:256" "base:512:80:32" "large:128:20:128" "large:512:80:32"}; do
    IFS=: read -r preset seq pred batch <<< "$cfg"
    for precision in ${BENCH_PRECISIONS:-bf16}; do
      log "bert bench $preset S=$seq B=$batch $precision"
      run 150 bench.log dotnet "$app/bert.dll" bench --device cuda --precision "$precision" --preset "$preset" --seq "$seq" \
        --predictions "$pred" --batch "$batch" --steps 10 --breakdown ${BENCH_ARGS:-} --json "$out/bench-$preset-$seq-$precision.json"
      tail -n 40 "$out/bench.log" | grep -E "median|sequences/s|MFU|memory|Linear|Attention|LayerNorm|Softmax|Activation"
    done
    if want hf; then
      log "transformers peer $preset S=$seq B=$batch"
      # Eager and compiled in separate runs with their own limits: compiling BERT-large can take minutes.
      for mode in eager compile; do
        PYTHONUNBUFFERED=1 run "${HF_LIMIT:-150}" hf-peer.log python3 bench/reference/hf_gpu_step.py --preset "$preset" --seq "$seq" \
          --predictions "$pred" --batch "$batch" --modes "$mode"
      done
      tail -n 3 "$out/hf-peer.log"
    fi
  done
fi
if want ops; then
  log "BenchmarkDotNet per-op GPU benchmarks (TFLOP/s, GB/s; markdown and JSON)"
  run 400 gpu-ops.log dotnet "$app/Bert.Bench.dll" --filter '*GpuOpBenchmarks*' --artifacts "$out/bdn"
  cp "$out"/bdn/results/*GpuOpBenchmarks-report-github.md "$out/gpu-ops.md" 2>/dev/null
  cp "$out"/bdn/results/*GpuOpBenchmarks-report-full.json "$out/gpu-ops.json" 2>/dev/null
  tail -n 30 "$out/gpu-ops.md" 2>/dev/null
fi
if want parity; then
  log "HF parity (transformers loads our export)"
  PYTHONUNBUFFERED=1 run 180 hf-parity.log python3 bench/reference/parity/hf_parity.py --model bench/results/parity/odd/model \
    --inputs bench/results/parity/odd/inputs.json --expected bench/results/parity/odd/bert.json --device cuda \
    --report "$out/hf-parity.json"
  tail -n 20 "$out/hf-parity.log"
fi
if want tokenizer; then
  log "transformers' AutoTokenizer + from_pretrained on a bert export (ids and logits)"
  PYTHONUNBUFFERED=1 run 180 hf-tokenizer.log python3 bench/reference/parity/hf_tokenizer_check.py --dump bench/results/parity/tokenizer \
    --device cuda --report "$out/hf-tokenizer.json"
  tail -n 20 "$out/hf-tokenizer.log"
fi
if want sanitizer; then
  # Left out: the training tests (minutes under memcheck; their ops are the ones tested here) and the test
  # that asks for more memory than the GPU has on purpose (memcheck reports that cuMemAlloc's
  # CUDA_ERROR_OUT_OF_MEMORY as an API error, which is the behaviour under test).
  log "compute-sanitizer memcheck over the GPU tests"
  run "${SANITIZER_LIMIT:-400}" sanitizer.log compute-sanitizer --tool memcheck --print-limit 20 --target-processes all \
    dotnet "$app/Bert.Tests.dll" --filter "TestCategory=Gpu&FullyQualifiedName!~GpuTrainingTests&FullyQualifiedName!~OutOfMemoryIsAClearException"
  grep -E "ERROR SUMMARY|total:|failed:|succeeded:" "$out/sanitizer.log" | tee -a "$out/summary.log"
fi
if want ptxas; then
  log "ptxas -v over the NVRTC PTX (registers, spills, shared memory)"
  ls "$BERT_KERNEL_CACHE"/*.ptx > /dev/null 2>&1 || run 120 check-kernels.log dotnet "$app/bert.dll" check-kernels --precision bf16
  ptxas=$(find_ptxas); sm=$(device_sm)
  if [[ -z "$ptxas" || -z "$sm" ]]; then
    log "ptxas stage skipped: ptxas='${ptxas}' compute capability='${sm}'"
  else
    for ptx in "$BERT_KERNEL_CACHE"/*.ptx; do
      run 120 ptxas.log "$ptxas" -arch="sm_$sm" -v "$ptx" -o /dev/null
    done
    # Kernels that spill: the "Function properties for NAME" line and the spill line under it.
    grep -B1 -E "[1-9][0-9]* bytes spill (stores|loads)" "$out/ptxas.log" | head -n 40 | tee -a "$out/summary.log"
    grep -c "Compiling entry" "$out/ptxas.log" | sed 's/^/   kernels compiled by ptxas: /' | tee -a "$out/summary.log"
  fi
fi
if want nccl; then
  # Issue 15: data parallelism over NCCL on the one GPU. libnccl.so.2 comes from torch's nvidia-nccl wheel (NCCL_DIR overrides).
  if [[ -z "${NCCL_DIR:-}" ]]; then
    NCCL_DIR=$(python3 -c 'import os, nvidia.nccl as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)
    if [[ ! -f "$NCCL_DIR/libnccl.so.2" ]]; then
      found=$(find / -xdev -name libnccl.so.2 -not -path '/proc/*' 2>/dev/null | head -n 1)
      NCCL_DIR=${found:+$(dirname "$found")}
    fi
  fi
  export BERT_CUDA_LIBRARY_PATH="${BERT_CUDA_LIBRARY_PATH:+$BERT_CUDA_LIBRARY_PATH:}${NCCL_DIR:-}" NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  log "nccl: libnccl.so.2 in '${NCCL_DIR:-}' ($(ls "${NCCL_DIR:-/nonexistent}"/libnccl.so* 2>/dev/null | tr '\n' ' '));" \
      "torch's NCCL $(python3 -c 'import torch; print(".".join(map(str, torch.cuda.nccl.version())))' 2>&1 | tail -n 1)"
  log "nccl: NcclBindingTests and the [Gpu] NcclGpuTests"
  run "${NCCL_TESTS_LIMIT:-300}" nccl-tests.log dotnet "$app/Bert.Tests.dll" --filter "FullyQualifiedName~NcclGpuTests|FullyQualifiedName~NcclBindingTests"
  grep -E "NCCL 2\.|^(failed|skipped|Test run summary|  total|  failed|  succeeded|  skipped)|failed .*\(" "$out/nccl-tests.log" | head -n 30 | tee -a "$out/summary.log"
  # A small job: tiny model, global batch 8 in micro-batches of 4 (one rank accumulates 2; two ranks take 1 each).
  nccl_pt=(pretrain --device cuda --preset tiny --steps "${NCCL_STEPS:-30}" --batch 8 --micro-batch 4 --batch-long 8 --micro-batch-long 4
           --checkpoint-every 0 --eval-sequences 0 --tensorboard false --seed 9 --data-root data --dist-timeout 120)
  for precision in f32 bf16; do
    for force in 0 1; do
      rm -rf "/tmp/nccl-pt-$precision-$force"
      log "nccl: 1-rank pretrain $precision with BERT_FORCE_NCCL=$force"
      run 300 nccl-pretrain.log env BERT_FORCE_NCCL=$force dotnet "$app/bert.dll" "${nccl_pt[@]}" --precision "$precision" --out "/tmp/nccl-pt-$precision-$force"
    done
    log "nccl: weights and moments, 1 rank without NCCL vs over NCCL ($precision; expected: bitwise identical)"
    run 120 nccl-compare.log python3 bench/gpu/compare_checkpoints.py "/tmp/nccl-pt-$precision-0" "/tmp/nccl-pt-$precision-1"
    tail -n 3 "$out/nccl-compare.log" | tee -a "$out/summary.log"
  done
  log "nccl: two ranks on the one GPU without an override (expected: refused, naming the GPU)"
  run 120 nccl-two-ranks.log bash bench/gpu/nccl-ranks.sh 2 dotnet "$app/bert.dll" dist-check --device cuda --max-bytes 1048576 --dist-timeout 60
  grep -E "\[rank [01]\] bert: error" "$out/nccl-two-ranks.log" | tail -n 2 | tee -a "$out/summary.log"
  # NCCL up to 2.29 refuses two ranks on one GPU ("Duplicate GPU detected"); per-rank NCCL_HOSTIDs may make them two
  # hosts (no shared memory, no P2P: the network transport); 2.30+ has NCCL_MULTI_RANK_GPU_ENABLE.
  shared=""
  for variant in "HOSTID_PER_RANK=1 NCCL_SHM_DISABLE=1 NCCL_P2P_DISABLE=1" "NCCL_MULTI_RANK_GPU_ENABLE=1"; do
    log "nccl: two ranks on the one GPU with $variant BERT_ALLOW_SHARED_GPU=1: dist-check"
    # shellcheck disable=SC2086
    if run 240 nccl-two-ranks.log env $variant BERT_ALLOW_SHARED_GPU=1 NCCL_DEBUG=WARN bash bench/gpu/nccl-ranks.sh 2 \
         dotnet "$app/bert.dll" dist-check --device cuda --max-bytes "${NCCL_MAX_BYTES:-268435456}" --iterations 5 --dist-timeout 120; then
      shared=$variant
      break
    fi
    grep -E "NCCL WARN|bert: error|rank [01] of 2" "$out/nccl-two-ranks.log" | tail -n 6 | tee -a "$out/summary.log"
  done
  grep -E "^\[rank 0\] (#|  *[0-9])" "$out/nccl-two-ranks.log" | tail -n 12 | tee -a "$out/summary.log"
  if [[ -n "$shared" ]]; then
    log "nccl: 2-rank pretrain f32 ($shared) against 1 rank accumulating (expected: within 2e-5, the CPU tests' tolerance)"
    rm -rf /tmp/nccl-pt-f32-2ranks
    # shellcheck disable=SC2086
    run 400 nccl-pretrain.log env $shared BERT_ALLOW_SHARED_GPU=1 NCCL_DEBUG=WARN bash bench/gpu/nccl-ranks.sh 2 \
      dotnet "$app/bert.dll" "${nccl_pt[@]}" --precision f32 --check-replicas 1 --out /tmp/nccl-pt-f32-2ranks
    run 120 nccl-compare.log python3 bench/gpu/compare_checkpoints.py /tmp/nccl-pt-f32-0 /tmp/nccl-pt-f32-2ranks --tolerance 2e-5
    tail -n 3 "$out/nccl-compare.log" | tee -a "$out/summary.log"
  else
    log "nccl: two ranks on one GPU did not run with either variant (see nccl-two-ranks.log); the 2-rank comparison needs two GPUs"
  fi
  log "nccl: dist-check over NCCL, world of one (BERT_FORCE_NCCL=1: checks the sums; bus bandwidth is 0 for one rank)"
  run 120 nccl-dist-check.log env BERT_FORCE_NCCL=1 dotnet "$app/bert.dll" dist-check --device cuda --max-bytes 67108864 --iterations 5
  tail -n 8 "$out/nccl-dist-check.log" | tee -a "$out/summary.log"
fi
# Issue 12's evidence: summary.json / summary.md (one object per configuration and variant, beside the peer).
if [[ "${DRY_RUN:-0}" != 1 ]] && ls "$out"/*bench*.json > /dev/null 2>&1; then
  log "summary.json (bench/gpu/summarize.py)"
  python3 bench/gpu/summarize.py "$out" --commit "$commit" 2>&1 | tee -a "$out/summary.log"
  cp "$out/summary.json" "$out/summary.md" "$final/" 2>/dev/null
fi
log "done"
(cd "$out" && tar -czf "$final/logs.tar.gz" ./*.log ./*.json ./*.md 2>/dev/null)
cp "$out/summary.log" "$final/summary.log"
