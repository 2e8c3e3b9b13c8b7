#!/usr/bin/python3
"""Writes golden safetensors files the way the reference implementation (huggingface/safetensors,
safetensors.torch.save_file) lays them out, without needing that package: u64 LE header length,
JSON header with "__metadata__" first and tensors sorted by dtype (widest first) then name, the header
padded with spaces to a multiple of 8, tensor bytes contiguous in that order. Tensors come from torch,
so the F16/BF16 rounding is PyTorch's. The expected values (widened to float32 by torch) go to a JSON
sidecar that the C# test compares exactly.

Run from the repository root:  /usr/bin/python3 tests/Bert.Tests/IO/make_golden.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")

# Order of the Rust Dtype enum; save_file sorts descending by it, then by name.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32"}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(path, tensors, metadata):
    items = sorted(tensors.items(), key=lambda kv: kv[0])
    items.sort(key=lambda kv: DTYPE_ORDER.index(NAMES[kv[1].dtype]), reverse=True)
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in items:
        b = raw_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def encode(t):
    """float32 values as JSON numbers; non-finite ones as the strings "inf", "-inf", "nan"."""
    out = []
    for x in t.double().flatten().tolist():
        out.append(x if x == x and abs(x) != float("inf") else ("nan" if x != x else ("inf" if x > 0 else "-inf")))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(3, 5, generator=g, dtype=torch.float32)
    # Values that exercise rounding: ties, subnormals, overflow to inf, signed zero.
    edge = torch.tensor([1.0, -2.5, 65504.0, 70000.0, 1e-7, -0.0, 0.1, 1.0009765625, 1.00048828125, 3.0e-5, 1e38, -1e-40],
                        dtype=torch.float32)
    tensors = {
        "encoder.weight_f32": (torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) * 0.37 - 3.1),
        "encoder.weight_f16": base.to(torch.float16),
        "encoder.weight_bf16": base.to(torch.bfloat16),
        "edge_f16": edge.to(torch.float16),
        "edge_bf16": edge.to(torch.bfloat16),
        "embeddings.position_ids": torch.arange(7, dtype=torch.int64).unsqueeze(0),
        "counts_i32": torch.tensor([-5, 0, 7, 2147483647], dtype=torch.int32),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
    }
    save(os.path.join(OUT, "torch_mixed.safetensors"), tensors, {"format": "pt", "source": "make_golden.py"})
    expected = {}
    for name, t in tensors.items():
        expected[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "values": encode(t)}
    # The F32 source of the F16/BF16 tensors, so the C# test can check its own rounding against torch's.
    expected["@source.base"] = {"dtype": "F32", "shape": list(base.shape), "values": encode(base)}
    expected["@source.edge"] = {"dtype": "F32", "shape": list(edge.shape), "values": encode(edge)}
    with open(os.path.join(OUT, "torch_mixed.expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")


def legacy_bert_model():
    """A BertModel (no heads, no "bert." prefix) with the legacy LayerNorm gamma/beta names and the
    position_ids buffer, as old TF-converted checkpoints have, in F16 to exercise conversion."""
    V, P, T, H, I, L = 11, 6, 2, 8, 9, 1
    g = torch.Generator().manual_seed(7)
    shapes = {"embeddings.word_embeddings.weight": (V, H), "embeddings.position_embeddings.weight": (P, H),
              "embeddings.token_type_embeddings.weight": (T, H),
              "embeddings.LayerNorm.gamma": (H,), "embeddings.LayerNorm.beta": (H,),
              "pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    for l in range(L):
        p = "encoder.layer.%d." % l
        for n in ("query", "key", "value"):
            shapes[p + "attention.self.%s.weight" % n] = (H, H)
            shapes[p + "attention.self.%s.bias" % n] = (H,)
        shapes.update({p + "attention.output.dense.weight": (H, H), p + "attention.output.dense.bias": (H,),
                       p + "attention.output.LayerNorm.gamma": (H,), p + "attention.output.LayerNorm.beta": (H,),
                       p + "intermediate.dense.weight": (I, H), p + "intermediate.dense.bias": (I,),
                       p + "output.dense.weight": (H, I), p + "output.dense.bias": (H,),
                       p + "output.LayerNorm.gamma": (H,), p + "output.LayerNorm.beta": (H,)})
    tensors = {n: torch.randn(*s, generator=g).to(torch.float16) for n, s in sorted(shapes.items())}
    tensors["embeddings.position_ids"] = torch.arange(P, dtype=torch.int64).unsqueeze(0)
    d = os.path.join(OUT, "hf_bertmodel_legacy")
    os.makedirs(d, exist_ok=True)
    save(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
    config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": H, "initializer_range": 0.02, "intermediate_size": I,
              "layer_norm_eps": 1e-12, "max_position_embeddings": P, "model_type": "bert", "num_attention_heads": 2,
              "num_hidden_layers": L, "pad_token_id": 0, "type_vocab_size": T, "vocab_size": V}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({n: {"shape": list(t.shape), "values": encode(t)} for n, t in tensors.items()}, f, indent=1, sort_keys=True, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
    legacy_bert_model()
