"""Build an exact-term retrieval set (BEIR format) from man pages' option descriptions.

Query: a command and one of its options, as a user types it ("tar --listed-incremental",
"ls -l"); answer: that option's entry in the command's man page (its tag line and its
description paragraphs, prefixed with the command name, as a chunk of the page reads).
Every other option of the same page is a near miss sharing the command name, so the set
rewards matching the exact flag: where dense vectors of a small model are weakest and
BM25 is strongest.

Pages: the system man pages of common commands (coreutils, tar, grep, find, ssh, apt-get,
...), rendered with ``man -l`` (groff) and cut at the tag lines of their option lists. None
of these pages is in the training data (the training pairs come from the ``manpages`` /
``manpages-dev`` packages' own pages, NAME line -> DESCRIPTION, not these commands' option
lists). An option whose query occurs twice (two entries for one flag) is no query; an entry
under ``--min-words`` words is no document.

    python benchmarks/build_manpage_options.py   # -> data/heldout/manpage-options/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections import Counter

from build_heldout import write_beir_set

COMMANDS = ("tar ls cp mv rm grep find sort cut sed ssh curl wget ps df du chmod chown date "
            "head tail wc uniq xargs diff patch gzip xz make apt-get dpkg systemctl ip mount "
            "useradd journalctl tr split ln mkdir touch cat less top kill bzip2 zstd file stat "
            "install dd tee nl od shred").split()
TAG = re.compile(r"^ {7}(-{1,2}[A-Za-z0-9?#][^ ]*(?:, -{1,2}\S+)*.*?)(?: {2,}(\S.*))?$")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z0-9?#][\w?#-]*)")


def render(page: str) -> list[str]:
    """The page as plain text lines (no bold/underline, tabs expanded), 120 columns."""
    env = {**os.environ, "MANWIDTH": "120", "MAN_KEEP_FORMATTING": "0"}
    out = subprocess.run(["man", "--no-hyphenation", "--no-justification", "-l", page],
                         capture_output=True, text=True, env=env, check=True).stdout
    plain = subprocess.run(["col", "-bx"], input=out, capture_output=True, text=True,
                           check=True).stdout
    return plain.split("\n")


def options(lines: list[str]) -> list[tuple[str, str]]:
    """[(tag, description)] for each option entry (a 7-space tag line starting with -)."""
    out, tag, body = [], None, []
    for line in lines:
        match = TAG.match(line)
        if match:
            if tag:
                out.append((tag, " ".join(body)))
            tag, body = match.group(1).strip(), [match.group(2)] if match.group(2) else []
        elif tag is not None:
            if line.startswith(" " * 8) or (not line.strip() and body and len(body) < 40):
                if line.strip():
                    body.append(line.strip())
            else:  # a section heading or a less indented paragraph ends the entry
                out.append((tag, " ".join(body)))
                tag, body = None, []
    if tag:
        out.append((tag, " ".join(body)))
    return [(t, re.sub(r"\s+", " ", d).strip()) for t, d in out]


def query_flag(tag: str) -> str | None:
    """The flag a user would type: the first long option, else the first short one."""
    flags = FLAG.findall(tag.split("  ")[0])
    longs = [f.split("=")[0] for f in flags if f.startswith("--")]
    return longs[0] if longs else (flags[0] if flags else None)


def find_page(command: str) -> str | None:
    for section in ("1", "8"):
        path = f"/usr/share/man/man{section}/{command}.{section}.gz"
        if os.path.isfile(path):
            return path
    return None


def build(out_dir: str, min_words: int = 5, max_per_command: int = 20,
          commands: tuple[str, ...] = COMMANDS) -> dict:
    docs, pages = [], 0
    for command in commands:
        page = find_page(command)
        if page is None:
            continue
        pages += 1
        kept = 0
        for n, (tag, description) in enumerate(options(render(page))):
            flag = query_flag(tag)
            if not flag or len(description.split()) < min_words or kept >= max_per_command:
                continue
            kept += 1
            docs.append({"id": f"{command}-{n}", "command": command, "query": f"{command} {flag}",
                         "text": f"{command}: {tag}\n{description}"})
    counts = Counter(d["query"] for d in docs)
    queries = [d for d in docs if counts[d["query"]] == 1]
    digest = write_beir_set(out_dir, [(d["id"], d["command"], d["text"]) for d in docs],
                            [(f"q-{d['id']}", d["query"], d["id"]) for d in queries])
    return {"folder": out_dir, "pages": pages, "documents": len(docs), "queries": len(queries),
            "words_per_document": round(sum(len(d["text"].split()) for d in docs) / len(docs), 1),
            "sha256": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/heldout/manpage-options")
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--max-per-command", type=int, default=20)
    parser.add_argument("--commands", type=int, default=len(COMMANDS),
                        help="the first N commands of the list only (a smaller set)")
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.min_words, args.max_per_command,
                           COMMANDS[: args.commands]), indent=2))


if __name__ == "__main__":
    main()
