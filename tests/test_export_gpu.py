"""GPU paths: CUDA fp16 with IO binding, and TensorRT engines. Skipped without the providers
(onnxruntime-gpu, an NVIDIA GPU, and the TensorRT libraries for the TensorRT tests)."""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import pytest
from test_export_common import QUERY_INSTRUCTION, TEXTS, cosine, exported

from llm2vec_rag import LLM2Vec
from llm2vec_rag.export import OnnxLLM2Vec, OutputExistsError, TensorRTProfile, build_tensorrt

PROVIDERS = ort.get_available_providers()
needs_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in PROVIDERS,
    reason=f"CUDAExecutionProvider absent (onnxruntime providers: {PROVIDERS}); "
           "install onnxruntime-gpu on a machine with an NVIDIA GPU")
needs_tensorrt = pytest.mark.skipif(
    "TensorrtExecutionProvider" not in PROVIDERS,
    reason=f"TensorrtExecutionProvider absent (onnxruntime providers: {PROVIDERS}); "
           "needs onnxruntime-gpu plus the TensorRT libraries and an NVIDIA GPU")


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu")


@needs_cuda
def test_cuda_fp16_with_io_binding(tmp_path_factory, tiny_model_dir, llama):
    folder = exported(tmp_path_factory, tiny_model_dir("llama"), "llama-fp16-cuda",
                      dtype="fp16", device="cpu")
    info = json.load(open(os.path.join(folder, "onnx_export.json")))
    assert info["validation"]["fp16"]["provider"] == "cuda"  # validated on the GPU
    encoder = OnnxLLM2Vec.from_pretrained(folder, device="cuda:0")
    assert encoder.provider == "CUDAExecutionProvider" and encoder.io_binding
    got = encoder.encode_queries(TEXTS, instruction=QUERY_INSTRUCTION, batch_size=4)
    want = llama.encode_queries(TEXTS, instruction=QUERY_INSTRUCTION, batch_size=4)
    assert cosine(got, want).min() > 0.999


@needs_cuda
def test_cuda_fp32_matches_pytorch(tmp_path_factory, tiny_model_dir, llama):
    folder = exported(tmp_path_factory, tiny_model_dir("llama"), "llama-mean",
                      query_instruction=QUERY_INSTRUCTION)
    encoder = OnnxLLM2Vec.from_pretrained(folder, provider="cuda")
    np.testing.assert_allclose(encoder.encode(TEXTS), llama.encode(TEXTS), atol=1e-3)


@needs_tensorrt
def test_tensorrt_engine_build_cache_and_profile(tmp_path_factory, tiny_model_dir, llama):
    folder = exported(tmp_path_factory, tiny_model_dir("llama"), "llama-trt")
    profile = TensorRTProfile(min_batch=1, opt_batch=2, max_batch=4, min_seq=8, opt_seq=32,
                              max_seq=128)
    cache = build_tensorrt(folder, profile, fp16=True)
    assert any(cache.iterdir()), "no engine written to the cache"
    info = json.load(open(os.path.join(folder, "tensorrt.json")))
    assert info["profile"]["max_batch"] == 4 and info["validation"]["min_cosine"] > 0.999
    with pytest.raises(OutputExistsError):
        build_tensorrt(folder, profile)
    engines = sorted(os.listdir(cache))
    encoder = OnnxLLM2Vec.from_pretrained(folder, provider="tensorrt", max_length=128)
    assert encoder.provider == "TensorrtExecutionProvider"
    got = encoder.encode(TEXTS, batch_size=6)  # split to max_batch 4, short rows padded to 8
    assert cosine(got, llama.encode(TEXTS)).min() > 0.999
    assert sorted(os.listdir(cache)) == engines  # the cached engine was reused, not rebuilt
    with pytest.raises(ValueError, match="max_seq"):
        OnnxLLM2Vec.from_pretrained(folder, provider="tensorrt", max_length=512)
