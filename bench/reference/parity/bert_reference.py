#!/usr/bin/env python3
"""Reference BertForPreTraining forward and backward in plain PyTorch, for parity tests of Bert.

The math is HuggingFace transformers' BertForPreTraining (eval mode, absolute positions, eager
attention), written out with torch.nn.functional only, so it runs where transformers is not
installed (torch >= 1.10):

  embeddings   LN(word[ids] + token_type[types] + position[0..S))
  layer        a = LN(x + dense(attention(x)));  x = LN(a + dense(act(dense(a))))   (post-LN)
  attention    softmax(q·kᵀ/√HD + (1 − mask)·finfo.min) · v, heads concatenated
  pooler       tanh(dense(x[:, 0]))                      NSP logits = dense(pooled)
  MLM head     at the gathered masked positions: LN(act(dense(x))) · word_embeddingsᵀ + bias
               (the decoder is tied to the word embeddings unless the file has its own
               cls.predictions.decoder.weight)
  losses       MLM: Σ w·CE / (Σ w + 1e-5) over the B·P predictions (google-research/bert's
               weighted mean); NSP: mean CE over the batch; total = MLM + NSP

act is config.json's hidden_act: gelu (exact, erf), gelu_new / gelu_pytorch_tanh (tanh form), relu.
Dropout is off (evaluation), as in the tests that compare against this script.

Inputs:
  --model DIR    model.safetensors (F32/F16/BF16, HuggingFace names) and config.json
  --inputs FILE  JSON with [B][S] input_ids, token_type_ids, attention_mask; [B][P]
                 masked_lm_positions, masked_lm_ids, masked_lm_weights; [B] next_sentence_labels
Outputs (--out PREFIX):
  PREFIX.safetensors  F32 mlm_logits [B·P, V], nsp_logits [B, 2], and grad.<name> for every tensor
                      of the model file: the gradient of the total loss
  PREFIX.json         producer, dtype, losses (mlm_loss, nsp_loss, total_loss) and the tensor file name

--dtype float64 (the default) computes in double precision, an oracle for fp32 implementations;
float32 reproduces an fp32 run. The safetensors reader and writer here use only struct, json and
torch.frombuffer; hf_parity.py imports them.

Usage: /usr/bin/python3 bench/reference/parity/bert_reference.py --model DIR --inputs inputs.json \
           --out out/reference [--dtype float64|float32]
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

# ---- safetensors -----------------------------------------------------------------------------

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path):
    """{name: tensor}, {metadata} of a safetensors file (a u64 LE header length, a JSON header, data)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: {len(data)} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the {len(data)}-byte file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = [int(d) for d in info["shape"]]
        if end == begin:
            tensors[name] = torch.zeros(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype)
        if flat.numel() != math.prod(shape):
            raise ValueError(f"{path}: tensor {name}: {flat.numel()} elements for shape {shape}")
        tensors[name] = flat.reshape(shape)
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as F32 (header padded with spaces to a multiple of 8)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        raw = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---- inputs ----------------------------------------------------------------------------------

