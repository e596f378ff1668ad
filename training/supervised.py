"""Stage 3 (optional), supervised contrastive learning on (query, positive, negatives) examples.

Queries carry their instruction (attended to, not pooled, exactly as ``encode_queries``);
documents carry none. Loss: in-batch plus hard negatives, scale 1/temperature (50 in the
paper), embeddings gathered across processes. Each global batch comes from one source
dataset. ``grad_cache_chunk_size`` trades compute for memory without changing the gradient.
``matryoshka_dims`` applies the same loss to each truncated, renormalised prefix too.

``distill_teacher`` (a sentence-transformers model: a folder or hub id, loaded with this
package's loader on the CPU) adds score distillation: ``distill_weight`` x KL(teacher ||
student) over each query's candidates (``losses.distill_loss``), the teacher's distribution
at ``distill_temperature``, the student's at the contrastive ``temperature``. The collator
embeds every batch's texts with the teacher (queries without any instruction: MiniLM-style
teachers were trained without one), so the teacher's vectors are constants that travel with
the batch: GradCache chunks only the student, and Matryoshka prefixes cut only the student.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import torch
from torch.utils.data import Sampler
from transformers import TrainerCallback

from llm2vec_rag.errors import UsageError
from llm2vec_rag.preprocess import Preprocessor

from .base import add_lora, load_base_encoder, training_tokenizer
from .config import SupervisedConfig, load_config
from .data import Example, load_examples
from .gradcache import grad_cache_step
from .losses import contrastive_loss, distill_loss, matryoshka
from .simcse import embed, tensors
from .trainer import resume_checkpoint, run_stage

logger = logging.getLogger(__name__)


class OneDatasetPerBatchSampler(Sampler[int]):
    """Indices arranged so that every run of ``batch_size`` comes from one dataset.

    ``batch_size`` is the global batch (per device x processes): the Trainer's distributed
    sharding hands consecutive per-device batches to different processes. Incomplete runs
    are dropped; the order is reshuffled each epoch from ``seed``.
    """

    def __init__(self, datasets: list[str], batch_size: int, seed: int = 0) -> None:
        self.groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(datasets):
            self.groups[name].append(i)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        if len(self) == 0:
            sizes = {k: len(v) for k, v in self.groups.items()}
            raise UsageError(f"No dataset has a full batch of {batch_size} examples "
                             f"(examples per dataset: {sizes}); lower batch_size")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(g) // self.batch_size * self.batch_size for g in self.groups.values())

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        batches = []
        for name in sorted(self.groups):
            idx = self.groups[name][:]
            rng.shuffle(idx)
            full = len(idx) // self.batch_size * self.batch_size
            batches += [idx[i: i + self.batch_size] for i in range(0, full, self.batch_size)]
        rng.shuffle(batches)
        return iter([i for batch in batches for i in batch])


class Teacher:
    """A frozen encoder whose normalised float32 vectors the student is distilled toward."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        from llm2vec_rag.spec import load_encoder

        self.encoder = load_encoder(model, device="cpu")
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            vectors = self.encoder.encode(texts, instruction="", batch_size=self.batch_size,
                                          normalize=True, show_progress=False)
        return torch.from_numpy(vectors).float()


class PairCollator:
    """Examples -> ``q_*`` tensors (instruction-prefixed queries) and ``d_*`` tensors
    (B positives, then the B x k hard negatives); with a ``teacher``, also its vectors of the
    same texts: ``teacher_q`` [B, D'] (queries without instruction) and ``teacher_d``."""

    def __init__(self, tokenizer, max_length: int, pooling: str,
                 teacher: Teacher | None = None) -> None:
        self.preprocessor = Preprocessor(tokenizer, max_length, append_eos=pooling == "eos")
        self.teacher = teacher

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        rows = []
        for e in examples:  # instructions may differ per example, so encode one at a time
            rows += self.preprocessor.encode([e.query], e.instruction)
        queries = self.preprocessor.collate(rows, index=None)
        docs = [e.positive for e in examples] + [n for e in examples for n in e.negatives]
        batch = {"q_input_ids": torch.from_numpy(queries.input_ids),
                 "q_attention_mask": torch.from_numpy(queries.attention_mask),
                 "q_embed_mask": torch.from_numpy(queries.embed_mask),
                 **tensors(self.preprocessor, docs, prefix="d_")}
        if self.teacher is not None:
            batch["teacher_q"] = self.teacher([e.query for e in examples])
            batch["teacher_d"] = self.teacher(docs)
        return batch


def _group(inputs: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)}


def train_supervised(config: SupervisedConfig | dict | str,
                     callbacks: list[TrainerCallback] | None = None) -> str:
    """Run supervised contrastive training on top of ``cfg.adapters`` (MNTP, maybe SimCSE)."""
    cfg = config if isinstance(config, SupervisedConfig) else load_config("supervised", config)
    resume_checkpoint(cfg)  # refuse another run's checkpoint before loading anything
    tokenizer = training_tokenizer(cfg)
    examples = load_examples(cfg.data, cfg.num_negatives, cfg.split, cfg.query_instruction)
    if cfg.max_texts is not None:
        examples = examples[: cfg.max_texts]
    names = [e.dataset for e in examples]
    OneDatasetPerBatchSampler(names, cfg.batch_size)  # fail now, not after loading the model
    logger.info("supervised training on %d examples from %d datasets", len(examples),
                len(set(names)))
    model = add_lora(load_base_encoder(cfg), cfg)
    scale = 1.0 / cfg.temperature
    teacher = Teacher(cfg.distill_teacher) if cfg.distill_teacher and cfg.distill_weight else None

    def contrast(q: torch.Tensor, d: torch.Tensor,
                 teacher: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b = q.shape[0]  # d holds B positives, then the hard negatives
        loss = contrastive_loss(q, d[:b], d[b:], scale=scale,
                                gather_across_processes=cfg.gather_across_processes)
        if teacher is not None:
            tq, td = teacher
            loss = loss + cfg.distill_weight * distill_loss(
                q, d[:b], d[b:], tq, td[:b], td[b:], scale=scale,
                teacher_temperature=cfg.distill_temperature,
                gather_across_processes=cfg.gather_across_processes)
        return loss

    loss_on = (matryoshka(contrast, cfg.matryoshka_dims, cfg.matryoshka_weights)
               if cfg.matryoshka_dims else contrast)

    def teacher_of(inputs) -> dict:
        """The teacher's constant vectors, by keyword (Matryoshka truncates only positionals)."""
        return {"teacher": (inputs["teacher_q"], inputs["teacher_d"])} if teacher else {}

    def loss_fn(model, inputs):
        return loss_on(embed(model, inputs, cfg.pooling, "q_"),
                       embed(model, inputs, cfg.pooling, "d_"), **teacher_of(inputs))

    step_fn = None
    if cfg.grad_cache_chunk_size:
        def step_fn(model, inputs, backward):
            return grad_cache_step(
                [_group(inputs, "q_"), _group(inputs, "d_")],
                lambda piece: embed(model, piece, cfg.pooling),
                lambda reps: loss_on(*reps, **teacher_of(inputs)),
                backward, cfg.grad_cache_chunk_size, getattr(model, "no_sync", None))

    return run_stage(
        cfg, model, examples, PairCollator(tokenizer, cfg.max_length, cfg.pooling, teacher),
        loss_fn,
        step_fn=step_fn, callbacks=callbacks,
        sampler_fn=lambda batch: OneDatasetPerBatchSampler(names, batch, cfg.seed))
