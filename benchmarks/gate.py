"""The retrieval-quality gate for fast paths (issue #32, item 1): each recipe scored against
float32 on the held-out retrieval sets and Lee, with its throughput measured in the same run.

    .venv/bin/python benchmarks/gate.py --recipes float32 bf16-autocast bfloat16
    .venv/bin/python benchmarks/gate.py --recipes float32 onnx-fp32 onnx-int8 \
        onnx-int8-dynamic onnx-int8-static openvino-fp32 openvino-int8

A recipe is either a ``dtype`` of ``load_default_model`` (the bundled encoder, on the CPU):
``float32``, ``bf16-autocast`` (fp32 weights, bf16 matmuls), ``bfloat16`` (bf16 weights),
``float16``; or a runtime over the ONNX export of that same model (``RUNTIMES``):
``onnx-fp32`` / ``onnx-int8`` / ``onnx-int8-dynamic`` / ``onnx-int8-static`` (ONNX
Runtime, CPU), ``openvino-fp32`` (OpenVINO reading the fp32 ONNX), ``openvino-bf16`` (the
same, bf16 inference precision), ``openvino-int8`` (NNCF int8 IR). The model is exported
once into ``--export-dir`` (fp32, validated against PyTorch) and every int8 variant is made
from that folder; all are reused by later runs while the model's source is the same.
Static recipes calibrate on ``--calibration`` (default: the built-in texts; never the
held-out sets). The int8 exports are not refused for a low cosine here: the gate's own
scores decide. The first recipe is the reference (float32 unless told otherwise).

Quality, per recipe:

- nDCG@10 on each held-out BEIR set (``--sets``; by default the Debian Reference and the
  Bash manual, built by ``benchmarks/build_heldout.py`` as ``scripts/eval_model.sh`` does),
  queries with the model's query instruction, scored by ``training.retrieval.metrics`` (what
  ``eval --beir`` reports); the delta to the reference is a paired bootstrap over queries
  (2000 resamples, 95% interval), as ``bench_precision.py`` does;
- Lee Spearman (``training.evaluate.lee_spearman``), its delta to the reference (one number
  over 1,225 document pairs: no interval).

A recipe passes when its nDCG@10 loss is within ``--tolerance`` (0.005) on every set and its
Lee loss too. Quality does not depend on machine load, throughput does: score on any machine,
then time on a quiet one with ``--throughput-only`` (saved scores reused, none computed; a
recipe without saved scores is timed and shown "not scored").

Throughput: every recipe encodes the same mixed corpus (``common.mixed_corpus``: 1 to 8
sentences of the Lee articles), interleaved round by round (the order rotates), so a shared
machine's load falls on all of them alike; reported as real (non-padding) tokens per second,
median over rounds, and the median per-round ratio to the reference.

Output: one JSON line per recipe (``rows.jsonl``) and a markdown table
(``table.md``) in ``--out-dir``; each recipe's per-query scores (``quality_<recipe>.json``,
reused by a rerun while the encoder's source, the sets and the limits are the same).

Smoke test (seconds, proves the plumbing, measures nothing): a tiny model and a few queries,

    .venv/bin/python benchmarks/gate.py --model TINY_MODEL_DIR --recipes float32 onnx-fp32 \
        openvino-int8 --limit-queries 4 --limit-docs 40 --texts 8 --rounds 1 \
        --out-dir out/gate-smoke --export-dir out/gate-smoke/export
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_heldout import ensure as ensure_sets  # noqa: E402  (builds missing named sets)

from common import ROOT, mixed_corpus  # noqa: E402
from llm2vec_rag.integrations.identity import content_id  # noqa: E402

# runtime recipe -> (runtime, the export folder it runs, loader options)
RUNTIMES = {
    "onnx-fp32": ("onnx", "onnx-fp32", {}),
    "onnx-int8": ("onnx", "onnx-int8", {}),
    "onnx-int8-dynamic": ("onnx", "onnx-int8-dynamic", {}),
    "onnx-int8-static": ("onnx", "onnx-int8-static", {}),
    "openvino-fp32": ("openvino", "onnx-fp32", {}),  # OpenVINO reads the ONNX export
    "openvino-bf16": ("openvino", "onnx-fp32", {"inference_precision": "bf16"}),
    "openvino-int8": ("openvino", "openvino-int8", {}),  # NNCF int8 IR
}
SETS = [os.path.join(ROOT, "data", "heldout", "debian-reference"),
        os.path.join(ROOT, "data", "heldout", "bash-reference")]


def per_query_ndcg(encoder, folder: str, batch_size: int, limit_queries: int | None = None,
                   limit_docs: int | None = None) -> tuple[list[str], np.ndarray]:
    """nDCG@10 of every judged query of a BEIR set (query ids in file order). Limits (smoke
    runs): the first ``limit_queries`` judged queries; ``limit_docs`` documents, those
    judged for the kept queries first."""
    from llm2vec_rag.training.retrieval import metrics, read_beir, top_k

    corpus, queries, qrels = read_beir(folder)
    query_ids = [q for q in queries if q in qrels][:limit_queries]
    doc_ids = list(corpus)
    if limit_docs is not None:
        judged = list(dict.fromkeys(d for q in query_ids for d in qrels[q]))
        doc_ids = (judged + [d for d in doc_ids if d not in set(judged)])[
            :max(limit_docs, len(judged))]
    docs = encoder.encode_documents([corpus[d] for d in doc_ids], batch_size=batch_size,
                                    normalize=True)
    qvecs = encoder.encode_queries([queries[q] for q in query_ids], batch_size=batch_size,
                                   normalize=True)
    best = top_k(qvecs, docs, 10)
    return query_ids, np.array([
        metrics({q: [doc_ids[j] for j in row]}, {q: qrels[q]})["ndcg@10"]
        for q, row in zip(query_ids, best)])


def paired_bootstrap(diff: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of the mean of per-query differences, resampling queries."""
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    return [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])]


