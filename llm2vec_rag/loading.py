"""Loading a base model (hub id, folder or GGUF file), made bidirectional, plus LoRA adapters.

The published McGill-NLP layout is a ``-mntp`` repo holding an adapter (and config) whose
``adapter_config.json`` names the real base model; a second adapter (SimCSE or supervised)
goes on top. Adapters are merged one by one, each before the next is applied, exactly as
they were trained.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import re
import warnings

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModel, GgufConfig, PreTrainedModel
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from .bidirectional import is_bidirectional, make_bidirectional
from .errors import SetupError, UsageError
from .files import read_json_object, safetensors_error, unreadable_model

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
HUB_PROBE_TIMEOUT_S = 5.0


def resolve_source(name_or_path: str, gguf_file: str | None,
                   **hub_kwargs) -> tuple[str, str | None]:
    """Accept a path to a .gguf file directly; fail early and clearly on missing folders
    and, for a hub id, on a hub that cannot be reached (instead of a minute of retries)."""
    name_or_path = os.path.expanduser(str(name_or_path))
    if name_or_path.endswith(".gguf") and os.path.isfile(name_or_path) and gguf_file is None:
        return os.path.dirname(os.path.abspath(name_or_path)), os.path.basename(name_or_path)
    if looks_local(name_or_path) and not os.path.isdir(name_or_path):
        raise FileNotFoundError(
            f"Model folder {name_or_path!r} does not exist. Pass an existing folder that holds "
            "config.json (or a .gguf file), or a Hugging Face hub id such as "
            "'McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp'."
        )
    if gguf_file is not None and not os.path.isfile(os.path.join(name_or_path, gguf_file)) \
            and os.path.isdir(name_or_path):
        raise FileNotFoundError(f"GGUF file {gguf_file!r} not found in {name_or_path!r}.")
    if gguf_file is None and os.path.isdir(name_or_path):
        check_model_folder(name_or_path)
    check_hub_source(name_or_path, "model", **hub_kwargs)
    return name_or_path, gguf_file


# Any one of these is a tokenizer transformers can load (fast, sentencepiece, BPE, tiktoken).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json",
                    "vocab.txt", "spiece.model", "tiktoken.model")


def check_model_folder(folder: str) -> None:
    """Fail in one line, naming the files expected, when ``folder`` is not a model folder
    (transformers would blame a missing sentencepiece instead)."""
    names = set(os.listdir(folder))
    if "adapter_config.json" in names:
        return  # a LoRA adapter folder: its base is named inside
    ggufs = sorted(n for n in names if n.endswith(".gguf"))
    if "config.json" not in names:
        hint = (f" It holds {ggufs[0]!r}: pass that file's path (or gguf_file=)." if ggufs
                else "")
        raise FileNotFoundError(
            f"{folder!r} is not a model folder: it holds no config.json (a transformers "
            f"model, with its tokenizer files) and no adapter_config.json (a LoRA adapter).{hint}"
            " Pass the folder written by save_pretrained or training, a .gguf file, or a hub id.")
    if not names.intersection(_TOKENIZER_FILES) and not any(n.endswith(".tiktoken")
                                                            for n in names):
        raise FileNotFoundError(
            f"{folder!r} holds config.json but no tokenizer (expected one of "
            f"{', '.join(_TOKENIZER_FILES)}): copy the tokenizer files of the model it came "
            "from into it (tokenizer.save_pretrained(folder)).")


def looks_local(name: str) -> bool:
    """A name that can only mean a local path: ./x, ../x, /x, ~/x, a/b/c, or a/b where the
    folder a exists here (a typo in a path, not a hub id)."""
    if name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        return True
    head, sep, _ = name.partition("/")
    return bool(sep) and os.path.isdir(head)


def check_hub_source(name: str, what: str, **hub_kwargs) -> None:
    """For a hub id that is neither a local folder nor in the local HF cache: one quick probe
    of the hub, so an unreachable hub fails at once in one line (huggingface_hub would
    retry for over a minute, logging every attempt)."""
    from huggingface_hub import constants

    if os.path.isdir(name) or hub_kwargs.get("local_files_only") or constants.HF_HUB_OFFLINE:
        return
    cache = hub_kwargs.get("cache_dir") or constants.HF_HUB_CACHE
    if os.path.isdir(os.path.join(str(cache), "models--" + name.replace("/", "--"))):
        return  # cached: huggingface_hub falls back to the cache without retrying
    endpoint = hub_kwargs.get("endpoint") or constants.ENDPOINT
    problem = _hub_unreachable(endpoint)
    if problem:
        raise OSError(
            f"{what} {name!r} is neither a local folder nor reachable on the Hugging Face hub "
            f"({endpoint}: {problem}). Check the path (a local folder must exist; write "
            f"./{name} to mean one), or the network; with HF_HUB_OFFLINE=1 models already in "
            f"the local HF cache load without the network.")


def network_errors() -> tuple[type[BaseException], ...]:
    """The errors a failed hub request raises, from whichever HTTP stack huggingface_hub uses:
    httpx (huggingface_hub 1.x), httpx2 (2.x), requests (0.x), plus OSError (sockets,
    huggingface_hub's own OfflineModeIsEnabled). Built from what is importable, so the next
    switch of HTTP library is caught as long as one of these names stays."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"),
                         ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


