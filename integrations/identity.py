"""Which encoder wrote a collection: a plain record, and the rule that compares two.

A collection's metadata records the encoder that wrote its vectors (``llm2vec_rag_encoder``:
the encoder's ``source``, i.e. model path or hub id, adapters, attention and dtype) and,
since this record exists, a content id (``llm2vec_rag_encoder_id``: a hash of the base
weights, the adapters' contents, bidirectional and dtype). Two encoders are the same when
their content ids match, wherever their files live: a moved checkout or virtual
environment neither re-embeds nor refuses. A collection recorded before the content id
(path only) is accepted when the files its record names, read on this machine, hash to the
same content; the next index run adds the content id to its record.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any

from llm2vec_rag.cache import content_fingerprint
from llm2vec_rag.config import DTYPE_ENV, EncoderConfig

ENCODER = "llm2vec_rag_encoder"
ENCODER_ID = "llm2vec_rag_encoder_id"
MIXED = "llm2vec_rag_mixed"  # set while a collection holds two encoders' vectors


@dataclass(frozen=True)
class EncoderIdentity:
    """What chunking, hashing and the collection checks need from an encoder, without its
    weights (the Ray driver gets it from a probe task that loads the real encoder)."""

    config: EncoderConfig
    tokenizer: Any
    dim: int
    source: str
    text_tokens: int  # max_text_tokens(document instruction): the room for a chunk
    content_id: str = ""

    def record(self) -> dict[str, Any]:
        """The collection metadata naming this encoder."""
        return {ENCODER: self.source, ENCODER_ID: self.content_id,
                "llm2vec_rag_pooling": self.config.pooling,
                "llm2vec_rag_document_instruction": self.config.document_instruction}

    def as_recorded(self, recorded: dict) -> EncoderIdentity:
        """This identity under the source string the collection recorded for the same
        content, so document hashes (which include the source) stay those already stored."""
        theirs = recorded.get(ENCODER)
        if theirs and theirs != self.source and same_encoder(recorded, self):
            return replace(self, source=theirs)
        return self


def identity_of(encoder: Any) -> EncoderIdentity:
    """The identity record of a loaded encoder (LLM2Vec, OnnxLLM2Vec or compatible)."""
    source = getattr(encoder, "source", "") or ""
    return EncoderIdentity(encoder.config, encoder.tokenizer, int(encoder.dim), source,
                           encoder.max_text_tokens(encoder.config.document_instruction),
                           content_id(source))


def content_id(source: str) -> str:
    """A hash of what ``source`` names, by content where its paths exist on this machine
    (a hub id stays a name). "" for an encoder that names no source. Remembered per source
    while the files it names keep their size and mtime (searches ask once per query)."""
    if not source:
        return ""
    try:
        info = json.loads(source) if source.startswith("{") else {"model": source}
    except ValueError:
        info = {"model": source}
    if not isinstance(info, dict):
        return ""
    paths = [info.get("model"), *(info.get("adapters") or [])]
    stamp = (source, tuple(_stamp(p) for p in paths))
    if stamp not in _IDS:
        if len(_IDS) > 64:
            _IDS.clear()
        _IDS[stamp] = _content_id(info)
    return _IDS[stamp]


_IDS: dict[tuple, str] = {}


def _stamp(path: Any) -> tuple:
    if not isinstance(path, str) or not os.path.exists(path):
        return ()
    files = [path] if os.path.isfile(path) else [
        os.path.join(path, n) for n in sorted(os.listdir(path))]
    return tuple((f, st.st_size, st.st_mtime_ns) for f in files
                 if os.path.isfile(f) and (st := os.stat(f)))


def _content_id(info: dict) -> str:
    key = {k: _by_content(v) if k == "model" else v for k, v in info.items()}
    if isinstance(info.get("adapters"), list):
        key["adapters"] = [_by_content(a) for a in info["adapters"]]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _by_content(path: Any) -> Any:
    if isinstance(path, str) and path and os.path.exists(path):
        try:
            return {"content": content_fingerprint(path)}
        except OSError:
            return path
    return path


def same_encoder(recorded: dict, identity: EncoderIdentity) -> bool:
    """Whether the encoder a collection recorded is ``identity`` (True when the collection
    records none: another tool wrote it, and there is nothing to compare)."""
    theirs = recorded.get(ENCODER)
    if not theirs or not identity.source or theirs == identity.source:
        return True
    their_id = recorded.get(ENCODER_ID) or content_id(theirs)  # an older record: by its paths
    return bool(their_id) and their_id == identity.content_id


def _precision(info: dict) -> str:
    """"float32", "bfloat16", "float32 weights with bfloat16 matmuls", ... of a source."""
    dtype = info.get("dtype", "float32")
    return f"{dtype} weights with {info['autocast']} matmuls" if info.get("autocast") else dtype


def dtype_hint(recorded: str, source: str) -> str:
    """When two encoders' sources differ only in dtype (say, a collection indexed in float32
    and today's bf16 CPU default), the sentence that says so and how to load the one that
    indexed it; "" otherwise."""
    try:
        theirs, ours = json.loads(recorded), json.loads(source)
    except ValueError:
        return ""
    if not (isinstance(theirs, dict) and isinstance(ours, dict)):
        return ""
    strip = ("dtype", "autocast")
    same = {k: v for k, v in theirs.items() if k not in strip} == {
        k: v for k, v in ours.items() if k not in strip}
    if not same:
        content = [_content_id({k: v for k, v in i.items() if k not in strip})
                   for i in (theirs, ours)]
        same = content[0] == content[1]
    if not same or _precision(theirs) == _precision(ours):
        return ""
    load = ('dtype="bf16-autocast"' if theirs.get("autocast")
            else f'dtype="{theirs.get("dtype", "float32")}"')
    flag = load.replace("dtype=", "--dtype ").replace('"', "")
    return (f" The two are the same model in another precision: the collection holds "
            f"{_precision(theirs)} vectors, this encoder computes {_precision(ours)} (on a CPU "
            f"with native bf16 the default dtype is not float32; see docs/encode.md). To "
            f"search it as it was indexed, load the encoder with {load} ({flag} on the "
            f"command line, or {DTYPE_ENV}={load.split('=')[1].strip(chr(34))} for every "
            f"load); or re-index it with this one.")

