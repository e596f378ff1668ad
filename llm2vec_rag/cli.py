"""The ``llm2vec-rag`` command line: one entry point, a plain function per subcommand.

``encode`` lives here. The other parts register their own subcommands through an
``add_commands(subparsers, model_flags)`` function in their package's ``cli`` module
(``llm2vec_rag.integrations.cli``: index/search, ``llm2vec_rag.export.cli``: export,
``llm2vec_rag.training.cli``: train), so each command sits beside the code it drives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator

from .config import _POOLING_ALIASES, POOLING_MODES
from .files import read_jsonl, read_lines

COMMAND_MODULES = ("llm2vec_rag.integrations.cli", "llm2vec_rag.export.cli",
                   "llm2vec_rag.training.cli", "llm2vec_rag.serve.cli")


POOLING_CHOICES = (*POOLING_MODES, *_POOLING_ALIASES)


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
    g.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: auto)")
    g.add_argument("--causal", action="store_true",
                   help="keep causal attention (the LLM2Vec ablation's baseline)")
    if onnx:
        g.add_argument("--onnx", action="store_true",
                       help="--model is an exported ONNX folder: run it with ONNX Runtime")
    if cache:
        g.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the merged base + adapters in the model cache "
                            "($LLM2VEC_RAG_CACHE, else ~/.cache/llm2vec_rag) for fast "
                            "reloads (default: on for the bundled default model, off "
                            "otherwise)")
    return p


def use_default_model(args: argparse.Namespace) -> None:
    """No --model: the bundled default domain model (its base GGUF, its adapters first)."""
    if getattr(args, "model", "") is not None or not hasattr(args, "adapter"):
        return
    if getattr(args, "onnx", False):
        raise ValueError("--onnx needs --model: the folder written by `llm2vec-rag export onnx`")
    from .default_model import DEFAULT_ADAPTERS, smollm2_gguf

    args.model, args.adapter = smollm2_gguf(), DEFAULT_ADAPTERS + args.adapter
    if getattr(args, "cache", None) is None:
        args.cache = True  # a fused copy of this small model loads in ~2 s instead of ~25 s


def load_encoder(args: argparse.Namespace):
    """The encoder the shared model flags describe (PyTorch, or ONNX Runtime with --onnx)."""
    return encoder_spec(args).load()


def encoder_spec(args: argparse.Namespace, **options):
    """The ``EncoderSpec`` of the shared model flags (``options``: extra loader arguments)."""
    from .spec import EncoderSpec

    if getattr(args, "onnx", False):
        return EncoderSpec(str(args.model), tuple(args.adapter), "onnx",
                           dict(device=args.device, **options))
    return EncoderSpec(str(args.model), tuple(args.adapter), "torch", dict(
        gguf_file=args.gguf_file, pooling=args.pooling, max_length=args.max_length,
        device=args.device, dtype=args.dtype,
        enable_bidirectional=False if args.causal else None,
        cache=bool(getattr(args, "cache", False)) or None, **options))


def read_texts(path: str, field: str = "text") -> Iterator[str]:
    """Texts from a file (one per line, or JSONL with ``field``) or ``-`` for stdin."""
    if not path.lower().endswith(".jsonl"):
        for _, line in read_lines(path):
            yield line
        return
    for n, record in read_jsonl(path, shape=f'{{"{field}": ...}}'):
        if field not in record:
            raise ValueError(f"{path}:{n}: no {field!r} field (use --field to pick one)")
        if not isinstance(record[field], str):
            raise ValueError(f"{path}:{n}: {field!r} is {type(record[field]).__name__}, not a "
                             f"string")
        yield record[field]


OUTPUT_FORMATS = {".npy": "a float32 matrix", ".jsonl": '{"text", "embedding"} per line',
                  ".csv": "one vector per line, comma-separated, in input order"}


def output_format(path: str | None) -> str:
    """The format ``-o`` asks for, by extension; refuse one ``encode`` cannot write."""
    if path in (None, "-"):
        return ".jsonl"
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"-o {path}: cannot write {ext or 'a file without an extension'} "
                         "files; use " + ", ".join(f"{e} ({d})" for e, d in
                                                   OUTPUT_FORMATS.items()))
    return ext


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode texts to a .npy matrix, CSV, or JSONL ({"text", "embedding"} per line; stdout if
    no -o)."""
    fmt = output_format(args.output)  # before reading or loading anything
    if args.output == "-":
        args.output = None
    texts = list(read_texts(args.input, args.field))
    encoder = load_encoder(args)
    vectors = encoder.encode(texts, instruction=args.instruction, batch_size=args.batch_size,
                             normalize=args.normalize, show_progress=None,
                             max_batch_tokens=args.max_batch_tokens)
    if fmt in (".npy", ".csv"):
        import numpy as np

        if fmt == ".npy":
            with open(args.output, "wb") as f:  # exactly this name, even x.NPY
                np.save(f, vectors)
        else:
            np.savetxt(args.output, vectors, delimiter=",", fmt="%.8g")
    else:
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
        for text, vec in zip(texts, vectors):
            out.write(json.dumps({"text": text, "embedding": vec.tolist()}) + "\n")
        if out is not sys.stdout:
            out.close()
    print(f"encoded {len(texts)} texts -> {args.output or 'stdout'} "
          f"(dim {vectors.shape[1]})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm2vec-rag", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    flags = model_flags()

    p = sub.add_parser("encode", parents=[flags], help="encode texts to vectors",
                       description=cmd_encode.__doc__)
    p.add_argument("input", nargs="?", default="-",
                   help="text file (one text per line), .jsonl file, or - for stdin")
    p.add_argument("-o", "--output", default=None,
                   help="out.npy, out.jsonl or out.csv, by extension (default: JSONL on stdout)")
    p.add_argument("--field", default="text", help="JSONL field holding the text")
    p.add_argument("--instruction", default=None,
                   help="instruction for every text, attended to but not pooled "
                        "(default: none)")
    p.add_argument("--batch-size", type=int, default=32, help="most texts per batch")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="most padded tokens per batch (default: the encoder's, chosen for "
                        "its device)")
    p.add_argument("--normalize", action="store_true", help="write unit-length vectors")
    p.set_defaults(func=cmd_encode)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # that part is not written/installed yet
            if err.name != name:
                raise
            continue
        if hasattr(module, "add_commands"):
            module.add_commands(sub, flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        use_default_model(args)
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, RuntimeError) as err:  # OSError: files, network
        print(f"llm2vec-rag {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
