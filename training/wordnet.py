"""Gold word-level data from WordNet 3.0's example sentences, offline.

The LLM2Vec paper probes token representations on CoNLL-2003 (chunking, NER, POS), which
cannot be had here. WordNet's glosses carry example sentences in double quotes ("I can
breathe better when the air is clean") for the synset they illustrate, so each example is a
word in context with two gold labels:

- its **part of speech** (the synset's: noun, verb, adjective - satellites included - or
  adverb), the ``pos`` task;
- its **sense** (the synset itself): two examples of the same lemma and part of speech, same
  synset or not, the ``wic`` (word-in-context) task.

The target word is found in the example by its lemma or an inflection of it (regular
endings, plus WordNet's own exception lists: ``ran -> run``); single-word lemmas only, the
first synset word that occurs wins, examples without one are dropped. Train and test are split
by lemma (a hash of the lemma, whatever its part of speech), so test words are unseen.

Files (``data.noun``, ``data.verb``, ``data.adj``, ``data.adv`` and ``*.exc``): Debian's
``wordnet-base`` package, unpacked without root by ``scripts/fetch_wordnet.sh``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass

from llm2vec_rag.errors import UsageError

WORDNET_ENV = "LLM2VEC_RAG_WORDNET"
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {"noun": "noun", "verb": "verb", "adj": "adj", "adv": "adv"}
POS_LABELS = ("noun", "verb", "adj", "adv")
_SS_TYPE = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
_WORD = r"[A-Za-z0-9]"


@dataclass(frozen=True)
class WordExample:
    """A word in context: ``text[start:end]`` is the target word (an inflection of
    ``lemma``), ``pos`` its part of speech, ``synset`` its sense (``"noun:00001740"``)."""

    text: str
    start: int
    end: int
    lemma: str
    pos: str
    synset: str


def default_wordnet_dir() -> str:
    """``$LLM2VEC_RAG_WORDNET``, else the checkout's unpacked ``wordnet-base``, else the
    system's (``apt-get install wordnet-base``)."""
    if os.environ.get(WORDNET_ENV):
        return os.environ[WORDNET_ENV]
    local = os.path.join(_CHECKOUT, "data", "debian", "usr", "share", "wordnet")
    return local if os.path.isdir(local) or not os.path.isdir("/usr/share/wordnet") \
        else "/usr/share/wordnet"


def read_wordnet_examples(wordnet_dir: str | None = None) -> list[WordExample]:
    """Every usable example sentence of WordNet's four data files, in file order."""
    wordnet_dir = wordnet_dir or default_wordnet_dir()
    paths = wordnet_files(wordnet_dir)
    out: list[WordExample] = []
    seen: set[tuple[str, int]] = set()
    for pos, path in paths.items():
        inflections = read_exceptions(os.path.join(wordnet_dir, f"{FILES[pos]}.exc"))
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("  "):  # the licence header
                    continue
                for ex in parse_data_line(line, inflections, where=f"{path}:{n}"):
                    if (ex.text, ex.start) not in seen:  # one label per word occurrence
                        seen.add((ex.text, ex.start))
                        out.append(ex)
    return out


