"""Runs INSIDE the reference environment (.venv-ref: llm2vec 0.2.3, transformers 4.44.2).

    python ref_encode.py REQUEST.json OUT.npz

REQUEST: {"model": folder, "kind": "tiny" | "plain", "pooling": [...], "texts": [...],
          "instruction": str, "build_arch": optional, "pairs": optional [[instruction, text],
          ...] encoded as given (per-item instructions), "doc_max_length": optional int
          (plain texts encoded again with that setting)}. "tiny": a folder saved by tests/tiny.py
(built here first when "build_arch" is given). "plain": a folder with
model.safetensors (bare LlamaModel keys), tokenizer.json and llm2vec_params.json (LlamaConfig
fields), written by the parity test from the weights transformers 5 dequantized (transformers
4.44 cannot read the Q4_1 GGUF).
"""

import json
import os
import sys

import numpy as np
import torch
from llm2vec import LLM2Vec
from llm2vec.models import LlamaBiModel
from safetensors.torch import load_file
from transformers import LlamaConfig, PreTrainedTokenizerFast


def load_plain(folder):
    with open(os.path.join(folder, "llm2vec_params.json")) as f:
        params = json.load(f)
    specials = params.pop("special_tokens")
    model = LlamaBiModel(LlamaConfig(**params))
    model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")))
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"),
                                  model_input_names=["input_ids", "attention_mask"], **specials)
    tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.eval(), tok


def main(request_path, out_path):
    with open(request_path) as f:
        req = json.load(f)
    torch.manual_seed(0)
    if "build_arch" in req:  # build the tiny model here, with transformers 4.44, as a user would
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
        from tiny import make_tiny_model

        make_tiny_model(req["model"], req["build_arch"])
    out = {}
    plain = load_plain(req["model"]) if req["kind"] == "plain" else None
    for pooling in req["pooling"]:
        if plain is not None:
            l2v = LLM2Vec(plain[0], plain[1], pooling_mode=pooling, max_length=512)
        else:
            l2v = LLM2Vec.from_pretrained(req["model"], pooling_mode=pooling, max_length=512,
                                          torch_dtype=torch.float32)
        for name, instruction in (("plain", ""), ("instructed", req["instruction"])):
            pairs = [[instruction, t] for t in req["texts"]]
            vecs = l2v.encode(pairs, batch_size=4, show_progress_bar=False)
            out[f"{pooling}/{name}"] = np.asarray(vecs, dtype=np.float32)
        if req.get("pairs"):
            vecs = l2v.encode(req["pairs"], batch_size=4, show_progress_bar=False)
            out[f"{pooling}/pairs"] = np.asarray(vecs, dtype=np.float32)
        if req.get("doc_max_length"):
            l2v.doc_max_length = req["doc_max_length"]
            vecs = l2v.encode(req["texts"], batch_size=4, show_progress_bar=False)
            out[f"{pooling}/doc_max_length"] = np.asarray(vecs, dtype=np.float32)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
