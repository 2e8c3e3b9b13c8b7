#!/usr/bin/env bash
# Memory and throughput of `bert prepare` at scale: corpora of 200 MB and 2 GB built from the Brown
# training split (bench/data/make-corpus.py, reshuffled documents), each prepared at S=128 with the
# default settings (dupe 5, all cores) under /usr/bin/time -v. The log (command, commit, machine, the
# prepare summary and time's report: peak RSS, wall time) goes to bench/results/cpu/.
# Usage: bash bench/data/prepare-scale.sh [work-dir]   (needs scripts/setup.sh's Brown corpus and vocabulary)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-/tmp/bert-prepare-scale}
log=bench/results/cpu/prepare-scale-$(date -u +%Y-%m-%d).log
bert=(dotnet src/Bert.Cli/bin/Release/net10.0/bert.dll)
mkdir -p "$work" bench/results/cpu
{
  echo "# bert prepare at scale: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
  echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
} > "$log"
for mb in 200 2000; do
  corpus="$work/corpus-$mb"
  [ -d "$corpus" ] || /usr/bin/python3 bench/data/make-corpus.py --mb "$mb" --files 8 --out "$corpus" >> "$log"
  rm -rf "$work/out-$mb"
  echo "## $mb MB: ${bert[*]} prepare --corpus $corpus --vocab data/brown/vocab-8000.txt --seq 128 --out $work/out-$mb" >> "$log"
  /usr/bin/time -v "${bert[@]}" prepare --corpus "$corpus" --vocab data/brown/vocab-8000.txt --seq 128 --out "$work/out-$mb" >> "$log" 2>&1
  du -sh "$work/out-$mb/seq128" >> "$log"
  rm -rf "$work/out-$mb"
done
echo "log: $log"