def read_inputs(path):
    """The batch as tensors: ids, types, mask [B,S]; positions, labels [B,P] (int64); weights [B,P]; nsp [B]."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)

    def ints(key):
        if key not in j:
            raise KeyError(f"{path}: missing '{key}'")
        return torch.tensor(j[key], dtype=torch.int64)

    inputs = {
        "input_ids": ints("input_ids"),
        "token_type_ids": ints("token_type_ids"),
        "attention_mask": ints("attention_mask"),
        "masked_lm_positions": ints("masked_lm_positions"),
        "masked_lm_ids": ints("masked_lm_ids"),
        "masked_lm_weights": torch.tensor(j["masked_lm_weights"], dtype=torch.float64),
        "next_sentence_labels": ints("next_sentence_labels"),
    }
    b, s = inputs["input_ids"].shape
    for key in ("token_type_ids", "attention_mask"):
        if tuple(inputs[key].shape) != (b, s):
            raise ValueError(f"{path}: '{key}' has shape {list(inputs[key].shape)}, expected [{b}, {s}]")
    p = inputs["masked_lm_positions"].shape[1]
    for key in ("masked_lm_ids", "masked_lm_weights"):
        if tuple(inputs[key].shape) != (b, p):
            raise ValueError(f"{path}: '{key}' has shape {list(inputs[key].shape)}, expected [{b}, {p}]")
    if tuple(inputs["next_sentence_labels"].shape) != (b,):
        raise ValueError(f"{path}: 'next_sentence_labels' has shape {list(inputs['next_sentence_labels'].shape)}, expected [{b}]")
    pos = inputs["masked_lm_positions"]
    if pos.numel() and (pos.min() < 0 or pos.max() >= s):
        raise ValueError(f"{path}: 'masked_lm_positions' must lie in [0, {s})")
    return inputs


# ---- the model -------------------------------------------------------------------------------

def activation(name):
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        # HF's NewGELUActivation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "relu":
        return F.relu
    raise ValueError(f"config.json: hidden_act '{name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)")


class Config:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        try:
            self.vocab = int(c["vocab_size"])
            self.hidden = int(c["hidden_size"])
            self.layers = int(c["num_hidden_layers"])
            self.heads = int(c["num_attention_heads"])
            self.intermediate = int(c["intermediate_size"])
        except KeyError as e:
            raise KeyError(f"{path}: missing {e}") from None
        self.act = c.get("hidden_act", "gelu")
        self.eps = float(c.get("layer_norm_eps", 1e-12))
        if self.hidden % self.heads:
            raise ValueError(f"{path}: hidden_size {self.hidden} is not divisible by num_attention_heads {self.heads}")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: position_embedding_type '{c['position_embedding_type']}' is not supported")


def parameters(weights, cfg, dtype):
    """Leaf tensors (requires_grad) under HuggingFace names; the tied decoder is the word-embedding tensor."""
    names = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
             "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
             "bert.embeddings.LayerNorm.bias"]
    for l in range(cfg.layers):
        p = f"bert.encoder.layer.{l}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            names += [p + m + ".weight", p + m + ".bias"]
    names += ["bert.pooler.dense.weight", "bert.pooler.dense.bias",
              "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
              "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
              "cls.seq_relationship.weight", "cls.seq_relationship.bias"]
    weights = dict(weights)
    if "cls.predictions.bias" not in weights and "cls.predictions.decoder.bias" in weights:
        weights["cls.predictions.bias"] = weights.pop("cls.predictions.decoder.bias")
    weights.pop("cls.predictions.decoder.bias", None)  # a duplicate of cls.predictions.bias
    weights.pop("bert.embeddings.position_ids", None)  # a buffer, not a parameter
    names.append("cls.predictions.bias")
    if "cls.predictions.decoder.weight" in weights:
        names.append("cls.predictions.decoder.weight")
    missing = [n for n in names if n not in weights]
    if missing:
        raise KeyError("model.safetensors lacks " + ", ".join(missing))
    unexpected = sorted(set(weights) - set(names))
    if unexpected:
        raise KeyError("model.safetensors has tensors a BertForPreTraining does not: " + ", ".join(unexpected))
    return {n: weights[n].to(dtype).clone().requires_grad_(True) for n in names}


def forward(p, cfg, inputs):
    """(mlm_logits [B·P, V], nsp_logits [B, 2]) with HF BertForPreTraining's math."""
    ids, types, mask = inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"]
    b, s = ids.shape
    h, nh = cfg.hidden, cfg.heads
    hd = h // nh
    act = activation(cfg.act)
    dtype = p["bert.embeddings.word_embeddings.weight"].dtype

    def ln(x, prefix):
        return F.layer_norm(x, (x.shape[-1],), p[prefix + ".weight"], p[prefix + ".bias"], cfg.eps)

    def dense(x, prefix):
        return F.linear(x, p[prefix + ".weight"], p[prefix + ".bias"])

    e = "bert.embeddings."
    x = p[e + "word_embeddings.weight"][ids] + p[e + "token_type_embeddings.weight"][types]
    x = x + p[e + "position_embeddings.weight"][torch.arange(s)][None]
    x = ln(x, e + "LayerNorm")

    # [B,1,1,S]: 0 where attended, the most negative finite value at padding (HF's extended mask).
    extended = (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def heads(t):  # [B,S,H] -> [B,NH,S,HD]
        return t.view(b, s, nh, hd).transpose(1, 2)

    for l in range(cfg.layers):
        a = f"bert.encoder.layer.{l}."
        q = heads(dense(x, a + "attention.self.query"))
        k = heads(dense(x, a + "attention.self.key"))
        v = heads(dense(x, a + "attention.self.value"))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + extended   # [B,NH,S,S]
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, h)          # [B,S,H]
        attended = ln(dense(context, a + "attention.output.dense") + x, a + "attention.output.LayerNorm")
        inner = act(dense(attended, a + "intermediate.dense"))                       # [B,S,I]
        x = ln(dense(inner, a + "output.dense") + attended, a + "output.LayerNorm")

    pooled = torch.tanh(dense(x[:, 0], "bert.pooler.dense"))                          # [B,H]
    nsp_logits = dense(pooled, "cls.seq_relationship")                                # [B,2]

    positions = inputs["masked_lm_positions"]                                         # [B,P]
    gathered = torch.gather(x, 1, positions[:, :, None].expand(-1, -1, h))            # [B,P,H]
    t = ln(act(dense(gathered, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    decoder = p.get("cls.predictions.decoder.weight", p["bert.embeddings.word_embeddings.weight"])
    mlm_logits = F.linear(t, decoder, p["cls.predictions.bias"])                      # [B,P,V]
    return mlm_logits.reshape(-1, cfg.vocab), nsp_logits


def losses(mlm_logits, nsp_logits, inputs):
    """(mlm, nsp): the weighted mean Σ w·CE / (Σ w + 1e-5) over predictions, the mean NSP CE."""
    w = inputs["masked_lm_weights"].reshape(-1).to(mlm_logits.dtype)
    ce = F.cross_entropy(mlm_logits, inputs["masked_lm_ids"].reshape(-1), reduction="none")
    mlm = (w * ce).sum() / (w.sum() + 1e-5)
    nsp = F.cross_entropy(nsp_logits, inputs["next_sentence_labels"])
    return mlm, nsp


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="directory with model.safetensors and config.json")
    ap.add_argument("--inputs", required=True, help="inputs JSON")
    ap.add_argument("--out", required=True, help="output prefix: writes PREFIX.safetensors and PREFIX.json")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    args = ap.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    cfg = Config(os.path.join(args.model, "config.json"))
    weights, _ = read_safetensors(os.path.join(args.model, "model.safetensors"))
    p = parameters(weights, cfg, dtype)
    inputs = read_inputs(args.inputs)

    mlm_logits, nsp_logits = forward(p, cfg, inputs)
    mlm, nsp = losses(mlm_logits, nsp_logits, inputs)
    total = mlm + nsp
    total.backward()

    tensors = {"mlm_logits": mlm_logits, "nsp_logits": nsp_logits}
    for name, t in p.items():
        tensors["grad." + name] = t.grad if t.grad is not None else torch.zeros_like(t)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tensor_file = args.out + ".safetensors"
    write_safetensors(tensor_file, tensors, {"format": "pt", "producer": "bert_reference.py"})
    report = {
        "producer": f"bert_reference.py (torch {torch.__version__}, {args.dtype})",
        "dtype": args.dtype,
        "tensors": os.path.basename(tensor_file),
        "mlm_loss": mlm.item(),
        "nsp_loss": nsp.item(),
        "total_loss": total.item(),
    }
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"mlm_loss {report['mlm_loss']:.9f}  nsp_loss {report['nsp_loss']:.9f}  total {report['total_loss']:.9f}"
          f"  -> {tensor_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
