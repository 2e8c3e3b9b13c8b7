#!/usr/bin/env python3
"""Compares the newest checkpoints of two `bert pretrain` runs tensor by tensor (issue 15's NCCL checks).

    python3 bench/gpu/compare_checkpoints.py RUN_A RUN_B [--tolerance T] [--files model.safetensors optimizer.safetensors]

RUN_A and RUN_B are --out directories (or checkpoint directories). Reads safetensors with the standard library only
(8-byte little-endian header length, JSON header, raw data), so it runs wherever python3 does. Prints, per file, how
many tensors are bitwise equal and the largest absolute difference of F32 tensors, then one verdict line:
"bitwise identical" (exit 0), "within tolerance T" (exit 0 when --tolerance is given), or "differ" (exit 1).
"""
import argparse
import array
import json
import os
import struct
import sys


def newest_checkpoint(path):
    """The checkpoint directory of a run: PATH itself when it holds model.safetensors, else the newest
    checkpoints/step-* under it."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    root = os.path.join(path, "checkpoints")
    steps = sorted(d for d in os.listdir(root) if d.startswith("step-")) if os.path.isdir(root) else []
    if not steps:
        sys.exit(f"{path}: no model.safetensors and no checkpoints/step-* directory")
    return os.path.join(root, steps[-1])


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], data[base + start:base + end])
    return tensors


def max_abs_diff(dtype, a, b):
    if dtype != "F32":
        return None
    x, y = array.array("f"), array.array("f")
    x.frombytes(a)
    y.frombytes(b)
    worst = 0.0
    for u, v in zip(x, y):
        d = abs(u - v)
        if d != d:  # NaN on one side (or both: their bits differ)
            return float("inf")
        if d > worst:
            worst = d
    return worst


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tolerance", type=float, default=None, help="largest absolute difference accepted (default: bitwise)")
    p.add_argument("--files", nargs="+", default=["model.safetensors", "optimizer.safetensors"])
    args = p.parse_args()
    da, db = newest_checkpoint(args.a), newest_checkpoint(args.b)
    print(f"A: {da}\nB: {db}")
    identical, worst = True, 0.0
    for file in args.files:
        fa, fb = os.path.join(da, file), os.path.join(db, file)
        if not (os.path.exists(fa) and os.path.exists(fb)):
            print(f"{file}: missing in {'A' if not os.path.exists(fa) else 'B'}")
            identical, worst = False, float("inf")
            continue
        ta, tb = read_safetensors(fa), read_safetensors(fb)
        if set(ta) != set(tb):
            print(f"{file}: tensor names differ: only in A {sorted(set(ta) - set(tb))[:5]}, only in B {sorted(set(tb) - set(ta))[:5]}")
            identical, worst = False, float("inf")
            continue
        equal, file_worst, worst_name = 0, 0.0, ""
        for name in sorted(ta):
            (dt_a, shape_a, a), (dt_b, shape_b, b) = ta[name], tb[name]
            if (dt_a, shape_a) != (dt_b, shape_b):
                print(f"{file}: {name}: {dt_a}{shape_a} vs {dt_b}{shape_b}")
                identical, worst = False, float("inf")
                continue
            if a == b:
                equal += 1
                continue
            identical = False
            d = max_abs_diff(dt_a, a, b)
            d = float("inf") if d is None else d
            if d > file_worst or not worst_name:
                file_worst, worst_name = d, name
        worst = max(worst, file_worst)
        print(f"{file}: {equal}/{len(ta)} tensors bitwise equal; largest |A-B| {file_worst:.3e}" + (f" ({worst_name})" if worst_name else ""))
    if identical:
        print("verdict: bitwise identical")
        return 0
    if args.tolerance is not None and worst <= args.tolerance:
        print(f"verdict: within tolerance {args.tolerance:g} (largest |A-B| {worst:.3e})")
        return 0
    print(f"verdict: differ (largest |A-B| {worst:.3e}" + (f", tolerance {args.tolerance:g})" if args.tolerance is not None else ", bitwise expected)"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
