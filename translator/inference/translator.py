"""Translate sentences with a trained run directory.

    translator = Translator.from_run_dir("checkpoints/multi30k_en_de-tutorial")
    translator.translate(["A dog runs on the beach."])

Decoding is batched (sentences sorted by length), runs as one compiled graph per decode setting,
and uses the decoder cache: each step costs one token's worth of decoder work.

Dimension letters: B batch, S source length, N n-best, L output length.
"""

from __future__ import annotations

import logging
import random
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from translator.config import CONFIG_DIR, DecodeConfig
from translator.errors import RunDirError, TranslatorError, first_line
from translator.inference.alignment import links
from translator.inference.constraints import constrained_beam_search
from translator.inference.decoding import Sampler, beam_search, greedy_search
from translator.inference.ensemble import Ensemble, check_shared_vocabulary
from translator.inference.parallel import in_order
from translator.inference.scoring import ForcedScorer, PairScore
from translator.model.transformer import Transformer
from translator.run_dir import RunDir, locate
from translator.tokenizer import END_ID, PAD_ID, START_ID, TokenizerPair

log = logging.getLogger(__name__)

DECODE_DEFAULTS = CONFIG_DIR / "decode" / "greedy.yaml"


@dataclass
class Translation:
    """One sentence's result. `n_best` holds (text, score) pairs, best first."""

    source: str
    text: str
    score: float
    n_best: list[tuple[str, float]] = field(default_factory=list)
    source_pieces: list[str] = field(default_factory=list)  # <s> ... </s>
    target_pieces: list[str] = field(default_factory=list)  # produced: y1 ... yn </s>
    target_input_pieces: list[str] = field(default_factory=list)  # decoder input: <s> y1 ... yn
    attention: dict | None = None  # kind -> list over layers of (H, rows, cols) arrays
    truncated: bool = False  # the source was cut to the model's max_tokens
    length_limited: bool = False  # the output reached its length limit without END
    sentences: list[SentenceTranslation] = field(default_factory=list)  # when segmented
    alignment: list[tuple[int, int]] | None = None  # (source word, target word) links


@dataclass
class SentenceTranslation:
    """One sentence of a segmented text: its (start, end) in the text and its translation."""

    start: int
    end: int
    translation: Translation


def load_run(
    run: RunDir, weights: str = "auto"
) -> tuple[DictConfig, Transformer, TokenizerPair, Path]:
    """The resolved config, the model with its weights, the tokenizers and the weights file of a
    run directory (`weights`: see `RunDir.choose_weights`)."""
    run.check_complete()
    weights_file = run.choose_weights(weights)
    cfg = run.load_config()
    settings = run.load_model_settings()
    tokenizers = load_tokenizers(run, settings)
    # Inference runs in float32, whatever precision the run trained in or this process has set.
    model = Transformer.from_config({**settings, "dtype": "float32"})
    dummy = np.full((1, 2), START_ID, np.int32)
    model((dummy, dummy))  # create the weights before loading them
    try:
        model.load_weights(weights_file)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise many kinds
        message = f"{weights_file}: cannot load these weights ({first_line(error)})"
        raise RunDirError(message) from None
    return cfg, model, tokenizers, weights_file


def load_tokenizers(run: RunDir, settings: dict) -> TokenizerPair:
    """The run's tokenizers, checked against the vocabulary sizes the model was built for."""
    try:
        tokenizers = TokenizerPair.load(run.tokenizer_dir)
    except Exception as error:  # noqa: BLE001 - SentencePiece and JSON errors of any kind
        message = f"{run.tokenizer_dir}: damaged tokenizer ({first_line(error)})"
        raise RunDirError(message) from None
    for side in ("source", "target"):
        size, expected = getattr(tokenizers, side).vocab_size, settings.get(f"{side}_vocab_size")
        if size != expected:
            raise RunDirError(
                f"{run.tokenizer_dir}: the {side} vocabulary has {size} pieces but the model "
                f"({run.model_file.name}) was built for {expected}"
            )
    return tokenizers


