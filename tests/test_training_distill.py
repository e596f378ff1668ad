"""Score distillation in the supervised stage: KL(teacher || student) over each query's
candidates is neutral when the student already agrees, pulls toward the teacher otherwise,
gives GradCache the same gradient as one big batch, and trains end to end from a tiny BERT
teacher (a sentence-transformers-shaped folder built here)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
import yaml

from llm2vec_rag import LLM2Vec
from llm2vec_rag.model import EncoderModule
from llm2vec_rag.training import load_config, train_supervised
from llm2vec_rag.training.config import CONFIG_FILE
from llm2vec_rag.training.gradcache import grad_cache_step
from llm2vec_rag.training.losses import contrastive_loss, distill_loss, matryoshka
from llm2vec_rag.training.supervised import PairCollator, Teacher
from tiny import make_tiny_bert

FAST = dict(report_to="none", logging_steps=1, save_steps=100, lora_r=8, lora_alpha=16,
            adapter_dtype="float32")


def _teacher_vectors(seed: int = 0, width: int = 6):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(4, width, generator=g), torch.randn(4, width, generator=g),
            torch.randn(3, width, generator=g))


def test_distill_loss_is_zero_with_zero_gradient_when_the_student_agrees():
    tq, tp, tn = _teacher_vectors()
    # the student: the teacher's vectors in a wider space (cosines unchanged), scored at the
    # scale that makes its softmax the teacher's (scale = 1 / teacher_temperature)
    q, p, n = (F.pad(x, (0, 4)).clone().requires_grad_() for x in (tq, tp, tn))
    loss = distill_loss(q, p, n, tq, tp, tn, scale=20.0, teacher_temperature=0.05)
    loss.backward()
    assert abs(loss.item()) < 1e-6
    for x in (q, p, n):
        assert float(x.grad.abs().max()) < 1e-5
    # another scale is another distribution: no longer neutral
    assert float(distill_loss(q, p, n, tq, tp, tn, scale=50.0, teacher_temperature=0.05)) > 1e-3


def test_distill_loss_matches_its_definition():
    tq, tp, tn = _teacher_vectors()
    q, p, n = _teacher_vectors(seed=1, width=8)
    docs, tdocs = torch.cat([p, n]), torch.cat([tp, tn])
    student = F.log_softmax(F.normalize(q, dim=-1) @ F.normalize(docs, dim=-1).T * 50, dim=-1)
    teacher = F.softmax(F.normalize(tq, dim=-1) @ F.normalize(tdocs, dim=-1).T / 0.05, dim=-1)
    expected = (teacher * (teacher.log() - student)).sum(-1).mean()
    got = distill_loss(q, p, n, tq, tp, tn, scale=50.0, teacher_temperature=0.05)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="same texts"):
        distill_loss(q, p, n, tq, tp, tn[:2])


def test_distill_loss_pulls_the_student_toward_the_teacher():
    tq, tp, tn = _teacher_vectors()
    q, p, n = (x.clone().requires_grad_() for x in _teacher_vectors(seed=1, width=8))
    opt = torch.optim.SGD([q, p, n], lr=0.5)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = distill_loss(q, p, n, tq, tp, tn, scale=20.0, teacher_temperature=0.05)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.1 * first, (first, loss.item())
    # the teacher's ranking of every query's candidates is now the student's
    def ranks(a, b, c):
        return (F.normalize(a, dim=-1) @ F.normalize(torch.cat([b, c]), dim=-1).T).argmax(-1)

    assert torch.equal(ranks(q.detach(), p.detach(), n.detach()), ranks(tq, tp, tn))


def _batch(encoder, texts):
    b = encoder.preprocessor.collate(encoder.preprocessor.encode(texts), None)
    return {"input_ids": torch.from_numpy(b.input_ids),
            "attention_mask": torch.from_numpy(b.attention_mask),
            "embed_mask": torch.from_numpy(b.embed_mask)}


def test_grad_cache_gives_the_distilled_matryoshka_loss_the_same_gradient(tiny_model_dir):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu")  # own copy
    model = encoder.model.train()
    q = _batch(encoder, ["fox jumps", "qdrant vectors", "weather cold", "python rust code"])
    d = _batch(encoder, ["the quick brown fox", "stores vectors and payloads",
                         "cold in winter", "programming languages", "sea shells"])
    tq, tp, tn = _teacher_vectors(width=12)
    teacher = (tq, torch.cat([tp, tn[:1]]))

    def contrast(qe, de, teacher=None):
        loss = contrastive_loss(qe, de[:4], de[4:], scale=50)
        return loss + 2.0 * distill_loss(qe, de[:4], de[4:], teacher[0], teacher[1][:4],
                                         teacher[1][4:], scale=50, teacher_temperature=0.05)

    loss_on = matryoshka(contrast, [64, 16])

    def embed(piece):
        return EncoderModule(model, "mean")(**piece)

    def grads():
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    cached_loss = grad_cache_step([q, d], embed, lambda reps: loss_on(*reps, teacher=teacher),
                                  lambda t: t.backward(), chunk_size=2)
    cached = grads()
    model.zero_grad()
    full = loss_on(embed(q), embed(d), teacher=teacher)
    full.backward()
    torch.testing.assert_close(cached_loss, full.detach())
    assert cached
    for a, b in zip(cached, grads()):
        # float32 sums in another order: differences of ~1e-6 of the gradient's scale (up to
        # 30 here, with scale 50 and a teacher temperature of 0.05), so the tolerance follows
        # that scale; a missing or doubled term moves the gradient by a large part of it
        torch.testing.assert_close(a, b, atol=1e-5 * max(1.0, float(b.abs().max())),
                                   rtol=1e-4)
    # the distillation term is part of what GradCache differentiated
    model.zero_grad()
    plain = matryoshka(lambda qe, de: contrastive_loss(qe, de[:4], de[4:], scale=50), [64, 16])
    plain(embed(q), embed(d)).backward()
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(cached, grads()))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return make_tiny_bert(str(tmp_path_factory.mktemp("teacher")))


def test_collator_adds_the_teachers_vectors_of_the_same_texts(tiny_model_dir, teacher_dir):
    from transformers import AutoTokenizer

    from llm2vec_rag.training.data import Example

    teacher = Teacher(teacher_dir)
    collate = PairCollator(AutoTokenizer.from_pretrained(tiny_model_dir("llama")), 32, "mean",
                           teacher)
    examples = [Example("fox jumps", "the quick brown fox", ["sea shells"], "Find it", "toy"),
                Example("cold weather", "cold in winter", ["python code"], "Find it", "toy")]
    batch = collate(examples)
    assert batch["teacher_q"].shape[0] == batch["q_input_ids"].shape[0] == 2
    assert batch["teacher_d"].shape[0] == batch["d_input_ids"].shape[0] == 4
    bert = LLM2Vec.from_pretrained(teacher_dir, device="cpu")  # queries: no instruction
    want = bert.encode(["fox jumps", "cold weather"], instruction="", normalize=True)
    torch.testing.assert_close(batch["teacher_q"], torch.from_numpy(want), atol=1e-5,
                               rtol=1e-4)
    want = bert.encode(["the quick brown fox", "cold in winter", "sea shells", "python code"],
                       normalize=True)
    torch.testing.assert_close(batch["teacher_d"], torch.from_numpy(want), atol=1e-5,
                               rtol=1e-4)


def _write_pairs(path) -> str:
    import json

    topics = {"animals": "fox dog cat bird", "weather": "rain snow sun wind",
              "code": "python rust code compiler", "money": "bank stock market price"}
    rows = []
    for i in range(4):
        for t, words in topics.items():
            w = words.split()
            other = next(o for o in topics if o != t)
            rows.append({"query": f"{w[i % 4]} {t}?", "positive": f"{t} {words} {i}",
                         "negatives": [f"{other} {topics[other]}"], "dataset": "toy"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


def _kl_to_teacher(student: LLM2Vec, teacher: LLM2Vec, queries, docs) -> float:
    """Mean KL(teacher || student) of the queries' distributions over the documents."""
    s = torch.from_numpy(student.encode(queries, normalize=True)) @ torch.from_numpy(
        student.encode(docs, normalize=True)).T
    t = torch.from_numpy(teacher.encode(queries, instruction="", normalize=True)) @ \
        torch.from_numpy(teacher.encode(docs, normalize=True)).T
    return float(F.kl_div(F.log_softmax(s * 50, -1), F.log_softmax(t / 0.1, -1),
                          log_target=True, reduction="batchmean"))


