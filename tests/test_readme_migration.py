"""The README's "Coming from sentence-transformers, llm2vec 0.2.3 or TEI" snippets run as
written, on a tiny model (``MODEL``), and their own asserts hold."""

from __future__ import annotations

import os
import re
import warnings

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def migration_snippets() -> list[str]:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Coming from sentence-transformers, llm2vec 0.2.3 or TEI")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_there_are_snippets():
    assert len(migration_snippets()) == 4


def test_snippets_run(tiny_model_dir, tmp_path):
    namespace = {"MODEL": tiny_model_dir("llama"), "FOLDER": str(tmp_path / "saved")}
    for snippet in migration_snippets():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102
    assert os.path.isfile(tmp_path / "saved" / "modules.json")
    assert namespace["model"].config.pooling == "eos"

