"""Train the bundled default domain model: SmolLM2-135M-Instruct -> MNTP -> SimCSE on CPU.

Unlabelled training text, none of it evaluation text: gensim's Wikipedia sample (206 pages)
and ``lee_background.cor`` (300 news articles). Then the LLM2Vec ablation on the Lee set:
causal, bidirectional untrained, + MNTP, + MNTP + SimCSE (Spearman).

    python examples/train_domain_model.py                # ~2 h on 2 CPU cores
    python examples/train_domain_model.py --mntp max_steps=5 --simcse max_steps=5  # smoke run

Settings come from the shipped presets ``mntp-cpu`` / ``simcse-cpu``; ``--mntp k=v`` and
``--simcse k=v`` override them. Re-running resumes each stage from its last checkpoint.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import time
import xml.etree.ElementTree as ET

from llm2vec_rag.training.bundle import bundle, name_base_by_file  # noqa: F401 (importable here)

WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MIN_WORDS = 20  # paragraphs shorter than this are list items, captions, leftovers


def wiki_paragraphs(path: str) -> list[str]:
    from llm2vec_rag.training.markup import strip_wiki

    out = []
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag.endswith("}text") and elem.text and not elem.text.startswith("#REDIRECT"):
                out += strip_wiki(elem.text, MIN_WORDS).split("\n")
            if elem.tag.endswith("}page"):
                elem.clear()
    return [p for p in out if p]


def prepare_corpus(data_dir: str, out_path: str) -> str:
    """One paragraph/article per line: the Wikipedia sample, then the Lee background set."""
    if os.path.isfile(out_path):
        return out_path
    texts = wiki_paragraphs(os.path.join(data_dir, WIKI))
    with open(os.path.join(data_dir, "lee_background.cor"), encoding="latin-1") as f:
        texts += [line.strip() for line in f if line.strip()]
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    print(f"corpus: {len(texts)} paragraphs, {sum(len(t.split()) for t in texts)} words "
          f"-> {out_path}")
    return out_path


def ablation(model: str, mntp: str, simcse: str, data_dir: str) -> list[dict]:
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.training import lee_spearman

    rows = [("causal, mean pooling", [], False), ("bidirectional, untrained", [], True),
            ("+ MNTP", [mntp], True), ("+ MNTP + SimCSE", [mntp, simcse], True)]
    results = []
    for name, adapters, bidirectional in rows:
        encoder = LLM2Vec.from_pretrained(model, adapters=adapters, pooling="mean",
                                          enable_bidirectional=bidirectional, device="cpu")
        rho = lee_spearman(encoder, data_dir)
        results.append({"setting": name, "spearman": round(rho, 4), "adapters": adapters})
        print(f"{name:28s} {rho:.4f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model (default: the SmolLM2 GGUF)")
    parser.add_argument("--data-dir", default="data/gensim")
    parser.add_argument("--out", default="out/default-model")
    parser.add_argument("--bundle-to", default=None,
                        help="where the shipped adapters go (default: OUT/bundle; the package's "
                             "copy is llm2vec_rag/models/smollm2-135m-llm2vec)")
    parser.add_argument("--mntp", nargs="*", default=[], metavar="key=value")
    parser.add_argument("--simcse", nargs="*", default=[], metavar="key=value")
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()

    from llm2vec_rag.default_model import smollm2_gguf
    from llm2vec_rag.training import load_config, train_mntp, train_simcse
    from llm2vec_rag.training.config import parse_overrides

    model = args.model or smollm2_gguf()
    bundle_to = args.bundle_to or os.path.join(args.out, "bundle")
    corpus = prepare_corpus(args.data_dir, os.path.join(args.out, "corpus.txt"))
    timings = {}
    start = time.perf_counter()
    mntp = train_mntp(load_config("mntp", "mntp-cpu", {
        "model": model, "data": [corpus], "output_dir": os.path.join(args.out, "mntp"),
        **parse_overrides(args.mntp)}))
    mntp = bundle(mntp, os.path.join(bundle_to, "mntp"), model)
    timings["mntp_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    simcse = train_simcse(load_config("simcse", "simcse-cpu", {
        "model": model, "data": [corpus], "adapters": [mntp],
        "output_dir": os.path.join(args.out, "simcse"), **parse_overrides(args.simcse)}))
    simcse = bundle(simcse, os.path.join(bundle_to, "simcse"), model)
    timings["simcse_s"] = round(time.perf_counter() - start, 1)
    print(f"adapters: {mntp} then {simcse}; seconds: {timings}")
    if not args.skip_eval:
        results = {"lee": ablation(model, mntp, simcse, args.data_dir), "seconds": timings}
        with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
