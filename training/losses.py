"""The two LLM2Vec losses, on tensors only (the stages compute the embeddings/hidden states).

``contrastive_loss``
    Args: ``queries`` [B, D], ``positives`` [B, D] (row i is query i's positive), optional
    ``negatives`` [N, D] (hard negatives, shared by every query), ``scale`` (1/temperature).
    Requirements: B >= 2 or negatives given, so that there is something to contrast against.
    Computes cross-entropy over cosine similarities of each query against all positives and
    negatives of the batch (in-batch negatives). Under ``torch.distributed`` every process
    gathers every process's embeddings (with gradients) first, so the negatives are the global
    batch; each process then computes the same global loss.

``matryoshka``
    Args: ``loss_on`` (a loss on embeddings, e.g. ``contrastive_loss``), ``dims`` (the
    trained prefixes, e.g. ``[576, 256, 128, 64]``), ``weights`` (one per dim, default 1).
    Requirements: every dim <= the embedding size; ``loss_on`` normalises its inputs (cosine
    similarity), so a prefix is compared as a renormalised vector, as ``encode(...,
    truncate_dim=d, normalize=True)`` returns it. Returns a loss on the same inputs: the
    weighted sum of ``loss_on`` at each prefix (sentence-transformers' ``MatryoshkaLoss``).
    It is a plain function of the embeddings, so GradCache's cached-gradient path works as is.

``distill_loss``
    Args: ``queries`` [B, D], ``positives`` [B, D], ``negatives`` [N, D] (as
    ``contrastive_loss``) and the teacher's embeddings of the same texts ``teacher_queries``
    [B, D'], ``teacher_positives`` [B, D'], ``teacher_negatives`` [N, D'] (any width D': the
    teacher is another model; constants, no gradient), ``scale`` (the student's 1/temperature,
    the contrastive loss's), ``teacher_temperature``.
    Computes score distillation (RocketQA-style; sentence-transformers' ``DistillKLDivLoss``):
    over each query's candidates (every positive and hard negative of the batch, the
    contrastive loss's columns), KL(teacher || student) between softmax(teacher_cos /
    teacher_temperature) and softmax(student_cos * scale), averaged over queries. Zero, with
    a zero gradient, when the two distributions agree. Gathered across processes like
    ``contrastive_loss``; a plain function of the embeddings plus constants, so GradCache and
    ``matryoshka`` (the teacher's embeddings passed by keyword, never truncated) work as is.

``mntp_loss``
    Args: ``hidden`` [B, T, D] from the bidirectional decoder, ``labels`` [B, T] with -100 except
    at masked positions, ``lm_head`` (the frozen output layer). The token at position i is
    predicted from position i-1's output, as in the paper; logits are computed only for masked
    positions, so memory does not scale with B * T * vocab.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from llm2vec_rag.errors import UsageError


def gather(x: torch.Tensor) -> torch.Tensor:
    """All processes' rows concatenated in rank order, differentiable; ``x`` when not distributed.

    Rows may differ in number between processes (the last batch); they are padded for the
    collective and cut back after.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    if max(sizes) == 0:  # e.g. no hard negatives anywhere: nothing to gather
        return x
    padded = F.pad(x, (0, 0, 0, max(sizes) - x.shape[0]))
    parts = all_gather(padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def contrastive_loss(queries: torch.Tensor, positives: torch.Tensor,
                     negatives: torch.Tensor | None = None, scale: float = 20.0,
                     gather_across_processes: bool = True) -> torch.Tensor:
    """In-batch (plus hard) negatives InfoNCE with cosine similarity times ``scale``."""
    if queries.shape != positives.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and positives "
                         f"{tuple(positives.shape)} must have the same shape")
    if negatives is None:
        negatives = positives[:0]
    if gather_across_processes:
        queries, positives, negatives = gather(queries), gather(positives), gather(negatives)
    docs = torch.cat([positives, negatives])  # [B + N, D]
    scores = F.normalize(queries.float(), dim=-1) @ F.normalize(docs.float(), dim=-1).T
    labels = torch.arange(queries.shape[0], device=queries.device)  # [B]
    return F.cross_entropy(scores * scale, labels)


def distill_loss(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None,
                 teacher_queries: torch.Tensor, teacher_positives: torch.Tensor,
                 teacher_negatives: torch.Tensor | None, scale: float = 20.0,
                 teacher_temperature: float = 0.05,
                 gather_across_processes: bool = True) -> torch.Tensor:
    """KL(teacher || student) of each query's score distribution over the batch's documents."""
    if negatives is None:
        negatives = positives[:0]
    if teacher_negatives is None:
        teacher_negatives = teacher_positives[:0]
    shapes = [(queries.shape[0], teacher_queries.shape[0]),
              (positives.shape[0], teacher_positives.shape[0]),
              (negatives.shape[0], teacher_negatives.shape[0])]
    if any(a != b for a, b in shapes):
        raise ValueError(f"the teacher's embeddings must cover the same texts as the "
                         f"student's (rows: student, teacher per group): {shapes}")
    teacher = [t.detach() for t in (teacher_queries, teacher_positives, teacher_negatives)]
    student = [queries, positives, negatives]
    if gather_across_processes:
        student, teacher = [gather(x) for x in student], [gather(x) for x in teacher]

    def cosines(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        docs = torch.cat([p, n])  # [B + N, D]: the contrastive loss's columns, in its order
        return F.normalize(q.float(), dim=-1) @ F.normalize(docs.float(), dim=-1).T

    with torch.no_grad():
        target = F.log_softmax(cosines(*teacher) / teacher_temperature, dim=-1)
    log_student = F.log_softmax(cosines(*student) * scale, dim=-1)
    return F.kl_div(log_student, target, log_target=True, reduction="batchmean")


def matryoshka(loss_on: Callable[..., torch.Tensor], dims: list[int],
               weights: list[float] | None = None) -> Callable[..., torch.Tensor]:
    """``loss_on`` summed over the first ``d`` dimensions of every embedding, for d in ``dims``."""
    weights = [1.0] * len(dims) if weights is None else list(weights)
    if not dims or len(weights) != len(dims):
        raise ValueError(f"matryoshka needs dims and one weight per dim, got dims={dims}, "
                         f"weights={weights}")

    def loss(*embeddings: torch.Tensor | None, **kwargs) -> torch.Tensor:
        size = next(e for e in embeddings if e is not None).shape[-1]
        if max(dims) > size:
            raise UsageError(f"matryoshka_dims {dims} go beyond the embedding size {size}: "
                             f"use dims <= {size}")
        return sum(w * loss_on(*(None if e is None else e[..., :d] for e in embeddings),
                               **kwargs)
                   for d, w in zip(dims, weights))

    return loss


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module,
              softcap: float | None = None) -> torch.Tensor:
    """Cross-entropy of masked tokens, each predicted from the previous position's output."""
    prev = hidden[:, :-1]  # [B, T-1, D]: position i-1 ...
    target = labels[:, 1:]  # [B, T-1]: ... predicts token i
    chosen = target != -100
    if not bool(chosen.any()):
        return hidden.sum() * 0.0  # nothing masked in this batch: a zero that keeps the graph
    logits = lm_head(prev[chosen]).float()  # [N, V]
    if softcap:  # Gemma-2 style final logit soft-capping
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, target[chosen])
