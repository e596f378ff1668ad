"""``EncoderSpec``: the small, picklable description from which any process builds an encoder.

Pool workers, Ray actors and server workers receive a spec, never a model: each process
loads the weights itself, so nothing large travels through pickling or an object store.
``load_encoder`` (the by-name loader behind the CLI and the framework integrations) is a
spec built and loaded on the spot.

A spec is data: it names the encoder class of its backend (``BACKENDS``) rather than
importing it, so this module sits below the encoders it describes (no import cycle), the
way a sentence-transformers ``modules.json`` names its module classes. The encoders'
``from_pretrained`` are wrapped by ``records_spec``: the caller's own arguments become the
spec at entry, and nothing re-types the loader's signature to rebuild it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

# backend -> (module, class) whose ``from_pretrained(model, **options)`` builds the encoder
ENCODER_CLASSES = {"torch": ("llm2vec_rag.model", "LLM2Vec"),
                   "onnx": ("llm2vec_rag.export.runtime", "OnnxLLM2Vec"),
                   "openvino": ("llm2vec_rag.export.openvino_runtime", "OpenVINOLLM2Vec")}
BACKENDS = tuple(ENCODER_CLASSES)


@dataclass(frozen=True)
class EncoderSpec:
    """``model`` (hub id, folder, GGUF file or ONNX export folder), ``adapters`` in order,
    ``backend`` ("torch", "onnx" for ONNX Runtime, "openvino" for OpenVINO over the same
    export) and the keyword arguments of its ``from_pretrained``.

    Options must be plain data (str, int, float, bool, None, lists/dicts of them) so the spec
    pickles and serialises to JSON unchanged.
    """

    model: str
    adapters: tuple[str, ...] = ()
    backend: str = "torch"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise UsageError(f"EncoderSpec.model must be a non-empty string, got {self.model!r}")
        if self.backend not in BACKENDS:
            raise UsageError(f"EncoderSpec.backend must be one of {BACKENDS}, "
                             f"got {self.backend!r}")
        adapters = (self.adapters,) if isinstance(self.adapters, str) else self.adapters
        object.__setattr__(self, "adapters", tuple(str(a) for a in adapters or ()))
        if self.backend != "torch" and self.adapters:
            raise UsageError("adapters cannot be applied to an ONNX export: fuse them before "
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

    @classmethod
    def of(cls, model: Any, adapters: Sequence[str] = (), **options: Any) -> EncoderSpec:
        """The spec of ``model``: a name (+ ``adapters`` and loader ``options``, ``backend=``
        among them), a spec, or an encoder loaded by name (its ``spec``); ``options`` are
        applied on top of a given spec. What every entry point that takes "a model" uses."""
        if isinstance(model, EncoderSpec):
            return model.replace(**options) if options else model
        if isinstance(model, (str, os.PathLike)):
            backend = options.pop("backend", "torch")
            return cls(os.fspath(model), tuple(str(a) for a in adapters or ()), backend,
                       options)
        spec = getattr(model, "spec", None)
        if spec is None:
            raise TypeError(f"model must be a name, an EncoderSpec or an encoder loaded by "
                            f"name (which has .spec), got {type(model).__name__}: other "
                            f"processes rebuild the encoder themselves")
        return spec.replace(**options) if options else spec

    def replace(self, **options: Any) -> EncoderSpec:
        """The same encoder with some options changed (e.g. ``device`` for one pool worker)."""
        return EncoderSpec(self.model, self.adapters, self.backend, {**self.options, **options})

    def load(self):
        """Build the encoder in this process (weights are read from disk or the hub here)."""
        module, name = ENCODER_CLASSES[self.backend]
        cls = getattr(importlib.import_module(module), name)
        if self.adapters:
            return cls.from_pretrained(self.model, adapters=list(self.adapters), **self.options)
        return cls.from_pretrained(self.model, **self.options)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "adapters": list(self.adapters),
                           "backend": self.backend, "options": self.options}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EncoderSpec:
        raw = json.loads(text)
        return cls(raw["model"], tuple(raw.get("adapters", ())), raw.get("backend", "torch"),
                   raw.get("options", {}))


def load_encoder(model: str | EncoderSpec, adapters: list[str] | None = None,
                 backend: str = "torch", **kwargs: Any):
    """``LLM2Vec.from_pretrained`` (torch), ``OnnxLLM2Vec.from_pretrained`` (onnx) or
    ``OpenVINOLLM2Vec.from_pretrained`` (openvino) by name, or a spec loaded
    (``EncoderSpec.of``)."""
    if isinstance(model, EncoderSpec):
        return EncoderSpec.of(model, **kwargs).load()
    return EncoderSpec.of(model, adapters or (), backend=backend, **kwargs).load()


def plain(value: Any) -> Any:
    """A loader argument as plain data: torch dtypes and devices by name, paths as strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "torch":  # torch.float32 -> "float32", device -> "cuda:0"
        return str(value).removeprefix("torch.")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def spec_of_call(loader: Callable, backend: str, args: tuple, kwargs: dict) -> EncoderSpec | None:
    """The spec of one ``loader(*args, **kwargs)`` call: the arguments the caller gave
    (defaults left out), so another process repeats exactly this call. None when an argument
    is not plain data (a torch module, a callable): then the encoder cannot be rebuilt."""
    params = inspect.signature(loader).parameters
    try:
        given = dict(inspect.signature(loader).bind(*args, **kwargs).arguments)
    except TypeError:  # the loader itself reports the bad call
        return None
    given.pop(next(iter(params)), None)  # cls
    model = given.pop(next(iter(list(params)[1:])))
    adapters = given.pop("adapters", None)
    options: dict[str, Any] = {}
    for name, value in given.items():
        if params[name].kind is inspect.Parameter.VAR_KEYWORD:
            options.update(value)
        elif value is not params[name].default and value != params[name].default:
            options[name] = value
    if isinstance(adapters, (str, os.PathLike)):
        adapters = [adapters]
    try:
        return EncoderSpec(plain(model), tuple(plain(list(adapters or ()))), backend,
                           plain(options))
    except (TypeError, ValueError):  # the loader itself reports a bad model name
        return None


def records_spec(backend: str) -> Callable:
    """Wrap an encoder's ``from_pretrained`` so the encoder it returns carries the ``spec``
    of the call that built it (``spec_of_call``)."""
    def wrap(loader: Callable) -> Callable:
        @functools.wraps(loader)
        def from_pretrained(*args: Any, **kwargs: Any):
            spec = spec_of_call(loader, backend, args, kwargs)
            encoder = loader(*args, **kwargs)
            encoder.spec = spec
            return encoder
        return from_pretrained
    return wrap
