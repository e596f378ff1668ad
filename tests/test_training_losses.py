"""Losses and GradCache: the numbers the paper defines, exact gradients with chunking, and
embeddings gathered across real (gloo) processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from llm2vec_rag import LLM2Vec
from llm2vec_rag.model import EncoderModule
from llm2vec_rag.training.base import set_attention_dropout
from llm2vec_rag.training.gradcache import grad_cache_step
from llm2vec_rag.training.losses import contrastive_loss, mntp_loss


def test_contrastive_loss_matches_its_definition():
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8)
    docs = F.normalize(torch.cat([p, n]), dim=-1)
    scores = F.normalize(q, dim=-1) @ docs.T * 50
    expected = -torch.log_softmax(scores, dim=-1).diagonal().mean()
    torch.testing.assert_close(contrastive_loss(q, p, n, scale=50), expected)
    aligned = contrastive_loss(p, p * 2, scale=20)  # positives identical up to norm
    assert aligned < contrastive_loss(q, p, scale=20)
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(q, p[:2])


def test_mntp_loss_predicts_each_masked_token_from_the_previous_position():
    vocab, dim = 5, 5
    head = torch.nn.Linear(dim, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(vocab) * 20)  # logits = 20 * hidden
    hidden = torch.zeros(1, 4, dim)
    hidden[0, 1, 3] = 1.0  # position 1 points at token 3 ...
    labels = torch.tensor([[-100, -100, 3, -100]])  # ... which is the masked token at 2
    assert mntp_loss(hidden, labels, head) < 1e-6
    wrong = torch.tensor([[-100, -100, 2, -100]])
    assert mntp_loss(hidden, wrong, head) > 10
    assert mntp_loss(hidden, torch.full((1, 4), -100), head) == 0  # nothing masked


def _batch(encoder, texts):
    b = encoder.preprocessor.collate(encoder.preprocessor.encode(texts), None)
    return {"input_ids": torch.from_numpy(b.input_ids),
            "attention_mask": torch.from_numpy(b.attention_mask),
            "embed_mask": torch.from_numpy(b.embed_mask)}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_grad_cache_matches_one_big_batch(tiny_model_dir, dropout):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu")  # own copy
    model = encoder.model.train()
    set_attention_dropout(model, dropout)
    q = _batch(encoder, ["fox jumps", "qdrant vectors", "weather cold", "python rust code"])
    d = _batch(encoder, ["the quick brown fox", "stores vectors and payloads",
                         "cold in winter", "programming languages", "sea shells"])
    replayed = []

    def embed(piece):
        out = EncoderModule(model, "mean")(**piece)
        if torch.is_grad_enabled():
            replayed.append(out.detach())
        return out

    def loss_on(reps):
        return contrastive_loss(reps[0], reps[1][:4], reps[1][4:], scale=20)

    def grads():
        return [p.grad.clone() for p in model.parameters()]

    torch.manual_seed(0)
    loss = grad_cache_step([q, d], embed, loss_on, lambda t: t.backward(), chunk_size=2)
    cached = grads()
    # the re-forward under the recorded RNG states saw the very dropout masks of pass 1
    torch.testing.assert_close(loss_on([torch.cat(replayed[:2]), torch.cat(replayed[2:])]), loss)
    if dropout == 0.0:  # same masks as a single batch only without dropout
        model.zero_grad()
        full = loss_on([EncoderModule(model, "mean")(**q), EncoderModule(model, "mean")(**d)])
        full.backward()
        torch.testing.assert_close(loss, full.detach())
        for a, b in zip(cached, grads()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _gather_worker(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    q, p = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    rows = slice(0, 4) if rank == 0 else slice(4, 6)  # uneven shards, as a last batch can be
    local_q = q[rows].detach().requires_grad_()
    loss = contrastive_loss(local_q, p[rows], scale=20)
    loss.backward()
    # plain floats, not tensors: torch's queue shares a tensor through a connection to this
    # process, which is refused once the worker has exited (the parent may read later)
    queue.put((rank, float(loss), local_q.grad.tolist()))
    dist.destroy_process_group()


@pytest.mark.timeout(600)  # two spawned processes and a gloo group: a hang is the failure mode
def test_loss_is_computed_over_the_global_batch_across_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gather_worker, args=(r, port, queue)) for r in range(2)]
    for proc in procs:
        proc.start()
    try:
        results = sorted(queue.get(timeout=120) for _ in procs)  # a dead worker fails, not hangs
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0, 0]
    torch.manual_seed(0)
    q, p = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    full = contrastive_loss(q, p, scale=20, gather_across_processes=False)
    full.backward()
    for _rank, loss, _grad in results:
        assert loss == pytest.approx(float(full), abs=1e-6)  # every process: the global loss
    # each process's gradient on its rows is world_size x the global one; DDP's averaging of
    # parameter gradients divides it back
    local = torch.tensor(results[0][2] + results[1][2], dtype=q.grad.dtype)
    torch.testing.assert_close(local / 2, q.grad)
