"""Decoding (greedy, beam) over one next-logits interface, the Translator, and export."""
