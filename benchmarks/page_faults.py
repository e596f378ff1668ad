"""Page faults and system time of one encode of the 32 long texts, ours or the reference's.

    .venv/bin/python benchmarks/page_faults.py ours 32          # one 32 x 512 batch
    .venv/bin/python benchmarks/page_faults.py ours 4           # the default budget (4 x 512)
    LLM2VEC_RAG_MALLOC=default .venv/bin/python benchmarks/page_faults.py ours 4   # glibc as is
    .venv-ref/bin/python benchmarks/page_faults.py ref 32       # llm2vec 0.2.3

Run ``bench_encode.py --corpus long --texts 32`` once first: it writes the model folders and
the corpus to out/bench-encode. The counters (``getrusage``) cover a second, warm call.
"""

import json
import os
import resource
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
WORKDIR = os.path.join(HERE, "..", "out", "bench-encode")  # bench_encode.py's default


def main() -> None:
    warnings.simplefilter("ignore")
    kind, rows = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(WORKDIR, "corpus-long-32.json"), encoding="utf-8") as f:
        texts = json.load(f)
    if kind == "ours":
        from llm2vec_rag import LLM2Vec

        model = LLM2Vec.from_pretrained(os.path.join(WORKDIR, "smollm2"), device="cpu",
                                        dtype="float32")

        def run(batch):  # rows only (4 rows of 512 tokens = the default budget)
            return model.encode(batch, batch_size=rows, max_batch_tokens=10**9,
                                show_progress=False)
    else:
        from llm2vec import LLM2Vec as RefLLM2Vec
        from ref_encode import load_plain

        ref = RefLLM2Vec(*load_plain(os.path.join(WORKDIR, "smollm2-plain")),
                         pooling_mode="mean", max_length=512)

        def run(batch):
            return ref.encode([["", t] for t in batch], batch_size=rows, show_progress_bar=False)
    run(texts[:2])
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(texts)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"kind": kind, "rows": rows, "seconds": round(seconds, 2),
                      "minor_faults": after.ru_minflt - before.ru_minflt,
                      "system_s": round(after.ru_stime - before.ru_stime, 2),
                      "user_s": round(after.ru_utime - before.ru_utime, 2)}))


if __name__ == "__main__":
    main()
