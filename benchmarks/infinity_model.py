"""Runs INSIDE the peer's environment (.venv-infinity: transformers 4, sentence-transformers 3),
started by ``bench_serve.py --peer infinity``:

    .venv-infinity/bin/python benchmarks/infinity_model.py PLAIN_DIR OUT_DIR

PLAIN_DIR is what ``tests/reference/plain_export.write_plain_folder`` wrote in the project's
environment from the encoder our server loads (weights as bare ``LlamaModel`` keys, the
tokenizer, ``LlamaConfig`` fields). OUT_DIR becomes a sentence-transformers folder that
infinity-emb loads offline: the same weights saved by this transformers (a transformers 5
``config.json`` would not be read right by transformers 4: it keeps ``rope_theta`` inside
``rope_parameters``, and transformers 4 would fall back to its default 10,000), the tokenizer
padding on the right, and a mean ``Pooling`` module, in the module names sentence-transformers 3
knows. transformers 4's ``LlamaModel`` is causal whatever the config says: infinity serves these
weights as a causal encoder, so its vectors are not LLM2Vec's (same weights and size, same work
per token; a comparison of serving stacks, not of vectors).
"""

import json
import os
import sys
import tempfile


def main(plain: str, out: str) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer, models
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    with open(os.path.join(plain, "llm2vec_params.json"), encoding="utf-8") as f:
        params = json.load(f)
    specials = params.pop("special_tokens")
    model = LlamaModel(LlamaConfig(**params))
    model.load_state_dict(load_file(os.path.join(plain, "model.safetensors")))  # strict
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(plain, "tokenizer.json"),
                                        model_input_names=["input_ids", "attention_mask"],
                                        **specials)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Right padding: transformers 4 numbers positions 0.. for every row, so left-padded rows
    # would be encoded at shifted positions.
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = 512
    with tempfile.TemporaryDirectory() as hf:  # a transformers folder for ST's Transformer
        model.save_pretrained(hf)
        tokenizer.save_pretrained(hf)
        word = models.Transformer(hf, max_seq_length=512)
        pooling = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
        SentenceTransformer(modules=[word, pooling], device="cpu").save(out)
    check = SentenceTransformer(out, device="cpu").encode(["a short check", "and another"])
    if check.shape != (2, params["hidden_size"]):
        raise SystemExit(f"{out}: sentence-transformers gave vectors of shape {check.shape}, "
                         f"expected (2, {params['hidden_size']})")
    print(json.dumps({"folder": out, "dim": int(check.shape[1])}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
