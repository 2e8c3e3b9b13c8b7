#!/usr/bin/env python3
"""Issue 12's evidence file: summary.json (and summary.md) from one run-all.sh log folder.

Reads every `bert bench --json` file in the folder (bench-PRESET-SEQ-PRECISION.json is the default build;
other *bench*.json files, such as flash-bench-base-128-on.json, are variants named after their file) and the
transformers peer's JSON lines in hf-peer.log (bench/reference/hf_gpu_step.py, eager and torch.compile), and
writes one object per configuration and variant with the fields the issue names:

  model, seq, predictions, batch, variant, bert_seq_per_s, mfu, peak_memory_gib, peer_eager_seq_per_s,
  peer_compile_seq_per_s (null when not run or out of memory), peer_peak_memory_gib, speedup_vs_peer (against
  the faster peer mode that ran), gpu, commit.

Bert's peak_memory_gib is the device memory in use after the timed steps (total - free: every buffer is
allocated before the first step, and the CUDA context is included); the peer's is
torch.cuda.max_memory_allocated (the context is not included).

Usage: python3 bench/gpu/summarize.py LOG_FOLDER [--commit SHA]   (writes LOG_FOLDER/summary.json and summary.md)
"""
import argparse
import json
import os
import re
import sys


def bert_results(folder):
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json") or "bench" not in name or name.startswith("summary"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            try:
                r = json.load(f)
            except json.JSONDecodeError as e:
                sys.exit(f"summarize: {os.path.join(folder, name)}: not JSON ({e})")
        if "sequences_per_s" not in r:
            continue
        stem = name[:-5]
        default = f"bench-{r['preset']}-{r['seq']}-{r.get('precision', 'bf16')}"
        variant = "default" if stem == default else stem
        yield variant, r


def peer_results(folder):
    """(preset, seq, predictions, batch, mode) -> the peer's JSON object, from hf-peer.log's JSON lines."""
    peers = {}
    path = os.path.join(folder, "hf-peer.log")
    if not os.path.exists(path):
        return peers
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                p = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (p.get("preset"), p.get("seq"), p.get("predictions"), p.get("batch"), p.get("mode"))
            peers[key] = p
    return peers


def gpu_name(device):
    m = re.search(r"\((.*)\)", device or "")
    return m.group(1) if m else device


def summarize(folder, commit):
    peers = peer_results(folder)
    rows = []
    for variant, r in bert_results(folder):
        cfg = (r["preset"], r["seq"], r["predictions"], r["batch"])

        def peer(mode):
            p = peers.get(cfg + (mode,))
            return p if p and "sequences_per_s" in p else None

        eager, compiled = peer("eager"), peer("compile")
        best = max((p for p in (eager, compiled) if p), key=lambda p: p["sequences_per_s"], default=None)
        mem = r.get("device_memory_bytes")
        rows.append({
            "model": r["preset"], "seq": r["seq"], "predictions": r["predictions"], "batch": r["batch"],
            "variant": variant, "precision": r.get("precision"), "attention": r.get("attention"),
            "bert_seq_per_s": r["sequences_per_s"], "mfu": r.get("mfu"),
            "peak_memory_gib": mem / 2**30 if mem is not None else None,
            "peer_eager_seq_per_s": eager["sequences_per_s"] if eager else None,
            "peer_compile_seq_per_s": compiled["sequences_per_s"] if compiled else None,
            "peer_peak_memory_gib": best["peak_memory_gib"] if best else None,
            "speedup_vs_peer": r["sequences_per_s"] / best["sequences_per_s"] if best else None,
            "gpu": gpu_name(r.get("device")), "commit": commit,
        })
    order = {"base": 0, "large": 1}
    rows.sort(key=lambda x: (order.get(x["model"], 9), x["model"], x["seq"], x["batch"], x["variant"] != "default", x["variant"]))
    return rows


def markdown(rows):
    def f(x, fmt):
        return "—" if x is None else format(x, fmt)
    lines = ["| model | S | P | batch | variant | Bert seq/s | MFU | Bert GiB | peer eager | peer compile | peer GiB | Bert ÷ peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['seq']} | {r['predictions']} | {r['batch']} | {r['variant']} | {f(r['bert_seq_per_s'], ',.0f')} | "
                     f"{f(r['mfu'] * 100 if r['mfu'] is not None else None, '.1f')}% | {f(r['peak_memory_gib'], '.1f')} | "
                     f"{f(r['peer_eager_seq_per_s'], ',.0f')} | {f(r['peer_compile_seq_per_s'], ',.0f')} | {f(r['peer_peak_memory_gib'], '.1f')} | "
                     f"{f(r['speedup_vs_peer'], '.2f')}× |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--commit", default=None)
    a = ap.parse_args()
    if not os.path.isdir(a.folder):
        sys.exit(f"summarize: {a.folder}: no such folder")
    rows = summarize(a.folder, a.commit)
    if not rows:
        sys.exit(f"summarize: {a.folder}: no bert bench JSON files (bench-PRESET-SEQ-PRECISION.json)")
    for name, text in (("summary.json", json.dumps(rows, indent=2) + "\n"), ("summary.md", markdown(rows))):
        path = os.path.join(a.folder, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    sys.stdout.write(markdown(rows))


if __name__ == "__main__":
    main()
