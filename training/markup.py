"""Markup to plain text for pair mining: Markdown, reStructuredText, POD, MediaWiki, groff
(man) and dictd entries. Rough by design: it keeps the words a reader sees and drops the
syntax, so that a query is matched to prose, not to markup."""

from __future__ import annotations

import html
import re

_WS = re.compile(r"\s+")


def squash(text: str) -> str:
    """Collapse whitespace (paragraph structure is not needed by the encoder)."""
    return _WS.sub(" ", text).strip()


# Markdown ---------------------------------------------------------------------------------

def markdown_text(text: str) -> str:
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images: alt text
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # [label](url)
    text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", text)  # [label][ref]
    text = re.sub(r"^\s*\[[^\]]+\]:\s+\S+.*$", " ", text, flags=re.M)  # link definitions
    text = re.sub(r"^\s*(```|~~~).*$", " ", text, flags=re.M)  # code fences (code is kept)
    text = re.sub(r"</?[A-Za-z][^>]*>", " ", text)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = re.sub(r"^\s{0,3}>\s?", "", text, flags=re.M)  # block quotes
    text = re.sub(r"^\s*\|?[-:| ]{3,}\|?\s*$", " ", text, flags=re.M)  # table rules
    return squash(html.unescape(text))


# reStructuredText -------------------------------------------------------------------------

_RST_DROP_DIRECTIVES = {"toctree", "image", "figure", "include", "raw", "index", "contents",
                        "meta", "autosummary", "literalinclude", "only", "highlight"}


def rst_text(text: str) -> str:
    out, skipping = [], False
    for line in text.split("\n"):
        directive = re.match(r"^\s*\.\.\s+([\w:-]+)::", line)
        if directive:
            skipping = directive.group(1).split(":")[-1] in _RST_DROP_DIRECTIVES
            continue
        if re.match(r"^\s*\.\.(\s|$)", line):  # comments, targets, substitutions
            skipping = True
            continue
        if skipping and (not line.strip() or line[:1].isspace()):
            continue
        skipping = False
        if re.match(r"^\s*:[\w -]+:(\s|$)", line):  # field/option lines
            continue
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r":[\w:.+-]+:`([^`<]*?)\s*(<[^>]*>)?`", r"\1", text)  # :role:`text <t>`
    text = re.sub(r"`([^`<]+?)\s*<[^>]*>`__?", r"\1", text)  # `text <url>`_
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_{0,2}", r"\1", text)
    text = re.sub(r"(\*\*|\*)(\S[^*]*?)\1", r"\2", text)
    text = re.sub(r"::$", ":", text, flags=re.M)
    return squash(text)


# POD (Perl's documentation) ---------------------------------------------------------------

_POD_CODE = re.compile(r"([A-Z])<{2,}\s(.*?)\s>{2,}|([A-Z])<([^<>]*)>", re.S)


def pod_inline(text: str) -> str:
    """Formatting codes to their text: ``C<$x>``, ``C<< $x->y >>``, ``L<text|target>``,
    ``L<perlfunc/open>``, ``E<lt>``; ``X<>`` and ``Z<>`` (index entries) dropped."""
    def one(m: re.Match) -> str:
        code, body = m.group(1, 2) if m.group(1) else m.group(3, 4)
        if code in "XZ":
            return ""
        if code == "E":
            return {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}.get(body, "")
        if code == "L":
            if "|" in body:
                body = body.split("|", 1)[0]
            elif "://" not in body:  # L<perlfunc/open>: a page and its section
                body = body.replace("/", " ")
            return body.strip('"')
        return body
    for _ in range(4):  # nested codes, innermost first
        text, n = _POD_CODE.subn(one, text)
        if not n:
            break
    return text


def pod_text(text: str) -> str:
    """A POD section's prose: commands (``=over``, ``=item`` ...) keep only their text,
    ``=begin``/``=end`` and ``=for`` blocks are dropped, verbatim (indented) code is kept."""
    out, skipping, for_paragraph = [], False, False
    for line in text.split("\n"):
        command = re.match(r"^=(\w+)\s*(.*)$", line)
        if command:
            name, rest = command.groups()
            skipping = name == "begin" or (skipping and name != "end")
            for_paragraph = name == "for"  # its paragraph, up to a blank line
            if name == "item":
                out.append(rest.lstrip("*0123456789. "))
            continue
        for_paragraph = for_paragraph and bool(line.strip())
        if not skipping and not for_paragraph:
            out.append(line)
    return squash(pod_inline("\n".join(out)))


# MediaWiki --------------------------------------------------------------------------------

