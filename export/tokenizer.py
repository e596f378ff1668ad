"""A torch-free tokenizer for serving: ``tokenizers.Tokenizer`` plus the special-token ids.

``transformers.AutoTokenizer`` imports torch (transformers 5), which a serving box running
ONNX Runtime should not need. This wrapper reads the ``tokenizer.json`` that
``save_pretrained`` wrote (the exact pipeline transformers runs) and the special tokens from
``tokenizer_config.json`` / ``special_tokens_map.json``, and offers what ``Preprocessor`` uses.
The export checks that it gives the same ids as the transformers tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Tokenizer

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_json_object

TOKENIZER_FILE = "tokenizer.json"
REEXPORT = ("Re-export the folder (llm2vec-rag export onnx ... --overwrite), or copy the "
            "model's tokenizer files into it")
_CONFIG_FILES = ("special_tokens_map.json", "tokenizer_config.json")  # later ones win


class FastTokenizer:
    """``__call__(texts, add_special_tokens)`` -> ``{"input_ids": [[...]]}`` and token ids."""

    def __init__(self, tokenizer: Tokenizer, eos_token: str | None = None,
                 pad_token: str | None = None, bos_token: str | None = None) -> None:
        self.backend = tokenizer
        self.backend.no_truncation()  # the Preprocessor truncates, keeping the instruction
        self.backend.no_padding()  # and pads, per batch
        self.eos_token, self.bos_token = eos_token, bos_token
        self.pad_token = pad_token if pad_token is not None else eos_token
        self.eos_token_id = self._id(eos_token)
        self.bos_token_id = self._id(bos_token)
        self.pad_token_id = self._id(self.pad_token)

    def _id(self, token: str | None) -> int | None:
        if token is None:
            return None
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise UsageError(f"Special token {token!r} is not in the tokenizer's vocabulary.")
        return token_id

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> FastTokenizer:
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} has no {TOKENIZER_FILE}: the exported folder is incomplete. "
                "Re-export it with `llm2vec-rag export onnx`, or copy the model's tokenizer "
                "files (tokenizer.json, tokenizer_config.json) into it."
            )
        specials: dict[str, str | None] = {}
        for name in _CONFIG_FILES:
            if (folder / name).is_file():
                raw = read_json_object(folder / name, REEXPORT)
                for key in ("eos_token", "pad_token", "bos_token"):
                    if key in raw:
                        specials[key] = _content(raw[key])
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception
            raise UsageError(f"{path}: not a readable tokenizer file, it is truncated or corrupt "
                             f"({err}). {REEXPORT}.") from None
        return cls(backend, **specials)

    def __call__(self, texts: str | list[str], add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False, **unused) -> dict[str, list]:
        """Ids (and, when asked, each token's character span), as transformers returns them."""
        if isinstance(texts, str):
            one = self.backend.encode(texts, add_special_tokens=add_special_tokens)
            out = {"input_ids": one.ids}
            if return_offsets_mapping:
                out["offset_mapping"] = list(one.offsets)
            return out
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        out = {"input_ids": [e.ids for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [list(e.offsets) for e in encodings]
        return out

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)


def _content(token: object) -> str | None:
    """Tokens are saved as strings or as AddedToken dicts ``{"content": ...}``."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def check_same_ids(folder: str | os.PathLike, reference, texts: list[str]) -> None:
    """Fail the export if the torch-free tokenizer would tokenize differently at serving time."""
    ours = FastTokenizer.from_pretrained(folder)
    for name in ("eos_token_id", "pad_token_id"):
        if getattr(ours, name) != getattr(reference, name):
            raise UsageError(
                f"The saved tokenizer's {name} is {getattr(ours, name)}, the model's is "
                f"{getattr(reference, name)}: the serving tokenizer would differ.")
    for special in (True, False):
        got = ours(texts, add_special_tokens=special)["input_ids"]
        want = [list(ids) for ids in reference(texts, add_special_tokens=special)["input_ids"]]
        if got != want:
            bad = next(t for t, g, w in zip(texts, got, want) if g != w)
            raise UsageError(
                f"tokenizer.json alone tokenizes {bad!r} differently from the model's "
                f"transformers tokenizer (add_special_tokens={special}); this tokenizer "
                "class adds Python-side logic the torch-free runtime cannot reproduce.")
