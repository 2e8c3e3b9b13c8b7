#!/usr/bin/env python3
"""Parity of a Bert model with HuggingFace transformers' BertForPreTraining (run where transformers is
installed, e.g. the GPU machine: torch 2.x, transformers 4.x or 5.x; .NET is not needed).

Given
  --model DIR       an exported model directory (`bert export --checkpoint … --out DIR`: model.safetensors
                    and config.json; a checkpoint directory step-N/ works too)
  --inputs FILE     the batch (inputs.json, the format bert_reference.py reads)
  --expected FILE   our side's outputs for that batch and those weights: a JSON with mlm_loss, nsp_loss
                    and "tensors", the safetensors file beside it holding mlm_logits [B·P, V],
                    nsp_logits [B, 2] and grad.<name> for every parameter (what the Parity tests dump:
                    bench/results/parity/odd/bert.json; bert_reference.py's output has the same form)
the script loads BertForPreTraining.from_pretrained(DIR, attn_implementation="eager") in fp32, eval
mode (no dropout), runs the batch and compares, in fp32, with max |HF − expected| ≤ --tolerance
(default 1e-4) for each tensor:
  - MLM logits at the masked positions (HF computes them at every token; they are gathered here),
  - NSP logits,
  - the losses, computed from HF's logits the way Bert computes them: MLM Σ w·CE / (Σ w + 1e-5) over
    the B·P predictions, NSP mean CE. HF's own loss (labels = -100 except at the predicted positions)
    is the plain mean over predictions, Σ w·CE / Σ w; it is reported, and checked against the
    weighted mean recomputed without the 1e-5,
  - the gradient of that loss (MLM + NSP) with respect to every parameter, under HF names. The
    decoder is tied to the word embeddings and its bias to cls.predictions.bias; if the loaded model
    did not tie them, the gradients of both copies are summed and a note says so.
With --reference (default on), the plain-PyTorch reference (bert_reference.py, float64) is run on the
same weights too and reported beside HF, so a difference can be attributed.

Exit code 0 when everything is within tolerance, 1 otherwise, 2 for bad arguments or files.

Usage: python3 bench/reference/parity/hf_parity.py --model bench/results/parity/odd/model \
           --inputs bench/results/parity/odd/inputs.json --expected bench/results/parity/odd/bert.json \
           [--device cpu|cuda] [--tolerance 1e-4] [--report report.json]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_reference  # noqa: E402  (the safetensors reader, the inputs reader and the float64 reference)


def load_expected(path):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    for key in ("mlm_loss", "nsp_loss", "tensors"):
        if key not in j:
            raise KeyError(f"{path}: missing '{key}'")
    tensors, _ = bert_reference.read_safetensors(os.path.join(os.path.dirname(os.path.abspath(path)), j["tensors"]))
    for key in ("mlm_logits", "nsp_logits"):
        if key not in tensors:
            raise KeyError(f"{path}: {j['tensors']} has no tensor '{key}'")
    grads = {k[len("grad."):]: v.to(torch.float32) for k, v in tensors.items() if k.startswith("grad.")}
    return j, tensors["mlm_logits"].to(torch.float32), tensors["nsp_logits"].to(torch.float32), grads


def load_hf(model_dir, device):
    from transformers import BertForPreTraining  # imported here so --help works without transformers

    loaded = BertForPreTraining.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    model, info = loaded if isinstance(loaded, tuple) else (loaded, {})
    model = model.float().to(device).eval()
    notes = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        values = [v for v in (info.get(key) or []) if "position_ids" not in str(v)]
        # The tied copies are absent from the file on purpose; they only matter if tying failed.
        values = [v for v in values if str(v) not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")]
        if values:
            notes.append(f"loading: {key}: {', '.join(map(str, values))}")
    return model, notes


def hf_logits(model, inputs, device):
    """(prediction_logits [B,S,V], seq_relationship_logits [B,2], HF's own loss) for the batch."""
    ids = inputs["input_ids"].to(device)
    positions = inputs["masked_lm_positions"]
    weights = inputs["masked_lm_weights"]
    labels = torch.full_like(inputs["input_ids"], -100)
    for b in range(positions.shape[0]):
        for p in range(positions.shape[1]):
            if weights[b, p] > 0:
                labels[b, positions[b, p]] = inputs["masked_lm_ids"][b, p]
    out = model(input_ids=ids,
                attention_mask=inputs["attention_mask"].to(device),
                token_type_ids=inputs["token_type_ids"].to(device),
                labels=labels.to(device),
                next_sentence_label=inputs["next_sentence_labels"].to(device))
    return out.prediction_logits, out.seq_relationship_logits, out.loss


def bert_losses(mlm_logits, nsp_logits, inputs, device, epsilon=1e-5):
    """Bert's losses from [B·P, V] and [B, 2] logits: MLM Σ w·CE / (Σ w + epsilon), NSP mean CE."""
    w = inputs["masked_lm_weights"].reshape(-1).to(device, mlm_logits.dtype)
    ce = F.cross_entropy(mlm_logits, inputs["masked_lm_ids"].reshape(-1).to(device), reduction="none")
    mlm = (w * ce).sum() / (w.sum() + epsilon)
    nsp = F.cross_entropy(nsp_logits, inputs["next_sentence_labels"].to(device))
    return mlm, nsp


def parameter(model, name):
    """The parameter a dotted name reaches (shared parameters are reached under each of their names)."""
    try:
        return model.get_parameter(name)
    except AttributeError:
        return None


def hf_gradients(model, names):
    """Each name's gradient; tied copies that are separate parameters contribute their own gradient."""
    notes = []
    grads = {}
    aliases = {
        "bert.embeddings.word_embeddings.weight": "cls.predictions.decoder.weight",
        "cls.predictions.bias": "cls.predictions.decoder.bias",
    }
    for name in names:
        p = parameter(model, name)
        if p is None:
            notes.append(f"HF model has no parameter {name}")
            continue
        g = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        alias = parameter(model, aliases[name]) if name in aliases else None
        if alias is not None and alias is not p:
            notes.append(f"{aliases[name]} is not tied to {name} in the loaded model: their gradients are summed")
            if alias.grad is not None:
                g = g + alias.grad
        grads[name] = g.float().cpu()
    return grads, notes


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare Bert's outputs with HuggingFace BertForPreTraining.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max |HF − expected| per tensor (fp32)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the float64 plain-PyTorch reference column")
    ap.add_argument("--report", help="also write the comparison as JSON here")
    args = ap.parse_args(argv)

    # fp32 means fp32: no TF32 in the GPU matmuls.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    try:
        inputs = bert_reference.read_inputs(args.inputs)
        expected_json, exp_mlm, exp_nsp, exp_grads = load_expected(args.expected)
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    try:
        model, notes = load_hf(args.model, device)
    except ImportError as e:
        print(f"error: transformers is needed ({e}); use bert_reference.py where it is not installed", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 2
    model.zero_grad(set_to_none=True)
    pred, seq, hf_own_loss = hf_logits(model, inputs, device)
    b, p = inputs["masked_lm_positions"].shape
    h_positions = inputs["masked_lm_positions"].to(device)
    mlm_logits = torch.gather(pred, 1, h_positions[:, :, None].expand(-1, -1, pred.shape[-1])).reshape(b * p, -1)
    mlm, nsp = bert_losses(mlm_logits, seq, inputs, device)
    (mlm + nsp).backward()
    grads, grad_notes = hf_gradients(model, list(exp_grads))
    notes += grad_notes

    reference = None
    if args.reference:
        cfg = bert_reference.Config(os.path.join(args.model, "config.json"))
        weights, _ = bert_reference.read_safetensors(os.path.join(args.model, "model.safetensors"))
        ref_params = bert_reference.parameters(weights, cfg, torch.float64)
        r_mlm_logits, r_nsp_logits = bert_reference.forward(ref_params, cfg, inputs)
        r_mlm, r_nsp = bert_reference.losses(r_mlm_logits, r_nsp_logits, inputs)
        (r_mlm + r_nsp).backward()
        reference = {"mlm_logits": r_mlm_logits, "nsp_logits": r_nsp_logits, "mlm_loss": r_mlm, "nsp_loss": r_nsp,
                     "grads": {n: t.grad for n, t in ref_params.items() if t.grad is not None}}

    rows = []

    def compare(what, hf, expected, ref=None):
        hf = torch.as_tensor(hf).detach().float().cpu().reshape(-1)
        expected = torch.as_tensor(expected).detach().float().cpu().reshape(-1)
        if hf.shape != expected.shape:
            rows.append({"what": what, "error": f"shape {list(hf.shape)} vs expected {list(expected.shape)}", "ok": False})
            return
        diff = (hf - expected).abs().max().item() if hf.numel() else 0.0
        row = {"what": what, "max_abs_diff": diff, "max_abs_expected": expected.abs().max().item() if expected.numel() else 0.0,
               "ok": diff <= args.tolerance}
        if ref is not None:
            ref = torch.as_tensor(ref).detach().double().cpu().reshape(-1)
            row["hf_vs_reference"] = (hf.double() - ref).abs().max().item()
            row["expected_vs_reference"] = (expected.double() - ref).abs().max().item()
        rows.append(row)

    r = reference or {}
    compare("mlm_logits", mlm_logits, exp_mlm, r.get("mlm_logits"))
    compare("nsp_logits", seq, exp_nsp, r.get("nsp_logits"))
    compare("mlm_loss", mlm, torch.tensor([expected_json["mlm_loss"]]), r.get("mlm_loss"))
    compare("nsp_loss", nsp, torch.tensor([expected_json["nsp_loss"]]), r.get("nsp_loss"))
    for name, g in exp_grads.items():
        if name in grads:
            compare("grad." + name, grads[name], g, r.get("grads", {}).get(name))
        else:
            rows.append({"what": "grad." + name, "error": "no such HF parameter", "ok": False})
    covered = {id(q) for q in (parameter(model, n) for n in exp_grads) if q is not None}
    missing = sorted(n for n, q in model.named_parameters() if id(q) not in covered)
    if missing:
        notes.append("HF parameters without an expected gradient: " + ", ".join(missing))

    # HF's own loss is the unweighted mean over labeled tokens; recompute it from the logits to show
    # that the only difference to Bert's MLM loss is the 1e-5 in the denominator.
    mlm_plain, nsp_plain = bert_losses(mlm_logits.detach(), seq.detach(), inputs, device, epsilon=0.0)
    own = hf_own_loss.item()
    own_diff = abs(own - (mlm_plain + nsp_plain).item())
    rows.append({"what": "hf_own_loss (mean over labeled tokens)", "max_abs_diff": own_diff,
                 "max_abs_expected": abs(own), "ok": own_diff <= args.tolerance})

    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {device}")
    print(f"model {args.model}; expected {args.expected} ({expected_json.get('producer', '?')})")
    print(f"HF own loss {own:.7f} (mean over labeled tokens); Bert-style total from HF logits {(mlm + nsp).item():.7f}; "
          f"expected total {expected_json['mlm_loss'] + expected_json['nsp_loss']:.7f}")
    header = f"{'quantity':<62} {'max|HF-exp|':>12} {'max|exp|':>10}"
    if reference is not None:
        header += f" {'max|HF-ref64|':>14} {'max|exp-ref64|':>15}"
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{row['what']:<62} ERROR {row['error']}")
            continue
        line = f"{row['what']:<62} {row['max_abs_diff']:12.3e} {row['max_abs_expected']:10.3e}"
        if "hf_vs_reference" in row:
            line += f" {row['hf_vs_reference']:14.3e} {row['expected_vs_reference']:15.3e}"
        print(line + ("" if row["ok"] else "   FAIL"))
    for n in notes:
        print("note: " + n)
    failed = [row["what"] for row in rows if not row["ok"]]
    worst = max((row.get("max_abs_diff", 0.0) for row in rows if "max_abs_diff" in row), default=0.0)
    print(f"{'PASS' if not failed else 'FAIL'}: {len(rows) - len(failed)}/{len(rows)} within {args.tolerance:g} "
          f"(worst max abs diff {worst:.3e})")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "device": str(device),
                       "tolerance": args.tolerance, "rows": rows, "notes": notes, "passed": not failed}, f, indent=2)
            f.write("\n")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