def strip_wiki(text: str, min_words: int = 20) -> str:
    """Wiki markup -> plain paragraphs (one per line) of at least ``min_words`` words; lists,
    tables, headings, captions and leftovers are dropped."""
    previous = None
    while previous != text:  # templates nest: remove the innermost first
        previous, text = text, re.sub(r"\{\{[^{}]*\}\}", "", text)
    text = re.sub(r"\{\|.*?\|\}", "", text, flags=re.S)  # tables
    text = re.sub(r"<!--.*?-->|<ref[^>]*/>|<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"\[\[(?:File|Image|Category):(?:[^\[\]]|\[\[[^\]]*\]\])*\]\]", "", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)  # [[target|label]]
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]|\[https?://\S+\]", r"\1", text)
    text = re.sub(r"<[^>]+>|'{2,}", "", html.unescape(text))
    paragraphs = []
    for line in text.split("\n"):
        line = squash(line)
        if line and line[0] not in "=*#:;|!{}" and len(line.split()) >= min_words:
            paragraphs.append(line)
    return "\n".join(paragraphs)


# groff man pages --------------------------------------------------------------------------

_GROFF_CHARS = {"em": "-", "en": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'",
                "cq": "'", "bu": "*", "co": "(c)", "rg": "(R)", "tm": "(TM)", "mu": "x",
                "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "hy": "-", "mi": "-",
                "pl": "+", "eq": "=", "<=": "<=", ">=": ">=", "!=": "!=", "->": "->",
                "<-": "<-", "de": " degrees", "+-": "+-"}
_FONT_MACROS = {"B", "I", "R", "SM", "SB", "BR", "RB", "BI", "IB", "IR", "RI"}
_TEXT_MACROS = {"SS", "SH", "IP", "TP", "HP", "UR", "MT", "Nm", "Nd"}


def groff_inline(text: str) -> str:
    """Inline groff escapes -> text (fonts, special characters, string and number registers)."""
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)  # font changes
    text = re.sub(r"\\\[([^\]]*)\]", lambda m: _GROFF_CHARS.get(m.group(1), ""), text)
    text = re.sub(r"\\\((..)", lambda m: _GROFF_CHARS.get(m.group(1), ""), text)
    text = re.sub(r"\\[*n](\[[^\]]*\]|\(..|.)", "", text)  # strings, registers
    text = re.sub(r"\\[sv]'[^']*'|\\s[-+]?\d+", "", text)  # size changes
    text = re.sub(r"\\[&|^%c:)]", "", text)
    text = re.sub(r"\\[ ~0]", " ", text)
    text = text.replace("\\-", "-").replace("\\e", "\\").replace("\\.", ".")
    return re.sub(r"\\(.)", r"\1", text)


def _macro_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a
            for a in re.findall(r'"[^"]*"|\S+', rest)]


def groff_text(lines: list[str]) -> str:
    """Lines of a man page section -> plain text (requests dropped, macro arguments kept)."""
    out, skip_table = [], False
    for line in lines:
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".TS", ".EQ")):
            skip_table = True
        if skip_table:
            skip_table = not line.startswith((".TE", ".EN"))
            continue
        if line[:1] in ".'":
            name, _, rest = line[1:].strip().partition(" ")
            if name in _FONT_MACROS:
                args = _macro_args(rest)
                out.append(("" if len(name) == 2 and name not in ("SM", "SB") else " ")
                           .join(args))
            elif name in _TEXT_MACROS:
                out.append(" ".join(a for a in _macro_args(rest) if not re.fullmatch(r"\d+", a)))
            continue  # any other request: layout only
        out.append(line)
    return squash(groff_inline("\n".join(out)))


# dictd entries ----------------------------------------------------------------------------

def dict_definition(entry: str, headword: str) -> tuple[str, str] | None:
    """(display headword, definition text) of one dictd entry, or None when the entry is not
    headed by ``headword`` (a phrase indexed inside another word's entry, as gcide does).

    The head block (the headword and its variant spellings before the first blank line, or the
    first line with its pronunciation) is removed, as are cross-reference braces, source
    tags, etymologies and dates."""
    lines = entry.strip("\n").split("\n")
    stripped = [x.strip() for x in lines]
    head_end = stripped.index("") if "" in stripped else 1
    head = lines[:head_end] if all(len(x.split()) <= 4 for x in lines[:head_end]) else lines[:1]
    key = headword.lower()
    shown = next((x.strip() for x in head if x.strip().lower() == key), None)
    if shown is None:
        first = head[0].strip() if head else ""
        if not first.lower().startswith(key):
            return None
        shown = first[: len(headword)]
    text = "\n".join(lines[len(head):])
    text = re.sub(r"^[^\[\]]*\]", "", text)  # the end of an etymology opened in the head
    text = re.sub(r"\{([^{}]*)\}", r"\1", text)  # {cross reference}
    text = re.sub(r"\\[^\\\n]*\\", "", text)  # gcide pronunciation \Riv"et*ing\
    text = re.sub(r"\[[^\[\]\s]{1,8}\]", "", text)  # gcide accents ['e], [=o], tags [Obs.]
    text = re.sub(r"\[[A-Z][A-Za-z]*\. [^\]]*\]", "", text)  # etymology [OE. blod, ...]
    text = re.sub(r"\[(?:[^\]]*Webster[^\]]*|WordNet[^\]]*|PJC|[A-Z]{2,4})\]", "", text)
    text = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", "", text)
    return squash(shown), squash(text)
