"""The one ``transformers.Trainer`` subclass every stage runs on, and the run around it.

The Trainer brings checkpointing, resume (optimizer, scheduler, RNG and data position),
gradient accumulation, gradient checkpointing, bf16, distributed training (torchrun /
accelerate) and TensorBoard. Added here: a stage's loss hook, an optional stage-owned
forward/backward step (GradCache), an optional sampler, the CSV log and the loss-curve PNG.
The model handed to the Trainer is a ``PeftModel`` over the bare decoder, so checkpoints and
the final folder are plain LoRA adapters that ``LLM2Vec.from_pretrained(base, adapters=[...])``
loads.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable

import torch
from torch.utils.data import Dataset, Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from llm2vec_rag.config import EncoderConfig

from .config import TrainConfig
from .run_record import RecordRun, check_resume, clear_checkpoints, write_record

logger = logging.getLogger(__name__)

LOG_CSV = "training_log.csv"
LOSS_PNG = "loss_curve.png"
ADAPTER_FILE = "adapter_model.safetensors"
_CSV_FIELDS = ("step", "epoch", "loss", "learning_rate", "grad_norm")

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]
# step_fn(model, inputs, backward) -> detached loss; must call backward() on what it differentiates
StepFn = Callable[[torch.nn.Module, dict, Callable[[torch.Tensor], None]], torch.Tensor]


class StageTrainer(Trainer):
    """A Trainer whose loss comes from the stage; the optimisation machinery stays the Trainer's."""

    loss_is_scaled_for_ga = False  # stage losses are per-batch means: the Trainer divides by GA

    def __init__(self, *args, loss_fn: LossFn, step_fn: StepFn | None = None,
                 sampler_fn: Callable[[int], Sampler] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.step_fn = step_fn
        self.sampler_fn = sampler_fn
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.loss_fn(model, inputs)
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.step_fn is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps

        def backward(tensor: torch.Tensor) -> None:
            self.accelerator.backward(tensor * scale)

        with self.compute_loss_context_manager():
            loss = self.step_fn(model, inputs, backward)
        return loss.detach() * scale

    def _get_train_sampler(self, train_dataset=None):
        if self.sampler_fn is None:
            return super()._get_train_sampler(train_dataset)
        global_batch = self.args.per_device_train_batch_size * self.args.world_size
        return self.sampler_fn(global_batch)


class CSVLogCallback(TrainerCallback):
    """Appends every logged loss/lr to a CSV; on resume, drops rows past the checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        rows = [r for r in read_log(self.path) if int(float(r["step"])) <= state.global_step]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, "epoch": logs.get("epoch", state.epoch)}
        row.update({k: logs.get(k) for k in _CSV_FIELDS[2:]})
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=_CSV_FIELDS).writerow(row)


def read_log(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plot_loss(csv_path: str, png_path: str, title: str) -> str | None:
    """Loss against step as a PNG (matplotlib, no display needed); None when nothing was logged."""
    rows = read_log(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], marker=".")
    ax.set(xlabel="step", ylabel="training loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` / ``accelerate launch`` job (or a plain single process).

    Read from the launcher's environment, so it answers before the process group exists
    (the Trainer creates it): only this process writes the run's own files.
    """
    return int(os.environ.get("RANK", "0")) == 0


def no_accelerator() -> bool:
    """True on a machine without an accelerator, where the Trainer needs ``use_cpu``.

    Without it, several processes (torchrun) silently train alone on the whole data (world
    size 1) and overwrite each other's files, and ``bf16`` is refused as "bf16/gpu" although
    CPUs autocast to bf16 fine.
    """
    accelerator = getattr(torch, "accelerator", None)
    return not (accelerator.is_available() if accelerator else torch.cuda.is_available())


def training_arguments(cfg: TrainConfig) -> TrainingArguments:
    """The config's optimisation settings in the Trainer's terms.

    Under DDP every LoRA weight gets a gradient each step (all-linear LoRA, the whole decoder
    runs), so DDP need not search for unused parameters (an extra graph walk per step).
    """
    report_to = [r for r in cfg.report_to if r != "none"] or "none"
    return TrainingArguments(
        output_dir=cfg.output_dir, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        report_to=report_to, remove_unused_columns=False, dataloader_drop_last=True,
        dataloader_num_workers=cfg.dataloader_num_workers, disable_tqdm=None,
        use_cpu=no_accelerator(), ddp_find_unused_parameters=False,
    )


def cast_adapter(folder: str, dtype: str) -> None:
    """Store the final adapter's weights as ``dtype`` (half the bytes for a shipped adapter);
    loading casts them back to the model's dtype."""
    if dtype == "float32":
        return
    from safetensors.torch import load_file, save_file

    path = os.path.join(folder, ADAPTER_FILE)
    tensors = {k: v.to(getattr(torch, dtype)) for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def resume_checkpoint(cfg: TrainConfig) -> str | None:
    """``auto``: the last checkpoint in output_dir if any, when its recorded settings match
    (see ``run_record``); ``true``: it must exist; ``false``: start over (old checkpoints
    removed)."""
    if cfg.resume == "false":
        if not is_main_process():  # rank 0 removes them; the others would race it
            return None
        for path in clear_checkpoints(cfg.output_dir):
            logger.warning("resume=false: removed the old checkpoint %s", path)
        return None
    if cfg.resume not in ("auto", "true"):
        check_resume(cfg, cfg.resume)
        return cfg.resume
    last = get_last_checkpoint(cfg.output_dir) if os.path.isdir(cfg.output_dir) else None
    if last is None and cfg.resume == "true":
        raise FileNotFoundError(f"resume=true but {cfg.output_dir!r} holds no checkpoint-*")
    if last is not None:
        check_resume(cfg, last)
    return last


def run_stage(cfg: TrainConfig, model, dataset: Dataset, collator: Callable, loss_fn: LossFn,
              step_fn: StepFn | None = None, sampler_fn: Callable[[int], Sampler] | None = None,
              callbacks: list[TrainerCallback] | None = None) -> str:
    """Train ``model`` (a PeftModel) and write the adapter, configs, CSV log and loss curve.

    Under ``torchrun`` / ``accelerate launch`` every process runs this; only rank 0 writes.
    """
    checkpoint = resume_checkpoint(cfg)  # refuses another run's checkpoint before any work
    os.makedirs(cfg.output_dir, exist_ok=True)
    recorder = RecordRun(cfg)  # fingerprints the inputs once, as the run starts
    if is_main_process():
        write_record(cfg, cfg.output_dir, recorder.inputs)
    trainer = StageTrainer(
        model=model, args=training_arguments(cfg), train_dataset=dataset,
        data_collator=collator, loss_fn=loss_fn, step_fn=step_fn, sampler_fn=sampler_fn,
        callbacks=[recorder, CSVLogCallback(os.path.join(cfg.output_dir, LOG_CSV)),
                   *(callbacks or [])],
    )
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(cfg.output_dir)
    if trainer.args.should_save:
        cast_adapter(cfg.output_dir, cfg.adapter_dtype)
        cfg.save(cfg.output_dir)
        # training length != use length; a supervised run's instruction is the model's default
        EncoderConfig(pooling=cfg.pooling,
                      query_instruction=getattr(cfg, "query_instruction", None),
                      matryoshka_dims=getattr(cfg, "matryoshka_dims", None) or None
                      ).save(cfg.output_dir)
        plot_loss(os.path.join(cfg.output_dir, LOG_CSV), os.path.join(cfg.output_dir, LOSS_PNG),
                  f"{cfg.stage} training loss")
    return cfg.output_dir
