"""Training settings: one dataclass per stage, validated when built, read from YAML/JSON files
or shipped presets plus ``key=value`` overrides (so a typo fails before any model loads)."""

from __future__ import annotations

import difflib
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import yaml

from llm2vec_rag.config import check_pooling
from llm2vec_rag.errors import UsageError

from .memory import announce_preset_memory

PRESET_DIR = os.path.join(os.path.dirname(__file__), "presets")
CONFIG_FILE = "training_config.yaml"
_RESUME = ("auto", "true", "false")
ADAPTER_DTYPES = ("float32", "float16", "bfloat16")

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings every stage shares. Fields are documented once, in presets/README.md."""

    stage: ClassVar[str] = ""

    model: str | None = None
    gguf_file: str | None = None
    adapters: list[str] = field(default_factory=list)
    output_dir: str | None = None
    data: list[str] = field(default_factory=list)
    text_field: str = "text"
    split: str = "train"
    max_texts: int | None = None
    max_length: int = 512
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    pooling: str = "mean"
    pad_token: str | None = None
    dtype: str = "float32"
    adapter_dtype: str = "float32"
    attn_implementation: str | None = None
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int | None = 2
    resume: str = "auto"
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        _coerce_types(self)
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.adapters, str):
            self.adapters = [self.adapters]
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        if not self.model:
            raise UsageError("model: required (a hub id, a model folder or a .gguf file); "
                             "pass e.g. model=path/to/model.gguf")
        if not self.data:
            raise UsageError("data: required (text/JSONL files, saved datasets or hf:NAME)")
        if self.output_dir is None:
            self.output_dir = os.path.join("out", self.stage)
        for name in ("max_length", "batch_size", "gradient_accumulation_steps", "max_steps",
                     "lora_r", "logging_steps", "save_steps"):
            _positive(self, name)
        if self.max_length < 4:
            raise UsageError(f"max_length: must be >= 4, got {self.max_length}")
        if self.learning_rate <= 0:
            raise UsageError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise UsageError("warmup_steps and weight_decay: must be >= 0")
        if self.warmup_steps and self.max_steps <= self.warmup_steps:
            warnings.warn(f"max_steps={self.max_steps} is not above warmup_steps="
                          f"{self.warmup_steps}: the learning rate never reaches "
                          f"learning_rate={self.learning_rate}; lower warmup_steps (e.g. "
                          f"warmup_steps={self.max_steps // 10}) or raise max_steps",
                          UserWarning, stacklevel=3)
        _fraction(self, "lora_dropout")
        if self.max_texts is not None:
            _positive(self, "max_texts")
        if self.adapter_dtype not in ADAPTER_DTYPES:
            raise UsageError(f"adapter_dtype: use one of {', '.join(ADAPTER_DTYPES)}; "
                             f"got {self.adapter_dtype!r}")
        self.pooling = check_pooling(self.pooling)
        resume = str(self.resume).lower()
        if resume not in _RESUME and not os.path.isdir(str(self.resume)):
            raise UsageError(f"resume: use auto, true, false or a checkpoint folder; "
                             f"got {self.resume!r}")
        self.resume = resume if resume in _RESUME else str(self.resume)

    def to_dict(self) -> dict:
        return {"stage": self.stage, **asdict(self)}

    def save(self, folder: str | os.PathLike) -> str:
        """Write the exact settings next to the adapter, so a run can be repeated."""
        path = os.path.join(folder, CONFIG_FILE)
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)
        return path


@dataclass
class MNTPConfig(TrainConfig):
    """Masked next-token prediction: paper defaults (Llama-like; Mistral: 0.8 + all_mask)."""

    stage: ClassVar[str] = "mntp"

    mask_probability: float = 0.2
    all_mask: bool = False
    mask_token: str = "_"

    def __post_init__(self) -> None:
        super().__post_init__()
        _fraction(self, "mask_probability", low_open=True)


@dataclass
class SimCSEConfig(TrainConfig):
    """Unsupervised SimCSE on top of the merged MNTP model: paper defaults."""

    stage: ClassVar[str] = "simcse"

    batch_size: int = 128
    learning_rate: float = 3e-5
    max_length: int = 128
    temperature: float = 0.05
    dropout: float = 0.3
    split_sentences: bool = True
    min_words: int = 3
    matryoshka_dims: list[int] = field(default_factory=list)
    matryoshka_weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        _temperature(self)
        _matryoshka(self)
        _fraction(self, "dropout")
        if self.batch_size < 2:
            raise UsageError("batch_size: in-batch negatives need at least 2 texts per batch")


@dataclass
class SupervisedConfig(TrainConfig):
    """Supervised contrastive learning on (query, positive, negatives) JSONL: paper defaults."""

    stage: ClassVar[str] = "supervised"

    batch_size: int = 64
    learning_rate: float = 2e-4
    warmup_steps: int = 300
    temperature: float = 0.02
    num_negatives: int = 1
    query_instruction: str | None = None
    gather_across_processes: bool = True
    grad_cache_chunk_size: int | None = None
    matryoshka_dims: list[int] = field(default_factory=list)
    matryoshka_weights: list[float] = field(default_factory=list)
    distill_teacher: str | None = None
    distill_weight: float = 1.0
    distill_temperature: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        _temperature(self)
        _matryoshka(self)
        if self.distill_weight < 0:
            raise UsageError(f"distill_weight: must be >= 0, got {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise UsageError(f"distill_temperature: must be > 0 (the teacher's softmax "
                             f"temperature), got {self.distill_temperature}")
        if self.num_negatives < 0:
            raise UsageError(f"num_negatives: must be >= 0, got {self.num_negatives}")
        if self.grad_cache_chunk_size is not None:
            _positive(self, "grad_cache_chunk_size")


STAGES: dict[str, type[TrainConfig]] = {
    "mntp": MNTPConfig, "simcse": SimCSEConfig, "supervised": SupervisedConfig}


def preset_names() -> list[str]:
    return sorted(n.rsplit(".", 1)[0] for n in os.listdir(PRESET_DIR) if n.endswith(".yaml"))


def load_config(stage: str, source: str | os.PathLike | dict | None = None,
                overrides: dict | None = None) -> TrainConfig:
    """A stage's config from a file path, a preset name (``mntp-cpu``) or a dict, then overrides.

    Unknown keys are errors that name the key and suggest the closest valid one.
    """
    if stage not in STAGES:
        raise UsageError(f"Unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    cls = STAGES[stage]
    raw = _read_source(source)
    file_stage = raw.pop("stage", stage)
    if file_stage != stage:
        raise UsageError(f"The config {source!r} is for stage {file_stage!r}, not {stage!r}")
    raw.update(overrides or {})
    known = [f.name for f in fields(cls)]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"Unknown config key {key!r} for stage {stage!r}.{hint}")
    cfg = cls(**raw)
    if isinstance(source, str):  # a preset's measured peak RAM against what is available
        announce_preset_memory(source, cfg.batch_size, cfg.max_length, logger)
    return cfg


def parse_overrides(items: list[str]) -> dict:
    """``["max_steps=10", "data=[a.txt, b.txt]"]`` -> dict, values parsed as YAML scalars/lists."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"Override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise UsageError(f"Override {item!r}: the value is not valid YAML (quote it, or "
                             f"write lists as [a, b])") from None
    return out


