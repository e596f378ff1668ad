"""Retrieval demo: index news articles into the embedded Qdrant store with the bundled default
model (the real SmolLM2-135M made an encoder with MNTP + SimCSE), then answer a few queries.

    python examples/rag_demo.py                 # first 100 articles, ~minutes on 2 CPU cores
    python examples/rag_demo.py --limit 300 --query "bushfires near Sydney"

Re-running is fast: unchanged articles are skipped. The store is a plain folder
(--qdrant-path); LangChain's and LlamaIndex's QdrantVectorStore can read it too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "gensim", "lee_background.cor")
QUERIES = [
    "bushfires threatening homes in New South Wales",
    "Taliban and the war in Afghanistan",
    "violence between Israelis and Palestinians",
    "interest rates and the Australian economy",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None,
                   help="model (default: the bundled default model, SmolLM2-135M + adapters)")
    p.add_argument("--data", default=DATA, help="one article per line")
    p.add_argument("--limit", type=int, default=100, help="articles to index (default 100)")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--qdrant-path", default="./qdrant_data")
    p.add_argument("--collection", default="lee_demo")
    p.add_argument("--query", action="append", help="query (repeatable; default: a few)")
    p.add_argument("-k", type=int, default=3)
    args = p.parse_args(argv)
    if not os.path.isfile(args.data):
        p.error(f"{args.data} not found: run bash scripts/fetch_data.sh")

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import load_default_model
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    t0 = time.perf_counter()
    # Queries get the model's own query_instruction (llm2vec_config.json); the default model
    # ships the one it was checked with.
    encoder = LLM2Vec.from_pretrained(args.model) if args.model else load_default_model()
    print(f"loaded {os.path.basename(args.model or 'the default model')} (dim {encoder.dim}) "
          f"in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    with open(args.data, encoding="utf-8") as f:
        articles = [{"id": f"lee-{n}", "text": line.strip(), "line": n}
                    for n, line in enumerate(f, 1) if line.strip()][: args.limit]

    with QdrantIndexer(encoder, args.collection, path=args.qdrant_path,
                       chunk_size=args.chunk_size) as indexer:
        print(indexer.index(articles), file=sys.stderr)
        for query in args.query or QUERIES:
            print(f"\nQ: {query}")
            for rank, hit in enumerate(indexer.search(query, k=args.k), 1):
                snippet = " ".join(hit.text.split())[:150]
                print(f"  {rank}. {hit.score:.3f} [{hit.metadata['doc_id']}#"
                      f"{hit.metadata['chunk']}] {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
