"""llm2vec-rag: decoder-only LLMs as text encoders (LLM2Vec), trained, exported, and used for RAG."""

from .bidirectional import is_bidirectional, make_bidirectional
from .config import POOLING_MODES, EncoderConfig
from .model import LLM2Vec

__all__ = ["LLM2Vec", "EncoderConfig", "POOLING_MODES", "is_bidirectional", "make_bidirectional"]
__version__ = "0.1.0"
