#!/usr/bin/env python3
"""transformers peer of `bert bench` on a GPU: BertForPreTraining training steps with the same config,
batch, sequence length and masked positions as Bert's benchmark, bf16 autocast, SDPA attention and
AdamW(fused=True), eager and torch.compile. Prints one JSON line per mode with sequences/s.

Needs torch and transformers (the GPU machine has torch 2.11 and transformers 5.17).

Usage: python3 bench/reference/hf_gpu_step.py --preset base --batch 256 --seq 128 --predictions 20 \
           --steps 20 --warmup 5 [--modes eager,compile]
"""
import argparse
import json
import time

import torch
from transformers import BertConfig, BertForPreTraining

PRESETS = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}


def flops_per_sequence(layers, hidden, seq, predictions, vocab):
    # The formula of Bert's issue and `bert bench`: S*(72*L*d^2 + 12*L*d*S) + 6*P*(d^2 + d*V).
    return seq * (72.0 * layers * hidden * hidden + 12.0 * layers * hidden * seq) + 6.0 * predictions * (hidden * hidden + hidden * vocab)


def make_batch(batch, seq, predictions, vocab, device):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    ids[:, 0] = 2
    ids[:, seq // 2] = 3
    ids[:, -1] = 3
    types = (torch.arange(seq) > seq // 2).long().expand(batch, seq).contiguous()
    mask = torch.ones(batch, seq, dtype=torch.long)
    labels = torch.full((batch, seq), -100, dtype=torch.long)
    for b in range(batch):
        pos = torch.randperm(seq - 2, generator=g)[:predictions] + 1
        labels[b, pos] = torch.randint(5, vocab, (predictions,), generator=g)
    nsp = torch.randint(0, 2, (batch,), generator=g)
    return [t.to(device) for t in (ids, types, mask, labels, nsp)]


def run(mode, preset, batch, seq, predictions, vocab, steps, warmup):
    layers, hidden, heads, inter = PRESETS[preset]
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=inter, max_position_embeddings=512, type_vocab_size=2)
    torch.manual_seed(0)
    model = BertForPreTraining._from_config(cfg, attn_implementation="sdpa").cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, fused=True)
    ids, types, mask, labels, nsp = make_batch(batch, seq, predictions, vocab, "cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels, next_sentence_label=nsp)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out.loss

    fn = torch.compile(step) if mode == "compile" else step
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = fn()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    flops = flops_per_sequence(layers, hidden, seq, predictions, vocab) * batch / dt
    return {"peer": f"transformers BertForPreTraining ({mode}), torch {torch.__version__}", "mode": mode, "preset": preset,
            "batch": batch, "seq": seq, "predictions": predictions, "vocab": vocab, "gpu": torch.cuda.get_device_name(),
            "step_s": dt, "sequences_per_s": batch / dt, "tflops": flops / 1e12, "mfu": flops / 989.4e12,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": float(loss)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="base", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--predictions", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--modes", default="eager,compile")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    for mode in a.modes.split(","):
        try:
            print(json.dumps(run(mode, a.preset, a.batch, a.seq, a.predictions, a.vocab, a.steps, a.warmup)), flush=True)
        except torch.cuda.OutOfMemoryError:
            print(json.dumps({"mode": mode, "preset": a.preset, "batch": a.batch, "seq": a.seq, "error": "out of memory"}), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
