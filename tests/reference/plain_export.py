"""Write dequantized weights in a form the reference environment (transformers 4.44) reads.

Runs in the project's environment; ``ref_encode.load_plain`` reads the folder on the other side.
"""

from __future__ import annotations

import json
import os


def write_plain_folder(encoder, folder) -> None:
    """The dequantized weights in a form transformers 4.44 reads (it cannot read Q4_1 GGUF)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    state = {k: v.contiguous() for k, v in encoder.model.state_dict().items()}
    save_file(state, os.path.join(folder, "model.safetensors"))
    tokenizer = json.loads(encoder.tokenizer.backend_tokenizer.to_str())
    merges = tokenizer["model"].get("merges") or []
    # The reference's older `tokenizers` reads BPE merges only as "a b" strings.
    tokenizer["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges]
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f)
    c = encoder.model.config
    params = dict(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        rms_norm_eps=c.rms_norm_eps, max_position_embeddings=c.max_position_embeddings,
        rope_theta=c.rope_parameters["rope_theta"], tie_word_embeddings=True,
        special_tokens={"eos_token": encoder.tokenizer.eos_token,
                        "bos_token": encoder.tokenizer.bos_token},
    )
    with open(os.path.join(folder, "llm2vec_params.json"), "w") as f:
        json.dump(params, f)