def real_tokens(encoder, texts: list[str]) -> int:
    """Non-padding tokens the encoder runs for ``texts`` (documents: no instruction)."""
    pre = encoder.preprocessor
    return int(sum(b.attention_mask.sum() for b in pre.batches(
        pre.encode(texts), 32, encoder.max_batch_tokens)))


def throughput(encoders: dict, texts: list[str], rounds: int) -> dict[str, dict]:
    """Real tokens/s of each encoder on ``texts``, interleaved, rotating the order."""
    names = list(encoders)
    tokens = real_tokens(encoders[names[0]], texts)
    for enc in encoders.values():  # warm-up: first-call allocations, thread pools
        enc.encode(texts[:8], show_progress=False)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            encoders[name].encode(texts, show_progress=False)
            seconds[name].append(time.perf_counter() - start)
    ref = names[0]
    return {n: dict(tokens_per_s=round(tokens / statistics.median(s), 1),
                    ratio=round(statistics.median(
                        [a / b for a, b in zip(seconds[ref], s)]), 2),
                    seconds=[round(x, 2) for x in s], tokens=tokens)
            for n, s in seconds.items()}


def pytorch_model(args, dtype: str):
    """The model under test with ``dtype`` on the CPU: the bundled one, or ``--model``."""
    if args.model is None:
        from llm2vec_rag.default_model import load_default_model

        return load_default_model(device="cpu", dtype=dtype)
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(args.model, adapters=args.adapter, device="cpu", dtype=dtype)


