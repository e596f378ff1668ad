"""The snippets of docs/coming-from.md ("Coming from sentence-transformers, llm2vec 0.2.3 or
TEI") run as written, on a tiny model (``MODEL``), and their own asserts hold."""

from __future__ import annotations

import os
import re
import warnings

PAGE = os.path.join(os.path.dirname(__file__), "..", "docs", "coming-from.md")


def migration_snippets() -> list[str]:
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_there_are_snippets():
    assert len(migration_snippets()) == 4


def test_snippets_run(tiny_model_dir, tmp_path):
    namespace = {"MODEL": tiny_model_dir("llama"), "FOLDER": str(tmp_path / "saved")}
    for snippet in migration_snippets():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(snippet, "docs/coming-from.md", "exec"), namespace)  # noqa: S102
    assert os.path.isfile(tmp_path / "saved" / "modules.json")
    assert namespace["model"].config.pooling == "eos"

