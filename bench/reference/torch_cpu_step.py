#!/usr/bin/env python3
"""PyTorch CPU peer of one Bert pretraining step, for side-by-side timing with `bert bench --cpu`.

The same step as Bert's: token + position + segment embeddings with LayerNorm, post-LN encoder layers
(torch.nn.TransformerEncoderLayer, GELU, dropout 0.1), pooler + NSP head, the MLM head on the gathered
masked positions with the decoder tied to the word embeddings, cross-entropy losses, global-norm
clipping to 1.0 and AdamW. Prints one JSON line per configuration with the median step time.

Usage: /usr/bin/python3 bench/reference/torch_cpu_step.py --preset mini --batch 32 --seq 128 \
           --predictions 20 --threads 2 --steps 10
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}


class Bert(nn.Module):
    def __init__(self, layers, hidden, heads, inter, vocab, positions=512, types=2, dropout=0.1):
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(positions, hidden)
        self.segment = nn.Embedding(types, hidden)
        self.emb_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, inter, dropout, activation="gelu",
                                           batch_first=True, norm_first=False, layer_norm_eps=1e-12)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pool = nn.Linear(hidden, hidden)
        self.nsp = nn.Linear(hidden, 2)
        self.transform = nn.Linear(hidden, hidden)
        self.transform_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, ids, types, mask, positions, labels, weights, nsp_labels):
        b, s = ids.shape
        pos = torch.arange(s).unsqueeze(0)
        x = self.drop(self.emb_ln(self.word(ids) + self.pos(pos) + self.segment(types)))
        x = self.encoder(x, src_key_padding_mask=(mask == 0))
        pooled = torch.tanh(self.pool(x[:, 0]))
        nsp_loss = F.cross_entropy(self.nsp(pooled), nsp_labels)
        gathered = torch.gather(x, 1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        t = self.transform_ln(F.gelu(self.transform(gathered)))
        logits = t @ self.word.weight.t() + self.decoder_bias
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
        w = weights.reshape(-1)
        mlm_loss = (ce * w).sum() / (w.sum() + 1e-5)
        return mlm_loss + nsp_loss


def run(preset, batch, seq, predictions, vocab, steps, warmup):
    layers, hidden, heads, inter = PRESETS[preset]
    torch.manual_seed(0)
    model = Bert(layers, hidden, heads, inter, vocab)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-6)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    types = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous()
    mask = torch.ones(batch, seq, dtype=torch.long)
    positions = torch.stack([torch.randperm(seq - 2, generator=g)[:predictions] + 1 for _ in range(batch)])
    labels = torch.randint(0, vocab, (batch, predictions), generator=g)
    weights = torch.ones(batch, predictions)
    nsp = torch.randint(0, 2, (batch,), generator=g)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = model(ids, types, mask, positions, labels, weights, nsp)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    return statistics.median(times), float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--predictions", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    median, loss = run(a.preset, a.batch, a.seq, a.predictions, a.vocab, a.steps, a.warmup)
    print(json.dumps({"peer": f"pytorch {torch.__version__} cpu", "preset": a.preset, "batch": a.batch, "seq": a.seq,
                      "predictions": a.predictions, "vocab": a.vocab, "threads": a.threads,
                      "median_step_s": median, "sequences_per_s": a.batch / median, "last_loss": loss}))


if __name__ == "__main__":
    main()
