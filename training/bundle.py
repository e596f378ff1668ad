"""Bundling: a trained stage's adapter in the form the package ships it.

Float16 weights (half the bytes), the base model named by file name rather than the path on
the machine that trained it, the query instruction it is used with, and the training
settings, log and loss curve beside it. ``llm2vec-rag train bundle`` runs it; the bundled
default model's adapters (``llm2vec_rag/models/``) were made this way.
"""

from __future__ import annotations

import json
import os
import shutil

import yaml

from llm2vec_rag.default_model import GGUF_NAME, QUERY_INSTRUCTION

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "llm2vec_config.json")
# copied when the stage wrote them (a soup writes soup.json and no training log)
OPTIONAL_FILES = ("training_config.yaml", "training_log.csv", "loss_curve.png", "soup.json")


def name_base_by_file(adapter_dir: str, base: str) -> None:
    """Record the adapter's base model by file name, not this machine's path (what the
    bundled adapters record, and what tests/test_default_model.py checks)."""
    path = os.path.join(adapter_dir, "adapter_config.json")
    config = _read_json(path)
    config["base_model_name_or_path"] = _file_name(base)
    _write_json(path, config)


def bundle(stage_dir: str, dest: str, base: str = GGUF_NAME,
           query_instruction: str | None = QUERY_INSTRUCTION,
           adapter_dtype: str = "float16") -> str:
    """Copy the adapter in ``stage_dir`` to ``dest`` in its shipped form; returns ``dest``.

    ``base``: the model it was trained on (a path or a file name; only the name is kept).
    ``query_instruction``: written into its llm2vec_config.json (None: keep the stage's).
    ``adapter_dtype``: dtype of the stored weights (float32: as trained)."""
    from .trainer import cast_adapter

    missing = [n for n in REQUIRED_FILES if not os.path.isfile(os.path.join(stage_dir, n))]
    if missing:
        raise FileNotFoundError(f"{stage_dir!r} is not a trained adapter folder: it has no "
                                f"{', '.join(missing)}. Pass the stage's output_dir (or a "
                                f"soup's -o folder).")
    os.makedirs(dest, exist_ok=True)
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        if os.path.isfile(os.path.join(stage_dir, name)):
            shutil.copy2(os.path.join(stage_dir, name), dest)
    cast_adapter(dest, adapter_dtype)
    name_base_by_file(dest, base)
    path = os.path.join(dest, "training_config.yaml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            settings = yaml.safe_load(f)
        settings["model"] = _file_name(settings["model"])
        # the adapters it was trained on, by their folder names in the bundle
        settings["adapters"] = [_file_name(a) for a in settings.get("adapters") or []]
        settings = {k: _portable(v) for k, v in settings.items()}  # e.g. distill_teacher
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(settings, f, sort_keys=False)
    if query_instruction is not None:
        path = os.path.join(dest, "llm2vec_config.json")
        _write_json(path, {**_read_json(path), "query_instruction": query_instruction})
    return dest


def _file_name(path) -> str:
    """A file's or folder's name, a trailing separator ignored."""
    return os.path.basename(str(path).rstrip("/\\"))


def _portable(value):
    """An absolute path of the training machine, written so that it means the same on any
    other: inside a Python environment ``SITE_PACKAGES/<package path>``, else its file or
    folder name. Hub ids, relative paths and other values stay as they are."""
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    parts = value.rstrip("/\\").replace("\\", "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(["SITE_PACKAGES", *parts[parts.index(marker) + 1:]])
    return _file_name(value)


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
