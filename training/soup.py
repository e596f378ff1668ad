"""Adapter soup: several LoRA adapters trained from the same model, summed with weights into one
adapter (weight-space ensembling: Wortsman et al., 2022, "Model soups"; "Robust fine-tuning of
zero-shot models", WiSE-FT).

Why: two supervised runs from the same MNTP + SimCSE model learn different things (one keeps
document similarity, the other retrieves far better); a weighted sum of their weight changes
keeps most of both, at no training cost. A weight below 1 on a single adapter moves part of
the way back to the model it started from (WiSE-FT). The ingredients must have been trained
on the same model (the same base and the same adapters merged before them): their weight
changes are then deltas of one set of weights and add up.

The sum is exact: PEFT's ``add_weighted_adapter`` with ``combination_type="cat"`` stacks the
ingredients' LoRA factors (rank = the sum of their ranks), so applying the soup equals merging
every ingredient with its LoRA scale multiplied by its weight.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llm2vec_rag.config import CONFIG_NAME, EncoderConfig
from llm2vec_rag.errors import UsageError
from llm2vec_rag.loading import adapter_base, check_adapter_source, quiet_peft_warnings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SOUP_RECORD = "soup.json"
_SOUP = "default"  # PEFT saves the adapter named "default" at the folder's top level


def soup_adapters(model: PreTrainedModel, adapters: Sequence[str], weights: Sequence[float] | None,
                  output_dir: str, adapter_dtype: str = "float32", overwrite: bool = False) -> str:
    """Write to ``output_dir`` one LoRA adapter whose weight change is the sum of
    ``weights[i]`` x the weight change of ``adapters[i]`` (default weights: 1/n each, the
    uniform soup). ``model`` is the model they were all trained on (its adapters merged).

    The encoder settings (``llm2vec_config.json``: pooling, instructions) are the ingredients'
    own and must agree; ``soup.json`` records the ingredients and their weights. An
    ``output_dir`` that already holds an adapter is refused unless ``overwrite``; one of the
    ingredients never is written over."""
    from peft import PeftModel

    from .trainer import cast_adapter

    adapters, weights, settings, base = check_ingredients(adapters, weights, output_dir,
                                                          overwrite)
    names = [f"ingredient{i}" for i in range(len(adapters))]
    with quiet_peft_warnings():
        peft_model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for name, adapter in zip(names[1:], adapters[1:]):
            peft_model.load_adapter(adapter, adapter_name=name)
    peft_model.add_weighted_adapter(names, weights, _SOUP, combination_type="cat")
    peft_model.set_adapter(_SOUP)
    for name in names:
        peft_model.delete_adapter(name)
    config = peft_model.peft_config[_SOUP]
    config.base_model_name_or_path, config.inference_mode = base, True
    os.makedirs(output_dir, exist_ok=True)
    # LoRA only (no embedding layers), so PEFT need not look the base model up on the hub
    peft_model.save_pretrained(output_dir, selected_adapters=[_SOUP], save_embedding_layers=False)

    cast_adapter(output_dir, adapter_dtype)
    if settings:
        EncoderConfig(**settings).save(output_dir)
    with open(os.path.join(output_dir, SOUP_RECORD), "w", encoding="utf-8") as f:
        json.dump({"combination": "cat", "adapter_dtype": adapter_dtype,
                   "adapters": [{"path": a, "weight": w} for a, w in zip(adapters, weights)]},
                  f, indent=2)
    return output_dir


def check_ingredients(adapters: Sequence[str], weights: Sequence[float] | None,
                      output_dir: str | None = None, overwrite: bool = False
                      ) -> tuple[list[str], list[float], dict, str | None]:
    """The adapters, their weights (default 1/n each), their common encoder settings and base
    model, or a clear error before any model is loaded or anything written (also for an
    ``output_dir`` that is an ingredient, or holds an adapter and ``overwrite`` is off)."""
    adapters = [str(a) for a in adapters]
    if not adapters:
        raise UsageError("soup: name at least one adapter folder")
    weights = [1.0 / len(adapters)] * len(adapters) if weights is None else list(weights)
    if len(weights) != len(adapters):
        raise UsageError(f"soup: {len(weights)} weights for {len(adapters)} adapters; give one "
                         "weight per adapter, in the same order (or none for equal weights)")
    for i, (adapter, weight) in enumerate(zip(adapters, weights), 1):
        if not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise UsageError(f"soup: weight {i} ({weight!r}, for {adapter}) is not a finite "
                             "number; give each adapter a real weight such as 0.5")
    if output_dir is not None:
        check_output(str(output_dir), adapters, overwrite)
    for adapter in adapters:
        check_adapter_source(adapter)
    settings = _common_settings(adapters)
    bases = {adapter_base(a) for a in adapters}
    if len(bases) > 1:
        raise UsageError(f"soup: the adapters were trained on different base models "
                         f"({', '.join(sorted(map(str, bases)))}); a soup only adds weight "
                         "changes of one model. Soup adapters trained from the same model.")
    return adapters, [float(w) for w in weights], settings, bases.pop()


def check_output(output_dir: str, adapters: Sequence[str], overwrite: bool) -> None:
    """Never write the soup over one of its ingredients; over another adapter only when asked."""
    for adapter in adapters:
        if os.path.isdir(adapter) and os.path.isdir(output_dir) \
                and os.path.samefile(adapter, output_dir):
            raise UsageError(f"soup: the output folder {output_dir} is the ingredient "
                             f"{adapter}; writing there would replace it. Choose another "
                             "output folder (-o).")
    existing = os.path.join(output_dir, "adapter_config.json")
    if os.path.isfile(existing) and not overwrite:
        raise UsageError(f"soup: {output_dir} already holds an adapter ({existing}); choose "
                         "another output folder (-o), or pass --overwrite (overwrite=True) "
                         "to replace it")


def _common_settings(adapters: list[str]) -> dict:
    """The ingredients' encoder settings (pooling, instructions): one soup, one way to encode."""
    settings = [EncoderConfig.read_dict(a) for a in adapters]
    for adapter, other in zip(adapters[1:], settings[1:]):
        if other != settings[0]:
            differ = sorted(k for k in {*settings[0], *other}
                            if settings[0].get(k) != other.get(k))
            raise UsageError(f"soup: {adapter}/{CONFIG_NAME} and {adapters[0]}/{CONFIG_NAME} "
                             f"disagree on {', '.join(differ)}; make them the same (the soup "
                             "is encoded one way)")
    return settings[0]
