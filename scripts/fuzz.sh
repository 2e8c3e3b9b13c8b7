#!/usr/bin/env bash
# Seeded mutation fuzzing of every loader and of CLI parsing, many more inputs than CI runs.
#   scripts/fuzz.sh [INPUTS_PER_TARGET] [TARGET ...]
# INPUTS_PER_TARGET defaults to 1,000,000; targets default to all of them:
#   safetensors config vocab corpus shard trainer-state manifest cli
# Targets run as parallel processes ($BERT_FUZZ_JOBS, default: the core count). Other knobs:
# BERT_FUZZ_SEED (default 1), BERT_FUZZ_SECONDS (time limit per target), BERT_FUZZ_OUT (default
# artifacts/fuzz: one log per target, report.txt, and findings/ with every failing input).
# Replay input i of a target: BERT_FUZZ_FIRST=i scripts/fuzz.sh 1 TARGET
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
inputs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors config vocab corpus shard trainer-state manifest cli)
out="${BERT_FUZZ_OUT:-$root/artifacts/fuzz}"
jobs="${BERT_FUZZ_JOBS:-$(nproc)}"
mkdir -p "$out"
: > "$out/report.txt"
dotnet build tests/Bert.Tests -c Release -nologo -v q
tests="$root/tests/Bert.Tests/bin/Release/net10.0/Bert.Tests.dll"

status=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  echo "fuzz: $t, $inputs inputs"
  BERT_FUZZ_ITERATIONS="$inputs" BERT_FUZZ_REPORT="$out/report.txt" BERT_FUZZ_FINDINGS="$out/findings" \
    dotnet "$tests" --filter "FullyQualifiedName~Reliability.Fuzz.FuzzTests&FullyQualifiedName~$t" --output Detailed \
    > "$out/$t.log" 2>&1 &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
cat "$out/report.txt"
[ "$status" -eq 0 ] && echo "fuzz: no crashes, hangs or allocation violations" || echo "fuzz: findings above; failing inputs in $out/findings"
exit "$status"
