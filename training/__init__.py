"""llm2vec_rag.training: the LLM2Vec stages (MNTP, SimCSE, supervised) on the Trainer, and
adapter soups (``soup_adapters``: supervised runs summed with weights into one adapter).

```python
from llm2vec_rag.training import load_config, train_mntp, train_simcse
mntp = train_mntp(load_config("mntp", "mntp-cpu", {"model": "smol.gguf", "data": ["a.txt"]}))
simcse = train_simcse(load_config("simcse", "simcse-cpu", {"model": "smol.gguf",
                                                           "adapters": [mntp], "data": ["a.txt"]}))
```

Imports are lazy: the CLI registers ``train``/``eval`` without loading torch.
"""

from __future__ import annotations

import importlib

__all__ = ["MNTPConfig", "SimCSEConfig", "SupervisedConfig", "load_config", "train_mntp",
           "train_simcse", "train_supervised", "soup_adapters", "lee_spearman"]

_LAZY = {"MNTPConfig": ".config", "SimCSEConfig": ".config", "SupervisedConfig": ".config",
         "load_config": ".config", "train_mntp": ".mntp", "train_simcse": ".simcse",
         "train_supervised": ".supervised", "soup_adapters": ".soup",
         "lee_spearman": ".evaluate"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'llm2vec_rag.training' has no attribute {name!r}")
