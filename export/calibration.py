"""Calibration inputs for static int8 (ONNX Runtime QDQ, OpenVINO NNCF): real texts, tokenized
by the encoder's own preprocessing path, as the graph will see them when serving.

Static quantization fixes each activation's int8 range from the ranges seen here, so the
texts must look like the traffic: short instructed queries (the case per-tensor dynamic
int8 gets wrong) as well as passages. Every text is therefore fed twice: as a document (no
instruction) and, when the model has a query instruction, as a query with it.

Sources: a text file (one text per line), a JSONL file (one JSON string, or an object with
a "text" field, per line; a BEIR ``corpus.jsonl`` or ``queries.jsonl`` works as is), or a
list of strings. Default: ``DEFAULT_TEXTS``, short questions and passages of a few
domains. NumPy only: no runtime library is imported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_lines

CALIBRATION_SIZE = 128  # texts used from a source (evenly spaced when it holds more)
CALIBRATION_BATCH = 8  # rows per calibration batch

DEFAULT_TEXTS = (
    "how do I mount a USB drive",
    "error E1234 in fstab at boot",
    "what is the capital of Australia",
    "python list comprehension with a condition",
    "symptoms of vitamin D deficiency",
    "best way to store vectors for search",
    "why does my bash script ignore the exit code of a pipe",
    "difference between a process and a thread",
    "who wrote the origin of species",
    "reset a forgotten root password",
    "apt",
    "ssh key permissions too open",
    "How long does it take for light from the Sun to reach the Earth?",
    "Which command shows the disk space used by each directory?",
    "Canberra is the capital city of Australia, chosen as a compromise between Sydney and "
    "Melbourne.",
    "The set -o pipefail option makes a pipeline return the status of the last command that "
    "failed, rather than the status of the last command in the pipeline.",
    "A process has its own address space; threads of one process share memory and file "
    "descriptors, which makes communication cheap and synchronisation necessary.",
    "Charles Darwin published On the Origin of Species in 1859, arguing that populations "
    "evolve over generations through natural selection.",
    "To mount a USB drive, find its device name with lsblk, create a mount point such as "
    "/mnt/usb, and run mount /dev/sdb1 /mnt/usb as root. Add an entry to /etc/fstab to mount "
    "it at boot, using the UUID reported by blkid so that the entry survives a change of "
    "device names.",
    "Vitamin D deficiency can cause tiredness, bone pain, muscle weakness and low mood. It is "
    "common in winter at high latitudes, when the skin makes little vitamin D from sunlight, "
    "and is diagnosed with a blood test.",
    "OpenSSH refuses a private key that other users can read. Restrict it with chmod 600 "
    "~/.ssh/id_ed25519 and make sure the .ssh directory itself is not writable by others.",
    "The committee met on Tuesday to review the budget. After a long debate about the cost "
    "of the new library, members agreed to postpone the decision until the spring, when the "
    "final figures from the contractors are expected.",
    "Embeddings map texts to vectors so that texts with similar meanings lie close together; "
    "a vector database indexes them and returns the nearest neighbours of a query vector.",
    "In 1969 the Apollo 11 mission landed two astronauts on the Moon. Neil Armstrong and Buzz "
    "Aldrin spent about two and a half hours outside the lunar module, collecting samples "
    "and setting up experiments, while Michael Collins orbited above.",
    "Photosynthesis converts light energy into chemical energy: chlorophyll absorbs light, "
    "water is split, oxygen is released, and carbon dioxide is fixed into sugars.",
    "du -sh * prints the size of every file and directory in the current directory in a "
    "human readable form; add --max-depth=1 to limit the depth when given a path.",
    "Le marché ouvre à huit heures le samedi; on y trouve des fruits, du fromage et du pain.",
    "Numbers such as 3.14159, 2.71828 and 6.022e23 appear in scientific writing; code uses "
    "names like max_batch_tokens and paths like /usr/share/doc.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and enough milk to "
    "make a smooth batter. Let it rest for half an hour before cooking.",
    "Refunds are processed within five business days. If you paid by card, the amount "
    "appears on your statement as a credit from the original merchant.",
    "def mean(xs):\n    return sum(xs) / len(xs)",
    "Light from the Sun takes about eight minutes and twenty seconds to reach the Earth, "
    "travelling roughly 150 million kilometres.",
)


def read_calibration(source: str | os.PathLike | Sequence[str] | None,
                     limit: int = CALIBRATION_SIZE) -> list[str]:
    """The calibration texts of ``source`` (see the module doc), at most ``limit`` of them,
    evenly spaced over the source so that a file sorted by topic or length is covered."""
    if source is None:
        texts = list(DEFAULT_TEXTS)
    elif isinstance(source, (str, os.PathLike)):
        texts = _read_file(Path(source).expanduser())
    else:
        texts = list(source)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"calibration texts must be strings; item {bad[0]} is a "
                            f"{type(texts[bad[0]]).__name__}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UsageError(f"the calibration source {_name(source)} holds no non-empty text: "
                         "give a file with one text per line, or JSONL with a 'text' field")
    if len(texts) > limit:
        texts = [texts[int(i)] for i in np.linspace(0, len(texts) - 1, limit)]
    return texts


def calibration_batches(preprocessor, texts: Sequence[str], query_instruction: str | None,
                        batch_size: int = CALIBRATION_BATCH) -> list:
    """Padded batches (``Preprocessor.batches``) of every text as a document and, when the
    model has a query instruction, as a query: what the quantizers run to fix the ranges."""
    rows = preprocessor.encode(list(texts))
    if query_instruction:
        rows += preprocessor.encode(list(texts), query_instruction)
    return list(preprocessor.batches(rows, batch_size))


def describe(source, texts: Sequence[str]) -> dict:
    """What a graph was calibrated on, for its ``onnx_export.json``."""
    name = "built-in" if source is None else (
        os.fspath(source) if isinstance(source, (str, os.PathLike)) else "list")
    return {"source": name, "texts": len(texts)}


def _read_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"calibration file {str(path)!r} does not exist: pass a text file (one text per "
            "line) or JSONL ('text' field), or leave --calibration out for the built-in texts")
    lines = list(read_lines(path))  # a line that is not UTF-8 is named, not a traceback
    if path.suffix.lower() not in (".jsonl", ".json"):
        return [line for _, line in lines]
    texts = []
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}, line {number}: not JSON ({err.msg}); JSONL calibration "
                             "files hold one JSON string or object per line") from None
        if isinstance(record, dict):
            record = record.get("text")
        if not isinstance(record, str):
            raise UsageError(f"{path}, line {number}: expected a string or an object with a "
                             "string 'text' field")
        texts.append(record)
    return texts


def _name(source) -> str:
    return repr(str(source)) if isinstance(source, (str, os.PathLike)) else "(list)"
