"""OpenVINOLLM2Vec: the ONNX export run by OpenVINO (fp32, and NNCF int8 IR), same vectors and
API as LLM2Vec, selectable wherever an ONNX export is, clear errors.

Tolerances held here (and documented in docs/export.md): fp32 vs PyTorch 1e-4 absolute (as
ONNX Runtime), fp32 vs ONNX Runtime 1e-5; NNCF int8 vs PyTorch mean cosine > 0.99 and
every row > 0.95 (the ONNX Runtime int8 recipes' bound).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_export_common import QUERY_INSTRUCTION, TEXTS, cosine

pytest.importorskip("openvino", reason="the [openvino] extra is not installed: "
                                       "pip install 'llm2vec-rag[openvino]'")
pytest.importorskip("nncf", reason="the [openvino] extra is not installed: "
                                   "pip install 'llm2vec-rag[openvino]'")

from llm2vec_rag.export import OnnxLLM2Vec, OpenVINOLLM2Vec, export_openvino  # noqa: E402
from llm2vec_rag.spec import EncoderSpec, load_encoder  # noqa: E402


@pytest.fixture(scope="module")
def ov_encoder(llama_onnx):
    return OpenVINOLLM2Vec.from_pretrained(llama_onnx)


@pytest.fixture(scope="module")
def ov_int8(llama_onnx, tmp_path_factory):
    return export_openvino(llama_onnx, tmp_path_factory.mktemp("openvino") / "int8")


def test_fp32_same_vectors_as_pytorch_and_onnx_runtime(llama, llama_onnx, ov_encoder):
    assert ov_encoder.dim == llama.dim
    assert ov_encoder.config.query_instruction == QUERY_INSTRUCTION
    ort = OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu")
    for name in ("encode_queries", "encode_documents"):
        got = getattr(ov_encoder, name)(TEXTS, batch_size=2)
        np.testing.assert_allclose(got, getattr(llama, name)(TEXTS, batch_size=2), atol=1e-4,
                                   err_msg=name)
        np.testing.assert_allclose(got, getattr(ort, name)(TEXTS, batch_size=2), atol=1e-5,
                                   err_msg=name)
    got = ov_encoder.encode("one text", instruction="Represent it", normalize=True)
    want = llama.encode("one text", instruction="Represent it", normalize=True)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(ov_encoder.encode_queries(TEXTS) - ov_encoder.encode_documents(TEXTS)).max() \
        > 1e-3  # the instruction is really applied
    assert ov_encoder.source == ort.source  # fp32 in either runtime: one source of vectors


def test_token_embeddings_and_late_chunking_match_pytorch(llama, ov_encoder):
    got = ov_encoder.encode(TEXTS, output_value="token_embeddings")
    want = llama.encode(TEXTS, output_value="token_embeddings")
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)
    document = TEXTS[2]
    spans = [(0, 11), (12, len(document))]
    np.testing.assert_allclose(ov_encoder.encode_chunks(document, spans),
                               llama.encode_chunks(document, spans), atol=1e-4)


def test_selected_by_backend_like_the_onnx_runtime_encoder(llama_onnx, ov_encoder):
    """backend="openvino" wherever backend="onnx" works: specs (pool workers, Ray actors,
    the server), load_encoder (LangChain, LlamaIndex), the CLI's --openvino."""
    from llm2vec_rag.cli import build_parser
    from llm2vec_rag.flags import spec_from_args

    encoder = load_encoder(llama_onnx, backend="openvino", max_length=32)
    assert isinstance(encoder, OpenVINOLLM2Vec) and encoder.config.max_length == 32
    assert encoder.spec == EncoderSpec(llama_onnx, (), "openvino", {"max_length": 32})
    rebuilt = EncoderSpec.from_json(encoder.spec.to_json()).load()
    np.testing.assert_allclose(rebuilt.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]), atol=1e-6)
    for flags in (["--openvino"], ["--onnx", "--openvino"]):
        args = build_parser().parse_args(["encode", "t.txt", "--model", llama_onnx, *flags])
        assert spec_from_args(args).backend == "openvino"
    with pytest.raises(ValueError, match="adapters cannot be applied"):
        EncoderSpec(llama_onnx, ("lora",), "openvino")


