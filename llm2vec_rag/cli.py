"""The ``llm2vec-rag`` command line: one entry point, a plain function per subcommand.

``encode`` lives here. The other parts register their own subcommands through an
``add_commands(subparsers, model_flags)`` function in their package's ``cli`` module
(``llm2vec_rag.integrations.cli``: index/search, ``llm2vec_rag.export.cli``: export,
``llm2vec_rag.training.cli``: train, ``llm2vec_rag.serve.cli``: serve), so each command sits
beside the code it drives. The flags they share, and the one mapping from flags to an
``EncoderSpec``, are in ``llm2vec_rag.flags``. A command reports bad input with ``UsageError``
and an environment problem with ``SetupError`` (``llm2vec_rag.errors``), which ``main`` prints
in one line; any other exception keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import warnings
from collections.abc import Iterator

from .errors import SetupError, UsageError
from .files import read_jsonl, read_lines, same_file
from .flags import (  # noqa: F401 - model_flags, use_default_model: public here too
    POOLING_CHOICES,
    model_flags,
    spec_from_args,
    use_default_model,
)


def load_encoder(args: argparse.Namespace):
    """Deprecated: ``spec_from_args(args).load()`` (``llm2vec_rag.flags``)."""
    warnings.warn("llm2vec_rag.cli.load_encoder is deprecated: use "
                  "llm2vec_rag.flags.spec_from_args(args).load()", DeprecationWarning,
                  stacklevel=2)
    return spec_from_args(args).load()


def encoder_spec(args: argparse.Namespace, **options):
    """Deprecated name of ``llm2vec_rag.flags.spec_from_args``."""
    warnings.warn("llm2vec_rag.cli.encoder_spec is deprecated: use "
                  "llm2vec_rag.flags.spec_from_args", DeprecationWarning, stacklevel=2)
    return spec_from_args(args, **options)


def read_texts(path: str, field: str = "text") -> Iterator[str]:
    """Texts from a file (one per line, or JSONL with ``field``) or ``-`` for stdin."""
    if not path.lower().endswith(".jsonl"):
        for _, line in read_lines(path):
            yield line
        return
    for n, record in read_jsonl(path, shape=f'{{"{field}": ...}}'):
        if field not in record:
            raise UsageError(f"{path}:{n}: no {field!r} field (use --field to pick one)")
        if not isinstance(record[field], str):
            raise UsageError(f"{path}:{n}: {field!r} is {type(record[field]).__name__}, not a "
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
        raise UsageError(f"-o {path}: cannot write {ext or 'a file without an extension'} "
                         "files; use " + ", ".join(f"{e} ({d})" for e, d in
                                                   OUTPUT_FORMATS.items()))
    return ext


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode texts to a .npy matrix, CSV, or JSONL ({"text", "embedding"} per line; stdout if
    no -o)."""
    fmt = output_format(args.output)  # before reading or loading anything
    if args.output == "-":
        args.output = None
    if args.output and args.input != "-" and same_file(args.input, args.output):
        raise UsageError(f"-o {args.output} is the input file {args.input}: writing the vectors "
                         "there would destroy the texts. Choose another output file.")
    texts = list(read_texts(args.input, args.field))
    encoder = spec_from_args(args).load()
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


DEFAULT_MODEL_PARTS = ("gguf", "adapters", "unsupervised-adapters", "query-instruction")