def test_supervised_run_distils_from_a_teacher_and_records_it(tiny_model_dir, teacher_dir,
                                                              tmp_path):
    base = tiny_model_dir("llama", "bytelevel")
    data = _write_pairs(tmp_path / "pairs.jsonl")

    def run(name, **kw):
        cfg = load_config("supervised", "supervised-cpu", dict(
            model=base, data=[data], output_dir=str(tmp_path / name), max_length=32,
            batch_size=8, max_steps=10, learning_rate=5e-3, warmup_steps=0,
            grad_cache_chunk_size=4, **FAST, **kw))
        return train_supervised(cfg)

    distilled = run("distilled", distill_teacher=teacher_dir, distill_weight=5.0,
                    distill_temperature=0.1)
    plain = run("plain")
    with open(os.path.join(distilled, CONFIG_FILE), encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    assert saved["distill_teacher"] == teacher_dir
    assert (saved["distill_weight"], saved["distill_temperature"]) == (5.0, 0.1)
    teacher = LLM2Vec.from_pretrained(teacher_dir, device="cpu")
    queries = ["fox animals?", "rain weather?", "python code?", "bank money?"]
    docs = ["animals fox dog cat bird 0", "weather rain snow sun wind 1",
            "code python rust code compiler 2", "money bank stock market price 3",
            "animals fox dog cat bird", "weather rain snow sun wind"]
    kl = {name: _kl_to_teacher(LLM2Vec.from_pretrained(base, adapters=[out], device="cpu"),
                               teacher, queries, docs)
          for name, out in (("distilled", distilled), ("plain", plain))}
    assert kl["distilled"] < kl["plain"], kl
