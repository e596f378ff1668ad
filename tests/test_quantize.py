"""encode(precision=, truncate_dim=) against sentence-transformers' own quantization, and the
Qdrant indexer's matching quantization / rescoring options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm2vec_rag.cli import main
from llm2vec_rag.quantize import PRECISIONS, calibration_ranges, quantize
from tiny import CORPUS

st_quant = pytest.importorskip("sentence_transformers.util.quantization")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_same_as_sentence_transformers(precision):
    rng = np.random.default_rng(0)
    emb, calib = rng.normal(size=(20, 19)).astype(np.float32), rng.normal(size=(300, 19))
    calib = calib.astype(np.float32)
    ours = quantize(emb, precision, calibration_embeddings=calib)
    theirs = st_quant.quantize_embeddings(emb, precision, calibration_embeddings=calib)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(quantize(emb, precision, ranges=calibration_ranges(calib)),
                                  theirs)
    if precision.endswith("int8"):  # without calibration: the batch's own ranges
        np.testing.assert_array_equal(quantize(emb, precision),
                                      st_quant.quantize_embeddings(emb, precision))


def test_encode_truncates_before_normalizing(tiny_encoder):
    full = tiny_encoder.encode(CORPUS)
    small = tiny_encoder.encode(CORPUS, truncate_dim=16, normalize=True)
    assert small.shape == (len(CORPUS), 16)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(small, expected, atol=1e-6)


def test_encode_precisions(tiny_encoder):
    vecs = tiny_encoder.encode(CORPUS, normalize=True)
    bits = tiny_encoder.encode(CORPUS, normalize=True, precision="ubinary")
    assert bits.shape == (len(CORPUS), tiny_encoder.dim // 8) and bits.dtype == np.uint8
    np.testing.assert_array_equal(np.unpackbits(bits, axis=1).astype(bool), vecs > 0)
    ranges = calibration_ranges(vecs)
    one = tiny_encoder.encode(CORPUS[:1], normalize=True, precision="int8", ranges=ranges)
    alone = tiny_encoder.encode(CORPUS[:1], normalize=True)  # (batching moves floats by 1e-7)
    np.testing.assert_array_equal(one, quantize(alone, "int8", ranges=ranges))
    assert tiny_encoder.encode([], precision="binary").shape == (0, tiny_encoder.dim // 8)


def test_encode_matches_sentence_transformers_encode(tmp_path, tiny_model_dir):
    """The same folder through sentence-transformers' encode(precision=, truncate_dim=)."""
    from sentence_transformers import SentenceTransformer

    from llm2vec_rag import LLM2Vec

    encoder = LLM2Vec.from_pretrained(tiny_model_dir("qwen2"))
    encoder.save_pretrained(tmp_path / "m")
    model = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    for precision in ("int8", "ubinary"):
        ours = encoder.encode(CORPUS, precision=precision, truncate_dim=32, normalize=True)
        theirs = model.encode(CORPUS, precision=precision, truncate_dim=32,
                              normalize_embeddings=True)
        # int8 buckets may differ by one where a value sits on a bucket edge (float noise)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= (1 if precision ==
                                                                        "int8" else 0)


def test_clear_errors(tiny_encoder):
    with pytest.raises(ValueError, match="precision must be one of"):
        tiny_encoder.encode(["a"], precision="int4")
    with pytest.raises(ValueError, match="truncate_dim must be an integer in 1..64"):
        tiny_encoder.encode(["a"], truncate_dim=65)
    with pytest.raises(ValueError, match="int8 needs quantization ranges"):
        tiny_encoder.encode(["a"], precision="int8")
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 16\)"):
        tiny_encoder.encode(["a", "b"], precision="int8", truncate_dim=16,
                            ranges=np.zeros((2, 64)))


def test_qdrant_binary_quantization_with_rescoring(tiny_encoder):
    from qdrant_client import models

    from llm2vec_rag.integrations import _qdrant_config as qc
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    with QdrantIndexer(tiny_encoder, path=":memory:", quantization="binary",
                       oversampling=2.0) as indexer:
        indexer.index(CORPUS[:6], show_progress=False)
        # local mode keeps no quantization config (it searches exactly): check what a server gets
        assert isinstance(indexer._create_args["quantization"], models.BinaryQuantization)
        params = qc.search_params(qc.quantization("binary"), oversampling=2.0).quantization
        assert params.rescore is True and params.oversampling == 2.0
        assert indexer.search(CORPUS[2], k=1)[0].text == CORPUS[2]
    with pytest.raises(ValueError, match="oversampling must be >= 1"):
        QdrantIndexer(tiny_encoder, path=":memory:", quantization="int8", oversampling=0.5)


def test_cli_search_dot_collection(tiny_model_dir, tmp_path, capsys):
    """A collection indexed with --distance dot is searchable with --distance dot."""
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(CORPUS[:5]), encoding="utf-8")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--qdrant-path",
             str(tmp_path / "q")]
    assert main(["index", str(docs), *flags, "--one-per-line", "--distance", "dot",
                 "--quantization", "int8", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", CORPUS[1], *flags, "--json"]) == 2  # cosine: refused, clearly
    assert "distance" in capsys.readouterr().err
    assert main(["search", CORPUS[1], *flags, "--distance", "dot", "--oversampling", "2",
                 "--json", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == CORPUS[1]
