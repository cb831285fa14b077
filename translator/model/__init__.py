"""Transformer building blocks: masks, attention, embeddings, encoder, decoder."""
