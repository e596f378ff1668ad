"""MTEB (mteb 2.x) wrapper for an LLM2Vec encoder, with the paper's task-aware instructions.

    import mteb
    from llm2vec_rag.integrations.mteb import LLM2VecMTEB
    model = LLM2VecMTEB("path/or/hub-id", adapters=[...])       # or LLM2VecMTEB(encoder)
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact"]))

mteb's own LLM2Vec wrapper imports the reference package (transformers <= 4.44); this one
implements mteb's ``EncoderProtocol`` over our encoder. Instructions follow the LLM2Vec paper
and mteb's wrapper for it: the task's instruction (its metadata prompt, or ``instructions``
given here by task name / task type) ends with ":" and is prepended to queries and to both
sides of symmetric tasks (STS, clustering, ...); documents of retrieval tasks get none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType


def llm2vec_instruction(instruction: str) -> str:
    """The paper's format: "Given a claim, find documents that refute the claim:"."""
    instruction = instruction.strip()
    if instruction and not instruction.endswith(":"):
        instruction = instruction.strip(".") + ":"
    return instruction


class LLM2VecMTEB(AbsEncoder):
    """mteb ``EncoderProtocol``: ``encode(inputs, task_metadata=, hf_split=, hf_subset=,
    prompt_type=)`` over an LLM2Vec / OnnxLLM2Vec encoder (or one loaded by name)."""

    def __init__(self, model_name: Any, revision: str | None = None, *,
                 device: str | None = None, adapters: list[str] | None = None,
                 instructions: dict[str, str] | None = None, batch_size: int = 32,
                 **load_kwargs: Any) -> None:
        if isinstance(model_name, str):
            from llm2vec_rag.spec import load_encoder

            if device is not None:
                load_kwargs["device"] = device
            self.model = load_encoder(model_name, adapters, **load_kwargs)
            name = model_name
        else:
            from llm2vec_rag.integrations._encoder import check_encoder

            self.model = check_encoder(model_name)
            name = getattr(getattr(model_name, "spec", None), "model", None) or "llm2vec-rag"
        self.prompts_dict = dict(instructions or {})
        self.batch_size = batch_size
        base = str(name).rstrip("/").split("/")[-1] or "model"
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=f"llm2vec-rag/{base}", revision=revision, embed_dim=self.model.dim,
            max_tokens=self.model.config.max_length, similarity_fn_name=ScoringFunction.COSINE,
            use_instructions=True, framework=["PyTorch"], loader=None))

    def instruction_for(self, task_metadata, prompt_type: PromptType | None) -> str:
        """Documents of asymmetric (retrieval-like) tasks: none; everything else: the task's."""
        if prompt_type == PromptType.document:
            return ""
        return llm2vec_instruction(self.get_instruction(task_metadata, prompt_type) or "")

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.instruction_for(task_metadata, prompt_type)
        show = kwargs.get("show_progress_bar")
        return self.model.encode(texts, instruction=instruction or None,
                                 batch_size=kwargs.get("batch_size", self.batch_size),
                                 show_progress=show)


def run_mteb(encoder, tasks: list[str], batch_size: int = 32,
             output_folder: str | None = None) -> dict[str, float]:
    """``llm2vec-rag eval --mteb TASK...``: each task's main score (tasks come from the hub)."""
    import mteb

    model = LLM2VecMTEB(encoder, batch_size=batch_size)
    cache = mteb.ResultCache(output_folder) if output_folder else None
    results = mteb.evaluate(model, mteb.get_tasks(tasks=list(tasks)), cache=cache,
                            overwrite_strategy="always")
    return {r.task_name: float(r.get_score()) for r in results.task_results}
