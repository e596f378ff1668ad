"""(query, positive) pairs from the structure of a corpus, one extractor per format.

- Markdown (``.md``) and reStructuredText (``.rst``, and Sphinx's ``_sources/*.rst.txt``;
  each also gzipped, as Debian ships documentation): a heading -> the text of its section
  (up to the next heading); a heading that is a question -> a question/answer pair. A heading
  of one or two words is prefixed with its parent heading ("mylib: Installation").
- POD (``.pod``, Perl's documentation): the same, with ``=head1`` ... ``=head4`` headings
  (the Perl FAQ's "How do I ...?" headings make question/answer pairs).
- Question/answer text (``.txt``, ``.md``): ``Q:`` / ``A:`` (or ``Question:`` / ``Answer:``)
  lines.
- MediaWiki XML dumps (``.xml``, ``.xml.bz2``, e.g. gensim's Wikipedia sample): an article's
  title -> its lead paragraphs, "Title: Section" -> the section's text.
- JSONL (``.jsonl``): ``title``/``text`` or ``question``/``answer`` fields per line; a record
  with only a ``text`` is a document (below).
- Documents without structure (gensim's ``.cor``: one document per line; JSONL ``text``
  records): the first half of a document -> its second half, cut between sentences. Both
  sides are passages, so these pairs are symmetric (``SYMMETRIC``): no instruction on either
  side, as document-to-document similarity is encoded. MediaWiki articles also give such
  pairs: each passage (the lead, then each section) -> the passage after it.
- dictd databases (``NAME.index`` + ``NAME.dict`` or ``NAME.dict.dz``, as Debian's ``dict-*``
  packages install them): a headword -> its definition (entries of one headword joined).
- man pages (groff, ``name.SECTION[.gz]``): the NAME line -> the DESCRIPTION section.

Every pair remembers where it came from (``file:line``). Input that cannot be read raises a
``ValueError`` naming the file and line.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_jsonl

from .data import split_sentences
from .markup import (
    dict_definition,
    groff_text,
    markdown_text,
    pod_inline,
    pod_text,
    rst_text,
    squash,
    strip_wiki,
)

INSTRUCTIONS = {
    "heading": "Given a section heading, retrieve the section it introduces",
    "title": "Given a title, retrieve the text it introduces",
    "qa": "Given a question, retrieve the passage that answers it",
    "definition": "Given a term, retrieve its definition",
    "man": "Given a summary of a command or function, retrieve its manual page description",
    "same-document": "",  # symmetric: passages on both sides, neither gets an instruction
}
SYMMETRIC = "same-document"
MAN_FILE = re.compile(r"\.[1-9][a-z]*(\.gz)?$")
_WIKI_SKIP = {"references", "external links", "see also", "notes", "further reading",
              "bibliography", "sources", "footnotes", "citations", "gallery", "images"}
_QUESTION = re.compile(r"^\s*(?:\*\*)?(q|question)\s*[:.](?:\*\*)?\s*(.*)$", re.I)
_ANSWER = re.compile(r"^\s*(?:\*\*)?(a|answer)\s*[:.](?:\*\*)?\s*(.*)$", re.I)


@dataclass
class Pair:
    """One mined example before filtering; ``kind`` picks the default instruction."""

    query: str
    positive: str
    kind: str
    dataset: str
    source: str  # file:line


MAX_SOURCE_ENV = "LLM2VEC_RAG_MAX_SOURCE_MB"
_BLOCK = 2**20


def max_source_bytes() -> int:
    """The most bytes one source file may (decompress to and) hold: ``$LLM2VEC_RAG_MAX_SOURCE_MB``
    MiB, default 512. Mining keeps a file's text in memory; a compression bomb (a few KB that
    inflate to many GB) must fail with a message, not a MemoryError."""
    return int(float(os.environ.get(MAX_SOURCE_ENV, "512")) * 2**20)


def read_capped(f, path: str) -> bytes:
    """All of a binary stream, read in blocks, refused past :func:`max_source_bytes`."""
    cap, total, chunks = max_source_bytes(), 0, []
    for block in iter(lambda: f.read(_BLOCK), b""):
        total += len(block)
        if total > cap:
            raise UsageError(
                f"{path}: holds (or decompresses to) more than {cap // 2**20} MiB of text; "
                f"a compressed file that inflates this much is likely a compression bomb. Split "
                f"it into smaller files, or raise {MAX_SOURCE_ENV} if it is genuine.")
        chunks.append(block)
    return b"".join(chunks)


def read_text(path: str) -> str:
    """A file's text, gzip/bz2 transparently, read in blocks up to a size cap; a clear error
    for a broken or oversized archive."""
    opener = gzip.open if path.endswith(".gz") else bz2.open if path.endswith(".bz2") else open
    try:
        with opener(path, "rb") as f:
            data = read_capped(f, path)
    except (OSError, EOFError) as err:
        if opener is open:
            raise
        raise UsageError(f"{path}: cannot decompress ({err})") from None
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads lines


def format_of(path: str) -> str | None:
    """The extractor for a file name, or None (not a format pairs are mined from)."""
    name = os.path.basename(path).lower()
    if name.endswith((".md", ".markdown", ".md.gz", ".markdown.gz")):
        return "markdown"
    if name.endswith((".rst", ".rest", ".rst.txt", ".rst.gz", ".rst.txt.gz")):
        return "rst"  # .rst.txt: the copies of the sources in Sphinx's HTML output
    if name.endswith(".pod"):
        return "pod"
    if name.endswith(".index"):
        return "dictd"
    if name.endswith((".xml", ".xml.bz2", ".xml.gz")) or ".xml-p" in name:
        return "wiki"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".txt"):
        return "faq"
    if name.endswith((".cor", ".cor.gz", ".cor.bz2")):
        return "documents"
    if MAN_FILE.search(name):
        return "man"
    return None


def extract(path: str) -> list[Pair]:
    """All pairs of one file (see the module docstring for the formats)."""
    kind = format_of(path)
    if kind is None:
        raise UsageError(f"{path}: not a format pairs are mined from (Markdown .md, "
                         "reStructuredText .rst, POD .pod, MediaWiki .xml[.bz2], .jsonl, "
                         "dictd .index, man pages NAME.N[.gz], Q:/A: .txt, "
                         "one document a line .cor)")
    return list(EXTRACTORS[kind](path))


# headings: Markdown, reStructuredText -------------------------------------------------------

def _section_pairs(path: str, lines: list[str], headings: list[tuple[int, int, str, int]],
                   clean) -> Iterator[Pair]:
    """headings: (line index, level, title, first body line index), in order."""
    stack: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    for n, (at, level, title, body_start) in enumerate(headings):
        end = headings[n + 1][0] if n + 1 < len(headings) else len(lines)
        while stack and stack[-1][0] >= level:
            stack.pop()
        parent = stack[-1][1] if stack else None
        stack.append((level, title))
        body = clean("\n".join(lines[body_start:end]))
        question = title.rstrip().endswith("?")
        query = f"{parent}: {title}" if parent and len(title.split()) <= 2 and not question \
            else title
        yield Pair(query, body, "qa" if question else "heading",
                   "faq" if question else "headings", f"{path}:{at + 1}")


def markdown_pairs(path: str) -> Iterator[Pair]:
    lines = read_text(path).split("\n")
    headings, fence, i = [], None, 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        i = next((k + 1 for k in range(1, len(lines)) if lines[k].strip() in ("---", "...")), 0)
    while i < len(lines):
        line = lines[i]
        marker = re.match(r"^\s{0,3}(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
        elif fence is None:
            atx = re.match(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if atx and atx.group(2):
                headings.append((i, len(atx.group(1)), markdown_text(atx.group(2)), i + 1))
            elif line.strip() and re.match(r"^\s{0,3}(=+|-+)\s*$", nxt) \
                    and not re.match(r"^\s*([-*+]|\d+\.)\s", line):
                headings.append((i, 1 if nxt.strip()[0] == "=" else 2,
                                 markdown_text(line), i + 2))
                i += 1
        i += 1
    yield from _section_pairs(path, lines, headings, markdown_text)
    yield from qa_pairs(path, lines, markdown_text)


_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")


def rst_pairs(path: str) -> Iterator[Pair]:
    lines = read_text(path).split("\n")
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = levels
    headings, i = [], 0
    while i + 1 < len(lines):
        title, under = lines[i], lines[i + 1]
        over = i > 0 and _RST_ADORNMENT.match(lines[i - 1] or "") is not None
        if (title.strip() and not title[:1].isspace() and not _RST_ADORNMENT.match(title)
                and _RST_ADORNMENT.match(under) and len(under.rstrip()) >= len(title.rstrip())):
            style = (under[0], over and lines[i - 1].strip()[:1] == under[0])
            if style not in styles:
                styles.append(style)
            headings.append((i, styles.index(style) + 1, rst_text(title), i + 2))
            i += 2
            continue
        i += 1
    yield from _section_pairs(path, lines, headings, rst_text)


def pod_pairs(path: str) -> Iterator[Pair]:
    lines, code = read_text(path).split("\n"), False
    for i, line in enumerate(lines):  # code between =cut and the next command is no prose
        code = line.startswith("=cut") or (code and not line.startswith("="))
        lines[i] = "" if code else line
    headings = [(i, int(m.group(1)), squash(pod_inline(m.group(2))), i + 1)
                for i, m in enumerate(re.match(r"^=head([1-4])\s+(.*\S)", x) for x in lines)
                if m]
    yield from (p for p in _section_pairs(path, lines, headings, pod_text) if p.positive)


def qa_pairs(path: str, lines: list[str], clean=squash) -> Iterator[Pair]:
    """``Q:`` lines and the ``A:`` text after them (until the next question)."""
    question, answer, at, in_answer = None, [], 0, False

    def flush():
        if question is not None and answer:
            return Pair(clean(question), clean("\n".join(answer)), "qa", "faq", f"{path}:{at}")
        return None

    for n, line in enumerate(lines, 1):
        q, a = _QUESTION.match(line), _ANSWER.match(line)
        if q:
            pair = flush()
            if pair:
                yield pair
            question, answer, at, in_answer = q.group(2), [], n, False
        elif a and question is not None:
            answer, in_answer = [a.group(2)], True
        elif in_answer:
            answer.append(line)
    pair = flush()
    if pair:
        yield pair


def faq_pairs(path: str) -> Iterator[Pair]:
    yield from qa_pairs(path, read_text(path).split("\n"))


# titles and bodies: MediaWiki XML, JSONL ----------------------------------------------------

_WIKI_HEADING = re.compile(r"^(={2,6})\s*(.+?)\s*\1\s*$", re.M)


def wiki_pairs(path: str, min_words: int = 8) -> Iterator[Pair]:
    opener = bz2.open if path.endswith(".bz2") else gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            title, ns = None, "0"
            for _, elem in ET.iterparse(f):
                tag = elem.tag.rsplit("}", 1)[-1]
                if tag == "title":
                    title = elem.text or ""
                elif tag == "ns":
                    ns = (elem.text or "0").strip()
                elif tag == "text" and title and ns == "0":
                    text = elem.text or ""
                    if not text.lstrip().upper().startswith("#REDIRECT"):
                        yield from _article_pairs(path, title, text, min_words)
                elif tag == "page":
                    title, ns = None, "0"
                    elem.clear()
    except ET.ParseError as err:
        line = err.position[0] if err.position else "?"
        raise UsageError(f"{path}:{line}: not valid XML ({err})") from None
    except (OSError, EOFError) as err:
        raise UsageError(f"{path}: cannot read ({err})") from None


def _article_pairs(path: str, title: str, text: str, min_words: int) -> Iterator[Pair]:
    parts = _WIKI_HEADING.split(text)  # [lead, marks, heading, body, marks, heading, body...]
    lead = squash(strip_wiki(parts[0], min_words))
    where = f"{path}:{title}"
    passages = [lead] if lead else []
    if lead:
        yield Pair(title, lead, "title", "wiki-titles", where)
    for k in range(1, len(parts) - 2, 3):
        heading = squash(re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]|'{2,}", r"\1", parts[k + 1]))
        if heading.lower() in _WIKI_SKIP:
            continue
        body = squash(strip_wiki(parts[k + 2], min_words))
        if body:
            yield Pair(f"{title}: {heading}", body, "heading", "wiki-sections", where)
            passages.append(body)
    for a, b in zip(passages, passages[1:]):
        yield Pair(a, b, SYMMETRIC, "wiki-passages", where)


def jsonl_pairs(path: str) -> Iterator[Pair]:
    shape = '{"title", "text"}, {"question", "answer"} or {"text"}'
    for n, record in read_jsonl(path, shape=shape):
        for q, p, kind, dataset in (("title", "text", "title", "titles"),
                                    ("question", "answer", "qa", "faq")):
            if q in record and p in record:
                if not all(isinstance(record[k], str) for k in (q, p)):
                    raise UsageError(f"{path}:{n}: fields {q!r} and {p!r} must be strings")
                yield Pair(squash(record[q]), squash(record[p]), kind, dataset, f"{path}:{n}")
                break
        else:
            if "text" not in record or "question" in record or "answer" in record:
                raise UsageError(f"{path}:{n}: needs 'title' and 'text', 'question' and "
                                 f"'answer', or only 'text' fields (has {sorted(record)})")
            if not isinstance(record["text"], str):
                raise UsageError(f"{path}:{n}: field 'text' must be a string")
            yield from _halves(record["text"], f"{path}:{n}")


# documents without structure: halves ------------------------------------------------------

def _halves(text: str, source: str) -> Iterator[Pair]:
    """A document's first half -> its second half, cut at the sentence boundary nearest the
    middle by words; nothing for a document of one sentence."""
    sentences = split_sentences([squash(text)], min_words=1)
    if len(sentences) < 2:
        return
    sizes = [len(x.split()) for x in sentences]
    total = sum(sizes)
    cut = min(range(1, len(sentences)), key=lambda k: abs(2 * sum(sizes[:k]) - total))
    yield Pair(" ".join(sentences[:cut]), " ".join(sentences[cut:]), SYMMETRIC, "documents",
               source)


def document_pairs(path: str) -> Iterator[Pair]:
    """gensim's corpus format: one document per line."""
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if line.strip():
            yield from _halves(line, f"{path}:{n}")


