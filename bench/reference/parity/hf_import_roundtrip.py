#!/usr/bin/env python3
"""transformers → Bert → transformers: a BertForPreTraining initialized by transformers (odd config, its
own random init) is saved with save_pretrained, imported with `bert import --strict`, exported again with
`bert export`, and loaded back with from_pretrained. Every tensor must come back bit for bit and the
logits of the reloaded model must equal the original's. Needs torch and transformers (the GPU machine).

Usage: python3 bench/reference/parity/hf_import_roundtrip.py --bert "dotnet .device/app/bert.dll" [--work DIR] [--device cuda]
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import torch


def run(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    if done.returncode != 0:
        sys.exit(f"FAIL: exit {done.returncode}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bert", required=True, help="command that runs the bert CLI, e.g. 'dotnet .device/app/bert.dll'")
    ap.add_argument("--work", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from transformers import BertConfig, BertForPreTraining
    import transformers

    work = args.work or tempfile.mkdtemp(prefix="bert-roundtrip-")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src, ckpt, back = (os.path.join(work, d) for d in ("hf-init", "bert-ckpt", "hf-back"))
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {args.device}")

    cfg = BertConfig(vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
                     max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu")
    torch.manual_seed(3)
    model = BertForPreTraining(cfg).eval()
    model.save_pretrained(src, safe_serialization=True)
    print(f"saved a transformers-initialized model to {src}: {sorted(os.listdir(src))}")

    bert = shlex.split(args.bert)
    run(bert + ["import", "--hf", src, "--out", ckpt, "--strict"])
    run(bert + ["export", "--checkpoint", ckpt, "--out", back])

    again = BertForPreTraining.from_pretrained(back).eval()
    original = model.state_dict()
    reloaded = again.state_dict()
    bad = []
    for name, t in original.items():
        if name not in reloaded:
            bad.append(f"{name}: missing after the round trip")
        elif reloaded[name].shape != t.shape:
            bad.append(f"{name}: shape {tuple(reloaded[name].shape)} vs {tuple(t.shape)}")
        elif not torch.equal(reloaded[name], t):
            bad.append(f"{name}: max |diff| {(reloaded[name].float() - t.float()).abs().max().item():.3e}")
    print(f"{len(original)} tensors compared, {len(bad)} differ")
    for b in bad:
        print("  " + b)

    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, cfg.vocab_size, (3, 17), generator=g)
    types = (torch.arange(17) > 8).long().expand(3, 17)
    mask = torch.ones(3, 17, dtype=torch.long)
    mask[2, 12:] = 0
    dev = torch.device(args.device)
    with torch.no_grad():
        a = model.to(dev)(input_ids=ids.to(dev), token_type_ids=types.to(dev), attention_mask=mask.to(dev))
        b = again.to(dev)(input_ids=ids.to(dev), token_type_ids=types.to(dev), attention_mask=mask.to(dev))
    dm = (a.prediction_logits - b.prediction_logits).abs().max().item()
    dn = (a.seq_relationship_logits - b.seq_relationship_logits).abs().max().item()
    print(f"logits after the round trip: MLM max |diff| {dm:.3e}, NSP max |diff| {dn:.3e}")
    if bad or dm != 0 or dn != 0:
        sys.exit("FAIL")
    print("PASS: transformers → bert import → bert export → transformers is exact")


if __name__ == "__main__":
    main()
