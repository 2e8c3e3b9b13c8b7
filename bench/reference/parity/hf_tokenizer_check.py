#!/usr/bin/env python3
"""transformers loads a `bert export` directory as Bert trained it (run where transformers is installed,
e.g. the GPU machine; .NET is not needed).

Given --dump DIR (bench/results/parity/tokenizer, written by the Bert tests with
BERT_UPDATE_PARITY_GOLDEN=1): DIR/model is what `bert export` wrote (model.safetensors, config.json,
vocab.txt, tokenizer_config.json, special_tokens_map.json) and DIR/expected.json holds, for each text,
Bert's token ids ([CLS] text [SEP]) and Bert's masked-LM logits at every position (CPU, fp32).
The script loads AutoTokenizer.from_pretrained(DIR/model) and BertForPreTraining.from_pretrained(DIR/model)
(fp32, eager attention, eval), and checks:
  - the tokenizer class, do_lower_case and model_max_length it read;
  - for every text, that AutoTokenizer's input_ids equal Bert's exactly;
  - that transformers' prediction logits equal Bert's within --tolerance (max |a − b| / max(1, max |b|)).
Exit code 0 when all hold, 1 otherwise.

Usage: python3 bench/reference/parity/hf_tokenizer_check.py --dump bench/results/parity/tokenizer [--device cuda] [--report r.json]
"""
import argparse
import json
import os
import sys

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--report")
    a = ap.parse_args()
    import transformers
    from transformers import AutoTokenizer, BertForPreTraining

    model_dir = os.path.join(a.dump, "model")
    with open(os.path.join(a.dump, "expected.json"), encoding="utf-8") as f:
        expected = json.load(f)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = BertForPreTraining.from_pretrained(model_dir, attn_implementation="eager").float().eval().to(a.device)
    problems, rows = [], []
    lower = getattr(tok, "do_lower_case", None)
    if lower is None and hasattr(tok, "backend_tokenizer"):
        norm = json.loads(tok.backend_tokenizer.to_str()).get("normalizer") or {}
        lower = norm.get("lowercase")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; tokenizer {type(tok).__name__}, "
          f"do_lower_case {lower}, model_max_length {tok.model_max_length}")
    if lower != expected["do_lower_case"]:
        problems.append(f"do_lower_case {lower}, expected {expected['do_lower_case']}")
    if tok.model_max_length != expected["model_max_length"]:
        problems.append(f"model_max_length {tok.model_max_length}, expected {expected['model_max_length']}")
    for case in expected["texts"]:
        ids = tok(case["text"])["input_ids"]
        same_ids = ids == case["input_ids"]
        if not same_ids:
            problems.append(f"ids differ for {case['text']!r}: transformers {ids}, Bert {case['input_ids']}")
        with torch.no_grad():
            out = model(input_ids=torch.tensor([case["input_ids"]], device=a.device))
        ours = torch.tensor(case["mlm_logits"], dtype=torch.float64)
        theirs = out.prediction_logits[0].double().cpu()
        err = (theirs - ours).abs().max().item() / max(1.0, ours.abs().max().item())
        rows.append({"text": case["text"], "ids_equal": same_ids, "logit_error": err})
        print(f"  {'ok ' if same_ids and err <= a.tolerance else 'BAD'} ids {'equal' if same_ids else 'DIFFER'}, "
              f"logits {err:.2e}  {case['text']!r}")
        if err > a.tolerance:
            problems.append(f"logits differ by {err:.3e} for {case['text']!r}")
    if a.report:
        with open(a.report, "w", encoding="utf-8") as f:
            json.dump({"transformers": transformers.__version__, "rows": rows, "problems": problems}, f, indent=2)
    print("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