def decode_settings(run_decode: DictConfig | None, requested: DictConfig | None) -> DictConfig:
    """The run's own decode settings, with every key `requested` sets (not null) taking precedence.

    Settings a run's config lacks (runs older than the key) come from `decode/greedy.yaml`.
    """
    chosen = {k: v for k, v in (requested or {}).items() if v is not None}
    merged = OmegaConf.merge(OmegaConf.load(DECODE_DEFAULTS), run_decode or {}, chosen)
    merged.pop("defaults", None)
    try:
        DecodeConfig(**OmegaConf.to_container(merged))  # the schema's checks, on what is used
    except (TypeError, ValueError) as error:
        raise TranslatorError(str(error)) from None
    return merged


def sampling_options(decode: DictConfig) -> dict | None:
    """top_k, top_p and temperature when `decode` samples (greedy search with
    `sampling_topk` != 1); None otherwise. Both engines read their sampling from here."""
    if decode.strategy == "beam" or decode.get("sampling_topk") in (None, 1):
        return None
    return {"top_k": decode.sampling_topk, "top_p": decode.get("sampling_topp") or 1.0,
            "temperature": decode.get("sampling_temperature") or 1.0}  # fmt: skip


class Translator:
    """Batched greedy or beam-search translation with a trained Transformer.

    Args:
        model: the Transformer.
        tokenizers: its tokenizers.
        decode: a `decode` config (strategy, beam_size, length_penalty, n_best, max_length_a,
            max_length_b, batch_size).
        max_tokens: longest source in tokens (START/END included); longer ones are truncated.
    """

    has_attention = True  # translate_detailed(attention=True) returns every layer's weights

    def __init__(
        self, model: Transformer, tokenizers: TokenizerPair, decode: DictConfig, max_tokens: int
    ):
        self.model = model
        self.tokenizers = tokenizers
        self.decode = decode
        self.max_tokens = max_tokens
        self.run: RunDir | None = None  # what from_run_dir loaded: the run, its config, weights
        self.run_config: DictConfig | None = None
        self.weights_file: Path | None = None
        self.members: list[RunDir] = []  # an ensemble's runs (`from_runs`); empty for one run
        if decode.strategy not in ("greedy", "beam"):
            raise TranslatorError(f"decode.strategy={decode.strategy!r}: expected greedy or beam")
        self._graphs: dict[tuple, tf.types.experimental.PolymorphicFunction] = {}
        self._scorer: ForcedScorer | None = None
        self._step = None  # the compiled decoding step of the constrained search
        self._word_continuations: np.ndarray | None = None

    @classmethod
    def from_run_dir(
        cls, run_dir: str | Path | RunDir, decode: DictConfig | None = None, weights: str = "auto"
    ) -> Translator:
        """Load a run directory, decoding with its own settings and any `decode` keys given."""
        run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        cfg, model, tokenizers, weights_file = load_run(run, weights)
        settings = decode_settings(cfg.get("decode"), decode)
        translator = cls(model, tokenizers, settings, cfg.data.max_tokens)
        translator.run, translator.run_config, translator.weights_file = run, cfg, weights_file
        return translator

    @classmethod
    def from_runs(cls, run_dirs: list, decode: DictConfig | None = None, weights: str = "auto"
                  ) -> Translator:  # fmt: skip
        """An ensemble of runs that share a tokenizer (`Ensemble`), decoding with the first
        run's settings and any `decode` keys given; one run: `from_run_dir`."""
        runs = [r if isinstance(r, RunDir) else RunDir(r) for r in run_dirs]
        if len(runs) == 1:
            return cls.from_run_dir(runs[0], decode, weights)
        loaded = [load_run(run, weights) for run in runs]
        check_shared_vocabulary([str(run) for run in runs], [t for _, _, t, _ in loaded])
        cfg, _, tokenizers, weights_file = loaded[0]
        settings = decode_settings(cfg.get("decode"), decode)
        max_tokens = min(c.data.max_tokens for c, _, _, _ in loaded)
        ensemble = Ensemble([model for _, model, _, _ in loaded])
        translator = cls(ensemble, tokenizers, settings, max_tokens)
        translator.run, translator.run_config, translator.weights_file = runs[0], cfg, weights_file
        translator.members = runs
        return translator

    @classmethod
    def from_command(cls, cfg: DictConfig) -> Translator:
        """The translator an inference command's config asks for: its `run_dir` (when null, the
        latest finished run under `paths.checkpoints`), `weights` and `decode` settings."""
        run = locate(cfg.run_dir, cfg.paths.checkpoints)
        return cls.from_run_dir(run, cfg.decode, cfg.weights)

    def with_decode(self, decode: DictConfig) -> Translator:
        """The same model and tokenizers decoding with other settings. Search graphs are shared:
        settings that differ only in length penalty, n-best or batching use the same one."""
        other = Translator(self.model, self.tokenizers, decode, self.max_tokens)
        other.run, other.run_config = self.run, self.run_config
        other.weights_file, other.members = self.weights_file, self.members
        other._graphs = self._graphs
        return other

    @property
    def graph_key(self) -> tuple:
        """The decode settings a search graph is traced for. The length penalty and the n-best
        size are its inputs and batching happens outside it, so they are not part of it; greedy
        search has no beam."""
        unused = {"length_penalty", "n_best", "batch_size", "parallel_batches"}
        if self.decode.strategy == "greedy":
            unused.add("beam_size")
        return tuple(sorted((k, v) for k, v in self.decode.items() if k not in unused))

    def _search(self, source_ids: tf.Tensor, seed: tf.Tensor | None = None,
                prefix: tf.Tensor | None = None):  # fmt: skip
        """`search` as the compiled graph of this translator's settings, traced on first use
        (`seed` (2,): the draws' when sampling; `prefix` (B, P): forced first target ids, in a
        graph of its own so that searches without one pay nothing for it)."""
        key = (self.graph_key, prefix is not None)
        graph = self._graphs.get(key)
        if graph is None:
            specs = [
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([2], tf.int32),
            ]
            if prefix is not None:
                specs.append(tf.TensorSpec([None, None], tf.int32))
            graph = self._graphs[key] = tf.function(
                self.search, input_signature=specs, reduce_retracing=True
            )
        n_best = self.decode.n_best if self.decode.strategy == "beam" else 1
        inputs = [source_ids, tf.constant(self.decode.length_penalty, tf.float32),
                  tf.constant(n_best, tf.int32),
                  tf.zeros([2], tf.int32) if seed is None else seed]  # fmt: skip
        return graph(*inputs, *([] if prefix is None else [prefix]))

    def sampling_seed(self, batch: list[str]) -> tf.Tensor:
        """The (2,) seed of a batch's draws when sampling: `decode.sampling_seed` with the
        batch's text, so a batch repeats its draws under one seed and batches differ; random
        without a seed."""
        chosen = self.decode.get("sampling_seed")
        if chosen is None:
            return tf.constant([random.getrandbits(31), random.getrandbits(31)], tf.int32)
        text = zlib.crc32("\n".join(batch).encode("utf-8")) & 0x7FFFFFFF
        return tf.constant([int(chosen) & 0x7FFFFFFF, text], tf.int32)

    @property
    def sampler_settings(self) -> dict | None:
        """top_k, top_p and temperature when the settings sample; None for greedy and beam."""
        return sampling_options(self.decode)

    # In-graph pieces (also used by the SavedModel export).
    def source_ids(self, sentences: tf.Tensor) -> tf.Tensor:
        """Strings (B,) -> padded ids (B, S) with START/END, cut to max_tokens."""
        ids = self.tokenizers.source.tokenize(sentences)[:, : self.max_tokens - 2]
        batch = ids.nrows()
        ids = tf.concat([tf.fill([batch, 1], START_ID), ids, tf.fill([batch, 1], END_ID)], axis=1)
        return ids.to_tensor(PAD_ID)

    def output_limits(self, source_ids: tf.Tensor) -> tf.Tensor:
        """Each sentence's output length limit (B,): ceil(a * its source length) + b tokens
        (START and END of the source included; decode.max_length_a and _b), within the model's
        positions. From its own length, so a sentence decodes the same alone or in a batch."""
        source_length = tf.reduce_sum(tf.cast(source_ids != PAD_ID, tf.float32), axis=1)
        a, b = self.decode.max_length_a, self.decode.max_length_b
        length = tf.cast(tf.math.ceil(a * source_length), tf.int32) + b
        return tf.minimum(length, self.model.max_positions)

    def search(self, source_ids: tf.Tensor, alpha=None, n_best=None, seed=None, prefix=None):
        """Padded source ids (B, S) -> (tokens (B, N, L), scores (B, N)). Beam search's length
        penalty `alpha` and list size `n_best` default to the decode settings'; either may be a
        tensor, so one graph serves every value. `seed` (2,): the draws' when sampling.
        `prefix` (B, P): target ids each output must start with (PAD-padded)."""
        alpha = self.decode.length_penalty if alpha is None else alpha
        n_best = self.decode.n_best if n_best is None else n_best
        batch = tf.shape(source_ids)[0]
        limits = self.output_limits(source_ids)
        max_length = tf.reduce_max(limits)
        memory, source_padding, _ = self.model.encode(source_ids)
        if self.decode.use_cache:
            state = (self.model.init_cache(memory), source_padding)
            next_logits = self._cached_next_logits
        else:
            prefix = tf.fill([batch, max_length], PAD_ID)
            state = (memory, source_padding, prefix)
            next_logits = self._uncached_next_logits
        if self.decode.strategy == "greedy":
            sampler = self.sampler_settings
            choose = None
            if sampler:
                seed = tf.zeros([2], tf.int32) if seed is None else seed
                choose = Sampler(seed, **sampler).choose
            tokens, scores = greedy_search(next_logits, state, batch, max_length, limits=limits,
                                           choose=choose, prefix=prefix)  # fmt: skip
            return tokens[:, None, :], scores[:, None]
        return beam_search(
            next_logits,
            state,
            batch,
            max_length,
            beam_size=self.decode.beam_size,
            alpha=alpha,
            n_best=n_best,
            limits=limits,
            reorder=self._reorder_cache if self.decode.use_cache else None,
            prefix=prefix,
        )

    @staticmethod
    def _reorder_cache(state, rows):
        """Beam search's reordering: only the self-attention caches differ between the
        hypotheses of a sentence (cross-attention keys, values and padding are per sentence).
        An ensemble's cache is a tuple of its members' caches."""
        cache, padding = state
        return _reordered(cache, rows), padding

    def _cached_next_logits(self, token_ids, index, state):
        cache, padding = state
        logits, cache, _ = self.model.decode_step(token_ids, cache, index, padding)
        return logits, (cache, padding)

    def _uncached_next_logits(self, token_ids, index, state):
        """The TF tutorial's way: re-run the decoder over the whole prefix at every step."""
        memory, padding, prefix = state
        positions = tf.range(tf.shape(prefix)[1])
        prefix = tf.where(positions == index, token_ids, prefix)  # write this step's token
        logits, _, _ = self.model.decode(prefix[:, : index + 1], memory, padding)
        return logits[:, -1, :], (memory, padding, prefix)

    # Python API.
    def translate(self, sentences: list[str]) -> list[str]:
        """Translate sentences; empty input lines give empty outputs."""
        return [t.text for t in self.translate_detailed(sentences)]

    def score(self, sources: list[str], targets: list[str],
              progress: Callable[[int], None] | None = None) -> list[PairScore]:  # fmt: skip
        """log P(target | source) of each pair (`ForcedScorer`), in decode.batch_size batches."""
        if self._scorer is None:
            self._scorer = ForcedScorer(self.model, self.tokenizers, self.max_tokens,
                                        self.decode.batch_size)  # fmt: skip
        return self._scorer.score([s.strip() for s in sources], [t.strip() for t in targets],
                                  progress)  # fmt: skip

    def translate_detailed(
        self,
        sentences: list[str],
        attention: bool = False,
        progress: Callable[[int], None] | None = None,
        prefixes: list[str] | None = None,
        alignment: int | None = None,
        constraints: list[list[str]] | None = None,
    ) -> list[Translation]:
        """Translations with scores, n-best lists and optionally every layer's attention.

        Args:
            sentences: source sentences.
            attention: also return attention weights and subword pieces.
            progress: called with the number of sentences finished after each batch.
            prefixes: per sentence, text its translation must start with ("": none); the
                search continues after it and its tokens count in the score.
            alignment: the decoder layer whose cross-attention (heads averaged) aligns the
                words of each best translation to its source (`Translation.alignment`; -1:
                the last); None: no alignment.
            constraints: per sentence, target phrases its translation must contain, in any
                order (`constraints.py`: beam search by dynamic beam allocation); [] for none.
        """
        prefixes = check_prefixes(sentences, prefixes)
        constraints = check_constraints(sentences, constraints, prefixes)
        check_layer(alignment, self.model.num_layers)
        if (attention or alignment is not None) and self.members:
            raise TranslatorError("attention and alignments need a single run, not an ensemble")
        results: list[Translation | None] = [None] * len(sentences)
        order = [
            i
            for i in np.argsort([len(s) for s in sentences], kind="stable")
            if sentences[i].strip()
        ]
        for i, sentence in enumerate(sentences):
            if not sentence.strip():
                results[i] = Translation(source=sentence, text="", score=0.0)
        if progress and len(order) < len(sentences):
            progress(len(sentences) - len(order))
        size = self.decode.batch_size
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        batches = ([(sentences[i].strip(), prefixes[i], constraints[i]) for i in chunk]
                   for chunk in chunks)  # fmt: skip
        decoded = in_order(
            lambda batch: self._translate_batch(
                *zip(*batch, strict=True), attention=attention, alignment=alignment
            ),
            batches,
            min(self.decode.parallel_batches, len(chunks)),
        )
        for chunk, translations in zip(chunks, decoded, strict=True):
            for i, translation in zip(chunk, translations, strict=True):
                results[i] = translation
            if progress:
                progress(len(chunk))
        return results  # type: ignore[return-value]

    def _translate_batch(self, batch: list[str], prefixes: list[str],
                         constraints: list[list[str]] | None = None, attention: bool = False,
                         alignment: int | None = None) -> list[Translation]:  # fmt: skip
        batch = list(batch)
        lengths = self.tokenizers.source.tokenize(batch).row_lengths().numpy() + 2
        for sentence, length in zip(batch, lengths, strict=True):
            if length > self.max_tokens:
                print(
                    f"warning: source truncated to {self.max_tokens} tokens ({length} given): "
                    f"{sentence[:60]!r}",
                    file=sys.stderr,
                )
        source_ids = self.source_ids(tf.constant(batch))
        if constraints and any(constraints):
            tokens, scores = self._constrained_search(source_ids, list(constraints))
        else:
            prefix = self.prefix_ids(batch, list(prefixes), source_ids)
            tokens, scores = self._search(source_ids, self.sampling_seed(batch), prefix)
            tokens, scores = tokens.numpy(), scores.numpy()
        texts = self.tokenizers.target.detokenize(tokens.reshape(-1, tokens.shape[-1])).numpy()
        texts = texts.reshape(tokens.shape[:2])
        ended = (tokens == END_ID).any(axis=-1)  # (B, N)
        results = []
        for b, sentence in enumerate(batch):
            n_best = [
                (t.decode("utf-8"), float(s)) for t, s in zip(texts[b], scores[b], strict=True)
            ]
            results.append(
                Translation(
                    source=sentence,
                    text=n_best[0][0],
                    score=n_best[0][1],
                    n_best=n_best,
                    truncated=bool(lengths[b] > self.max_tokens),
                    length_limited=not ended[b, 0],
                )
            )
        if attention or alignment is not None:
            self._add_attention(results, source_ids.numpy(), tokens[:, 0])
        if alignment is not None:
            for result in results:
                cross = result.attention["cross"][alignment].mean(axis=0)
                result.alignment = links(cross, result.source_pieces, result.target_pieces)
                if not attention:
                    result.attention = None  # asked for the links only
        return results

    def _constrained_search(self, source_ids: tf.Tensor, constraints: list[list[str]]
                            ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """`constrained_beam_search` of a batch: tokens (B, 1, L) and scores (B, 1), as the
        graph searches return them (beam size: decode.beam_size, 5 if the settings are greedy)."""
        phrases = [[ids for ids in self.tokenizers.target.tokenize(own).to_list() if ids]
                   if own else [] for own in constraints]  # fmt: skip
        limits = [int(n) for n in self.output_limits(source_ids).numpy()]
        memory, padding, _ = self.model.encode(source_ids)
        beam = self.decode.beam_size if self.decode.strategy == "beam" else 5
        alpha = self.decode.length_penalty if self.decode.strategy == "beam" else 0.0
        found = constrained_beam_search(
            self._log_probs_step, (self.model.init_cache(memory), padding), _gather_state,
            phrases, limits, beam, alpha, START_ID, END_ID, self._continuations(),
        )  # fmt: skip
        width = max(1, max(len(tokens) for tokens, _, _ in found))
        tokens = np.full((len(found), 1, width), PAD_ID, np.int32)
        for b, (own, _, _) in enumerate(found):
            tokens[b, 0, : len(own)] = own
        return tokens, np.array([[score] for _, score, _ in found], np.float32)

    def _continuations(self) -> np.ndarray:
        """(V,) bool: target pieces that continue the word before them (a letter or digit
        without SentencePiece's word-start mark)."""
        if self._word_continuations is None:
            ids = np.arange(self.tokenizers.target.vocab_size)
            pieces = _pieces(self.tokenizers.target, ids)
            self._word_continuations = np.array(
                [not p.startswith("\u2581") and p[:1].isalnum() and not p.startswith("<")
                 for p in pieces]
            )  # fmt: skip
        return self._word_continuations

    def _log_probs_step(self, tokens: np.ndarray, index: int, state):
        """One cached decoding step for the constrained search: log-probabilities (N, V)."""
        if self._step is None:
            self._step = tf.function(self._cached_next_logits, reduce_retracing=True)
        logits, state = self._step(tf.constant(tokens[:, None]), tf.constant(index), state)
        return tf.nn.log_softmax(logits).numpy(), state

    def prefix_ids(self, batch: list[str], prefixes: list[str], source_ids: tf.Tensor
                   ) -> tf.Tensor | None:  # fmt: skip
        """The prefixes' target ids (B, P), PAD-padded, or None when the batch has none. A
        prefix that leaves no room within its sentence's output length limit is refused."""
        if not any(prefixes):
            return None
        ids = self.tokenizers.target.tokenize(prefixes)
        limits = self.output_limits(source_ids).numpy()
        for sentence, prefix, count, limit in zip(batch, prefixes, ids.row_lengths().numpy(),
                                                  limits, strict=True):  # fmt: skip
            if count >= limit:
                raise TranslatorError(
                    f"prefix {prefix[:40]!r} has {count} tokens: no room left within the output "
                    f"length limit of {limit} for {sentence[:40]!r} (decode.max_length_a, _b)"
                )
        return ids.to_tensor(PAD_ID)

    def _add_attention(self, results, source_ids: np.ndarray, tokens: np.ndarray) -> None:
        """Full forward pass over START + output to collect every layer's attention.

        Row i of cross and decoder self-attention is the query that produced output token i, so
        rows are labelled with the produced tokens (y1 ... yn END).
        """
        produced = np.where(_after_end(tokens), PAD_ID, tokens)  # y1 ... yn END, then PAD
        target_in = np.concatenate([np.full((len(tokens), 1), START_ID), produced[:, :-1]], 1)
        target_in = np.where(target_in == END_ID, PAD_ID, target_in).astype(np.int32)
        weights = self.model.attention_weights(source_ids, target_in)
        weights = {kind: [np.asarray(w) for w in layers] for kind, layers in weights.items()}
        for b, result in enumerate(results):
            s = int(np.sum(source_ids[b] != PAD_ID))
            t = int(np.sum(produced[b] != PAD_ID))  # y1 ... yn END
            result.source_pieces = _pieces(self.tokenizers.source, source_ids[b, :s])
            result.target_pieces = _pieces(self.tokenizers.target, produced[b, :t])
            result.target_input_pieces = _pieces(self.tokenizers.target, target_in[b, :t])
            result.attention = {
                "encoder_self": [w[b, :, :s, :s] for w in weights["encoder_self"]],
                "decoder_self": [w[b, :, :t, :t] for w in weights["decoder_self"]],
                "cross": [w[b, :, :t, :s] for w in weights["cross"]],
            }


def _gather_state(state, rows):
    """Every tensor of a decoder state (cache and padding) at `rows`."""
    rows = tf.constant(rows)
    return tf.nest.map_structure(lambda t: tf.gather(t, rows), state)


def check_constraints(sentences: list[str], constraints: list[list[str]] | None,
                      prefixes: list[str]) -> list[list[str]]:  # fmt: skip
    """One list of constraint phrases per sentence ([] where none is given); a sentence cannot
    have both constraints and a prefix."""
    if constraints is None:
        return [[] for _ in sentences]
    if len(constraints) != len(sentences):
        raise TranslatorError(f"{len(constraints)} constraint lists for {len(sentences)} "
                              "sentences")  # fmt: skip
    checked = [[p.strip() for p in own if p.strip()] for own in constraints]
    for i, (own, prefix) in enumerate(zip(checked, prefixes, strict=True)):
        if own and prefix:
            raise TranslatorError(f"sentence {i + 1}: give constraints or a prefix, not both")
    return checked


def _reordered(cache, rows):
    """A decoder cache (a list of per-layer dicts, or a tuple of them) with its self-attention
    keys and values gathered at `rows`."""
    if isinstance(cache, tuple):
        return tuple(_reordered(member, rows) for member in cache)
    return [dict(c, self_k=tf.gather(c["self_k"], rows), self_v=tf.gather(c["self_v"], rows))
            for c in cache]  # fmt: skip


def check_layer(layer: int | None, layers: int) -> None:
    """`layer` (None, or an index from the first or, negative, from the last) must exist."""
    if layer is not None and not -layers <= layer < layers:
        raise TranslatorError(f"alignment_layer={layer}: the model has {layers} decoder layers "
                              f"(0 to {layers - 1}, or -1 for the last)")  # fmt: skip


def check_prefixes(sentences: list[str], prefixes: list[str] | None) -> list[str]:
    """One prefix per sentence ("" where none is given)."""
    if prefixes is None:
        return [""] * len(sentences)
    if len(prefixes) != len(sentences):
        raise TranslatorError(f"{len(prefixes)} prefixes for {len(sentences)} sentences")
    return [prefix.strip() for prefix in prefixes]


def _after_end(tokens: np.ndarray) -> np.ndarray:
    """True at the positions after the first END of each row."""
    ended = np.cumsum(tokens == END_ID, axis=1)
    return (ended - (tokens == END_ID)) > 0


def _pieces(tokenizer, ids: Iterable[int]) -> list[str]:
    return [p.decode("utf-8") for p in tokenizer.id_to_piece(np.asarray(list(ids))).numpy()]