def runtime_encoders(args, recipes: list[str], fp32_model) -> tuple[dict, dict]:
    """The ONNX Runtime / OpenVINO encoders of ``recipes`` and what each was made from: the
    model exported once (fp32) into ``--export-dir``, each int8 variant made from that
    folder; a folder is reused while the PyTorch model's source and the calibration it was
    made with are the ones recorded for it (``gate_exports.json``)."""
    from llm2vec_rag.export import (
        OnnxLLM2Vec,
        OpenVINOLLM2Vec,
        export_onnx,
        export_openvino,
        quantize_onnx,
    )

    root = os.path.abspath(args.export_dir)
    os.makedirs(root, exist_ok=True)
    record = os.path.join(root, "gate_exports.json")
    made: dict[str, dict] = {}
    if os.path.isfile(record):
        with open(record, encoding="utf-8") as f:
            made = json.load(f)
    folders = {recipe: os.path.join(root, RUNTIMES[recipe][1]) for recipe in recipes}
    fp32 = os.path.join(root, "onnx-fp32")
    needed = [fp32, *sorted(set(folders.values()) - {fp32})]  # the others are made from fp32
    for folder in needed:
        name = os.path.basename(folder)
        # remade when the model, the calibration or the recipe itself changed
        current = dict(source=fp32_model.source, calibration=args.calibration,
                       recipe=export_recipe(name))
        if os.path.isfile(os.path.join(folder, "onnx_export.json")) and made.get(name) == current:
            continue
        start = time.perf_counter()
        if folder == fp32:
            export_onnx(fp32_model, folder, overwrite=True)
        elif name.startswith("openvino-"):
            # measured, not refused: the gate's scores decide (min_cosine=0)
            export_openvino(fp32, folder, calibration=args.calibration, overwrite=True,
                            min_cosine=0.0)
        else:
            method = name.removeprefix("onnx-")
            export_calibration = args.calibration if method == "int8-static" else None
            quantize_onnx(fp32, folder, method, overwrite=True, min_cosine=0.0,
                          calibration=export_calibration)
        print(f"exported {name} in {time.perf_counter() - start:.0f} s", flush=True)
        made[name] = current
        with open(record, "w", encoding="utf-8") as f:
            json.dump(made, f, indent=1)
    encoders, identity = {}, {}
    for recipe in recipes:
        runtime, _, options = RUNTIMES[recipe]
        cls = OnnxLLM2Vec if runtime == "onnx" else OpenVINOLLM2Vec
        extra = {"provider": "cpu"} if runtime == "onnx" else {}
        encoders[recipe] = cls.from_pretrained(folders[recipe], **extra, **options)
        # the recipe applied to this model (the export is made from these alone)
        identity[recipe] = json.dumps([recipe, content_id(fp32_model.source),
                                       args.calibration, export_recipe(folders[recipe])])
        if encoders[recipe].config.query_instruction != fp32_model.config.query_instruction:
            raise SystemExit(f"{folders[recipe]}: its query instruction differs from the "
                             "model's; delete --export-dir and rerun")
    return encoders, identity


def export_recipe(folder: str) -> dict | None:
    """How the export in ``folder`` (its name) is quantized, as the export records it
    (``onnx_export.json`` "quantization"); None for fp32."""
    from llm2vec_rag.export.int8 import RECIPES
    from llm2vec_rag.export.openvino_export import RECIPE

    name = os.path.basename(folder)
    if name == "openvino-int8":
        return RECIPE
    return RECIPES.get(name.removeprefix("onnx-"))


