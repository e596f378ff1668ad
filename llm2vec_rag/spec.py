"""``EncoderSpec``: the small, picklable description from which any process builds an encoder.

Pool workers, Ray actors and server workers receive a spec, never a model: each process
loads the weights itself, so nothing large travels through pickling or an object store.
``load_encoder`` (the by-name loader behind the CLI and the framework integrations) is a
spec built and loaded on the spot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class EncoderSpec:
    """``model`` (hub id, folder, GGUF file or ONNX export folder), ``adapters`` in order,
    ``backend`` ("torch" or "onnx") and the keyword arguments of its ``from_pretrained``.

    Options must be plain data (str, int, float, bool, None, lists/dicts of them) so the spec
    pickles and serialises to JSON unchanged.
    """

    model: str
    adapters: tuple[str, ...] = ()
    backend: str = "torch"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"EncoderSpec.model must be a non-empty string, got {self.model!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"EncoderSpec.backend must be one of {BACKENDS}, "
                             f"got {self.backend!r}")
        adapters = (self.adapters,) if isinstance(self.adapters, str) else self.adapters
        object.__setattr__(self, "adapters", tuple(str(a) for a in adapters or ()))
        if self.backend == "onnx" and self.adapters:
            raise ValueError("adapters cannot be applied to an ONNX export: fuse them before "
                             "exporting (llm2vec-rag export onnx --adapter ...), then pass the "
                             "export folder")
        options = {k: v for k, v in dict(self.options or {}).items() if v is not None}
        try:
            json.dumps(options)
        except TypeError as err:
            raise TypeError(f"EncoderSpec.options must be plain data (str, numbers, bool, "
                            f"lists, dicts): {err}. Pass devices and dtypes by name, "
                            f"e.g. device='cuda:0', dtype='bfloat16'.") from None
        object.__setattr__(self, "options", options)

    def replace(self, **options: Any) -> EncoderSpec:
        """The same encoder with some options changed (e.g. ``device`` for one pool worker)."""
        return EncoderSpec(self.model, self.adapters, self.backend, {**self.options, **options})

    def load(self):
        """Build the encoder in this process (weights are read from disk or the hub here)."""
        if self.backend == "onnx":
            from llm2vec_rag.export import OnnxLLM2Vec

            return OnnxLLM2Vec.from_pretrained(self.model, **self.options)
        from llm2vec_rag.model import LLM2Vec

        return LLM2Vec.from_pretrained(self.model, adapters=list(self.adapters), **self.options)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "adapters": list(self.adapters),
                           "backend": self.backend, "options": self.options}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EncoderSpec:
        raw = json.loads(text)
        return cls(raw["model"], tuple(raw.get("adapters", ())), raw.get("backend", "torch"),
                   raw.get("options", {}))


def load_encoder(model: str, adapters: list[str] | None = None, backend: str = "torch",
                 **kwargs: Any):
    """``LLM2Vec.from_pretrained`` (torch) or ``OnnxLLM2Vec.from_pretrained`` (onnx) by name."""
    return EncoderSpec(str(model), tuple(adapters or ()), backend, kwargs).load()
