"""The one encode path shared by the PyTorch and ONNX Runtime encoders.

Everything except the forward pass lives here: input checks, tokenization with the
instruction mask, length-sorted batching, order restoration, normalisation, progress.
Subclasses implement ``forward_batch`` (a padded batch -> float32 [B, D]) and, for token
embeddings and late chunking, ``forward_tokens`` (-> the last hidden states, float32 [B, T, D]).
This module imports neither its subclasses nor the worker pool: ``MultiProcessMixin``
(``pool``) adds ``start_multi_process_pool`` to the concrete encoders.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from . import late_chunking
from .config import EncoderConfig
from .errors import UsageError
from .preprocess import (
    Batch,
    Encoded,
    Preprocessor,
    check_batching,
    check_count,
    check_inputs,
    check_instruction,
    text_tokens,
)
from .quantize import check_output_options, finish, normalize_rows, truncation_warning
from .similarity import similarity, similarity_pairwise
from .spec import EncoderSpec

if TYPE_CHECKING:
    from .pool import EncodePool

PROGRESS_MIN_TEXTS = 256  # below this, a progress bar is noise
# Padded tokens per batch by default. On CPU, time is linear in padded tokens, so a budget
# bounds padding (batches of similar lengths, as many rows as fit) and keeps matmuls big
# enough: 2048 measured best on 2 cores (benchmarks/results/issue10/NOTES.md, "Token
# budget"). On a GPU, bigger batches fill the device: 16384 (unmeasured; LLM2Vec derives it
# from free memory).
CPU_MAX_BATCH_TOKENS = 2048
GPU_MAX_BATCH_TOKENS = 16384
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")  # sentence-transformers' names


class BaseEncoder:
    """Subclasses set ``tokenizer``, ``config`` and ``dim`` and implement ``forward_batch``."""

    tokenizer: object
    config: EncoderConfig
    dim: int
    # What the vectors come from (model, adapters, attention), so that a store can tell two
    # encoders of the same dimension apart and re-embed instead of mixing their vectors.
    source: str = ""
    # How another process builds this same encoder (None when it was built from objects in
    # memory rather than by name: then it cannot be rebuilt elsewhere).
    spec: EncoderSpec | None = None
    # model.similarity's function (sentence-transformers' names): cosine, dot, euclidean,
    # manhattan.
    similarity_fn_name: str = "cosine"
    # The default token budget of encode(); subclasses pick it for their device.
    max_batch_tokens: int | None = CPU_MAX_BATCH_TOKENS

    def _init_preprocessor(self, padding_side: str = "left") -> None:
        # One call at a time: fast tokenizers and some runtimes are not safe to call from
        # several threads at once (async frameworks, the indexer's executor).
        self._lock = threading.Lock()
        self._padding_side = padding_side
        self._applied: tuple | None = None
        self._sync_config()

    @property
    def preprocessor(self) -> Preprocessor:
        """Tokenization and batching for the config as it is now (see ``_sync_config``)."""
        self._sync_config()
        return self._preprocessor

    def encoding_settings(self) -> tuple[int, str]:
        """``(max_length, pooling)`` as configured now: what a pool's workers must share."""
        return self.config.max_length, self.config.pooling

    def _sync_config(self) -> None:
        """Apply ``config.max_length`` / ``config.pooling`` if they changed since the last call
        (``model.config.pooling = "eos"`` after loading takes effect on the next encode)."""
        settings = self.encoding_settings()
        if settings == self._applied:
            return
        max_length, pooling = settings
        self._apply_pooling(pooling)  # may refuse (ONNX: pooling is inside the graph)
        self._preprocessor = Preprocessor(self.tokenizer, max_length,
                                          append_eos=pooling == "eos",
                                          padding_side=self._padding_side)
        self._applied = settings

    def _apply_pooling(self, pooling: str) -> None:
        """Subclasses make their forward pass use ``pooling`` or raise if they cannot."""

    def forward_batch(self, batch: Batch) -> np.ndarray:
        """One padded batch (``Preprocessor.batches``) -> float32 ``[B, D]`` pooled vectors,
        not normalised: the only step the PyTorch and ONNX Runtime encoders do differently.
        Exporters and benchmarks call it to compare engines on the same batches."""
        raise NotImplementedError

    def _forward_batch(self, batch: Batch) -> np.ndarray:
        """Deprecated name of ``forward_batch``."""
        return self.forward_batch(batch)

    def forward_tokens(self, batch: Batch) -> np.ndarray:
        """One padded batch -> float32 ``[B, T, D]`` last hidden states, the states pooling
        reads: token embeddings and late chunking select from them (``text_tokens``)."""
        raise NotImplementedError(f"{type(self).__name__} has no token outputs")

    def encode(
        self,
        texts: str | list[str],
        instruction: str | list[str] | None = None,
        batch_size: int = 32,
        normalize: bool = False,
        show_progress: bool | None = None,
        max_batch_tokens: int | None = None,
        precision: str = "float32",
        truncate_dim: int | None = None,
        ranges: np.ndarray | None = None,
        pool: EncodePool | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        output_value: str = "sentence_embedding",
        return_offsets: bool = False,
    ) -> np.ndarray | list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """Vectors for ``texts`` as float32 ``(n, dim)``, in input order.

        The instruction is attended to but not pooled; a list gives one instruction per text
        (what a server merging requests needs). ``show_progress=None`` shows a bar
        only for long inputs. A batch holds at most ``batch_size`` texts and at most
        ``max_batch_tokens`` padded tokens (default: ``self.max_batch_tokens``, chosen for the
        device; one text longer than the budget still forms its own batch).
        Empty strings are valid: the vector then pools the special tokens and instruction.
        ``truncate_dim`` / ``precision`` (int8, uint8, binary, ubinary; int8 ranges from
        ``ranges`` or this batch) are sentence-transformers' (``llm2vec_rag.quantize``).
        ``pool`` (from ``start_multi_process_pool``) spreads the work over its workers.
        ``prompt_name`` ("query", "document" or a key of ``config.prompts``) / ``prompt``
        are sentence-transformers' names for an instruction (joined with one space, as
        LLM2Vec does, and not pooled). Texts may also be llm2vec 0.2.3's
        ``[[instruction, text], ...]`` pairs.

        ``output_value="token_embeddings"`` returns instead, per text, a float32
        ``(n_tokens, dim)`` array of the text's own tokens (never the instruction, BOS, an
        appended EOS or padding; an empty text has none), truncated as above; ``normalize``
        normalises each token vector; ``precision`` must stay float32. For mean pooling a
        text's token vectors average to its sentence vector. ``return_offsets=True`` then
        returns ``(token_arrays, offsets)``, ``offsets[i]`` an int64 ``(n_tokens, 2)`` array of
        each token's character ``(start, end)`` in ``texts[i]``.
        """
        instruction = self._resolve_prompt(instruction, prompt_name, prompt)
        texts, instruction = check_inputs(texts, instruction)
        batch_size, max_batch_tokens = check_batching(batch_size, max_batch_tokens)
        check_output_options(precision, truncate_dim, self.dim)
        self._warn_truncation(truncate_dim)
        if output_value not in OUTPUT_VALUES:
            raise UsageError(f"output_value must be one of {OUTPUT_VALUES}, got "
                             f"{output_value!r}")
        if return_offsets and output_value != "token_embeddings":
            raise UsageError("return_offsets=True needs output_value='token_embeddings' "
                             "(offsets are per token)")
        self._check_pool(pool)
        if output_value == "token_embeddings":
            if precision != "float32":
                raise UsageError(f"precision={precision!r} applies to sentence vectors; "
                                 "token embeddings are float32")
            return self._encode_tokens(texts, instruction, batch_size, max_batch_tokens,
                                       show_progress, normalize, truncate_dim, pool,
                                       return_offsets)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if texts and pool is not None and len(texts) >= pool.min_texts:
            out = pool.encode(texts, instruction, batch_size=batch_size,
                              max_batch_tokens=max_batch_tokens)
        elif texts:
            with self._lock:
                self._encode_into(out, texts, instruction, batch_size, show_progress,
                                  max_batch_tokens)
        return finish(out, normalize, truncate_dim, precision, ranges)

    def _warn_truncation(self, truncate_dim: int | None) -> None:
        """Warn once per encoder and message when ``truncate_dim`` is below what it was
        trained for (``config.matryoshka_dims``)."""
        message = truncation_warning(truncate_dim, self.dim,
                                     getattr(self.config, "matryoshka_dims", None))
        warned = self.__dict__.setdefault("_truncation_warned", set())
        if message and message not in warned:
            warned.add(message)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _check_pool(self, pool: EncodePool | None) -> None:
        if pool is not None and getattr(pool, "settings", None) not in (
                None, self.encoding_settings()):
            raise UsageError(
                f"model.config changed (max_length, pooling: {pool.settings} -> "
                f"{self.encoding_settings()}) after this pool started, and its workers still "
                "use the old settings: stop it and start a new one (start_multi_process_pool)")

    def _encode_tokens(self, texts: list[str], instruction: str | list[str], batch_size: int,
                       max_batch_tokens: int | None, show_progress: bool | None,
                       normalize: bool, truncate_dim: int | None, pool: EncodePool | None,
                       return_offsets: bool):
        """``encode(..., output_value="token_embeddings")``: same batches, one selection."""
        with self._lock:
            encoded = self.preprocessor.encode(texts, instruction, offsets=return_offsets)
        if texts and pool is not None and len(texts) >= pool.min_texts:
            tokens = pool.encode(texts, instruction, batch_size=batch_size,
                                 max_batch_tokens=max_batch_tokens,
                                 output_value="token_embeddings")
        else:
            tokens: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
            with self._lock:
                self._warn_truncated(encoded)
                for batch, hidden in self._run_batches(encoded, self.forward_tokens,
                                                       batch_size, show_progress,
                                                       max_batch_tokens):
                    for row, i in enumerate(batch.index):
                        if not encoded[i].empty:
                            tokens[i] = text_tokens(hidden[row], batch.embed_mask[row])
        if truncate_dim is not None:
            tokens = [np.ascontiguousarray(t[:, :truncate_dim]) for t in tokens]
        if normalize:
            tokens = [normalize_rows(t) for t in tokens]
        if return_offsets:
            return tokens, [e.offsets for e in encoded]
        return tokens

    def encode_chunks(
        self,
        documents: str | list[str],
        spans: Sequence[tuple[int, int]] | Sequence[Sequence[tuple[int, int]]],
        instruction: str | None = None,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        normalize: bool = False,
        window_overlap: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Late chunking: one vector per character span ``(start, end)`` of a document, pooled
        from a forward pass over the whole document (``llm2vec_rag.late_chunking`` has the
        rules: tokens of a span, eos/last/bos, and the windows that cover a document longer
        than ``max_length``, overlapping by ``window_overlap`` text tokens, default a quarter
        of a window). One document and its spans give a float32 ``(len(spans), dim)`` array;
        a list of documents and a list of span lists give a list of such arrays. A span
        covering a whole text equals ``encode(text, instruction=instruction)``.
        """
        single = isinstance(documents, str)
        docs, checked, where = late_chunking.check_request(documents, spans, window_overlap)
        instruction = check_instruction(instruction)
        batch_size, max_batch_tokens = check_batching(batch_size, max_batch_tokens)
        out = [np.zeros((len(s), self.dim), np.float32) for s in checked]
        todo = [d for d, s in enumerate(checked) if s]  # documents without spans cost nothing
        with self._lock:
            encoded = self.preprocessor.encode([docs[d] for d in todo], instruction,
                                               offsets=True, truncate=False)
            windows = late_chunking.Windows(encoded, self.config.max_length, window_overlap)
            for batch, hidden in self._run_batches(windows.rows, self.forward_tokens,
                                                   batch_size, show_progress, max_batch_tokens):
                windows.keep(batch, hidden)
        for k, d in enumerate(todo):
            out[d] = windows.chunk_vectors(k, checked[d], self.config.pooling, where[d])
        if normalize:
            out = [normalize_rows(o) for o in out]
        return out[0] if single else out

    def _resolve_prompt(self, instruction, prompt_name: str | None, prompt: str | None):
        given = [n for n, v in (("instruction", instruction), ("prompt_name", prompt_name),
                                ("prompt", prompt)) if v is not None]
        if len(given) > 1:
            raise UsageError(f"{' and '.join(given)} were both given: they name the same "
                             "thing (the text before each input); pass one")
        if prompt_name is not None:
            return self.config.prompt(prompt_name)
        return prompt if prompt is not None else instruction

    @property
    def prompts(self) -> dict[str, str]:
        """Named instructions, as sentence-transformers' ``model.prompts``."""
        return self.config.all_prompts()

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(n, m)`` scores of every row of ``a`` against every row of ``b`` with
        ``similarity_fn_name`` (sentence-transformers' ``model.similarity``, as NumPy)."""
        return similarity(a, b, self.similarity_fn_name)

    def similarity_pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(n,)`` scores of ``a[i]`` against ``b[i]``."""
        return similarity_pairwise(a, b, self.similarity_fn_name)

    def count_tokens(self, texts: str | list[str],
                     instruction: str | list[str] | None = None) -> list[int]:
        """Tokens each text takes before truncation, instruction and special tokens included:
        what a server bills (``usage``) and budgets batches with; above
        ``config.max_length`` a text is truncated by ``encode``."""
        texts, instruction = check_inputs(texts, instruction)
        with self._lock:
            return self.preprocessor.count(texts, instruction)

    def tokenize(self, texts: str | list[str],
                 instruction: str | list[str] | None = None) -> list[Encoded]:
        """Token ids and text spans exactly as ``encode`` builds them (truncated to
        ``config.max_length``; ``Encoded.tokens`` is the length before the cut), for callers
        that inspect inputs before encoding them, such as the server's batcher: hand the rows
        to ``encode_tokenized`` so nothing is tokenized twice."""
        texts, instruction = check_inputs(texts, instruction)
        with self._lock:
            return self.preprocessor.encode(texts, instruction)

    def encode_tokenized(self, encoded: list[Encoded], batch_size: int = 32,
                         max_batch_tokens: int | None = None) -> np.ndarray:
        """Float32 ``(n, dim)`` vectors for rows from ``tokenize``, in their order: the same
        batching and forward pass as ``encode`` (no truncation warning: the caller saw
        ``Encoded.truncated``)."""
        batch_size, max_batch_tokens = check_batching(batch_size, max_batch_tokens)
        out = np.zeros((len(encoded), self.dim), dtype=np.float32)
        if encoded:
            with self._lock:
                self._forward_encoded(out, encoded, batch_size, False, max_batch_tokens)
        return out

    def _encode_into(self, out: np.ndarray, texts: list[str], instruction: str | list[str],
                     batch_size: int, show_progress: bool | None,
                     max_batch_tokens: int | None) -> None:
        encoded = self.preprocessor.encode(texts, instruction)
        self._warn_truncated(encoded)
        self._forward_encoded(out, encoded, batch_size, show_progress, max_batch_tokens)

    def _forward_encoded(self, out: np.ndarray, encoded: list[Encoded], batch_size: int,
                         show_progress: bool | None, max_batch_tokens: int | None) -> None:
        for batch, vectors in self._run_batches(encoded, self.forward_batch, batch_size,
                                                show_progress, max_batch_tokens):
            out[batch.index] = vectors

    def _warn_truncated(self, encoded: list) -> None:
        truncated = sum(e.truncated for e in encoded)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(encoded)} texts exceed max_length="
                f"{self.config.max_length} tokens and were truncated.", stacklevel=4)

    def _run_batches(self, encoded: list, forward, batch_size: int,
                     show_progress: bool | None, max_batch_tokens: int | None):
        """Length-sorted batches of ``encoded`` through ``forward``, with the progress bar."""
        if show_progress is None:
            show_progress = len(encoded) >= PROGRESS_MIN_TEXTS
        if max_batch_tokens is None:
            max_batch_tokens = self.max_batch_tokens
        with tqdm(total=len(encoded), disable=not show_progress, desc="encode",
                  unit="text") as bar:
            for batch in self.preprocessor.batches(encoded, batch_size, max_batch_tokens):
                yield batch, forward(batch)
                bar.update(len(batch.index))

    def max_text_tokens(self, instruction: str | None = None) -> int:
        """How many tokens of text fit after the special tokens (BOS/EOS, the appended EOS of
        eos pooling) and ``instruction``: longer texts are truncated. Chunkers size by it."""
        with self._lock:
            return self.preprocessor.text_budget(check_instruction(instruction))

    def encode_iter(self, texts: Iterable[str], chunk_size: int = 1024,
                    **encode_kwargs) -> Iterator[np.ndarray]:
        """Stream: one ``(<=chunk_size, dim)`` array per chunk, memory flat in the stream size."""
        if isinstance(texts, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"encode_iter expects an iterable of strings, not one "
                            f"{type(texts).__name__}: wrap it in a list, or use encode()")
        chunk_size = check_count("chunk_size", chunk_size)  # now, not at the first next()
        return self._encode_chunks(iter(texts), chunk_size, encode_kwargs)

    def _encode_chunks(self, it: Iterator[str], chunk_size: int,
                       encode_kwargs: dict) -> Iterator[np.ndarray]:
        while chunk := list(itertools.islice(it, chunk_size)):
            yield self.encode(chunk, **encode_kwargs)

    def encode_queries(self, queries: str | list[str], instruction: str | None = None,
                       **encode_kwargs) -> np.ndarray:
        """Queries get the configured query instruction unless one (or a prompt) is given."""
        if instruction is None and not _names_prompt(encode_kwargs):
            instruction = self.config.query_instruction
        return self.encode(queries, instruction=instruction, **encode_kwargs)

    def encode_documents(self, documents: str | list[str], instruction: str | None = None,
                         **encode_kwargs) -> np.ndarray:
        """Documents get no instruction by default, as LLM2Vec models were trained."""
        if instruction is None and not _names_prompt(encode_kwargs):
            instruction = self.config.document_instruction
        return self.encode(documents, instruction=instruction, **encode_kwargs)


def _names_prompt(encode_kwargs: dict) -> bool:
    return encode_kwargs.get("prompt_name") is not None or encode_kwargs.get("prompt") is not None