def cmd_default_model(args: argparse.Namespace) -> int:
    """Print one part of the bundled default model (for scripts): the path of its base GGUF,
    its adapters or the unsupervised (MNTP, SimCSE) ones, space-separated, or its query
    instruction."""
    from . import default_model

    if args.part == "gguf":
        print(default_model.smollm2_gguf())
    elif args.part == "query-instruction":
        print(default_model.QUERY_INSTRUCTION)
    else:
        print(*(default_model.DEFAULT_ADAPTERS if args.part == "adapters"
                else default_model.UNSUPERVISED_ADAPTERS))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` (the subcommand about to run) only the modules that
    command needs are imported (see ``command_modules``)."""
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

    p = sub.add_parser("default-model", help="print a part of the bundled default model",
                       description=cmd_default_model.__doc__)
    p.add_argument("part", choices=DEFAULT_MODEL_PARTS,
                   help="gguf (base weights path), adapters, unsupervised-adapters "
                        "(MNTP + SimCSE) or query-instruction")
    p.set_defaults(func=cmd_default_model)

    for name in command_modules(command):
        importlib.import_module(name).add_commands(sub, flags)
    return parser


# The modules that register the other subcommands (``add_commands``), in --help order, and
# the commands each one adds.
COMMAND_MODULES = {"llm2vec_rag.integrations.cli": ("index", "search"),
                   "llm2vec_rag.export.cli": ("export",),
                   "llm2vec_rag.training.cli": ("train", "eval"),
                   "llm2vec_rag.serve.cli": ("serve",)}
CORE_COMMANDS = ("encode", "default-model")


def command_modules(command: str | None) -> list[str]:
    """The command modules to import for ``command``: none for the core commands, the one
    that registers a known command, all of them otherwise (--help, a typo).

    Why: ``encode`` is where a user waits for a first vector; training, export, the
    integrations and the server import nothing it needs."""
    if command in CORE_COMMANDS:
        return []
    for name, commands in COMMAND_MODULES.items():
        if command in commands:
            return [name]
    return list(COMMAND_MODULES)


OPENMP_WAIT = "OMP_WAIT_POLICY"
# Commands left with OpenMP's own wait policy: the server's throughput and latency (the
# serving table of benchmarks/README.md) were measured with it, and the passive policy has
# not been measured there on idle cores.
OPENMP_DEFAULT_WAIT = ("serve",)


def passive_openmp_threads() -> None:
    """Let torch's OpenMP threads sleep, not spin, while they wait for work
    (``OMP_WAIT_POLICY=PASSIVE``) unless the environment already chooses.

    Why: on a CPU shared with other jobs, a spinning thread holds its core while the thread
    it waits for is not running, and every parallel region of the forward pass waits on it:
    on 2 shared cores one short text took up to 2.4 s instead of 0.1 s, and 48 long texts
    66 s instead of 28 s; idle, sleeping costs ~0.04 s on one text (``benchmarks/README.md``,
    "Seconds to the first vector"). The vectors are the same bits. libgomp reads the
    variable once, when torch loads it, so it is set before torch is imported; like the malloc
    tuning, a setting of the whole process, so the command sets it for its own process and
    the library never does."""
    os.environ.setdefault(OPENMP_WAIT, "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    """Run one command. The errors raised on purpose for bad input or environment
    (``UsageError``: a flag, a config key, a record; ``SetupError``: a missing extra, no
    device, a locked store; ``OSError``: files, network) end with one line and exit code 2,
    as argparse's own usage errors do. Anything else is a bug and keeps its traceback (exit
    code 1), a ``ValueError`` or ``RuntimeError`` from numpy or torch included.
    ``LLM2VEC_RAG_DEBUG=1`` shows the traceback of every error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    if command not in OPENMP_DEFAULT_WAIT:
        passive_openmp_threads()  # before anything imports torch
    from .allocator import tune_from_env

    args = build_parser(command).parse_args(argv)
    tune_from_env(default="tuned")  # a CLI process owns its allocator: keep freed memory
    try:
        with one_line_warnings(f"llm2vec-rag {args.command}"):
            use_default_model(args)
            return int(args.func(args) or 0)
    except (UsageError, SetupError, OSError) as err:
        if os.environ.get("LLM2VEC_RAG_DEBUG"):
            raise
        print(f"llm2vec-rag {args.command}: error: {err}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Our own warnings (a text truncated, a setting mapped) as one line each, like the
    errors, instead of Python's ``file:line: UserWarning`` plus a line of our source; a
    library's warnings keep their usual form, so their origin stays visible."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not _ours(filename) or os.environ.get("LLM2VEC_RAG_DEBUG"):
            return original(message, category, filename, lineno, file, line)
        print(f"{prefix}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _ours(filename: str) -> bool:
    """Whether ``filename`` is a module of this package (its subpackages may live in other
    folders of a checkout: export, integrations, training)."""
    folders = {os.path.dirname(getattr(m, "__file__", None) or "") for name, m in
               list(sys.modules.items()) if name.partition(".")[0] == "llm2vec_rag"}
    return any(folder and os.path.dirname(filename) == folder for folder in folders)


if __name__ == "__main__":
    sys.exit(main())
