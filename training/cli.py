"""``llm2vec-rag train {mntp,simcse,supervised,pairs,soup,bundle}`` and ``llm2vec-rag eval``.

Imports torch/transformers only when a command runs, so ``llm2vec-rag --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

STAGE_HELP = {
    "mntp": "stage 1: masked next-token prediction (LoRA on the bidirectional decoder)",
    "simcse": "stage 2: unsupervised SimCSE on the merged MNTP model",
    "supervised": "stage 3: supervised contrastive learning on query/positive/negative JSONL",
}


def cmd_train(args: argparse.Namespace) -> int:
    """Train one stage from a config file or preset, with key=value overrides."""
    import logging

    from .config import load_config, parse_overrides

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.stage, args.config, parse_overrides(args.overrides))
    if args.stage == "mntp":
        from .mntp import train_mntp as train
    elif args.stage == "simcse":
        from .simcse import train_simcse as train
    else:
        from .supervised import train_supervised as train
    from .trainer import is_main_process

    out = train(cfg)
    if is_main_process():  # once per job under torchrun / accelerate launch
        print(f"{args.stage} adapter written to {out}", file=sys.stderr)
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    """Mine supervised pairs (query, positive, hard negatives) from the structure of your own
    text: Markdown/reStructuredText/POD headings and sections, MediaWiki titles and sections,
    JSONL title/text or question/answer, dictd terms and definitions, man-page NAME lines
    and DESCRIPTION, Q:/A: text. Hard negatives and the consistency filter use the encoder
    of the model flags (default: the bundled model). Prints the report as JSON."""
    from llm2vec_rag.flags import spec_from_args

    from .pairs import PairSettings, build_pairs

    settings = PairSettings(
        min_words=args.min_words, max_words=args.max_words, max_query_words=args.max_query_words,
        max_per_dataset=args.max_per_dataset, num_negatives=args.num_negatives,
        consistency_k=args.consistency_k, duplicate_cosine=args.duplicate_cosine,
        duplicate_overlap=args.duplicate_overlap, max_negative_ratio=args.max_negative_ratio,
        instruction=args.instruction, seed=args.seed, batch_size=args.batch_size)
    report = build_pairs(args.sources, args.output, lambda: spec_from_args(args).load(), settings,
                         dataset=args.dataset)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    print(json.dumps(report))
    print(f"{report['written']} pairs written to {args.output}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Lee similarity (default), retrieval on a BEIR folder (--beir), MTEB tasks (--mteb), or a
    word-level linear probe on WordNet's example sentences (--word-level pos|wic)."""
    from llm2vec_rag.flags import spec_from_args

    from .evaluate import lee_spearman, read_lee

    if args.word_level:
        from .wordnet import wordnet_files

        wordnet_files(args.wordnet_dir)  # missing data: say so before the model loads
    elif not (args.beir or args.mteb):
        read_lee(args.data_dir, flag="--data-dir")  # missing data: say so before the model loads
    encoder = spec_from_args(args).load()
    if args.word_level:
        from .word_level import word_level_probe

        result = word_level_probe(encoder, args.word_level, args.wordnet_dir, args.train_size,
                                  args.test_size, batch_size=args.batch_size)
        print(json.dumps({"benchmark": "word-level", **result, "model": args.model,
                          "adapters": args.adapter, "bidirectional": not args.causal}))
        return 0
    if args.beir:
        return _eval_beir(args, encoder)
    if args.mteb:
        from llm2vec_rag.integrations.mteb import run_mteb

        print(json.dumps(run_mteb(encoder, args.mteb, batch_size=args.batch_size,
                                  output_folder=args.mteb_output)))
        return 0
    rho = lee_spearman(encoder, args.data_dir, batch_size=args.batch_size)
    print(json.dumps({"benchmark": "lee", "spearman": round(rho, 4), "model": args.model,
                      "adapters": args.adapter, "pooling": encoder.config.pooling,
                      "bidirectional": not args.causal}))
    return 0


def _eval_beir(args: argparse.Namespace, encoder) -> int:
    """One JSON line per setting: with the query instruction (if any) and without."""
    from .retrieval import evaluate_beir_instructions

    instruction = args.instruction if args.instruction is not None else (
        encoder.config.query_instruction or "")
    settings = [instruction, ""] if instruction else [""]
    results = evaluate_beir_instructions(encoder, args.beir, settings, split=args.split,
                                         batch_size=args.batch_size)
    for ins, result in zip(settings, results):
        print(json.dumps({"benchmark": "beir", "folder": args.beir, "split": args.split,
                          "instruction": ins or None,
                          **{k: round(v, 4) if isinstance(v, float) else v
                             for k, v in result.items()}, "model": args.model}))
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    """Sum adapters trained from the same model into one adapter, each weight change times its
    weight (a model soup: e.g. two supervised runs, one better at retrieval and one at
    document similarity). The model flags name the model they were trained on (--model and
    its --adapter chain, e.g. the MNTP and SimCSE adapters); the soup is applied after that
    chain, as its ingredients were."""
    from llm2vec_rag.flags import spec_from_args

    from .soup import check_ingredients, soup_adapters

    check_ingredients(args.adapters, args.weights, args.output, args.overwrite)  # before loading
    model = spec_from_args(args).load().model
    out = soup_adapters(model, args.adapters, args.weights, args.output, args.adapter_dtype,
                        overwrite=args.overwrite)
    print(f"soup adapter written to {out}", file=sys.stderr)
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    """Copy a trained adapter (a stage's output_dir, or a soup) into the form the package
    ships: float16 weights, the base model named by file name instead of this machine's path,
    the query instruction it is used with, its training settings, log and loss curve."""
    from .bundle import bundle

    instruction = None if args.keep_instruction else args.query_instruction
    out = bundle(args.stage_dir, args.output, args.base, instruction, args.adapter_dtype)
    print(f"bundled: {out}", file=sys.stderr)
    return 0


