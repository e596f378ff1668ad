"""The model flags every ``llm2vec-rag`` subcommand shares, and the one mapping from them to an
``EncoderSpec``.

Each command that loads a model (encode, index, index --ray, search, serve, train, export,
eval) turns its flags into a spec with ``spec_from_args``, so a loader option given on the
command line reaches every process that builds the encoder (pool workers, Ray actors, the
server) the same way. Kept below the command modules, which all import it.
"""

from __future__ import annotations

import argparse
from typing import Any

from .config import POOLING_ALIASES, POOLING_MODES
from .errors import UsageError
from .spec import EncoderSpec

POOLING_CHOICES = (*POOLING_MODES, *POOLING_ALIASES)
# loader options some commands add to their own parser (e.g. serve's instructions)
OPTIONAL_LOADER_FLAGS = ("query_instruction", "document_instruction")


def model_flags(onnx: bool = True, cache: bool = True) -> argparse.ArgumentParser:
    """Flags shared by every command that loads a model. ``onnx`` / ``cache``: offer
    --onnx / --cache (only where the command's loading uses them)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="hub id, local folder, or path to a .gguf file (default: the bundled "
                        "default model, SmolLM2-135M + its MNTP/SimCSE adapters)")
    g.add_argument("--adapter", action="append", default=[],
                   help="LoRA adapter folder or hub id; repeat to apply several in order")
    g.add_argument("--gguf-file", default=None, help="GGUF file name inside --model's folder")
    g.add_argument("--pooling", default=None, choices=POOLING_CHOICES, metavar="POOLING",
                   help="mean|weighted_mean|eos|last|bos (default: saved config, else mean)")
    g.add_argument("--max-length", type=int, default=None,
                   help="most tokens per text, instruction included; longer texts are cut "
                        "at the end (default: saved config, else 512)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    g.add_argument("--dtype", default=None,
                   help="float32 | bfloat16 | float16 | bf16-autocast (fp32 weights, bf16 "
                        "matmuls) (default: auto)")
    g.add_argument("--causal", action="store_true",
                   help="keep causal attention (the LLM2Vec ablation's baseline)")
    if onnx:
        g.add_argument("--onnx", action="store_true",
                       help="--model is an exported ONNX folder: run it with ONNX Runtime")
        g.add_argument("--openvino", action="store_true",
                       help="--model is an exported ONNX folder (or the OpenVINO IR of "
                            "`export openvino`): run it with OpenVINO (extra [openvino])")
    if cache:
        g.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the merged base + adapters in the model cache "
                            "($LLM2VEC_RAG_CACHE, else ~/.cache/llm2vec_rag) for fast "
                            "reloads (default: on for the bundled default model, off "
                            "otherwise)")
    return p


def exported_backend(args: argparse.Namespace) -> str | None:
    """The runtime of an exported folder the flags ask for: "openvino" (--openvino, with or
    without --onnx), "onnx" (--onnx), or None (a PyTorch model)."""
    if getattr(args, "openvino", False):
        return "openvino"
    return "onnx" if getattr(args, "onnx", False) else None


def use_default_model(args: argparse.Namespace) -> None:
    """No --model: the bundled default domain model (its base GGUF, its adapters first)."""
    if getattr(args, "model", "") is not None or not hasattr(args, "adapter"):
        return
    backend = exported_backend(args)
    if backend:
        flag = "--openvino" if backend == "openvino" else "--onnx"
        raise UsageError(f"{flag} needs --model: the folder written by `llm2vec-rag export onnx`")
    from .default_model import DEFAULT_ADAPTERS, smollm2_gguf

    args.model, args.adapter = smollm2_gguf(), DEFAULT_ADAPTERS + args.adapter
    if getattr(args, "cache", None) is None:
        args.cache = True  # a fused copy of this small model loads in ~0.7 s, not ~25 s


def spec_from_args(args: argparse.Namespace, **options: Any) -> EncoderSpec:
    """The ``EncoderSpec`` the shared model flags (and a command's own loader flags in
    ``OPTIONAL_LOADER_FLAGS``) describe; ``options``: extra loader arguments. Unset flags are
    left out, so the loader's defaults (and the model's saved config) apply."""
    given = {name: getattr(args, name, None) for name in OPTIONAL_LOADER_FLAGS}
    given.update(device=args.device, max_length=args.max_length, pooling=args.pooling)
    backend = exported_backend(args)
    if backend:
        return EncoderSpec(str(args.model), tuple(args.adapter), backend, {**given, **options})
    given.update(gguf_file=args.gguf_file, dtype=args.dtype,
                 enable_bidirectional=False if args.causal else None,
                 cache=True if getattr(args, "cache", None) else None)
    return EncoderSpec(str(args.model), tuple(args.adapter), "torch", {**given, **options})
