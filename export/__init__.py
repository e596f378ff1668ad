"""llm2vec_rag.export"""
