"""OnnxLLM2Vec: same vectors and API as LLM2Vec, torch-free, clear errors on broken folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
from test_export_common import QUERY_INSTRUCTION, TEXTS

from llm2vec_rag.export import FastTokenizer, OnnxLLM2Vec, TensorRTProfile
from llm2vec_rag.export.providers import open_session, provider_list
from llm2vec_rag.preprocess import load_tokenizer

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TRT = "TensorrtExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def onnx_encoder(llama_onnx):
    return OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu")


def test_same_vectors_as_pytorch_through_the_public_api(llama, onnx_encoder):
    assert onnx_encoder.dim == llama.dim
    assert onnx_encoder.config.query_instruction == QUERY_INSTRUCTION
    for name in ("encode_queries", "encode_documents"):
        got = getattr(onnx_encoder, name)(TEXTS, batch_size=2)
        want = getattr(llama, name)(TEXTS, batch_size=2)
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=name)
    got = onnx_encoder.encode("one text", instruction="Represent it", normalize=True)
    want = llama.encode("one text", instruction="Represent it", normalize=True)
    assert got.shape == (1, llama.dim)
    np.testing.assert_allclose(got, want, atol=1e-4)
    queries, documents = onnx_encoder.encode_queries(TEXTS), onnx_encoder.encode_documents(TEXTS)
    assert np.abs(queries - documents).max() > 1e-3  # the instruction is really applied


def test_io_binding_path_gives_same_vectors(llama_onnx, onnx_encoder):
    """The GPU path's IO binding, exercised on CPU (bound outputs on the CPU device)."""
    bound = OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu", io_binding=True)
    np.testing.assert_allclose(bound.encode(TEXTS), onnx_encoder.encode(TEXTS), atol=1e-6)


def test_profile_chunking_and_padding(llama_onnx, onnx_encoder):
    """TensorRT profiles: batches split to max_batch, padded up to min_batch / min_seq."""
    session = open_session(os.path.join(llama_onnx, "model.onnx"), provider_list("cpu"))
    profile = TensorRTProfile(min_batch=2, opt_batch=2, max_batch=2, min_seq=40, opt_seq=40,
                              max_seq=512)
    capped = OnnxLLM2Vec(session, onnx_encoder.tokenizer, onnx_encoder.config,
                         info=onnx_encoder.info, profile=profile)
    seen = []
    original = capped._run
    capped._run = lambda inputs, *output: (seen.append(inputs["input_ids"].shape)
                                           or original(inputs, *output))
    got = capped.encode(TEXTS[:5], batch_size=5)
    np.testing.assert_allclose(got, onnx_encoder.encode(TEXTS[:5]), atol=1e-5)
    assert all(b == 2 and t >= 40 for b, t in seen), seen
    # token outputs: the profile's extra rows and columns are cut off again
    tokens = capped.encode(TEXTS[:5], batch_size=5, output_value="token_embeddings")
    for got, want in zip(tokens, onnx_encoder.encode(TEXTS[:5], output_value="token_embeddings")):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("arch,kind", [("llama", "whitespace"), ("qwen2", "bytelevel"),
                                       ("gemma", "whitespace")])
def test_torch_free_tokenizer_matches_transformers(tiny_model_dir, tmp_path, arch, kind):
    reference = load_tokenizer(tiny_model_dir(arch, kind))
    reference.save_pretrained(tmp_path)
    ours = FastTokenizer.from_pretrained(tmp_path)
    texts = [*TEXTS, "  two  spaces ", "Ünïcödé — “quotes” 🙂🚀", "</s> <s> <bos> inside"]
    for special in (True, False):
        want = reference(texts, add_special_tokens=special)["input_ids"]
        assert ours(texts, add_special_tokens=special)["input_ids"] == want
    assert ours("a", add_special_tokens=True)["input_ids"] == reference("a")["input_ids"]
    assert (ours.eos_token_id, ours.pad_token_id) == (reference.eos_token_id,
                                                      reference.pad_token_id)


@pytest.mark.slow
def test_torch_free_tokenizer_on_real_smollm2(smollm2_gguf, tmp_path):
    """The real GGUF tokenizer (byte-level BPE with chat specials); tokenizer only, fast."""
    reference = load_tokenizer(os.path.dirname(smollm2_gguf),
                               gguf_file=os.path.basename(smollm2_gguf))
    reference.save_pretrained(tmp_path)
    ours = FastTokenizer.from_pretrained(tmp_path)
    texts = [*TEXTS, "<|im_start|>user\nhi<|im_end|>", "tabs\tand\nnewlines"]
    for special in (True, False):
        assert ours(texts, add_special_tokens=special)["input_ids"] == reference(
            texts, add_special_tokens=special)["input_ids"]
    assert ours.eos_token_id == reference.eos_token_id


