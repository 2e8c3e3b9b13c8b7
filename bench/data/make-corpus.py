#!/usr/bin/env python3
"""Builds a large pretraining corpus from the corpora at hand, for `bert prepare` memory/throughput runs.

The documents of the source corpus (documents format: one sentence per line, a blank line between
documents; default: the Brown training split that scripts/setup.sh converts) are written again and
again, each repetition in a fresh random document order, until the output reaches --mb megabytes,
spread over --files files (whole documents per file). Sentence order inside a document is kept, so
next-sentence pairs stay real.

Usage: /usr/bin/python3 bench/data/make-corpus.py --mb 2048 --files 8 --out /tmp/corpus-2g [--source data/brown/brown-train.txt] [--seed 1]
"""
import argparse
import os
import random


def read_documents(path):
    docs, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                current.append(line)
            elif current:
                docs.append("\n".join(current) + "\n")
                current = []
    if current:
        docs.append("\n".join(current) + "\n")
    return [d.encode("utf-8") for d in docs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="data/brown/brown-train.txt")
    ap.add_argument("--mb", type=int, required=True, help="output size in MB (10^6 bytes)")
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--out", required=True, help="output directory (part-NN.txt files)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    docs = read_documents(a.source)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    target = a.mb * 1_000_000
    per_file = target // a.files
    written, order, pos = 0, [], 0
    for k in range(a.files):
        path = os.path.join(a.out, f"part-{k:02d}.txt")
        with open(path + ".tmp", "wb") as f:
            size, first = 0, True
            while size < per_file:
                if pos == len(order):
                    order = list(range(len(docs)))
                    rng.shuffle(order)
                    pos = 0
                d = docs[order[pos]]
                pos += 1
                if not first:
                    f.write(b"\n")
                    size += 1
                f.write(d)
                size += len(d)
                first = False
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        written += size
    print(f"wrote {written / 1e6:.1f} MB in {a.files} files under {a.out} from {len(docs)} documents of {a.source}")


if __name__ == "__main__":
    main()
