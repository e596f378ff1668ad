"""Fusing LoRA adapter chains, and the ``llm2vec-rag export`` commands end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_export_common import QUERY_INSTRUCTION, TEXTS, cosine, exported, leftovers

from llm2vec_rag import LLM2Vec, is_bidirectional
from llm2vec_rag.cli import main
from llm2vec_rag.export import OutputExistsError, fuse_adapters
from tiny import make_lora_adapter


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    root = tmp_path_factory.mktemp("lora")
    return [make_lora_adapter(base, str(root / "first"), seed=1, std=0.2),
            make_lora_adapter(base, str(root / "second"), seed=2, std=0.2)]


@pytest.fixture(scope="module")
def unfused(tiny_model_dir, adapters):
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), adapters=adapters)


def test_fused_equals_unfused(tiny_model_dir, adapters, unfused, tmp_path):
    out = fuse_adapters(tiny_model_dir("llama"), tmp_path / "fused", adapters)
    names = set(os.listdir(out))
    assert "adapter_config.json" not in names and "llm2vec_config.json" in names
    assert json.load(open(out / "fused_from.json"))["adapters"] == adapters
    fused = LLM2Vec.from_pretrained(out)
    for instruction in (None, "Retrieve it"):
        np.testing.assert_allclose(fused.encode(TEXTS, instruction=instruction),
                                   unfused.encode(TEXTS, instruction=instruction), atol=1e-4)
    base = LLM2Vec.from_pretrained(tiny_model_dir("llama"))
    assert np.abs(base.encode(TEXTS) - unfused.encode(TEXTS)).max() > 1e-2  # adapters matter
    one = LLM2Vec.from_pretrained(tiny_model_dir("llama"), adapters=adapters[:1])
    assert np.abs(one.encode(TEXTS) - unfused.encode(TEXTS)).max() > 1e-2  # both merged


def test_fused_folder_is_plain_and_bidirectional(tiny_model_dir, adapters, tmp_path):
    """Plain transformers (no peft, no llm2vec loader) reads it as a bidirectional model."""
    from transformers import AutoModel

    out = fuse_adapters(tiny_model_dir("llama"), tmp_path / "fused", adapters)
    assert is_bidirectional(AutoModel.from_pretrained(out))


def test_fuse_refusals(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fuse_adapters(tiny_model_dir("llama"), tmp_path / "a", [tmp_path / "missing"])
    with pytest.raises(ValueError, match="causal"):
        fuse_adapters(tiny_model_dir("llama"), tmp_path / "b", enable_bidirectional=False)
    (tmp_path / "c").mkdir()
    with pytest.raises(OutputExistsError):
        fuse_adapters(tiny_model_dir("llama"), tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["c"] and leftovers(tmp_path) == []


def test_cli_export_onnx_int8_with_adapters_then_encode(tiny_model_dir, adapters, unfused,
                                                       tmp_path, capsys):
    out = tmp_path / "int8"
    argv = ["export", "onnx", "--model", tiny_model_dir("llama"), "--out", str(out),
            "--quantize", "int8"]
    for adapter in adapters:
        argv += ["--adapter", adapter]
    assert main(argv) == 0
    info = json.load(open(out / "onnx_export.json"))
    assert info["variant"] == "int8" and set(info["validation"]) == {"fp32", "int8"}
    assert info["validation"]["fp32"]["rel_diff"] <= 1e-4

    (tmp_path / "texts.txt").write_text("\n".join(t for t in TEXTS if t) + "\n")
    assert main(["encode", "--model", str(out), "--onnx", str(tmp_path / "texts.txt"),
                 "-o", str(tmp_path / "v.npy")]) == 0
    vectors = np.load(tmp_path / "v.npy")
    assert cosine(vectors, unfused.encode([t for t in TEXTS if t])).min() > 0.98

    capsys.readouterr()
    assert main(argv) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--causal"]) == 2  # a causal export is refused
    assert "bidirectional" in capsys.readouterr().err
    assert (out / "onnx_export.json").is_file()  # the previous export is untouched


def test_cli_fuse_and_overwrite(tiny_model_dir, adapters, unfused, tmp_path):
    out = tmp_path / "fused"
    out.mkdir()
    argv = ["export", "fuse", "--model", tiny_model_dir("llama"), "--adapter", adapters[0],
            "--adapter", adapters[1], "--out", str(out)]
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    np.testing.assert_allclose(LLM2Vec.from_pretrained(out).encode(TEXTS),
                               unfused.encode(TEXTS), atol=1e-4)
    assert leftovers(tmp_path) == []


def test_cli_tensorrt_without_provider_is_a_clear_error(tmp_path_factory, tiny_model_dir,
                                                        capsys):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is available here: tests/test_export_gpu.py builds engines")
    folder = Path(exported(tmp_path_factory, tiny_model_dir("llama"), "llama-mean",
                           query_instruction=QUERY_INSTRUCTION))
    capsys.readouterr()
    assert main(["export", "tensorrt", "--model", str(folder), "--max-batch", "4"]) == 2
    assert "TensorrtExecutionProvider is not available" in capsys.readouterr().err
    assert not (folder / "tensorrt.json").exists()
    assert [p for p in os.listdir(folder) if "trt_cache" in p] == []