@functools.lru_cache(maxsize=8)
def _hub_unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` does not answer (a few seconds at most), or None when it does."""
    from huggingface_hub import get_session

    try:
        get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT_S)
    except network_errors() as err:
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def base_names(source: str, gguf_file: str | None) -> list[str]:
    """The names an adapter may record for this base: the folder/hub id, or the .gguf path."""
    return [source] + ([os.path.join(source, gguf_file)] if gguf_file else [])


def find_file(name_or_path: str, filename: str, **hub_kwargs) -> str | None:
    """Local path of ``filename`` in a folder or hub repo, or None when the repo lacks it."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    try:
        return cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **hub_kwargs)
    except OSError:
        return None


def adapter_base(name_or_path: str, **hub_kwargs) -> str | None:
    """The base model an adapter folder was trained on, or None if it is not an adapter."""
    path = find_file(name_or_path, "adapter_config.json", **hub_kwargs)
    if path is None:
        return None
    return read_json_object(path, "Restore the adapter's adapter_config.json (it is written by "
                                  "training / PEFT's save_pretrained)").get(
        "base_model_name_or_path")


def load_model(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    enable_bidirectional: bool = True,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    **hub_kwargs,
) -> PreTrainedModel:
    """The bare decoder (no LM head) returning ``last_hidden_state``, non-causal when asked."""
    where = os.path.join(name_or_path, gguf_file) if gguf_file else name_or_path
    try:
        config = AutoConfig.from_pretrained(name_or_path, gguf_file=gguf_file,
                                            trust_remote_code=trust_remote_code, **hub_kwargs)
    except ValueError as err:  # transformers' word for a config (or GGUF header) it can't use
        raise unreadable_model(where, "config", err) from err
    set_attention(config, enable_bidirectional)
    kwargs = dict(config=config, gguf_file=gguf_file, trust_remote_code=trust_remote_code,
                  **hub_kwargs)
    if gguf_file is not None:  # plain float weights: trainable, mergeable, saveable
        kwargs["quantization_config"] = GgufConfig(gguf_file=gguf_file, dequantize=True)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with quiet_transformers():  # the LM head is unused, its "unexpected key" report is noise
        try:
            model, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True,
                                                    **kwargs)
        except SafetensorError as err:
            raise safetensors_error(name_or_path, err) from None
        except RuntimeError as err:
            if "mismatched" not in str(err):  # not transformers' "weights of other shapes"
                raise
            raise unreadable_model(where, "weights", "some tensors have other shapes than its "
                                   "config.json says") from err
    if model.config.is_encoder_decoder:
        raise UsageError(f"{name_or_path!r} is not a decoder-only language model.")
    missing = info.get("missing_keys") or []
    if missing:
        raise UsageError(
            f"{name_or_path!r} lacks weights for {len(missing)} parameters "
            f"(e.g. {sorted(missing)[:3]}): they would be random. Check that the folder holds "
            "the full model, not only an adapter or a different architecture."
        )
    return model


def set_attention(config, bidirectional: bool) -> None:
    """Non-causal (``make_bidirectional``) or explicitly causal attention on ``config``."""
    if bidirectional:
        make_bidirectional(config)
    else:
        config.is_causal = True


SAVED_WEIGHTS = "model.safetensors"  # what save_pretrained writes for a model of one shard
# Bytes: where torch's CPU allocator puts a tensor. The CPU matmul kernels can round some
# rows differently for weights that start elsewhere (a view into a mapped safetensors file
# starts at its header-dependent offset: 8 mod 64 for the default model's entry, which gave
# one text's vector 5.7e-6 away from the uncached load's), so the cached load uses views only
# where they are aligned and reads the rest into memory of their own.
ALIGNMENT = 64


def data_offset(path: str) -> int:
    """Where a safetensors file's tensor data starts (after its 8-byte length and header)."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def align_saved_weights(folder: str) -> None:
    """Rewrite ``folder``'s model.safetensors, if needed, so its tensor data starts on an
    ``ALIGNMENT`` boundary of the file (the header is padded through its metadata). Mapped
    into memory, its tensors then start on such boundaries too wherever their sizes are
    multiples of it, and ``load_saved_model`` uses them without a copy."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = os.path.join(folder, SAVED_WEIGHTS)
    if not os.path.isfile(path) or data_offset(path) % ALIGNMENT == 0:
        return
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    metadata.setdefault("alignment", "")
    for _ in range(3):  # the first pass adds the key; the header is padded to 8 bytes, so
        # then a multiple of 8 more characters moves the data start by exactly that much
        metadata["alignment"] += " " * (-data_offset(path) % ALIGNMENT)
        save_file(tensors, path + ".tmp", metadata=metadata)
        os.replace(path + ".tmp", path)
        if data_offset(path) % ALIGNMENT == 0:
            return


def load_saved_model(folder: str, *, enable_bidirectional: bool = True,
                     dtype: torch.dtype | None = None,
                     attn_implementation: str | None = None) -> PreTrainedModel | None:
    """The model ``load_model(folder, ...)`` gives, for a folder that ``save_pretrained`` wrote
    from such a model (config.json and one model.safetensors, unquantized): built from its
    config without random initialisation, then given the saved tensors (views into the
    mapped file where ``ALIGNMENT`` allows, else read into memory of their own).

    Why: ``from_pretrained`` also builds transformers' table of checkpoint conversions for
    every architecture it knows and runs its quantization and sharding steps, most of a
    cached load (see ``benchmarks/README.md``, "Load time"). Returns None, and loads
    nothing, where the folder is not that simple (sharded or quantized weights, remote code,
    tensors that are not exactly the model's with its dtypes, a transformers release without
    ``no_init_weights``): use ``load_model``.
    """
    from safetensors import safe_open

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # not in this transformers release
        return None
    weights = os.path.join(folder, SAVED_WEIGHTS)
    if not os.path.isfile(weights):
        return None
    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "quantization_config", None) is not None or getattr(config, "auto_map",
                                                                           None):
        return None
    set_attention(config, enable_bidirectional)
    kwargs = {} if dtype is None else {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with quiet_transformers(), no_init_weights():
        model = AutoModel.from_config(config, **kwargs)
    expected = model.state_dict()
    # An unaligned file (written before align_saved_weights) is read whole with pread.
    mapped = data_offset(weights) % ALIGNMENT == 0
    with safe_open(weights, framework="pt", backend="mmap" if mapped else "pread") as f:
        names = set(f.keys())
        if names != set(expected):
            return None  # tied or renamed tensors: from_pretrained knows how to map them
        state = {name: f.get_tensor(name) for name in names}
    if any(state[n].dtype != t.dtype or state[n].shape != t.shape for n, t in expected.items()):
        return None  # from_pretrained would cast or refuse them
    for name, tensor in state.items():
        if tensor.data_ptr() % ALIGNMENT:  # after a tensor whose size is not a multiple of it
            state[name] = tensor.clone()
    model.load_state_dict(state, strict=True, assign=True)
    model.config.name_or_path = folder  # as from_pretrained records it
    return model.eval()


@contextlib.contextmanager
def reuse_gguf_reader():
    """Within this block a GGUF file is parsed once, however often transformers opens it,
    and each tensor-name map is built once.

    transformers reads a GGUF separately for the tokenizer, the config and the weights (about
    4 s each for SmolLM2's 49k-token vocabulary); ``gguf.GGUFReader`` is read-only, so one
    reader per file serves all three. While mapping the weights' names it also builds
    ``gguf.get_tensor_name_map(arch, n_blocks)`` again for every module of the model (395
    times for SmolLM2, a fifth of an uncached load); the map is read-only too.
    """
    try:
        import gguf
    except ImportError:  # no GGUF support installed: nothing to share
        yield
        return
    original, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def shared(path, mode: str = "r"):
        key = (os.path.abspath(os.fspath(path)), mode)
        if mode != "r":
            return original(path, mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    shared_map = functools.lru_cache(maxsize=None)(original_map)
    gguf.GGUFReader, gguf.get_tensor_name_map = shared, shared_map
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original, original_map


@contextlib.contextmanager
def quiet_transformers():
    """transformers' info logs and bars off while a model loads or saves, plus the noise
    below; errors still show."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with quiet_peft_warnings(), _no_gguf_bar():
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_peft_warnings():
    """Only the warnings of loading that are the libraries' own business: peft reads
    transformers' deprecated ``is_gradient_checkpointing`` on every adapter load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


@contextlib.contextmanager
def _no_gguf_bar():
    """transformers draws its GGUF dequantization bar with plain tqdm (no switch of its own)."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def check_bidirectional(model: PreTrainedModel, name: str) -> None:
    if not is_bidirectional(model):
        raise SetupError(
            f"{name!r} is still causal after setting config.is_causal=False "
            f"(architecture {type(model).__name__}, attention "
            f"{model.config._attn_implementation!r}). This architecture's transformers code "
            "ignores the flag: try attn_implementation='eager' or 'sdpa', or pass "
            "enable_bidirectional=False to use it causally on purpose."
        )


def check_adapter_source(adapter: str, **hub_kwargs) -> None:
    """Fail early, naming the folder, when ``adapter`` is not a LoRA adapter folder or hub id."""
    if looks_local(adapter) and not os.path.isdir(adapter):
        raise FileNotFoundError(f"Adapter folder {adapter!r} does not exist: pass the "
                                "folder written by training, or a hub adapter id.")
    check_hub_source(adapter, "adapter", **hub_kwargs)
    if find_file(adapter, "adapter_config.json", **hub_kwargs) is None:
        raise FileNotFoundError(
            f"{adapter!r} holds no adapter_config.json: it is not a PEFT/LoRA adapter. "
            "Pass the folder written by training (or a hub adapter repo)."
        )


def apply_adapters(model: PreTrainedModel, adapters: list[str], bases: list[str] | None = None,
                   **hub_kwargs) -> PreTrainedModel:
    """Apply LoRA adapters in order, merging each into the weights before the next."""
    from peft import PeftModel

    # What each adapter may have been trained on: the base (by any of its names) or the
    # adapters merged before it.
    chain = list(bases or [getattr(model, "name_or_path", "") or ""])
    for adapter in adapters:
        check_adapter_source(str(adapter), **hub_kwargs)
        _warn_if_other_base(chain, str(adapter), adapter_base(str(adapter), **hub_kwargs))
        try:
            with quiet_peft_warnings():
                peft_model = PeftModel.from_pretrained(model, adapter, **hub_kwargs)
        except SafetensorError as err:
            raise safetensors_error(str(adapter), err) from None
        except (RuntimeError, ValueError, KeyError) as err:
            raise UsageError(
                f"Adapter {adapter!r} does not fit this base model "
                f"({type(model).__name__}, hidden size {model.config.hidden_size}); it was "
                f"trained for {adapter_base(str(adapter), **hub_kwargs)!r}. Load it on that "
                f"base model. Details: {err}"
            ) from err
        model = peft_model.merge_and_unload()
        chain.append(str(adapter))
        logger.info("merged adapter %s", adapter)
    return model


def _warn_if_other_base(chain: list[str], adapter: str, recorded: str | None) -> None:
    """Same-shaped weights of another model load silently and give wrong vectors: say so."""
    def name(path: str) -> str:
        return os.path.basename(str(path).rstrip("/"))

    if recorded and chain[0] and name(recorded) not in {name(c) for c in chain}:
        logger.warning("adapter %s was trained on %r but is applied to %r; make sure that is "
                       "the same model", adapter, recorded, chain[0])
