"""The user docs hold together: every relative link between the pages resolves to a file (and
a heading, for ``#anchor`` links), and the README's tour runs as written (on a tiny model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def pages() -> list[Path]:
    """The README, every page under docs/, the benchmarks' pages and the model cards."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             ROOT / "benchmarks" / "README.md",
             *sorted((ROOT / "benchmarks" / "results").glob("*/NOTES.md")),
             *sorted((ROOT / "llm2vec_rag" / "models").glob("*/README.md"))]
    return [p for p in found if p.is_file()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """Relative link targets outside code blocks (web and mail links are not checked)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_capability_pages_exist():
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"encode.md", "train.md", "export.md", "serve.md", "scale-out.md",
            "integrations.md", "coming-from.md"} <= names


def test_slug_follows_github():
    assert slug("Differences from llm2vec 0.2.3, on purpose") == \
        "differences-from-llm2vec-023-on-purpose"
    assert slug("Serve over HTTP (OpenAI- and TEI-compatible)") == \
        "serve-over-http-openai--and-tei-compatible"
    assert slug("`POST /embed` and [TEI](x.md)") == "post-embed-and-tei"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links (fix the link or the heading):\n" \
        + "\n".join(broken)


def test_readme_tour_runs(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The tour's Python block, with a tiny model in place of the bundled one."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    assert "model = load_default_model()" in block
    block = block.replace("model = load_default_model()", "model = LLM2Vec.from_pretrained(MODEL)")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"MODEL": tiny_model_dir("llama")})  # noqa: S102
    out = capsys.readouterr().out
    assert "Bushfires threaten homes west of Sydney." in out
    assert (tmp_path / "qdrant_data").is_dir()