def wordnet_files(wordnet_dir: str | None = None) -> dict[str, str]:
    """``{pos: path of data.<pos>}``, or an error saying how to get the files (cheap: a CLI
    checks this before loading a model)."""
    wordnet_dir = wordnet_dir or default_wordnet_dir()
    paths = {pos: os.path.join(wordnet_dir, f"data.{name}") for pos, name in FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{missing[0]} not found: run scripts/fetch_wordnet.sh (unpacks Debian's "
            f"wordnet-base into data/debian), or pass the folder holding WordNet's data.noun, "
            f"data.verb, data.adj and data.adv (or set {WORDNET_ENV})")
    return paths


def read_exceptions(path: str) -> dict[str, list[str]]:
    """Irregular inflections by base form (``{"run": ["ran"]}``) from a ``*.exc`` file
    (``inflected base...`` per line); an absent file gives none."""
    table: dict[str, list[str]] = defaultdict(list)
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                for base in parts[1:]:
                    table[base].append(parts[0])
    return dict(table)


def parse_data_line(line: str, inflections: dict[str, list[str]] | None = None,
                    where: str = "") -> list[WordExample]:
    """The examples of one synset line of a WordNet ``data.*`` file (format: wndb(5WN)):
    ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss; "example"; "example"``."""
    head, bar, gloss = line.partition(" | ")
    fields = head.split()
    if not bar or len(fields) < 6 or fields[2] not in _SS_TYPE:
        raise UsageError(f"{where}: not a WordNet synset line (offset lex_filenum ss_type "
                         f"w_cnt words... | gloss): {line[:80]!r}")
    pos = _SS_TYPE[fields[2]]
    count = int(fields[3], 16)
    words = [re.sub(r"\(\w+\)$", "", fields[4 + 2 * i]).lower() for i in range(count)]
    lemmas = [w for w in words if "_" not in w]  # single words: one span per example
    out = []
    for example in re.findall(r'"([^"]+)"', gloss):
        example = example.strip()
        for lemma in lemmas:
            span = find_word(example, lemma, pos, (inflections or {}).get(lemma, ()))
            if span:
                out.append(WordExample(example, span[0], span[1], lemma, pos,
                                       f"{pos}:{fields[0]}"))
                break
    return out


def word_forms(lemma: str, pos: str, irregular=()) -> list[str]:
    """The lemma and its regular inflections for ``pos`` (plus ``irregular`` ones)."""
    forms = {lemma, *irregular}
    stem_y = lemma[:-1] + "i" if lemma.endswith("y") and len(lemma) > 2 else None
    if pos in ("noun", "verb"):
        forms |= {lemma + "s", lemma + "es"} | ({stem_y + "es"} if stem_y else set())
    if pos == "verb":
        stem_e = lemma[:-1] if lemma.endswith("e") else lemma
        forms |= {stem_e + "ed", stem_e + "ing", lemma + "d"}
        if stem_y:
            forms.add(stem_y + "ed")
        if re.search(r"[^aeiou][aeiou][bdgklmnprt]$", lemma):  # stop -> stopped
            forms |= {lemma + lemma[-1] + "ed", lemma + lemma[-1] + "ing"}
    if pos in ("adj", "adv"):
        stem_e = lemma[:-1] if lemma.endswith("e") else lemma
        forms |= {stem_e + "er", stem_e + "est"}
        if stem_y:
            forms |= {stem_y + "er", stem_y + "est"}
    return sorted(forms, key=len, reverse=True)  # longest first: "stopped" before "stop"


def find_word(text: str, lemma: str, pos: str, irregular=()) -> tuple[int, int] | None:
    """Character span of the first whole-word occurrence of ``lemma`` (or a form of it)."""
    m = _word_pattern(lemma, pos, tuple(irregular)).search(text)
    return (m.start(), m.end()) if m else None


@functools.lru_cache(maxsize=4096)
def _word_pattern(lemma: str, pos: str, irregular: tuple[str, ...]) -> re.Pattern:
    alternatives = "|".join(re.escape(f) for f in word_forms(lemma, pos, irregular))
    return re.compile(rf"(?<!{_WORD})(?:{alternatives})(?!{_WORD})", flags=re.IGNORECASE)


def is_test_lemma(lemma: str, test_fraction: float = 0.3) -> bool:
    """Whether ``lemma`` belongs to the test side: a stable hash, so every run, process and
    part of speech agrees, and no test word is seen in training."""
    h = int.from_bytes(hashlib.sha256(lemma.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < test_fraction


def split_by_lemma(examples: list[WordExample], test_fraction: float = 0.3
                   ) -> tuple[list[WordExample], list[WordExample]]:
    """(train, test) with disjoint lemmas."""
    train = [e for e in examples if not is_test_lemma(e.lemma, test_fraction)]
    test = [e for e in examples if is_test_lemma(e.lemma, test_fraction)]
    return train, test


def pos_sample(examples: list[WordExample], n: int, seed: int = 0) -> list[WordExample]:
    """Up to ``n`` examples, balanced over the four parts of speech (``n // 4`` each; fewer
    where a class has fewer), so chance accuracy is ~25%."""
    rng = random.Random(seed)
    out = []
    for label in POS_LABELS:
        group = [e for e in examples if e.pos == label]
        out += rng.sample(group, min(n // len(POS_LABELS), len(group)))
    rng.shuffle(out)
    return out


def wic_pairs(examples: list[WordExample], n: int, seed: int = 0,
              per_lemma: int = 4) -> list[tuple[WordExample, WordExample, int]]:
    """Up to ``n`` pairs ``(a, b, same_sense)``: two examples of the same lemma and part of
    speech, half from one synset (1) and half from two (0); at most ``per_lemma`` of each
    label per lemma, so a few polysemous words do not dominate."""
    rng = random.Random(seed)
    by_word: dict[tuple[str, str], list[WordExample]] = defaultdict(list)
    for e in examples:
        by_word[(e.lemma, e.pos)].append(e)
    same, different = [], []
    for key in sorted(by_word):
        group = by_word[key]
        pos_pairs = [(a, b, 1) for i, a in enumerate(group) for b in group[i + 1:]
                     if a.synset == b.synset]
        neg_pairs = [(a, b, 0) for i, a in enumerate(group) for b in group[i + 1:]
                     if a.synset != b.synset]
        same += rng.sample(pos_pairs, min(per_lemma, len(pos_pairs)))
        different += rng.sample(neg_pairs, min(per_lemma, len(neg_pairs)))
    half = min(n // 2, len(same), len(different))
    out = rng.sample(same, half) + rng.sample(different, half)
    rng.shuffle(out)
    return out
