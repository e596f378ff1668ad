"""The fused-model cache: hits equal uncached loads, changes rebuild, races and corruption."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cache import MANIFEST, cache_root
from tiny import make_lora_adapter

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Qdrant stores vectors.", "hi"]


@pytest.fixture(scope="module")
def chain(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    root = tmp_path_factory.mktemp("cache-adapters")
    return base, [make_lora_adapter(base, str(root / "a"), 1),
                  make_lora_adapter(base, str(root / "b"), 2)]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(folder))
    return folder


def entries(cache_dir) -> list[str]:
    fused = cache_dir / "fused"
    return sorted(p.name for p in fused.iterdir() if p.is_dir()) if fused.exists() else []


def vectors(base, adapters, **kwargs) -> np.ndarray:
    return LLM2Vec.from_pretrained(base, adapters=adapters, **kwargs).encode(TEXTS)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LLM2VEC_RAG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == str(tmp_path / "xdg" / "llm2vec_rag")
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(tmp_path / "mine"))
    assert cache_root() == str(tmp_path / "mine")


def test_hit_gives_the_uncached_vectors_and_really_reads_the_entry(chain, cache_dir):
    base, adapters = chain
    plain = vectors(base, adapters)
    built = vectors(base, adapters, cache=True)
    [entry] = entries(cache_dir)
    hit = vectors(base, adapters, cache=True)
    np.testing.assert_array_equal(built, plain)
    np.testing.assert_array_equal(hit, plain)
    assert entries(cache_dir) == [entry]

    # Prove the hit reads the entry: change its weights (same size) and the vectors follow.
    from safetensors.torch import load_file, save_file

    weights_path = cache_dir / "fused" / entry / "model.safetensors"
    weights = load_file(str(weights_path))
    name = next(k for k in weights if k.endswith("down_proj.weight"))
    weights[name] = weights[name] * 0.5
    save_file(weights, str(weights_path), metadata={"format": "pt"})
    manifest = json.loads((cache_dir / "fused" / entry / MANIFEST).read_text())
    manifest["files"]["model.safetensors"] = weights_path.stat().st_size
    (cache_dir / "fused" / entry / MANIFEST).write_text(json.dumps(manifest))
    assert not np.allclose(vectors(base, adapters, cache=True), plain, atol=1e-4)


def test_changed_adapter_rebuilds(chain, cache_dir, tmp_path):
    base, (a, b) = chain
    mine = str(tmp_path / "mine")
    shutil.copytree(b, mine)
    first = vectors(base, [a, mine], cache=True)
    shutil.rmtree(mine)
    make_lora_adapter(base, mine, 3)  # same folder, new weights
    second = vectors(base, [a, mine], cache=True)
    np.testing.assert_array_equal(second, vectors(base, [a, mine]))
    assert not np.allclose(first, second, atol=1e-4)
    assert len(entries(cache_dir)) == 2


def test_options_that_change_weights_are_part_of_the_key(chain, cache_dir):
    base, adapters = chain
    vectors(base, adapters, cache=True)
    causal = vectors(base, adapters, cache=True, enable_bidirectional=False)
    np.testing.assert_array_equal(causal, vectors(base, adapters, enable_bidirectional=False))
    vectors(base, adapters, cache=True, dtype="bfloat16")
    assert len(entries(cache_dir)) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-manifest"])
def test_damaged_entry_is_rebuilt(chain, cache_dir, damage, caplog):
    base, adapters = chain
    plain = vectors(base, adapters)
    vectors(base, adapters, cache=True)
    [entry] = entries(cache_dir)
    folder = cache_dir / "fused" / entry
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "garbage":
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    else:
        (folder / MANIFEST).unlink()
    with caplog.at_level("WARNING", logger="llm2vec_rag.cache"):
        rebuilt = vectors(base, adapters, cache=True)
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(rebuilt, plain)
    assert entries(cache_dir) == [entry]
    np.testing.assert_array_equal(vectors(base, adapters, cache=True), plain)


def test_unwritable_cache_still_loads(chain, tmp_path, monkeypatch, caplog):
    base, adapters = chain
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(blocker))
    with caplog.at_level("WARNING", logger="llm2vec_rag.cache"):
        out = vectors(base, adapters, cache=True)
    assert "not writable" in caplog.text
    np.testing.assert_array_equal(out, vectors(base, adapters))


CHILD = """
import sys, json
from llm2vec_rag import LLM2Vec
m = LLM2Vec.from_pretrained(sys.argv[1], adapters=sys.argv[2:], cache=True)
print(json.dumps(m.encode(["The quick brown fox", "hi"]).tolist()))
"""


def test_two_processes_building_at_once(chain, cache_dir):
    base, adapters = chain
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(cache_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, base, *adapters], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    a, b = (np.array(json.loads(out)) for out, _ in outs)
    np.testing.assert_array_equal(a, b)
    ref = LLM2Vec.from_pretrained(base, adapters=adapters).encode(["The quick brown fox", "hi"])
    np.testing.assert_array_equal(a, ref.astype(np.float64))
    fused = cache_dir / "fused"
    assert len(entries(cache_dir)) == 1
    assert not [p for p in fused.iterdir() if p.name.startswith(".build-")]
