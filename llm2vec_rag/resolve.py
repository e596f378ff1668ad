"""What ``LLM2Vec.from_pretrained`` resolves before and after loading weights.

``resolve_chain``: which base model (folder, hub id or GGUF file), which adapters in which
order and where the tokenizer comes from, including the McGill-NLP layout where the
"model" is itself an adapter naming its base. ``resolve_settings``: the encoder settings
from the saved ``llm2vec_config.json`` files, the caller's arguments and llm2vec 0.2.3's
reference keys. Loading the weights sits between the two (``model.load_weights``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .config import (
    EncoderConfig,
    check_pooling,
    read_reference_keys,
    resolve_reference_keys,
)
from .errors import UsageError
from .loading import adapter_base, find_file, resolve_source
from .preprocess import special_template


@dataclass(frozen=True)
class ModelChain:
    """A base model and the adapters applied to it, in order.

    ``source``: the model as named by the caller, resolved (a folder or hub id; for a GGUF
    file, its folder). ``base`` / ``gguf_file``: where the base weights are. ``adapters``:
    the caller's adapters, after the model itself when it is an adapter. ``tokenizer_from``:
    (folder or hub id, GGUF file or None) the tokenizer is read from.
    """

    source: str
    base: str
    gguf_file: str | None
    adapters: tuple[str, ...]
    tokenizer_from: tuple[str, str | None]

    @property
    def files(self) -> list[str]:
        """The base (its GGUF file when it has one) and the adapters: the cache's sources."""
        base = os.path.join(self.base, self.gguf_file) if self.gguf_file else self.base
        return [base, *self.adapters]

    @property
    def folders(self) -> list[str]:
        """Where saved encoder settings may be, in the order they apply (the last wins)."""
        return [self.base, *self.adapters]

    def source_record(self, adapters: Sequence[str], bidirectional: bool) -> str:
        """The encoder's recorded source (what stores compare): model, adapters, attention."""
        model = os.path.join(self.source, self.gguf_file) if self.gguf_file else self.source
        return json.dumps({"model": model, "adapters": [str(a) for a in adapters],
                           "bidirectional": bidirectional})


def resolve_chain(model_name_or_path: str | os.PathLike,
                  adapters: Sequence[str | os.PathLike] | None, gguf_file: str | None,
                  **hub_kwargs) -> ModelChain:
    """The base, the adapters in order and the tokenizer's place for a ``from_pretrained``
    call (hub files are looked up, nothing heavy is read)."""
    source, gguf_file = resolve_source(str(model_name_or_path), gguf_file, **hub_kwargs)
    chain = [str(a) for a in (adapters or [])]
    base = source
    parent = None if gguf_file else adapter_base(source, **hub_kwargs)
    tokenizer_from = (source, gguf_file)
    if parent is not None:  # McGill-NLP layout: the "model" is itself an adapter
        chain.insert(0, source)
        base, gguf_file = resolve_source(parent, None, **hub_kwargs)  # may be a .gguf
        own_tokenizer = find_file(source, "tokenizer_config.json", **hub_kwargs)
        tokenizer_from = (source, None) if own_tokenizer else (base, gguf_file)
    return ModelChain(source, base, gguf_file, tuple(chain), tokenizer_from)


def pick_pooling(pooling: str | None, pooling_mode: str | None) -> str | None:
    """``pooling``, or llm2vec 0.2.3's ``pooling_mode`` for it; both given must agree."""
    if pooling_mode is None:
        return pooling
    if pooling is not None and check_pooling(pooling) != check_pooling(pooling_mode):
        raise UsageError(f"pooling={pooling!r} and pooling_mode={pooling_mode!r} "
                         "disagree: pass one of them (pooling_mode is llm2vec 0.2.3's "
                         "name for pooling)")
    return pooling_mode


def resolve_settings(folders: Sequence[str], tokenizer, *, pooling: str | None = None,
                     max_length: int | None = None, query_instruction: str | None = None,
                     document_instruction: str | None = None,
                     prompts: dict[str, str] | None = None,
                     skip_instruction: bool | None = None,
                     doc_max_length: int | None = None) -> EncoderConfig:
    """The encoder's settings: each folder's ``llm2vec_config.json`` in order (the last
    wins), then the arguments given; llm2vec 0.2.3's keys (saved or given) are mapped or
    refused by ``config.resolve_reference_keys``, which needs the tokenizer's special tokens."""
    settings: dict = {}
    reference: dict = {}
    for folder in folders:
        if os.path.isdir(folder):
            settings.update(EncoderConfig.read_dict(folder))
            reference.update(read_reference_keys(folder))
    given = dict(pooling=pooling, max_length=max_length, query_instruction=query_instruction,
                 document_instruction=document_instruction)
    settings.update({k: v for k, v in given.items() if v is not None})
    if prompts:
        settings["prompts"] = {**settings.get("prompts", {}), **prompts}
    if max_length is not None:  # the caller's limit replaces a saved doc_max_length
        reference.pop("doc_max_length", None)
    given = dict(skip_instruction=skip_instruction, doc_max_length=doc_max_length)
    reference.update({k: v for k, v in given.items() if v is not None})
    if "pooling" in settings:
        settings["pooling"] = check_pooling(settings["pooling"])
    if reference:
        lead, trail = special_template(tokenizer)
        eos = int(settings.get("pooling") == "eos")
        settings = resolve_reference_keys(settings, reference, lead + trail + eos)
    return EncoderConfig(**settings)
