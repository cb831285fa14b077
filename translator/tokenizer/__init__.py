"""Subword tokenizers (SentencePiece, run in-graph by tensorflow-text) and special tokens."""

from translator.tokenizer.subword import (
    END_ID,
    NUM_RESERVED,
    PAD_ID,
    START_ID,
    UNK_ID,
    SubwordTokenizer,
    TokenizerPair,
    train_tokenizers,
    with_start_end,
)

__all__ = [
    "END_ID",
    "NUM_RESERVED",
    "PAD_ID",
    "START_ID",
    "UNK_ID",
    "SubwordTokenizer",
    "TokenizerPair",
    "train_tokenizers",
    "with_start_end",
]
