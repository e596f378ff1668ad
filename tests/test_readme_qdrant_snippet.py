"""The Qdrant snippet of docs/integrations.md, run as a user runs it: a fresh interpreter that
exits cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def test_readme_qdrant_snippet_exits_without_traceback(tiny_model_dir, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    block = next(b for b in blocks if "QdrantIndexer(model" in b)
    assert "with QdrantIndexer(" in block  # closed on exit, not left to the interpreter
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Bushfires threaten homes west of Sydney.")
    load = f"model = LLM2Vec.from_pretrained({tiny_model_dir()!r})\n"
    script = "from llm2vec_rag import LLM2Vec\n" + load + block
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
    assert "Bushfires" in run.stdout  # the search answered from the indexed document
