"""``from_pretrained`` in three steps (resolve the chain, load the weights, resolve the
settings), and the bidirectionality proof recorded once per fused-model cache entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cache import CACHE_FORMAT, MANIFEST, describe_files
from llm2vec_rag.model import PROOF_FILE, load_weights, pick_device
from llm2vec_rag.resolve import resolve_chain, resolve_settings
from tiny import CORPUS, make_lora_adapter


@pytest.fixture(scope="module")
def chain_dirs(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    return base, make_lora_adapter(base, str(tmp_path_factory.mktemp("steps") / "a"), 7)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Forwards:
    """Counts module forward calls in this process (torch's global forward hook)."""

    def __enter__(self):
        self.n = 0

        def hook(*_):
            self.n += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_the_steps_build_what_from_pretrained_builds(chain_dirs):
    base, adapter = chain_dirs
    chain = resolve_chain(base, [adapter], None)
    assert chain.base == base and chain.adapters == (adapter,) and chain.gguf_file is None
    assert chain.files == [base, adapter]
    device = pick_device("cpu")
    model, tokenizer = load_weights(chain, device, torch.float32, name=base)
    config = resolve_settings(chain.folders, tokenizer, pooling="weighted_mean",
                              max_length=32, query_instruction="Find it")
    stepwise = LLM2Vec(model, tokenizer, config)
    whole = LLM2Vec.from_pretrained(base, [adapter], pooling="weighted_mean", max_length=32,
                                    query_instruction="Find it", device="cpu")
    assert stepwise.config == whole.config
    np.testing.assert_allclose(stepwise.encode_queries(CORPUS[:3]),
                               whole.encode_queries(CORPUS[:3]), atol=1e-6)
    assert json.loads(whole.source)["adapters"] == [adapter]


def test_reference_keys_and_pooling_mode_still_resolve(chain_dirs):
    base, _ = chain_dirs
    with pytest.raises(ValueError, match="disagree"):
        LLM2Vec.from_pretrained(base, pooling="mean", pooling_mode="eos", device="cpu")
    enc = LLM2Vec.from_pretrained(base, pooling_mode="weighted_mean", doc_max_length=40,
                                  device="cpu")
    assert enc.config.pooling == "weighted_mean" and enc.config.max_length > 40


def test_a_cache_entry_is_proven_bidirectional_once(chain_dirs, cache_dir):
    base, adapter = chain_dirs
    with Forwards() as first:
        built = LLM2Vec.from_pretrained(base, [adapter], cache=True, device="cpu")
    assert first.n > 0  # the probe ran while building the entry
    [entry] = [p for p in (cache_dir / "fused").iterdir() if p.is_dir()]
    proof = json.loads((entry / PROOF_FILE).read_text())
    assert proof["transformers"] and proof["attn_implementation"] is None
    with Forwards() as again:
        cached = LLM2Vec.from_pretrained(base, [adapter], cache=True, device="cpu")
    assert again.n == 0  # loaded from the entry: no forward pass before the first encode
    np.testing.assert_array_equal(cached.encode(CORPUS[:3]), built.encode(CORPUS[:3]))


def rewrite_entry(entry, proof: dict | None) -> None:
    """Record ``proof`` in the entry (None: remove it, as in an entry written before proofs
    were recorded) and rewrite its manifest to match, so the entry stays valid."""
    if proof is None:
        (entry / PROOF_FILE).unlink()
    else:
        (entry / PROOF_FILE).write_text(json.dumps(proof))
    (entry / MANIFEST).write_text(json.dumps({"format": CACHE_FORMAT,
                                              "files": describe_files(str(entry))}))


@pytest.mark.parametrize("recorded", ["none", "other-transformers", "other-attention"])
def test_an_entry_without_a_matching_proof_is_probed_on_load_not_rebuilt(chain_dirs, cache_dir,
                                                                         recorded):
    base, adapter = chain_dirs
    built = LLM2Vec.from_pretrained(base, [adapter], cache=True, device="cpu")
    [entry] = [p for p in (cache_dir / "fused").iterdir() if p.is_dir()]
    proof = json.loads((entry / PROOF_FILE).read_text())
    rewrite_entry(entry, {"none": None,
                          "other-transformers": {**proof, "transformers": "0.0"},
                          "other-attention": {**proof, "attn_implementation": "eager"}}[recorded])
    weights = (entry / "model.safetensors").stat()
    with Forwards() as load:
        cached = LLM2Vec.from_pretrained(base, [adapter], cache=True, device="cpu")
    assert load.n > 0  # the probe ran on the loaded weights
    again = (entry / "model.safetensors").stat()
    assert (again.st_ino, again.st_mtime_ns) == (weights.st_ino, weights.st_mtime_ns)  # kept
    np.testing.assert_array_equal(cached.encode(CORPUS[:3]), built.encode(CORPUS[:3]))


def test_a_gguf_load_builds_each_tensor_name_map_once():
    """transformers asks gguf for the tensor-name map once per module (395 times for
    SmolLM2, a fifth of an uncached load); inside the load it is built once and shared, and
    gguf is left as it was afterwards."""
    gguf = pytest.importorskip("gguf")
    from llm2vec_rag.loading import reuse_gguf_reader

    arch = gguf.MODEL_ARCH.LLAMA
    original = gguf.get_tensor_name_map
    assert original(arch, 2) is not original(arch, 2)  # upstream builds a new map each call
    with reuse_gguf_reader():
        first = gguf.get_tensor_name_map(arch, 2)
        assert gguf.get_tensor_name_map(arch, 2) is first
        assert gguf.get_tensor_name_map(arch, 3) is not first  # keyed by its arguments
        assert first.get_name("model.layers.1.mlp.down_proj") == "blk.1.ffn_down"
    assert gguf.get_tensor_name_map is original
