"""Corpus loading (TFDS by name, local parallel text) and the tf.data pipeline."""

from translator.data.corpus import Corpus, load_corpus
from translator.data.pipeline import make_batches, padding_fraction

__all__ = ["Corpus", "load_corpus", "make_batches", "padding_fraction"]