def cmd_select_pairs(args: argparse.Namespace) -> int:
    """Write the mined pairs a supervised run trains on: symmetric pairs kept or dropped,
    each asymmetric pair's own instruction kept (mined) or removed (single: the stage's
    query_instruction then applies to all). Several files are concatenated; FILE:N takes a
    seeded sample of N pairs of that file."""
    from .pair_select import parse_source, select_pairs

    counts = select_pairs([parse_source(p) for p in args.pairs], args.output,
                          args.instructions, symmetric=not args.no_symmetric, seed=args.seed)
    print(f"{counts['kept']} pairs -> {args.output} ({counts['dropped']} symmetric dropped)",
          file=sys.stderr)
    return 0


def add_commands(subparsers, model_flags: argparse.ArgumentParser) -> None:
    """Register ``train`` (one subcommand per stage) and ``eval`` on the main parser."""
    from .config import PRESET_DIR  # no heavy imports: config.py needs only yaml

    train = subparsers.add_parser("train", help="train an LLM2Vec stage (LoRA adapter)",
                                  description=cmd_train.__doc__)
    stages = train.add_subparsers(dest="stage", required=True)
    for stage, help_text in STAGE_HELP.items():
        p = stages.add_parser(stage, help=help_text, description=help_text)
        p.add_argument("--config", default=None,
                       help=f"YAML/JSON file, or a preset name ({stage}, {stage}-cpu) from "
                            f"{PRESET_DIR}; without it, the paper defaults")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="override config keys, e.g. model=smol.gguf max_steps=10")
        p.set_defaults(func=cmd_train)
    _add_pairs_command(stages, model_flags)
    _add_soup_command(stages)
    _add_bundle_command(stages)
    _add_select_pairs_command(stages)

    p = subparsers.add_parser("eval", parents=[model_flags],
                              help="Lee similarity, BEIR retrieval, MTEB or word-level probes",
                              description=cmd_eval.__doc__)
    p.add_argument("--data-dir", default=None,
                   help="folder with lee.cor and similarities0-1.txt (default: "
                        "$LLM2VEC_RAG_DATA, else data/gensim of this checkout, where "
                        "scripts/fetch_data.sh puts them)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--beir", default=None, metavar="DIR",
                       help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv): "
                            "nDCG@10, MRR@10, Recall@10/100, with and without the instruction")
    which.add_argument("--mteb", nargs="+", default=None, metavar="TASK",
                       help="MTEB task names (needs the mteb package and hub access)")
    which.add_argument("--word-level", default=None, choices=("pos", "wic"),
                       help="linear probe on the last hidden state's token vectors, WordNet's "
                            "example sentences, test words unseen: part of speech (pos) or "
                            "same sense of a word in two sentences (wic)")
    p.add_argument("--wordnet-dir", default=None,
                   help="for --word-level: WordNet's data.* files (default: data/debian of "
                        "this checkout, where scripts/fetch_wordnet.sh puts them)")
    p.add_argument("--train-size", type=int, default=2000,
                   help="for --word-level: training items (default 2000)")
    p.add_argument("--test-size", type=int, default=1000,
                   help="for --word-level: test items (default 1000)")
    p.add_argument("--split", default="test", help="BEIR qrels split (default test)")
    p.add_argument("--instruction", default=None,
                   help="query instruction for --beir (default: the model's configured one)")
    p.add_argument("--mteb-output", default=None, help="folder for MTEB's result files")
    p.add_argument("--batch-size", type=int, default=8, help="texts per encode batch (default 8)")
    p.set_defaults(func=cmd_eval)