def test_encoding_does_not_import_torch(llama_onnx, onnx_encoder, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from llm2vec_rag.export import OnnxLLM2Vec
        encoder = OnnxLLM2Vec.from_pretrained({llama_onnx!r})
        vectors = encoder.encode_queries({TEXTS!r})
        np.save({str(tmp_path / "v.npy")!r}, vectors)
        assert "torch" not in sys.modules, "torch was imported"
        assert "transformers" not in sys.modules, "transformers was imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), onnx_encoder.encode_queries(TEXTS),
                               atol=1e-6)


@pytest.mark.parametrize("missing,match", [("tokenizer.json", "tokenizer.json"),
                                           ("llm2vec_config.json", "llm2vec_config.json"),
                                           ("model.onnx", "model.onnx")])
def test_incomplete_folder_errors(llama_onnx, tmp_path, missing, match):
    broken = tmp_path / "broken"
    shutil.copytree(llama_onnx, broken)
    os.remove(broken / missing)
    with pytest.raises(FileNotFoundError, match=match):
        OnnxLLM2Vec.from_pretrained(broken, provider="cpu")


def test_bad_arguments(llama_onnx, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxLLM2Vec.from_pretrained(tmp_path / "nothing")
    with pytest.raises(ValueError, match="compiled into"):
        OnnxLLM2Vec.from_pretrained(llama_onnx, pooling="eos")
    with pytest.raises(ValueError, match="provider must be"):
        OnnxLLM2Vec.from_pretrained(llama_onnx, provider="tpu")
    with pytest.raises(ValueError, match="device must be"):
        OnnxLLM2Vec.from_pretrained(llama_onnx, device="mps")
    with pytest.raises(ValueError, match="min_batch"):
        TensorRTProfile(min_batch=4, opt_batch=2, max_batch=8)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error shown when the CUDA provider is absent")
def test_missing_gpu_provider_is_a_clear_error(llama_onnx):
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cuda")


def test_default_provider_is_cuda_only_when_available(llama_onnx):
    encoder = OnnxLLM2Vec.from_pretrained(llama_onnx)  # what `encode --onnx` does
    expected = "CUDAExecutionProvider" if HAS_CUDA else "CPUExecutionProvider"
    assert encoder.provider == expected
    assert encoder.io_binding == HAS_CUDA


def test_config_changes_after_loading(llama_onnx, tiny_model_dir):
    """max_length changes take effect; pooling is inside the graph, so a change is refused."""
    import warnings

    from llm2vec_rag import LLM2Vec
    from tiny import CORPUS

    onnx = OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu")
    onnx.config.max_length = 8
    short = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation warnings: expected
        np.testing.assert_allclose(onnx.encode(CORPUS[:4]), short.encode(CORPUS[:4]),
                                   atol=1e-4)
    onnx.config.pooling = "eos"
    with pytest.raises(ValueError, match="exported with 'mean' pooling, which is compiled"):
        onnx.encode("x")
    with pytest.raises(ValueError, match="compiled into it"):
        onnx.count_tokens("x")
    onnx.config.pooling = "mean"
    assert onnx.encode("x").shape == (1, onnx.dim)


def test_serve_onnx_keeps_the_model_id_of_its_source(llama_onnx, tiny_model_dir, tmp_path):
    """`serve --onnx EXPORT` answers under the id the source model is served under (recorded
    in onnx_export.json), not the export folder's name; exports without it keep the folder's."""
    import argparse
    import json

    from llm2vec_rag.serve.cli import served_name

    def args(model: str, onnx: bool) -> argparse.Namespace:
        return argparse.Namespace(served_model_name=None, onnx=onnx, model=model, adapter=[])

    source_id = served_name(args(tiny_model_dir("llama"), onnx=False))
    assert os.path.basename(llama_onnx) != source_id
    assert served_name(args(llama_onnx, onnx=True)) == source_id
    old = tmp_path / "old-export"
    shutil.copytree(llama_onnx, old)
    info = json.loads((old / "onnx_export.json").read_text())
    del info["model_id"]
    (old / "onnx_export.json").write_text(json.dumps(info))
    assert served_name(args(str(old), onnx=True)) == "old-export"
