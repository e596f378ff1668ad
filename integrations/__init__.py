"""llm2vec_rag.integrations"""
