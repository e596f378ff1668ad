"""The CPU default dtype (issue 32, item 2): ``dtype=None``/``"auto"`` on a CPU with native bf16
is the fastest choice that passed the retrieval-quality gate, float32 elsewhere;
``$LLM2VEC_RAG_DTYPE`` overrides it for every load; and a collection indexed in another
precision is refused with the way to keep it (``dtype="float32"``), never mixed.

The rest of the suite runs with ``LLM2VEC_RAG_DTYPE=float32`` (tests/conftest.py): it checks
vectors to 1e-5. These tests unset it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec, UsageError
from llm2vec_rag.cli import main
from llm2vec_rag.config import DTYPE_ENV
from llm2vec_rag.integrations.identity import dtype_hint
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from llm2vec_rag.model import CPU_BF16_DEFAULT, cpu_flags, default_cpu_dtype

TEXTS = ["Bushfires threaten homes west of Sydney.", "The bank cut interest rates.",
         "the river bank is cold in winter and the fox sleeps"]


@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv(DTYPE_ENV, raising=False)


def test_native_bf16_flags_pick_the_gated_choice_others_float32(no_override):
    assert default_cpu_dtype({"fpu", "avx2", "avx512_bf16"}) == CPU_BF16_DEFAULT
    assert default_cpu_dtype({"fpu", "amx_bf16", "amx_tile"}) == CPU_BF16_DEFAULT
    assert default_cpu_dtype({"fpu", "avx2", "avx512f"}) == "float32"  # bf16 emulated: slower
    assert default_cpu_dtype(set()) == "float32"  # no /proc/cpuinfo (macOS, Windows)


def test_environment_variable_overrides_and_is_checked(monkeypatch):
    monkeypatch.setenv(DTYPE_ENV, "float32")
    assert default_cpu_dtype({"avx512_bf16"}) == "float32"
    monkeypatch.setenv(DTYPE_ENV, "auto")
    assert default_cpu_dtype({"avx512_bf16"}) == CPU_BF16_DEFAULT
    monkeypatch.setenv(DTYPE_ENV, "float33")
    with pytest.raises(UsageError, match=f"{DTYPE_ENV}='float33'.*bfloat16"):
        default_cpu_dtype({"avx512_bf16"})


def test_a_default_load_is_the_cpus_choice_bit_for_bit(tiny_model_dir, no_override):
    folder = tiny_model_dir("llama")
    expected = default_cpu_dtype()
    default = LLM2Vec.from_pretrained(folder, device="cpu")
    explicit = LLM2Vec.from_pretrained(folder, device="cpu", dtype=expected)
    assert default.source == explicit.source  # the dtype is recorded: stores see the choice
    np.testing.assert_array_equal(default.encode(TEXTS), explicit.encode(TEXTS))
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert expected == (CPU_BF16_DEFAULT if native else "float32")

def test_a_float32_collection_refuses_another_precision_and_says_how_to_keep_it(
        tiny_model_dir, tmp_path):
    folder = tiny_model_dir("llama")
    fp32 = LLM2Vec.from_pretrained(folder, device="cpu", dtype="float32")
    bf16 = LLM2Vec.from_pretrained(folder, device="cpu", dtype="bfloat16")
    path = str(tmp_path / "store")
    with QdrantIndexer(fp32, collection="c", path=path) as indexer:
        indexer.index(TEXTS)
    with QdrantIndexer(bf16, collection="c", path=path) as other:
        with pytest.raises(UsageError) as err:
            other.search("fires near Sydney", k=1)
    message = str(err.value)
    assert "holds float32 vectors, this encoder computes bfloat16" in message
    assert 'dtype="float32"' in message and "--dtype float32" in message
    assert f"{DTYPE_ENV}=float32" in message
    with QdrantIndexer(fp32, collection="c", path=path) as same:  # nothing was lost
        assert len(same.search("fires near Sydney", k=3)) == 3


def test_the_hint_names_autocast_and_stays_out_of_other_mismatches():
    base = {"model": "m", "adapters": ["a"], "bidirectional": True}
    autocast = json.dumps({**base, "dtype": "float32", "autocast": "bfloat16"})
    bf16 = json.dumps({**base, "dtype": "bfloat16"})
    assert 'dtype="bf16-autocast"' in dtype_hint(autocast, bf16)
    assert "float32 weights with bfloat16 matmuls" in dtype_hint(autocast, bf16)
    other_model = json.dumps({**base, "model": "n", "dtype": "float32"})
    assert dtype_hint(other_model, bf16) == ""  # another model: no precision hint
    assert dtype_hint(bf16, bf16) == ""


def test_cli_encode_uses_the_default_and_records_it(tiny_model_dir, tmp_path, no_override):
    folder = tiny_model_dir("llama")
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    assert main(["encode", str(src), "--model", folder, "--device", "cpu", "-o", str(out)]) == 0
    explicit = LLM2Vec.from_pretrained(folder, device="cpu", dtype=default_cpu_dtype())
    np.testing.assert_allclose(np.load(out), explicit.encode(TEXTS), atol=1e-6)


def test_export_of_an_autocast_model_asks_for_float32(tiny_model_dir, tmp_path):
    from llm2vec_rag.export import export_onnx

    autocast = LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu",
                                       dtype="bf16-autocast")
    with pytest.raises(UsageError, match="load it with dtype='float32'"):
        export_onnx(autocast, str(tmp_path / "onnx"))
    assert not (tmp_path / "onnx").exists()


def test_saving_a_default_bf16_model_warns_an_explicit_one_does_not(tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    folder = tiny_model_dir("llama")
    monkeypatch.setenv(DTYPE_ENV, "bfloat16")  # what the default is on a CPU with native bf16
    default = LLM2Vec.from_pretrained(folder, device="cpu")
    with pytest.warns(UserWarning, match="Load with dtype='float32' to save float32 weights"):
        default.save_pretrained(tmp_path / "a")
    explicit = LLM2Vec.from_pretrained(folder, device="cpu", dtype="bfloat16")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit.save_pretrained(tmp_path / "b")  # asked for: no warning