def _add_pairs_command(stages, model_flags: argparse.ArgumentParser) -> None:
    from .pairs import PairSettings

    d = PairSettings()
    p = stages.add_parser("pairs", parents=[model_flags], help="mine supervised pairs (query, "
                          "positive, hard negatives) from your corpus' structure",
                          description=cmd_pairs.__doc__)
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="files or folders (.md, .rst, .pod, .xml[.bz2], .jsonl, dictd .index, "
                        "man pages NAME.N[.gz], Q:/A: .txt, one document a line .cor)")
    p.add_argument("-o", "--output", required=True, help="pairs.jsonl (supervised schema)")
    p.add_argument("--report", default=None, help="also write the report to this JSON file")
    p.add_argument("--min-words", type=int, default=d.min_words,
                   help=f"drop positives shorter than this (default {d.min_words})")
    p.add_argument("--max-words", type=int, default=d.max_words,
                   help=f"cut positives to this many words (default {d.max_words})")
    p.add_argument("--max-query-words", type=int, default=d.max_query_words,
                   help="drop pairs whose query is longer than this many words")
    p.add_argument("--max-per-dataset", type=int, default=None,
                   help="at most this many pairs per dataset (a seeded sample; caps the "
                        "encoding time)")
    p.add_argument("--num-negatives", type=int, default=d.num_negatives,
                   help="hard negatives per pair (0: none, no encoder needed with "
                        "--consistency-k 0)")
    p.add_argument("--consistency-k", type=int, default=d.consistency_k,
                   help="keep a pair only if its positive ranks in the top k of its dataset "
                        f"for its query (0: off; default {d.consistency_k})")
    p.add_argument("--duplicate-cosine", type=float, default=d.duplicate_cosine,
                   help="a candidate this similar to the positive is not a negative")
    p.add_argument("--duplicate-overlap", type=float, default=d.duplicate_overlap,
                   help="nor one sharing this fraction of its words (Jaccard)")
    p.add_argument("--max-negative-ratio", type=float, default=d.max_negative_ratio,
                   help="nor one whose query score exceeds this x the positive's")
    p.add_argument("--instruction", default=None,
                   help="query instruction for every asymmetric pair (default: one per kind "
                        "of pair; '' for none, so that training's query_instruction applies); "
                        "symmetric pairs (document halves) never get one")
    p.add_argument("--dataset", default=None,
                   help="one dataset name for all pairs (default: one per kind of source)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the per-dataset sampling (same seed, same pairs)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="texts per encode batch when mining hard negatives")
    p.set_defaults(func=cmd_pairs)


def _add_soup_command(stages) -> None:
    from llm2vec_rag.flags import model_flags as shared_flags

    from .config import ADAPTER_DTYPES

    # the soup needs a PyTorch model to add adapters to, loaded once: no --onnx, no --cache
    p = stages.add_parser("soup", parents=[shared_flags(onnx=False, cache=False)],
                          help="sum adapters trained from the same model into one, with "
                               "weights (a model soup)",
                          description=cmd_soup.__doc__)
    p.add_argument("adapters", nargs="+", metavar="ADAPTER",
                   help="adapter folders (or hub ids), all trained on the model flags' model")
    p.add_argument("--weights", nargs="+", type=float, default=None, metavar="W",
                   help="one weight per adapter (default: 1/n each)")
    p.add_argument("-o", "--output", required=True, help="folder for the soup adapter")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an adapter already in the output folder (never an ingredient)")
    p.add_argument("--adapter-dtype", default="float32", choices=ADAPTER_DTYPES,
                   help="dtype of the stored weights (float16: half the bytes)")
    p.set_defaults(func=cmd_soup)


def _add_bundle_command(stages) -> None:
    from llm2vec_rag.default_model import GGUF_NAME, QUERY_INSTRUCTION

    from .config import ADAPTER_DTYPES

    p = stages.add_parser("bundle", help="copy a trained adapter into its shipped form",
                          description=cmd_bundle.__doc__)
    p.add_argument("stage_dir", help="the stage's output_dir (or a soup's -o folder)")
    p.add_argument("-o", "--output", required=True, help="folder for the bundled adapter")
    p.add_argument("--base", default=GGUF_NAME,
                   help="the model it was trained on; only its file name is recorded "
                        f"(default {GGUF_NAME})")
    p.add_argument("--query-instruction", default=QUERY_INSTRUCTION,
                   help="query instruction written into its llm2vec_config.json (default: "
                        "the bundled model's)")
    p.add_argument("--keep-instruction", action="store_true",
                   help="keep the stage's own query instruction")
    p.add_argument("--adapter-dtype", default="float16", choices=ADAPTER_DTYPES,
                   help="dtype of the stored weights (default float16: half the bytes)")
    p.set_defaults(func=cmd_bundle)


def _add_select_pairs_command(stages) -> None:
    from .pair_select import INSTRUCTION_CHOICES

    p = stages.add_parser("select-pairs", help="choose the mined pairs a supervised run "
                          "trains on", description=cmd_select_pairs.__doc__)
    p.add_argument("pairs", nargs="+", metavar="PAIRS[:N]",
                   help="mined pairs (JSONL from `train pairs`); :N samples N of them")
    p.add_argument("-o", "--output", required=True, help="the training pairs (JSONL)")
    p.add_argument("--seed", type=int, default=0, help="of the :N samples (default 0)")
    p.add_argument("--instructions", default="single", choices=INSTRUCTION_CHOICES,
                   help="single: drop the instructions the pairs were mined with (default); "
                        "mined: keep them")
    p.add_argument("--no-symmetric", action="store_true",
                   help="drop the symmetric pairs (document halves)")
    p.set_defaults(func=cmd_select_pairs)