def test_cli_encode_and_serve_name(llama_onnx, tiny_model_dir, ov_encoder, tmp_path):
    import argparse

    from llm2vec_rag.cli import main
    from llm2vec_rag.serve.cli import served_name

    src, out = tmp_path / "texts.txt", tmp_path / "vecs.npy"
    src.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    assert main(["encode", str(src), "--openvino", "--model", llama_onnx, "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), ov_encoder.encode(TEXTS[:3]), atol=1e-6)
    args = argparse.Namespace(served_model_name=None, openvino=True, model=llama_onnx,
                              adapter=[])
    source = argparse.Namespace(served_model_name=None, model=tiny_model_dir("llama"),
                                adapter=[])
    assert served_name(args) == served_name(source)  # the id the source model is served under


def test_int8_ir_stays_close_and_is_really_int8(llama, llama_onnx, ov_int8):
    import openvino as ov

    names = set(os.listdir(ov_int8))
    assert {"openvino_model.xml", "openvino_model.bin", "tokenizer.json",
            "llm2vec_config.json", "onnx_export.json"} <= names
    assert not any(n.startswith("model.onnx") for n in names)
    ops = {op.get_type_name() for op in ov.Core().read_model(
        str(ov_int8 / "openvino_model.xml")).get_ops()}
    assert "FakeQuantize" in ops
    assert os.path.getsize(ov_int8 / "openvino_model.bin") < 0.6 * os.path.getsize(
        os.path.join(llama_onnx, "model.onnx"))
    int8 = OpenVINOLLM2Vec.from_pretrained(ov_int8)  # the IR is picked over any model.onnx
    assert int8.info["variant"] == "openvino-int8"
    assert int8.info["calibration"]["source"] == "built-in"
    assert "7-bit" in int8.info["quantization"]["weights"]  # safe without VNNI
    assert int8.info["validation"]["openvino-int8_vs_fp32_onnx"]["mean_cosine"] > 0.99
    got, want = int8.encode_queries(TEXTS), llama.encode_queries(TEXTS)
    assert cosine(got, want).mean() > 0.99 and cosine(got, want).min() > 0.95
    assert np.abs(got - want).max() > 1e-4  # a different (quantized) graph
    assert int8.source != OpenVINOLLM2Vec.from_pretrained(llama_onnx).source
    tokens = int8.encode(TEXTS[:2], output_value="token_embeddings")
    assert [t.shape for t in tokens] == [t.shape for t in llama.encode(
        TEXTS[:2], output_value="token_embeddings")]


def test_fp32_ir_and_calibration_from_a_file(llama_onnx, ov_encoder, tmp_path):
    fp32 = export_openvino(llama_onnx, tmp_path / "fp32", quantize=None)
    encoder = OpenVINOLLM2Vec.from_pretrained(fp32)
    assert encoder.info["variant"] == "openvino-fp32"
    np.testing.assert_allclose(encoder.encode(TEXTS), ov_encoder.encode(TEXTS), atol=1e-6)
    texts = tmp_path / "calibration.jsonl"
    texts.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n"
                             for i, t in enumerate(TEXTS)), encoding="utf-8")
    out = export_openvino(llama_onnx, tmp_path / "int8", calibration=texts)
    info = json.loads((out / "onnx_export.json").read_text())
    assert info["calibration"]["source"] == str(texts)
    assert info["calibration"]["texts"] == sum(bool(t.strip()) for t in TEXTS)


def test_encoding_imports_neither_torch_nor_onnxruntime(llama_onnx, ov_encoder, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from llm2vec_rag.export import OpenVINOLLM2Vec
        encoder = OpenVINOLLM2Vec.from_pretrained({llama_onnx!r})
        np.save({str(tmp_path / "v.npy")!r}, encoder.encode_queries({TEXTS!r}))
        for name in ("torch", "transformers", "onnxruntime"):
            assert name not in sys.modules, name + " was imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), ov_encoder.encode_queries(TEXTS),
                               atol=1e-6)


def test_bad_input_errors(llama_onnx, ov_int8, tmp_path):
    with pytest.raises(FileNotFoundError, match="calibration file .*missing.txt.* does not exist"):
        export_openvino(llama_onnx, tmp_path / "a", calibration=tmp_path / "missing.txt")
    assert not (tmp_path / "a").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: .*'text'"):
        export_openvino(llama_onnx, tmp_path / "b", calibration=bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no non-empty text"):
        export_openvino(llama_onnx, tmp_path / "c", calibration=empty)
    with pytest.raises(ValueError, match="None or 'int8'"):
        export_openvino(llama_onnx, tmp_path / "d", quantize="int4")
    with pytest.raises(ValueError, match="calibration texts are for"):
        export_openvino(llama_onnx, tmp_path / "e", quantize=None, calibration=["x"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenVINOLLM2Vec.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="compiled into"):
        OpenVINOLLM2Vec.from_pretrained(llama_onnx, pooling="eos")
    with pytest.raises(RuntimeError, match="not an OpenVINO device.*cpu"):
        OpenVINOLLM2Vec.from_pretrained(llama_onnx, device="cuda")
    with pytest.raises(ValueError, match="inference_precision must be"):
        OpenVINOLLM2Vec.from_pretrained(llama_onnx, inference_precision="int8")
    with pytest.raises(FileNotFoundError, match="OpenVINO IR folder.*--openvino"):
        OnnxLLM2Vec.from_pretrained(ov_int8)  # ONNX Runtime cannot run the IR: say what can
    with pytest.raises(FileNotFoundError, match="holds no model.onnx"):
        export_openvino(ov_int8, tmp_path / "f")  # IR is made from the ONNX export
    int8_onnx = tmp_path / "int8-onnx"
    shutil.copytree(llama_onnx, int8_onnx)
    info = json.loads((int8_onnx / "onnx_export.json").read_text())
    (int8_onnx / "onnx_export.json").write_text(json.dumps({**info, "variant": "int8"}))
    with pytest.raises(ValueError, match="variant 'int8'.*from the fp32 export"):
        export_openvino(int8_onnx, tmp_path / "g")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(llama_onnx, corrupt)
    (corrupt / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="OpenVINO cannot read this graph"):
        OpenVINOLLM2Vec.from_pretrained(corrupt)


def test_missing_extra_names_the_install_command(llama_onnx, tmp_path, monkeypatch):
    """Without openvino (or nncf) installed: one error that says what to install."""
    installed = sys.modules["openvino"]
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an absent package looks like
    with pytest.raises(ImportError, match=r"pip install 'llm2vec-rag\[openvino\]'"):
        OpenVINOLLM2Vec.from_pretrained(llama_onnx)
    with pytest.raises(RuntimeError, match=r"llm2vec-rag\[openvino\]"):  # the CLI's one line
        load_encoder(llama_onnx, backend="openvino")
    monkeypatch.setitem(sys.modules, "openvino", installed)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ImportError, match=r"nncf.*pip install 'llm2vec-rag\[openvino\]'"):
        export_openvino(llama_onnx, tmp_path / "int8")
    assert not (tmp_path / "int8").exists()
