"""Training text from disk or the Hugging Face hub, and the shapes each stage consumes.

Sources (``data:`` in a config, one or many):

- a ``.txt``/``.cor``/any text file: one text per non-empty line;
- a ``.jsonl`` file: one JSON object per line, the text under ``text_field``;
- a folder written by ``datasets.Dataset.save_to_disk``;
- ``hf:NAME`` or ``hf:NAME:CONFIG`` (``split`` from the config): ``datasets.load_dataset``.

Supervised JSONL schema, one example per line::

    {"query": "how do vaccines work", "positive": "Vaccines train the immune system ...",
     "negatives": ["The stock market fell ..."],            # or "negative": "...", optional
     "instruction": "Given a question, retrieve passages that answer it",   # optional
     "dataset": "my_faq"}                                   # optional, default: the file name

Every batch is drawn from one ``dataset`` (in-batch negatives from another task are too easy).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_jsonl, read_lines

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def read_records(source: str, split: str = "train") -> tuple[list[dict], str]:
    """Records (dicts) from one source, plus a short name for it; errors name the source."""
    source = str(source)
    if source.startswith("hf:"):
        import datasets

        name, _, subset = source[3:].partition(":")
        return list(datasets.load_dataset(name, subset or None, split=split)), name
    if os.path.isdir(source):
        import datasets

        loaded = datasets.load_from_disk(source)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UsageError(f"{source}: no split {split!r} (has {list(loaded)})")
            loaded = loaded[split]
        return list(loaded), os.path.basename(os.path.normpath(source))
    if not os.path.isfile(source):
        raise FileNotFoundError(f"Training data {source!r} not found (a file, a saved dataset "
                                "folder, or hf:NAME for a Hugging Face dataset)")
    name = os.path.basename(source).split(".")[0]
    if source.lower().endswith((".jsonl", ".json")):
        return [record for _, record in read_jsonl(source)], name
    return [{"text": line.strip()} for _, line in read_lines(source) if line.strip()], name


def load_texts(sources: list[str], text_field: str = "text", split: str = "train",
               max_texts: int | None = None) -> list[str]:
    """Non-empty texts from all sources, in order; a clear error for a missing field."""
    texts: list[str] = []
    for source in sources:
        records, _ = read_records(source, split)
        for n, record in enumerate(records, 1):
            field = text_field if text_field in record or not _is_plain(record) else "text"
            if field not in record:
                raise UsageError(f"{source}: record {n} has no {text_field!r} field "
                                 f"(fields: {sorted(record)}); set text_field=")
            text = record[field]
            if not isinstance(text, str):
                raise UsageError(f"{source}: record {n} field {field!r} is not a string")
            if text.strip():
                texts.append(text.strip())
    if max_texts is not None:
        texts = texts[:max_texts]
    if not texts:
        raise UsageError(f"No text found in {sources}: the corpus is empty")
    return texts


def _is_plain(record: dict) -> bool:
    return list(record) == ["text"]


def split_sentences(texts: list[str], min_words: int = 3) -> list[str]:
    """Sentences for SimCSE (the paper trains on single Wikipedia sentences), short ones dropped.

    A punctuation rule, not a linguistic model: good enough for positive pairs, which only need
    to be the same text twice.
    """
    out = []
    for text in texts:
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if len(sentence.split()) >= min_words:
                out.append(sentence)
    return out


def token_blocks(texts: list[str], tokenizer, block_size: int) -> list[list[int]]:
    """Texts joined with EOS and cut into full blocks of ``block_size`` tokens (as run_mlm)."""
    ids: list[int] = []
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for chunk in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(chunk + sep)
    blocks = [ids[i: i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    if not blocks:
        raise UsageError(f"The corpus has {len(ids)} tokens, fewer than one block of "
                         f"max_length={block_size}: add text or lower max_length")
    return blocks


@dataclass
class Example:
    """One supervised example: the query is instruction-prefixed, documents are not."""

    query: str
    positive: str
    negatives: list[str]
    instruction: str
    dataset: str


def load_examples(sources: list[str], num_negatives: int, split: str = "train",
                  default_instruction: str | None = None) -> list[Example]:
    """Supervised examples from JSONL/datasets in the schema above; errors name the record."""
    examples = []
    for source in sources:
        records, name = read_records(source, split)
        for n, r in enumerate(records, 1):
            where = f"{source}: record {n}"
            for key in ("query", "positive"):
                if not isinstance(r.get(key), str) or not r[key].strip():
                    raise UsageError(f"{where}: missing or empty {key!r} field")
            negatives = r.get("negatives", [r["negative"]] if "negative" in r else [])
            if isinstance(negatives, str) or not all(isinstance(x, str) for x in negatives):
                raise UsageError(f"{where}: 'negatives' must be a list of strings")
            if len(negatives) < num_negatives:
                raise UsageError(f"{where}: {len(negatives)} negatives, num_negatives="
                                 f"{num_negatives} needed (lower num_negatives or add some)")
            instruction = r.get("instruction", default_instruction) or ""
            examples.append(Example(r["query"], r["positive"], list(negatives[:num_negatives]),
                                    instruction.strip(), str(r.get("dataset", name))))
    if not examples:
        raise UsageError(f"No examples found in {sources}")
    return examples
