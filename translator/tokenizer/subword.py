"""SentencePiece subword tokenizers that run in-graph.

Vocabularies are learned with the `sentencepiece` trainer and applied with tensorflow-text's
`SentencepieceTokenizer`, so tokenize and detokenize are TensorFlow ops: they run inside tf.data
and inside an exported SavedModel. The model uses identity normalisation and byte fallback, so
detokenize(tokenize(s)) == s for any text (case, punctuation spacing and rare characters kept),
and hypotheses can be scored against raw references. See the README for why not WordPiece.

Subword regularization (Kudo, 2018): while training, `SubwordTokenizer.sampling` gives a twin
that samples one of the likely segmentations of each sentence every time it runs, so the model
sees "▁gitarre" one epoch and "▁git ar re" another. Only the training pipeline uses it; saved
tokenizers, validation and inference segment deterministically.

Reserved ids, the same in every vocabulary: PAD=0, UNK=1, START=2, END=3.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from omegaconf import DictConfig

from translator.atomic import write_atomic

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
NUM_RESERVED = 4


def with_start_end(ids: tf.RaggedTensor) -> tf.RaggedTensor:
    """Each row of subword ids framed by START and END: (B, None)."""
    batch = ids.nrows()
    start = tf.fill([batch, 1], START_ID)
    end = tf.fill([batch, 1], END_ID)
    return tf.concat([start, ids, end], axis=1)


def _sentencepiece(
    model_proto: bytes, nbest_size: int = 0, alpha: float = 1.0
) -> tf_text.SentencepieceTokenizer:
    """A tf-text tokenizer named after its model (and its sampling settings, when it samples).

    In graphs (SavedModel) tf-text's resources are keyed by node name, so each model gets a name
    of its own; otherwise a reloaded export would give the target tokenizer the source model.
    """
    name = f"sentencepiece_{hashlib.sha1(model_proto).hexdigest()[:16]}"
    if nbest_size not in (0, 1):
        name += f"_sample_{nbest_size}_{alpha}".replace("-", "m").replace(".", "_")
    return tf_text.SentencepieceTokenizer(
        model=model_proto, out_type=tf.int32, nbest_size=nbest_size, alpha=alpha, name=name
    )


class SubwordTokenizer(tf.Module):
    """In-graph SentencePiece tokenizer.

    Args:
        model_proto: the serialised SentencePiece model.
        lowercase: lowercase (Unicode-aware) before tokenizing.
        nbest_size: 0 or 1 segments deterministically (the most likely segmentation); n > 1
            samples a segmentation among the n best, -1 among all of them. Training only: a saved
            tokenizer does not keep it.
        alpha: smoothing of the sampling distribution, P(segmentation)^alpha (lower: more varied).
    """

    def __init__(
        self,
        model_proto: bytes,
        lowercase: bool = False,
        nbest_size: int = 0,
        alpha: float = 1.0,
    ):
        super().__init__()
        self.model_proto = model_proto
        self.lowercase = lowercase
        self.nbest_size = int(nbest_size)
        self.alpha = float(alpha)
        self._sp = self._build()
        self.vocab_size = int(self._sp.vocab_size())

    @property
    def samples(self) -> bool:
        """True when every call may segment the same text differently."""
        return self.nbest_size not in (0, 1)

    def sampling(self, nbest_size: int, alpha: float) -> SubwordTokenizer:
        """The same vocabulary, sampling segmentations (itself when nbest_size is 0 or 1)."""
        if nbest_size in (0, 1):
            return self
        return SubwordTokenizer(self.model_proto, self.lowercase, nbest_size, alpha)

    def _build(self) -> tf_text.SentencepieceTokenizer:
        return _sentencepiece(self.model_proto, self.nbest_size, self.alpha)

    def _run(self, method: str, *args):
        """Call the tf-text tokenizer, rebuilding its resource if TensorFlow dropped it.

        tf-text's SentencePiece resource is owned by an eager kernel, and `tf.random.set_seed`
        (which `keras.utils.set_random_seed` calls) clears the kernel cache, deleting it: every
        tokenizer made before would fail with NotFoundError.
        """
        try:
            return getattr(self._sp, method)(*args)
        except tf.errors.NotFoundError:
            if not tf.executing_eagerly():
                raise
            self._sp = self._build()
            return getattr(self._sp, method)(*args)

    def tokenize(self, strings) -> tf.RaggedTensor:
        """Strings (B,) -> ragged ids (B, None), without START/END."""
        strings = tf.convert_to_tensor(strings, tf.string)
        if self.lowercase:
            strings = tf.strings.lower(strings, encoding="utf-8")
        return self._run("tokenize", strings)

    def detokenize(self, ids) -> tf.Tensor:
        """Ids (B, L), dense or ragged -> strings (B,). Stops at END; drops PAD and START."""
        ids = tf.cast(ids, tf.int32)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        before_end = tf.math.cumsum(tf.cast(ids == END_ID, tf.int32), axis=1) == 0
        keep = tf.logical_and(before_end, ids >= NUM_RESERVED)
        return self._run("detokenize", tf.ragged.boolean_mask(ids, keep))

    def id_to_piece(self, ids) -> tf.Tensor:
        """Ids -> subword strings (for attention plot labels)."""
        return self._run("id_to_string", tf.cast(ids, tf.int32))

    def save(self, path: Path) -> None:
        path = Path(path)
        write_atomic(path.with_suffix(".model"), self.model_proto)
        write_atomic(path.with_suffix(".json"), json.dumps({"lowercase": self.lowercase}))

    @classmethod
    def load(cls, path: Path) -> SubwordTokenizer:
        path = Path(path)
        settings = json.loads(path.with_suffix(".json").read_text())
        return cls(path.with_suffix(".model").read_bytes(), **settings)


@dataclass
class TokenizerPair:
    """The source and target tokenizers of a run (the same object when the vocabulary is shared)."""

    source: SubwordTokenizer
    target: SubwordTokenizer

    @property
    def samples(self) -> bool:
        return self.source.samples or self.target.samples

    def sampling(self, nbest_size: int, alpha: float) -> TokenizerPair:
        """Both tokenizers sampling segmentations (subword regularization), for training batches."""
        source = self.source.sampling(nbest_size, alpha)
        if self.target is self.source:
            return TokenizerPair(source, source)
        return TokenizerPair(source, self.target.sampling(nbest_size, alpha))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.source.save(folder / "source")
        self.target.save(folder / "target")

    @classmethod
    def load(cls, folder: Path) -> TokenizerPair:
        folder = Path(folder)
        return cls(
            SubwordTokenizer.load(folder / "source"), SubwordTokenizer.load(folder / "target")
        )

    @staticmethod
    def missing_files(folder: Path) -> list[Path]:
        """The files of a saved pair that `folder` lacks (none: `load` can read it)."""
        names = [f"{side}.{kind}" for side in ("source", "target") for kind in ("model", "json")]
        return [Path(folder) / name for name in names if not (Path(folder) / name).exists()]


def train_sentencepiece(sentences: list[str], cfg: DictConfig) -> bytes:
    """Learn a SentencePiece model from sentences; returns the serialised model."""
    if cfg.lowercase:
        sentences = [s.lower() for s in sentences]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=cfg.vocab_size,
        model_type=cfg.model_type,
        character_coverage=cfg.character_coverage,
        byte_fallback=cfg.byte_fallback,
        normalization_rule_name="identity",  # keep the text exactly: exact round trips
        input_sentence_size=cfg.max_sentences,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=cfg.seed_sentencepiece_size,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=START_ID,
        eos_id=END_ID,
        hard_vocab_limit=False,  # a small corpus may not support the full size
        num_threads=cfg.num_threads,
        minloglevel=2,
    )
    return model.getvalue()


def train_tokenizers(source: list[str], target: list[str], cfg: DictConfig) -> TokenizerPair:
    """Learn the source and target vocabularies (one shared one when `cfg.shared`)."""
    start = time.perf_counter()
    if cfg.shared:
        shared = SubwordTokenizer(train_sentencepiece(source + target, cfg), cfg.lowercase)
        pair = TokenizerPair(shared, shared)
    else:
        pair = TokenizerPair(
            SubwordTokenizer(train_sentencepiece(source, cfg), cfg.lowercase),
            SubwordTokenizer(train_sentencepiece(target, cfg), cfg.lowercase),
        )
    log.info(
        "vocabularies: source %d, target %d (%.1fs)",
        pair.source.vocab_size,
        pair.target.vocab_size,
        time.perf_counter() - start,
    )
    return pair