# terms and definitions: dictd ---------------------------------------------------------------

_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64_number(text: str) -> int:
    value = 0
    for c in text:
        value = value * 64 + _B64[c]  # KeyError on a character outside dictd's alphabet
    return value


def dictd_pairs(path: str) -> Iterator[Pair]:
    stem = path[: -len(".index")]
    dict_path = next((p for p in (stem + ".dict.dz", stem + ".dict") if os.path.isfile(p)), None)
    if dict_path is None:
        raise UsageError(f"{path}: no {os.path.basename(stem)}.dict or .dict.dz beside it "
                         "(a dictd database is NAME.index + NAME.dict[.dz])")
    try:
        opener = gzip.open if dict_path.endswith(".dz") else open  # dictzip is gzip
        with opener(dict_path, "rb") as f:
            data = read_capped(f, dict_path)
    except (OSError, EOFError) as err:
        raise UsageError(f"{dict_path}: cannot read ({err})") from None
    entries: dict[str, list[tuple[str, str, int]]] = {}  # lower headword -> entries
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            try:
                if len(cols) not in (3, 4):
                    raise KeyError
                offset, length = _b64_number(cols[1]), _b64_number(cols[2])
            except KeyError:
                raise UsageError(f"{path}:{n}: expected headword<TAB>offset<TAB>length "
                                 f"(base64 numbers), got {line[:80]!r}") from None
            if offset + length > len(data):
                raise UsageError(f"{path}:{n}: entry {cols[0]!r} ends at byte {offset + length},"
                                 f" past the end of {dict_path} ({len(data)} bytes): index and "
                                 "dictionary do not match")
            headword = cols[0]
            if headword.startswith(("00-database", "00database")):
                continue  # the database's own metadata
            entry = data[offset: offset + length].decode("utf-8", errors="replace")
            entries.setdefault(headword.lower(), []).append((headword, entry, n))
    dataset = "dict-" + os.path.basename(stem)
    for group in entries.values():
        shown, definitions = group[0][0], []
        for headword, entry, _ in group:
            found = dict_definition(entry, headword)
            if found and found[1] and found[1] not in definitions:
                definitions.append(found[1])
                shown = found[0] if shown == headword else shown
        if definitions:
                yield Pair(shown, " ".join(definitions), "definition", dataset,
                       f"{path}:{group[0][2]}")


# man pages ----------------------------------------------------------------------------------

def man_pairs(path: str) -> Iterator[Pair]:
    lines = read_text(path).split("\n")
    sections: dict[str, list[str]] = {}
    current, name_line = None, 0
    for n, line in enumerate(lines, 1):
        heading = re.match(r"^\.(SH|Sh)\s+(.*)$", line)
        if heading:
            current = heading.group(2).strip().strip('"').upper()
            sections.setdefault(current, [])
            if current == "NAME":
                name_line = n
        elif current is not None:
            sections[current].append(line)
    name, description = sections.get("NAME"), sections.get("DESCRIPTION")
    if name is None or description is None:
        return  # an alias page (.so), or no NAME/DESCRIPTION: nothing to pair
    name = [re.sub(r"^\.Nd\s", ".Nd - ", x) for x in name]  # mdoc: .Nm foo / .Nd what
    yield Pair(groff_text(name), groff_text(description), "man", "man", f"{path}:{name_line}")


EXTRACTORS = {"markdown": markdown_pairs, "rst": rst_pairs, "pod": pod_pairs, "faq": faq_pairs,
              "wiki": wiki_pairs, "jsonl": jsonl_pairs, "dictd": dictd_pairs, "man": man_pairs,
              "documents": document_pairs}