def runtime_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "onnxruntime", "openvino", "nncf"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["float32", "bf16-autocast", "bfloat16"],
                        help="dtypes of load_default_model or runtime recipes (onnx-fp32, "
                             "onnx-int8-static, openvino-int8, ...); the first is the reference")
    parser.add_argument("--model", default=None,
                        help="model to gate instead of the bundled one (a tiny model for "
                             "smoke runs)")
    parser.add_argument("--adapter", action="append", default=[], help="with --model")
    parser.add_argument("--export-dir", default=os.path.join(ROOT, "out", "gate-export"),
                        help="where the runtime recipes' exports go (reused)")
    parser.add_argument("--calibration", default=None,
                        help="calibration texts of the static int8 recipes (text or JSONL "
                             "file; default: the built-in texts)")
    parser.add_argument("--limit-queries", type=int, default=None,
                        help="first N judged queries per set (smoke runs)")
    parser.add_argument("--limit-docs", type=int, default=None,
                        help="N documents per set, judged ones first (smoke runs)")
    parser.add_argument("--sets", nargs="+", default=SETS, help="held-out BEIR folders")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="largest nDCG@10 (every set) and Lee loss that passes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--texts", type=int, default=100, help="mixed corpus size (throughput)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--throughput-only", action="store_true",
                        help="score no recipe: use the saved scores where they exist (the "
                             "reference's must), time every recipe")
    parser.add_argument("--machine", default=platform.processor() or platform.machine(),
                        help="what to record as the machine (e.g. 'AMD EPYC, 2 cores, shared')")
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results",
                                                          "issue32"))
    args = parser.parse_args()

    import torch

    from llm2vec_rag.training.evaluate import lee_spearman

    ensure_sets(args.sets)
    runtime = [r for r in args.recipes if r in RUNTIMES]
    encoders = {r: pytorch_model(args, r) for r in args.recipes if r not in RUNTIMES}
    # what each recipe's scores belong to (a rerun reuses them while it is the same): the
    # encoder by content, so another checkout of the same weights reuses them too
    identity = {r: content_id(enc.source) for r, enc in encoders.items()}
    if runtime:
        fp32 = encoders.get("float32") or pytorch_model(args, "float32")
        made, made_from = runtime_encoders(args, runtime, fp32)
        encoders.update(made)
        identity.update(made_from)
    encoders = {r: encoders[r] for r in args.recipes}  # the reference first
    limits = [args.limit_queries, args.limit_docs]
    ref = args.recipes[0]
    quality: dict[str, dict] = {}
    os.makedirs(args.out_dir, exist_ok=True)
    for recipe, enc in encoders.items():
        # Kept per recipe and source: a rerun (say, for throughput alone) reuses the scores.
        saved = os.path.join(args.out_dir, f"quality_{recipe}.json")
        if os.path.isfile(saved):
            with open(saved, encoding="utf-8") as f:
                record = json.load(f)
            if record["source"] == identity[recipe] and record.get("limits") == limits and \
                    record["sets"].keys() == {os.path.basename(x.rstrip("/")) for x in args.sets}:
                quality[recipe] = dict(lee=record["lee"], seconds=record["seconds"], sets={
                    n: (qids, np.array(v)) for n, (qids, v) in record["sets"].items()})
                continue
        if args.throughput_only:
            print(f"{recipe}: no saved scores for this encoder: not scored", flush=True)
            continue
        start = time.perf_counter()
        sets = {os.path.basename(f.rstrip("/")): per_query_ndcg(
            enc, f, args.batch_size, args.limit_queries, args.limit_docs) for f in args.sets}
        quality[recipe] = dict(lee=lee_spearman(enc), sets=sets,
                               seconds=round(time.perf_counter() - start, 1))
        with open(saved, "w", encoding="utf-8") as f:
            json.dump(dict(source=identity[recipe], limits=limits, lee=quality[recipe]["lee"],
                           seconds=quality[recipe]["seconds"],
                           sets={n: (q, v.tolist()) for n, (q, v) in sets.items()}), f)
        print(f"{recipe}: quality scored in {quality[recipe]['seconds']} s", flush=True)
    speed = throughput(encoders, mixed_corpus(args.texts), args.rounds)

    rows = []
    if ref not in quality:
        raise SystemExit(f"{ref}: the reference has no saved scores; run without "
                         f"--throughput-only first")
    for recipe in args.recipes:
        q, base = quality.get(recipe), quality[ref]
        row = dict(recipe=recipe, reference=ref, source=encoders[recipe].source)
        passed = None  # not scored (--throughput-only)
        if q is not None:
            row.update(lee=round(q["lee"], 4), lee_delta=round(q["lee"] - base["lee"], 4))
            passed = -row["lee_delta"] <= args.tolerance
            for name, (qids, ndcg) in q["sets"].items():
                diff = ndcg - base["sets"][name][1]
                row[name] = dict(queries=len(qids), ndcg10=round(float(ndcg.mean()), 4),
                                 delta=round(float(diff.mean()), 4),
                                 delta_ci95=paired_bootstrap(diff))
                passed = passed and -float(diff.mean()) <= args.tolerance
        row.update(passes=passed, tolerance=args.tolerance, **speed[recipe],
                   machine=args.machine, torch_threads=torch.get_num_threads(),
                   runtime=RUNTIMES[recipe][0] if recipe in RUNTIMES else "torch",
                   versions=runtime_versions(), limits=limits)
        rows.append(row)

    with open(os.path.join(args.out_dir, "rows.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    names = [os.path.basename(f.rstrip("/")) for f in args.sets]
    lines = ["| recipe | " + " | ".join(f"{n} nDCG@10 (vs {ref} [95% CI])" for n in names)
             + f" | Lee (vs {ref}) | real tokens/s | x {ref} | passes |",
             "|---|" + "---|" * (len(names) + 4)]
    for r in rows:
        if r["passes"] is None:
            cells, lee, verdict = ["not scored"] * len(names), "not scored", "not gated"
        else:
            cells = [f"{r[n]['ndcg10']:.4f} ({r[n]['delta']:+.4f} [{r[n]['delta_ci95'][0]:+.4f}"
                     f", {r[n]['delta_ci95'][1]:+.4f}])" for n in names]
            lee = f"{r['lee']:.4f} ({r['lee_delta']:+.4f})"
            verdict = "yes" if r["passes"] else "no"
        lines.append(f"| {r['recipe']} | " + " | ".join(cells) + f" | {lee} | "
                     f"{r['tokens_per_s']:.0f} | {r['ratio']:.2f} | {verdict} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
