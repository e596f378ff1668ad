"""ONNX export: parity with PyTorch, bidirectional graphs, variants, and refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_export_common import QUERY_INSTRUCTION, TEXTS, cosine, exported, leftovers

from llm2vec_rag import LLM2Vec
from llm2vec_rag.export import ExportValidationError, OnnxLLM2Vec, OutputExistsError, export_onnx
from llm2vec_rag.export.int8 import RECIPES
from llm2vec_rag.export.onnx import _torch_export
from llm2vec_rag.export.validate import (
    OUTPUT_NAME,
    TOKENS_NAME,
    causal_mask_ops,
    probe_bidirectional,
    validation_batches,
)


def _session_runner(path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feeds: session.run([OUTPUT_NAME], feeds)[0]


def test_folder_layout_and_dynamic_axes(llama_onnx):
    names = set(os.listdir(llama_onnx))
    assert {"model.onnx", "tokenizer.json", "tokenizer_config.json", "llm2vec_config.json",
            "onnx_export.json"} <= names
    graph = onnx.load(os.path.join(llama_onnx, "model.onnx"), load_external_data=False).graph
    for value in graph.input:
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", "sequence"], (value.name, dims)
    assert [o.name for o in graph.output] == [OUTPUT_NAME, TOKENS_NAME]
    dims = [d.dim_param or d.dim_value for d in graph.output[1].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", "sequence"]
    info = json.load(open(os.path.join(llama_onnx, "onnx_export.json")))
    assert info["variant"] == "fp32" and info["pooling"] == "mean"
    assert info["validation"]["fp32"]["rel_diff"] <= 1e-4


def test_fp32_matches_pytorch_on_padded_mixed_batches(llama, llama_onnx):
    """Raw batches, left-padded, several widths and batch sizes, with an instruction too."""
    run = _session_runner(os.path.join(llama_onnx, "model.onnx"))
    pre = llama.preprocessor
    for instruction in ("", QUERY_INSTRUCTION):
        for batch in pre.batches(pre.encode(TEXTS, instruction), batch_size=4):
            assert (batch.attention_mask == 0).any() or len(batch.index) == 1
            got = run({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                       "embed_mask": batch.embed_mask})
            np.testing.assert_allclose(got, llama._forward_batch(batch), atol=1e-4)


def test_graph_is_bidirectional_and_has_no_causal_mask(llama_onnx):
    path = os.path.join(llama_onnx, "model.onnx")
    assert causal_mask_ops(onnx.load(path)) == []
    assert probe_bidirectional(_session_runner(path), vocab_size=300, pooling="mean")


def test_checks_catch_a_causal_graph(tiny_model_dir, tmp_path):
    """The same checks flag a graph exported from a causal model."""
    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    path = tmp_path / "causal.onnx"
    _torch_export(causal.module.eval(), path, validation_batches(causal.preprocessor)[0],
                  external_data=False, opset=None)
    assert causal_mask_ops(onnx.load(str(path)))
    assert not probe_bidirectional(_session_runner(path), vocab_size=300, pooling="mean")


def test_second_arch_eos_pooling_external_data(tmp_path_factory, tiny_model_dir):
    """Qwen2 with a byte-level tokenizer, eos pooling, weights in model.onnx.data."""
    source = tiny_model_dir("qwen2", "bytelevel")
    folder = exported(tmp_path_factory, source, "qwen2-eos", pooling="eos", external_data=True)
    assert os.path.isfile(os.path.join(folder, "model.onnx.data"))
    reference = LLM2Vec.from_pretrained(source, pooling="eos")
    encoder = OnnxLLM2Vec.from_pretrained(folder)
    assert encoder.config.pooling == "eos"
    for instruction in (None, QUERY_INSTRUCTION):
        np.testing.assert_allclose(encoder.encode(TEXTS, instruction=instruction, batch_size=3),
                                   reference.encode(TEXTS, instruction=instruction,
                                                    batch_size=3), atol=1e-4)
    from llm2vec_rag.export import quantize_onnx  # int8 keeps the external-data layout

    int8 = quantize_onnx(folder, tmp_path_factory.mktemp("q") / "int8")
    assert os.path.isfile(int8 / "model.onnx.data")
    assert cosine(OnnxLLM2Vec.from_pretrained(int8).encode(TEXTS),
                  reference.encode(TEXTS)).mean() > 0.99


def test_fp16_variant_stays_close(tmp_path_factory, tiny_model_dir):
    """Mistral exported in fp16; here validated on CPU (on CUDA where the provider exists)."""
    source = tiny_model_dir("mistral")
    folder = exported(tmp_path_factory, source, "mistral-fp16", dtype="fp16")
    info = json.load(open(os.path.join(folder, "onnx_export.json")))
    assert info["variant"] == "fp16"
    graph = onnx.load(os.path.join(folder, "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    assert causal_mask_ops(graph) == []
    reference = LLM2Vec.from_pretrained(source).encode(TEXTS)
    got = OnnxLLM2Vec.from_pretrained(folder, provider="cpu").encode(TEXTS)
    assert got.dtype == np.float32
    assert cosine(got, reference).min() > 0.999


@pytest.mark.parametrize("method,ops", [
    ("int8", {"MatMulNBits"}), ("int8-dynamic", {"MatMulInteger", "MatMulNBits"}),
    ("int8-static", {"QuantizeLinear", "DequantizeLinear", "MatMulNBits"})])
def test_int8_quantize_from_folder(llama, llama_onnx, tmp_path, method, ops):
    """Every int8 recipe: int8 weights in every linear layer (7-bit per-channel ones), vectors
    stay close (mean cosine to PyTorch > 0.99, every row > 0.95)."""
    from llm2vec_rag.export import quantize_onnx

    out = quantize_onnx(llama_onnx, tmp_path / "int8", method)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert {n.op_type for n in graph.node} >= ops
    fp32_graph = onnx.load(os.path.join(llama_onnx, "model.onnx")).graph
    assert sum(n.op_type == "MatMul" for n in graph.node) < sum(
        n.op_type == "MatMul" for n in fp32_graph.node)
    assert os.path.getsize(out / "model.onnx") < os.path.getsize(
        os.path.join(llama_onnx, "model.onnx"))
    if method != "int8":  # per-channel weights in 7 bits: no u8s8 saturation without VNNI
        weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.dims]
        assert weights and max(np.abs(w.astype(np.int32)).max() for w in weights) <= 64
    int8 = OnnxLLM2Vec.from_pretrained(out)
    assert int8.info["variant"] == method and int8.provider == "CPUExecutionProvider"
    assert int8.info["quantization"] == RECIPES[method]  # the export says how it was made
    got, want = int8.encode_queries(TEXTS), llama.encode_queries(TEXTS)
    assert cosine(got, want).mean() > 0.99 and cosine(got, want).min() > 0.95
    assert np.abs(got - want).max() > 1e-4  # it really is a different (quantized) graph
    with pytest.raises(ValueError, match="fp32 export"):
        quantize_onnx(out, tmp_path / "again")
    if method == "int8-static":  # calibrated on the built-in texts, as documents and queries
        assert int8.info["calibration"] == {"source": "built-in", "texts": 32}
        tokens = int8.encode(TEXTS, output_value="token_embeddings")
        want = llama.encode(TEXTS, output_value="token_embeddings")
        assert [t.shape for t in tokens] == [w.shape for w in want]


def test_int8_static_calibration_sources_and_errors(llama, llama_onnx, tmp_path):
    from llm2vec_rag.export import quantize_onnx
    from llm2vec_rag.export.calibration import read_calibration

    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = quantize_onnx(llama_onnx, tmp_path / "static", "int8-static", calibration=lines)
    int8 = OnnxLLM2Vec.from_pretrained(out)
    assert int8.info["calibration"] == {"source": str(lines), "texts": 5}  # "" is skipped
    got, want = int8.encode_queries(TEXTS), llama.encode_queries(TEXTS)
    assert cosine(got, want).mean() > 0.99 and cosine(got, want).min() > 0.95
    beir = tmp_path / "corpus.jsonl"  # a BEIR corpus works as it is; plain strings too
    beir.write_text('{"_id": "1", "title": "", "text": "first"}\n"second"\n\n',
                    encoding="utf-8")
    assert read_calibration(beir) == ["first", "second"]
    assert read_calibration([str(i) for i in range(10)], limit=4) == ["0", "3", "6", "9"]
    with pytest.raises(FileNotFoundError, match="calibration file .*nope.txt.* does not exist"):
        quantize_onnx(llama_onnx, tmp_path / "a", "int8-static", calibration=tmp_path / "nope.txt")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="calibration texts are for method='int8-static'"):
        quantize_onnx(llama_onnx, tmp_path / "b", "int8", calibration=lines)
    with pytest.raises(ValueError, match="calibration texts are for quantize='int8-static'"):
        export_onnx(llama, tmp_path / "c", quantize="int8", calibration=lines)
    with pytest.raises(TypeError, match="item 1 is a int"):
        read_calibration(["ok", 3])


def test_cli_exports_int8_static_with_calibration(tiny_model_dir, tmp_path):
    """`export onnx --quantize int8-static --calibration FILE`: validated against PyTorch."""
    from llm2vec_rag.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "static"
    assert main(["export", "onnx", "--model", tiny_model_dir("llama"), "--out", str(out),
                 "--quantize", "int8-static", "--calibration", str(texts)]) == 0
    info = json.loads((out / "onnx_export.json").read_text())
    assert info["variant"] == "int8-static" and info["calibration"]["texts"] == 5
    assert info["validation"]["int8-static"]["mean_cosine"] > 0.99
    assert main(["export", "onnx", "--model", tiny_model_dir("llama"), "--out",
                 str(tmp_path / "x"), "--quantize", "int8-static", "--calibration",
                 str(tmp_path / "missing.txt")]) == 2
    assert not (tmp_path / "x").exists()


def test_refuses_causal_model(tiny_model_dir, tmp_path):
    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    with pytest.raises(ValueError, match="causal"):
        export_onnx(causal, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_missing_adapter(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny_model_dir("llama"), tmp_path / "out", adapters=[tmp_path / "nope"])
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_existing_output_refused_before_loading(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite"):
        export_onnx("/does/not/matter", tmp_path / "out")  # refused before any loading
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_failed_validation_leaves_nothing_and_keeps_old_output(llama, tmp_path):
    """An impossible threshold fails validation: the previous folder survives intact."""
    from llm2vec_rag.export.staging import MARKER

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("previous export")
    (tmp_path / "out" / MARKER).write_text("{}")  # only a previous export may be replaced
    with pytest.raises(ExportValidationError, match="cosine"):
        export_onnx(llama, tmp_path / "out", overwrite=True, min_cosine=1.01)
    assert sorted(os.listdir(tmp_path / "out")) == [MARKER, "keep.txt"]
    assert leftovers(tmp_path) == []


def test_bad_arguments(llama, tmp_path):
    with pytest.raises(ValueError, match="fp32 or fp16"):
        export_onnx(llama, tmp_path / "a", dtype="bfloat16")
    with pytest.raises(ValueError, match="int8-dynamic"):
        export_onnx(llama, tmp_path / "b", quantize="int4")
    with pytest.raises(ValueError, match="fp32"):
        export_onnx(llama, tmp_path / "c", dtype="fp16", quantize="int8")
    assert os.listdir(tmp_path) == []
