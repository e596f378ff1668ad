"""llm2vec_rag.training"""
