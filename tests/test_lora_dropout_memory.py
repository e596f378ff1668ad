"""LoRA dropout recomputed in the backward pass (``training.base.DropoutLoraA``): the loss and
every gradient are bit for bit those of peft's own ``lora_A(lora_dropout(x))``, the adapter
saves under the same names, and the step keeps far fewer bytes for the backward pass."""

from __future__ import annotations

import torch
from peft import get_peft_model_state_dict

from llm2vec_rag.preprocess import Preprocessor
from llm2vec_rag.training import load_config
from llm2vec_rag.training.base import (
    DropoutLoraA,
    add_lora,
    load_base_encoder,
    set_attention_dropout,
    training_tokenizer,
)
from llm2vec_rag.training.losses import contrastive_loss
from llm2vec_rag.training.simcse import DuplicatingCollator, embed
from tiny import CORPUS


def simcse_model(base: str, tmp_path, recompute: bool):
    cfg = load_config("simcse", "simcse-cpu", {"model": base, "data": ["unused.txt"],
                                               "output_dir": str(tmp_path), "dropout": 0.3})
    model = load_base_encoder(cfg)
    set_attention_dropout(model, cfg.dropout)
    if recompute:
        model = add_lora(model, cfg, dropout=cfg.dropout)
    else:  # peft as it comes: the reference
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(cfg.seed)
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, bias="none", lora_dropout=cfg.dropout,
            target_modules=cfg.lora_target_modules))
    return cfg, model.train()


def step(base: str, tmp_path, recompute: bool):
    """One SimCSE forward/backward; the loss, the LoRA gradients, the bytes kept for backward."""
    cfg, model = simcse_model(base, tmp_path, recompute)
    batch = DuplicatingCollator(training_tokenizer(cfg), 32, "mean")(CORPUS[:8])
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    torch.manual_seed(7)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        first, second = embed(model, batch, "mean").chunk(2)
        loss = contrastive_loss(first, second, scale=20.0)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return model, loss.detach(), grads, sum(kept.values())


def test_same_loss_and_gradients_bit_for_bit_with_less_memory(tiny_model_dir, tmp_path):
    base = tiny_model_dir("llama", "bytelevel")
    ref_model, ref_loss, ref_grads, ref_bytes = step(base, tmp_path, recompute=False)
    model, loss, grads, kept_bytes = step(base, tmp_path, recompute=True)
    assert any(isinstance(m, DropoutLoraA) for m in model.modules())
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        assert torch.equal(grad, ref_grads[name]), name
    # dropout's float noise and the dropped copy of each projection's input are not kept
    assert kept_bytes < 0.75 * ref_bytes, (kept_bytes, ref_bytes)
    # the adapter saves under peft's own names, with the same shapes
    ours = get_peft_model_state_dict(model)
    ref = get_peft_model_state_dict(ref_model)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}


def test_eval_and_no_grad_forward_match_peft(tiny_model_dir, tmp_path):
    """Evaluation (no dropout) and a no-grad training forward (GradCache's first pass) draw
    the same dropout as peft's modules."""
    base = tiny_model_dir("llama", "bytelevel")
    _, ref = simcse_model(base, tmp_path, recompute=False)
    _, ours = simcse_model(base, tmp_path, recompute=True)
    pre = Preprocessor(training_tokenizer(load_config(
        "simcse", None, {"model": base, "data": ["unused.txt"]})), 32)
    b = pre.collate(pre.encode(CORPUS[:4]), None)
    inputs = {"input_ids": torch.from_numpy(b.input_ids),
              "attention_mask": torch.from_numpy(b.attention_mask),
              "embed_mask": torch.from_numpy(b.embed_mask)}
    with torch.no_grad():
        for train in (True, False):
            ref.train(train)
            ours.train(train)
            torch.manual_seed(3)
            expected = embed(ref, inputs, "mean")
            torch.manual_seed(3)
            assert torch.equal(embed(ours, inputs, "mean"), expected), f"train={train}"


def test_adding_lora_prints_no_library_deprecations(tiny_model_dir, tmp_path):
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` in get_peft_model:
    every training run printed that FutureWarning to users who can do nothing about it."""
    import warnings

    cfg = load_config("simcse", "simcse-cpu", {"model": tiny_model_dir("llama"),
                                               "data": ["unused.txt"], "output_dir": str(tmp_path)})
    model = load_base_encoder(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(model, cfg)
    assert not [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
