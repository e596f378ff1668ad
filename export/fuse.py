"""Fusing: base model + LoRA adapter chain -> one plain, bidirectional model folder.

Serving (and ONNX export) should not depend on peft or on applying adapters in the right
order at load time, so the chain is merged once, exactly as ``LLM2Vec.from_pretrained``
merges it, and saved with ``config.is_causal = False`` and the llm2vec config.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from llm2vec_rag.errors import UsageError

from .staging import check_output, staged_output

logger = logging.getLogger(__name__)

FUSE_INFO = "fused_from.json"


def load_for_export(model, adapters: Sequence[str | os.PathLike] | None = None, *,
                    dtype: str = "float32", **load_kwargs):
    """An ``LLM2Vec`` on CPU from a path/hub id (+ adapters), or a given one, verified
    bidirectional: an encoder exported causally would silently give different vectors."""
    from llm2vec_rag import LLM2Vec, is_bidirectional

    if isinstance(model, LLM2Vec):
        if adapters:
            raise UsageError("adapters are merged at load time: pass them to "
                             "LLM2Vec.from_pretrained, or pass a model path here")
        encoder = model
    else:
        load_kwargs.setdefault("device", "cpu")
        encoder = LLM2Vec.from_pretrained(model, adapters=adapters or None, dtype=dtype,
                                          **load_kwargs)
    if not is_bidirectional(encoder.model):
        raise UsageError(
            "The model is causal (a later token does not change earlier tokens' states): "
            "LLM2Vec exports must be bidirectional. Load it with enable_bidirectional=True "
            "(the default; on the CLI drop --causal); if that fails, its architecture ignores "
            "config.is_causal."
        )
    return encoder


def fuse_adapters(
    model: str | os.PathLike,
    out: str | os.PathLike,
    adapters: Sequence[str | os.PathLike] | None = None,
    *,
    overwrite: bool = False,
    dtype: str = "float32",
    **load_kwargs,
) -> Path:
    """Merge ``adapters`` (in order) into ``model`` and save a plain model folder at ``out``.

    The folder holds safetensors weights, ``config.json`` (non-causal), the tokenizer and
    ``llm2vec_config.json``; ``LLM2Vec.from_pretrained(out)`` reloads it without peft.
    ``load_kwargs`` go to ``LLM2Vec.from_pretrained`` (``gguf_file``, ``pooling``, ...).
    """
    sources = [model, *(adapters or [])]
    out = check_output(out, overwrite, sources)
    encoder = load_for_export(model, adapters, dtype=dtype, **load_kwargs)
    with staged_output(out, overwrite, "fuse", sources) as tmp:
        encoder.save_pretrained(tmp)
        base = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        info = {"base": base, "adapters": [str(a) for a in (adapters or [])],
                "dtype": str(dtype)}
        (tmp / FUSE_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    logger.info("fused %s + %d adapter(s) -> %s", model, len(adapters or []), out)
    return out
