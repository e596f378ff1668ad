"""Tiny random decoder models with tokenizers trained here, for tests (no hub access needed).

Uses only APIs shared by transformers 4.44 and 5.x, because the reference-parity script
builds the same models inside the reference's own virtual environment.
"""

from __future__ import annotations

import os

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Retrieval augmented generation answers questions from an indexed corpus of documents.",
    "Large language models can be turned into strong text encoders with bidirectional attention.",
    "Qdrant stores vectors and payloads and answers nearest neighbour queries quickly.",
    "The weather in Montreal is cold in winter and warm in summer, with rain in spring.",
    "A contrastive loss pulls positive pairs together and pushes negatives apart.",
    "Masked next token prediction adapts a decoder to attend to future tokens.",
    "Given a web search query, retrieve relevant passages that answer the query.",
    "Les modeles de langue apprennent des representations utiles pour la recherche.",
    "Numbers like 3.14, 42 and 1e-5 appear in scientific writing and code.",
    "Python, Rust and C++ are programming languages used for machine learning systems.",
    "She sells sea shells by the sea shore; the shells she sells are surely sea shells.",
]

# (config class, special tokens, whether the tokenizer adds BOS)
ARCHS = {
    "llama": ("LlamaConfig", {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}),
    "mistral": ("MistralConfig", {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}),
    "gemma": ("GemmaConfig", {"bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "pad": "<pad>"}),
    "qwen2": ("Qwen2Config", {"eos": "<|endoftext|>"}),
}


def train_tokenizer(specials: dict[str, str], kind: str = "whitespace", vocab_size: int = 400):
    """A BPE tokenizer trained on CORPUS: ``whitespace`` (Llama-like, adds BOS when the
    specials have one) or ``bytelevel`` (GPT-2/SmolLM-like byte-level BPE)."""
    tok = Tokenizer(models.BPE(unk_token=specials.get("unk")))
    if kind == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials.values()),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(CORPUS * 3, trainer)
    if kind == "bytelevel":
        from tokenizers import decoders

        tok.decoder = decoders.ByteLevel()
    if "bos" in specials:
        bos = specials["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))])
    kwargs = {f"{k}_token": v for k, v in specials.items()}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, model_input_names=["input_ids", "attention_mask"], **kwargs)


def make_tiny_model(folder: str, arch: str = "llama", kind: str = "whitespace", seed: int = 0,
                    hidden: int = 64, layers: int = 2) -> str:
    """Write a tiny random model plus tokenizer to ``folder``; returns the folder."""
    config_name, specials = ARCHS[arch]
    tokenizer = train_tokenizer(specials, kind)
    cfg_kwargs = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "gemma":
        cfg_kwargs["head_dim"] = hidden // 4
    config = getattr(transformers, config_name)(**cfg_kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random init is tiny; make activations look more like a real model
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_bert(folder: str, seed: int = 0) -> str:
    """A tiny random BERT with a WordPiece tokenizer trained here ([CLS] text [SEP]): the
    shape of a sentence-transformers encoder such as all-MiniLM-L6-v2."""
    from tokenizers import normalizers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 3, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(seed)
    model = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128))
    with torch.no_grad():  # BERT's init (std 0.02) makes every text look alike: spread it
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


def make_lora_adapter(base_dir: str, out_dir: str, seed: int, std: float = 0.05,
                      targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj")) -> str:
    """A LoRA adapter for a tiny model, with random non-zero B so it really changes outputs."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = transformers.AutoModel.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                                  target_modules=list(targets)))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, std)
    peft_model.save_pretrained(out_dir)
    return out_dir
