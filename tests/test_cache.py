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
from llm2vec_rag.cache import MANIFEST, cache_root, describe_files
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
    from llm2vec_rag.loading import ALIGNMENT, data_offset

    # written so that a hit can use the mapped tensors in place (load_saved_model)
    assert data_offset(str(cache_dir / "fused" / entry / "model.safetensors")) % ALIGNMENT == 0

    # Prove the hit reads the entry: change its weights (same size) and the vectors follow.
    from safetensors.torch import load_file, save_file

    weights_path = cache_dir / "fused" / entry / "model.safetensors"
    weights = load_file(str(weights_path))
    name = next(k for k in weights if k.endswith("down_proj.weight"))
    weights[name] = weights[name] * 0.5
    save_file(weights, str(weights_path), metadata={"format": "pt"})
    manifest = json.loads((cache_dir / "fused" / entry / MANIFEST).read_text())
    manifest["files"] = describe_files(str(cache_dir / "fused" / entry))  # a consistent entry
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


def flip_signs(weights, count: int = 2000) -> None:
    """Flip the sign of ``count`` float32 weights in place: same size, same mtime order."""
    data = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # after the safetensors JSON header
    for i in range(count):
        data[start + 4 * i + 3] ^= 0x80  # little-endian float32: the sign bit is in byte 3
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-manifest", "sign-flip",
                                    "edit-config"])
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
    elif damage == "sign-flip":  # same size: only a content hash notices
        size = weights.stat().st_size
        flip_signs(weights)
        assert weights.stat().st_size == size
    elif damage == "edit-config":
        config = folder / "config.json"
        text = config.read_text()
        assert '"rms_norm_eps": 1e-06' in text
        config.write_text(text.replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-01'))
    else:
        (folder / MANIFEST).unlink()
    with caplog.at_level("WARNING", logger="llm2vec_rag.cache"):
        rebuilt = vectors(base, adapters, cache=True)
    assert "rebuilding" in caplog.text
    if damage in ("sign-flip", "edit-config"):
        assert "changed after it was written" in caplog.text
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


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 96 KiB filesystem (tmpfs; needs root): too small for a fused model."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_under_the_cache_costs_only_the_speed_up(chain, tiny_tmpfs, monkeypatch,
                                                            caplog):
    base, adapters = chain
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(tiny_tmpfs))
    with caplog.at_level("WARNING", logger="llm2vec_rag.cache"):
        out = vectors(base, adapters, cache=True)
    assert "could not write the model cache entry" in caplog.text
    np.testing.assert_array_equal(out, vectors(base, adapters))
    assert not [p for p in (tiny_tmpfs / "fused").iterdir() if p.is_dir()]  # nothing half-made


FILE_SIZE_LIMIT = """
import resource, signal, sys, json
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
from llm2vec_rag import LLM2Vec
m = LLM2Vec.from_pretrained(sys.argv[1], adapters=sys.argv[2:], cache=True)
print(json.dumps(m.encode(["The quick brown fox", "hi"]).tolist()))
"""


def test_write_failure_while_saving_costs_only_the_speed_up(chain, cache_dir):
    """Any user: a file-size limit makes the weights' write fail (safetensors raises its own
    error, not OSError)."""
    base, adapters = chain
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, base, *adapters], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "could not write the model cache entry" in proc.stderr
    ref = LLM2Vec.from_pretrained(base, adapters=adapters).encode(["The quick brown fox", "hi"])
    np.testing.assert_array_equal(np.array(json.loads(proc.stdout)), ref.astype(np.float64))
    assert entries(cache_dir) == []


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


def saved_base(tiny_model_dir, tmp_path, arch: str, dtype, **save_kwargs) -> str:
    """A folder as the cache writes an entry: the bare decoder, loaded in ``dtype``, saved."""
    from llm2vec_rag.loading import load_model

    folder = str(tmp_path / f"{arch}-saved")
    load_model(tiny_model_dir(arch), dtype=dtype).save_pretrained(folder, **save_kwargs)
    return folder


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma", "qwen2"])
def test_a_saved_folder_loads_bit_for_bit_as_from_pretrained_loads_it(tiny_model_dir, tmp_path,
                                                                       arch, dtype):
    """The cached-load path (built from the config, given the saved tensors) against
    transformers' from_pretrained on the same folder: same tensors, buffers (RoPE), config and
    hidden states, bit for bit; from the file as save_pretrained wrote it and as the cache
    writes it (data aligned: mapped tensors used in place), tensors on 64-byte boundaries."""
    import torch

    from llm2vec_rag.loading import (
        ALIGNMENT,
        align_saved_weights,
        data_offset,
        load_model,
        load_saved_model,
    )

    dtype = getattr(torch, dtype)
    folder = saved_base(tiny_model_dir, tmp_path, arch, dtype)
    weights = os.path.join(folder, "model.safetensors")
    assert data_offset(weights) % ALIGNMENT  # as save_pretrained wrote it: unaligned
    for aligned in (False, True):
        if aligned:
            align_saved_weights(folder)
            assert data_offset(weights) % ALIGNMENT == 0
        for bidirectional in (True, False):
            fast = load_saved_model(folder, enable_bidirectional=bidirectional, dtype=dtype)
            slow = load_model(folder, enable_bidirectional=bidirectional, dtype=dtype)
            assert fast is not None and type(fast) is type(slow) and not fast.training
            assert fast.config.to_dict() == slow.config.to_dict()
            assert all(p.data_ptr() % ALIGNMENT == 0 for p in fast.parameters())
            for got, want in ((fast.state_dict(), slow.state_dict()),
                              (dict(fast.named_buffers()), dict(slow.named_buffers()))):
                assert got.keys() == want.keys()
                for name in want:
                    assert got[name].dtype == want[name].dtype, name
                    assert torch.equal(got[name], want[name]), name
            ids = torch.randint(4, fast.config.vocab_size, (2, 7),
                                generator=torch.Generator().manual_seed(0))
            mask = torch.ones_like(ids)
            mask[1, :3] = 0  # one left-padded row
            with torch.inference_mode():
                assert torch.equal(fast(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   slow(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_folders_the_cached_load_cannot_take_are_left_to_from_pretrained(tiny_model_dir,
                                                                         tmp_path):
    import torch

    from llm2vec_rag.loading import load_model, load_saved_model

    sharded = saved_base(tiny_model_dir, tmp_path, "llama", torch.float32,
                         max_shard_size="20KB")
    assert not os.path.exists(os.path.join(sharded, "model.safetensors"))
    assert load_saved_model(sharded) is None
    # A causal-LM checkpoint: its tensors are named model.* and its LM head is tied.
    assert load_saved_model(tiny_model_dir("llama")) is None
    assert load_model(sharded) is not None and load_model(tiny_model_dir("llama")) is not None