def _read_source(source) -> dict:
    if source is None:
        return {}
    if isinstance(source, dict):
        return dict(source)
    path = str(source)
    if not os.path.isfile(path):
        preset = os.path.join(PRESET_DIR, f"{path}.yaml")
        if not os.path.isfile(preset):
            raise FileNotFoundError(f"Config {path!r} is neither a file nor a preset "
                                    f"({', '.join(preset_names())})")
        path = preset
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context_mark", None)
        if context is not None and getattr(err, "context", None):
            what += f" ({err.context} at line {context.line + 1}, column {context.column + 1})"
        raise UsageError(f"{path}: invalid YAML{where}: {what}. Fix the file: it holds one "
                         f"'key: value' per line (lists as [a, b])") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a config holds a mapping of 'key: value' lines, got a "
                         f"{type(raw).__name__}")
    return raw


def _coerce_types(cfg: TrainConfig) -> None:
    """YAML reads ``5e-5`` as a string and ``1`` where a float is meant: fix scalar types."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kinds = str(f.type).split(" | ")
        kind = kinds[0]
        if value is None:
            if "None" not in kinds and f.name not in ("model", "data"):  # those say "required"
                raise UsageError(f"{f.name}: expected {' or '.join(kinds)}, got null")
            continue
        if "list[str]" in kinds:  # a name or a list of names, never a number or a mapping
            items = value if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, (list, tuple)):
                value = list(value)
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    at = f"{f.name}[{i}]" if isinstance(value, list) else f.name
                    raise UsageError(f"{at}: expected a string (str, or a list of them for "
                                     f"{f.name}), got {item!r} ({type(item).__name__})")
            setattr(cfg, f.name, value)
            continue
        if kind == "str":
            if isinstance(value, (bool, int, float)):  # YAML's unquoted scalars
                value = str(value).lower() if isinstance(value, bool) else str(value)
            if not isinstance(value, str):
                raise UsageError(f"{f.name}: expected a string, got {value!r} "
                                 f"({type(value).__name__})")
            setattr(cfg, f.name, value)
            continue
        if kind not in ("int", "float", "bool"):
            continue
        if isinstance(value, (list, dict)):
            raise UsageError(f"{f.name}: expected {kind}, got {value!r}")
        try:
            if kind == "bool" and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            elif kind == "int" and not isinstance(value, bool):
                if float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            elif kind == "float" and not isinstance(value, bool):
                value = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{f.name}: expected {kind}, got {value!r}") from None
        setattr(cfg, f.name, value)


def _positive(cfg: TrainConfig, name: str) -> None:
    value = getattr(cfg, name)
    if value < 1:
        raise UsageError(f"{name}: must be >= 1, got {value}")


def _fraction(cfg: TrainConfig, name: str, low_open: bool = False) -> None:
    value = getattr(cfg, name)
    if not (0 < value < 1 if low_open else 0 <= value < 1):
        raise UsageError(f"{name}: must be in {'(0' if low_open else '[0'}, 1), got {value}")


def _temperature(cfg: TrainConfig) -> None:
    if cfg.temperature <= 0:
        raise UsageError(f"temperature: must be > 0 (scale = 1/temperature), got {cfg.temperature}")


def _matryoshka(cfg: TrainConfig) -> None:
    """``matryoshka_dims``: distinct positive ints, kept largest first (a single int is a list
    of one); ``matryoshka_weights``: one positive number per dim, default all 1."""
    dims, weights = cfg.matryoshka_dims, cfg.matryoshka_weights
    dims = [dims] if isinstance(dims, int) and not isinstance(dims, bool) else dims
    weights = [weights] if isinstance(weights, (int, float)) and not isinstance(weights, bool) \
        else weights
    if not isinstance(dims, (list, tuple)):
        raise UsageError(f"matryoshka_dims: expected a list of integers, got {dims!r}")
    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise UsageError(f"matryoshka_dims[{i}]: expected an integer >= 1, got {d!r}")
    if len(set(dims)) != len(dims):
        raise UsageError(f"matryoshka_dims: each dimension once, got {list(dims)}")
    if not isinstance(weights, (list, tuple)):
        raise UsageError(f"matryoshka_weights: expected a list of numbers, got {weights!r}")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
            raise UsageError(f"matryoshka_weights[{i}]: expected a number > 0, got {w!r}")
    if weights and len(weights) != len(dims):
        raise UsageError(f"matryoshka_weights: one weight per matryoshka_dims entry "
                         f"({len(dims)}), got {len(weights)}; or leave it empty for all 1")
    if weights and not dims:
        raise UsageError("matryoshka_weights given without matryoshka_dims")
    weights = [float(w) for w in weights] or [1.0] * len(dims)
    order = sorted(range(len(dims)), key=lambda i: -dims[i])
    cfg.matryoshka_dims = [dims[i] for i in order]
    cfg.matryoshka_weights = [weights[i] for i in order] if dims else []
