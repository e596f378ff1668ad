"""Which run a checkpoint belongs to: resume only a run with the same defining settings.

Every run writes its defining settings (model, stage, data, adapters, the optimisation
and LoRA settings; not logging, saving or output paths) to ``RUN_FILE`` in ``output_dir``
and in every ``checkpoint-*`` folder. Before resuming, the checkpoint's record is compared
with the new config: a different base model, stage, data or adapter chain would otherwise
continue another run's weights and save a config that misdescribes the adapter.

The record also holds a fingerprint of the run's local inputs (data files and folders, the
base model file or folder, the adapters): ``llm2vec_rag.cache.fingerprint``, i.e. size plus
a SHA-256 of files up to 16 MiB, and size + mtime + a hash of the first and last MiB of
bigger ones (top-level files of a folder). Same paths with other content (a corpus edited
in place, new base weights copied over the old) refuse ``resume=auto``; ``resume=true``
continues with a warning.
"""

from __future__ import annotations

import json
import logging
import os

from transformers import TrainerCallback

from llm2vec_rag.errors import UsageError

from .config import TrainConfig

logger = logging.getLogger(__name__)

RUN_FILE = "run_settings.json"
# Settings that change how a run is watched or stored, not what it learns: a resume may
# change them. max_steps may grow (train longer); it is checked against the checkpoint.
NOT_DEFINING = frozenset({
    "output_dir", "resume", "logging_steps", "save_steps", "save_total_limit", "report_to",
    "dataloader_num_workers", "max_steps", "adapter_dtype", "gradient_checkpointing"})


class ResumeMismatchError(UsageError):
    """The checkpoint in output_dir was written by a run with other settings."""


def defining_settings(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_DEFINING}


def input_paths(cfg: TrainConfig) -> list[str]:
    """The run's inputs that are local files or folders (hub ids and hf: datasets are not)."""
    model = os.path.join(cfg.model, cfg.gguf_file) if cfg.model and cfg.gguf_file else cfg.model
    paths = [*cfg.data, model, *cfg.adapters, getattr(cfg, "distill_teacher", None)]
    return [p for p in paths if p and not str(p).startswith("hf:") and os.path.exists(p)]


def input_fingerprints(cfg: TrainConfig) -> dict[str, dict]:
    """``{path: fingerprint}`` of the run's local inputs: what a resume must find unchanged."""
    from llm2vec_rag.cache import fingerprint

    return {str(p): fingerprint(p) for p in input_paths(cfg)}


def write_record(cfg: TrainConfig, folder: str, inputs: dict[str, dict] | None = None) -> None:
    record = {"settings": defining_settings(cfg), "max_steps": cfg.max_steps,
              "inputs": input_fingerprints(cfg) if inputs is None else inputs}
    with open(os.path.join(folder, RUN_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=str)


def _read(folder: str) -> dict | None:
    path = os.path.join(folder, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def checkpoint_step(checkpoint: str) -> int | None:
    try:
        with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as f:
            return int(json.load(f)["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_resume(cfg: TrainConfig, checkpoint: str) -> None:
    """Raise :class:`ResumeMismatchError` unless ``checkpoint`` belongs to a run like ``cfg``."""
    fix = (f"Use a new output_dir, or resume=false to start over in {cfg.output_dir!r} "
           f"(its old checkpoint-* folders are then removed)")
    record = _read(checkpoint) or _read(os.path.dirname(os.path.abspath(checkpoint)))
    if record is None:
        if cfg.resume == "auto":
            raise ResumeMismatchError(
                f"{checkpoint!r} has no {RUN_FILE}: it was not written by this version's "
                f"trainer, so it cannot be checked against this config. {fix}; or "
                f"resume=true to continue it anyway.")
        return  # resume=true or an explicit checkpoint: the user vouches for it
    old, new = record.get("settings", {}), defining_settings(cfg)
    differ = sorted(k for k in set(old) | set(new)
                    if json.dumps(old.get(k), default=str, sort_keys=True)
                    != json.dumps(new.get(k), default=str, sort_keys=True))
    if differ:
        shown = "; ".join(f"{k}: checkpoint {old.get(k)!r}, now {new.get(k)!r}"
                          for k in differ[:6])
        raise ResumeMismatchError(
            f"Refusing to resume {checkpoint!r}: it belongs to a run with other settings "
            f"({shown}{'; ...' if len(differ) > 6 else ''}). {fix}.")
    _check_inputs(cfg, checkpoint, record.get("inputs"), fix)
    step = checkpoint_step(checkpoint)
    if step is not None and step > cfg.max_steps:
        raise ResumeMismatchError(
            f"Refusing to resume {checkpoint!r}: it is at step {step}, past "
            f"max_steps={cfg.max_steps}. Raise max_steps to continue that run; {fix[0].lower()}"
            f"{fix[1:]}.")


def _check_inputs(cfg: TrainConfig, checkpoint: str, old: dict | None, fix: str) -> None:
    if old is None:  # a record written before inputs were fingerprinted
        return
    new = input_fingerprints(cfg)
    changed = [c for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)
               for c in _changed_files(p, old.get(p), new.get(p))]
    if not changed:
        return
    message = (f"{checkpoint!r} was trained on inputs whose content changed since (same path, "
               f"other size, mtime or content hash): {', '.join(changed[:4])}"
               f"{', ...' if len(changed) > 4 else ''}")
    if cfg.resume == "auto":
        raise ResumeMismatchError(f"Refusing to resume: {message}. {fix}; or resume=true to "
                                  "continue it on the new inputs anyway.")
    logger.warning("%s; continuing as resume=%s asks", message, cfg.resume)


def _changed_files(path: str, old: dict | None, new: dict | None) -> list[str]:
    """The files of ``path`` whose fingerprints differ (the path itself for a file)."""
    if not (old and new and "files" in old and "files" in new):
        return [path]
    a, b = old["files"], new["files"]
    return [os.path.join(path, n) for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]


def clear_checkpoints(output_dir: str) -> list[str]:
    """resume=false: remove the old run's checkpoint-* folders (they would mix with this
    run's and be picked up by a later resume=auto)."""
    import re
    import shutil

    removed = []
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            path = os.path.join(output_dir, name)
            if re.fullmatch(r"checkpoint-\d+", name) and os.path.isdir(path):
                shutil.rmtree(path)
                removed.append(path)
    return removed


class RecordRun(TrainerCallback):
    """Writes the run record into every checkpoint as it is saved."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.inputs = input_fingerprints(cfg)  # as the run started: once, not at every save

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            write_record(self.cfg, folder, self.inputs)
