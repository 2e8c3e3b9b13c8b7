#!/usr/bin/env bash
# Crash test: starts `bert pretrain` on a tiny job, kills it with SIGKILL at N random moments
# (default 100), resumes after each kill and checks that the newest complete checkpoint is loaded,
# that no checkpoint is torn or lost, that a save removes what a killed save left, and that the
# finished run is bit-identical to an uninterrupted one. See docs/reliability.md.
#   scripts/crash-test.sh [KILLS] [SEED]
# The summary line is appended to $BERT_CRASH_REPORT (default artifacts/crash-test.txt).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
kills="${1:-100}"
seed="${2:-1}"
report="${BERT_CRASH_REPORT:-$root/artifacts/crash-test.txt}"
mkdir -p "$(dirname "$report")"
dotnet build tests/Bert.Tests -c Release -nologo -v q
BERT_CRASH_KILLS="$kills" BERT_CRASH_SEED="$seed" BERT_CRASH_REPORT="$report" \
  dotnet run -c Release --no-build --project tests/Bert.Tests -- \
  --filter "FullyQualifiedName~Reliability.CrashTests" --output Detailed
tail -n 1 "$report"
