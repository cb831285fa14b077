"""Translate with a run converted to CTranslate2 (`engine=ctranslate2`).

Same interface and decode settings as `Translator`: greedy or beam search, n-best, each
sentence's own output length limit (ceil(a * source tokens) + b; a batch is searched with its
largest, and a sentence that reaches its own is searched again alone), empty lines kept
empty. Greedy
search matches the TensorFlow decoder token for token up to float rounding, with the same scores
(summed log-probabilities). Beam search differs in one way CTranslate2 does not let us change: it
normalises scores by length**alpha during the search, where we use GNMT's ((5 + length) / 6)**alpha;
the hypotheses it returns are re-ranked by GNMT's penalty, and with alpha = 0 the two coincide.

The converted model lives in <run_dir>/ctranslate2 (made on first use, remade when the run's
weights change); `engine.compute_type` chooses float32 or int8 arithmetic when it is loaded.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import sentencepiece as spm
from omegaconf import DictConfig

from translator.errors import RunDirError, TranslatorError, first_line
from translator.inference.alignment import links
from translator.inference.ct2_model import converted_from, weights_origin, write_model
from translator.inference.parallel import in_order
from translator.inference.scoring import PairScore, check_pairs, check_target_length
from translator.inference.translator import (
    Translation,
    check_prefixes,
    decode_settings,
    load_run,
    load_tokenizers,
    sampling_options,
)
from translator.run_dir import RunDir
from translator.tokenizer import NUM_RESERVED, TokenizerPair

log = logging.getLogger(__name__)

CT2_DIR = "ctranslate2"
END_PIECE = "</s>"  # the vocabulary's END piece, which return_end_token adds to ended hypotheses


def cpu_threads() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def prepare_model(run: RunDir, weights: str, model_dir: str | None) -> Path:
    """The CTranslate2 folder to load: `model_dir` as given, or <run_dir>/ctranslate2, converted
    from the chosen weights when it is missing or was made from other weights."""
    if model_dir:
        if not (Path(model_dir) / "model.bin").exists():
            raise RunDirError(f"{model_dir}: not a CTranslate2 model (no model.bin)")
        return Path(model_dir)
    weights_file = run.choose_weights(weights)
    origin = weights_origin(run, weights_file)
    folder = run.path / CT2_DIR
    recorded = converted_from(folder)
    if recorded and {k: recorded.get(k) for k in origin} == origin:
        return folder
    log.info("converting %s to CTranslate2 in %s", weights_file.name, folder)
    _, model, tokenizers, _ = load_run(run, weights)
    return write_model(model, tokenizers, folder, "float32", origin)


# Our sampling options (`sampling_options`) by CTranslate2's names for them.
CT2_SAMPLING = {"top_k": "sampling_topk", "top_p": "sampling_topp",
                "temperature": "sampling_temperature"}  # fmt: skip


class CTranslate2Translator:
    """Batched greedy or beam-search translation with CTranslate2.

    Args:
        engine: a loaded `ctranslate2.Translator`.
        tokenizers: the run's tokenizers (their SentencePiece models segment the text here).
        decode: a `decode` config, as for `Translator`.
        max_tokens: longest source in tokens (START/END included); longer ones are truncated.
        max_positions: the model's position table (output limits stay within it).
    """

    has_attention = False

    def __init__(
        self,
        engine,
        tokenizers: TokenizerPair,
        decode: DictConfig,
        max_tokens: int,
        max_positions: int,
    ):
        if decode.strategy not in ("greedy", "beam"):
            raise TranslatorError(f"decode.strategy={decode.strategy!r}: expected greedy or beam")
        self.engine = engine
        self.tokenizers = tokenizers
        self.decode = decode
        self.max_tokens = max_tokens
        self.max_positions = max_positions
        self.run: RunDir | None = None
        self.run_config: DictConfig | None = None
        self.weights_file: Path | None = None
        self.model_dir: Path | None = None
        self._source = spm.SentencePieceProcessor(model_proto=tokenizers.source.model_proto)
        self._target = spm.SentencePieceProcessor(model_proto=tokenizers.target.model_proto)

    @classmethod
    def from_run_dir(
        cls,
        run_dir: str | Path | RunDir,
        decode: DictConfig | None = None,
        weights: str = "auto",
        engine: DictConfig | None = None,
    ) -> CTranslate2Translator:
        """Load a run's CTranslate2 model (converting it first if needed) with `engine`'s
        compute_type, threads and model_dir."""
        import ctranslate2

        engine = engine or DictConfig({})
        run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        run.check_complete()
        cfg = run.load_config()
        tokenizers = load_tokenizers(run, run.load_model_settings())
        folder = prepare_model(run, weights, engine.get("model_dir"))
        settings = decode_settings(cfg.get("decode"), decode)
        threads = engine.get("threads") or cpu_threads()
        if settings.get("sampling_seed") is not None:
            # CTranslate2 seeds each worker's generator as it starts it, and a batch goes to
            # whichever worker is free: one worker, decoding the batches in order, makes the
            # same command with the same seed draw the same tokens.
            ctranslate2.set_random_seed(int(settings.sampling_seed))
            settings.parallel_batches = 1
        batches = min(settings.parallel_batches, threads)  # decoded at once, sharing the threads
        try:
            loaded = ctranslate2.Translator(
                str(folder),
                device="cpu",
                compute_type=engine.get("compute_type") or "default",
                inter_threads=batches,
                intra_threads=max(1, threads // batches),
            )
        except (RuntimeError, ValueError) as error:
            message = f"{folder}: CTranslate2 cannot load it ({first_line(error)})"
            raise RunDirError(message) from None
        translator = cls(loaded, tokenizers, settings, cfg.data.max_tokens, cfg.model.max_positions)
        translator.run, translator.run_config = run, cfg
        translator.weights_file = Path(run.choose_weights(weights))
        translator.model_dir = folder
        return translator

    def with_decode(self, decode: DictConfig) -> CTranslate2Translator:
        """The same loaded model decoding with other settings."""
        other = CTranslate2Translator(
            self.engine, self.tokenizers, decode, self.max_tokens, self.max_positions
        )
        other.run, other.run_config = self.run, self.run_config
        other.weights_file, other.model_dir = self.weights_file, self.model_dir
        return other

    def translate(self, sentences: list[str]) -> list[str]:
        """Translate sentences; empty input lines give empty outputs."""
        return [t.text for t in self.translate_detailed(sentences)]

    def translate_detailed(
        self,
        sentences: list[str],
        attention: bool = False,
        progress: Callable[[int], None] | None = None,
        prefixes: list[str] | None = None,
        alignment: int | None = None,
        constraints: list[list[str]] | None = None,
    ) -> list[Translation]:
        """Translations with scores and n-best lists (attention: TensorFlow engine only);
        `prefixes` as for `Translator.translate_detailed` (CTranslate2's target_prefix);
        `alignment` -1: word links from the last layer's cross-attention, heads averaged (the
        one CTranslate2 returns)."""
        if attention:
            raise TranslatorError("attention weights need engine=tensorflow")
        if constraints and any(constraints):
            raise TranslatorError("terminology constraints need engine=tensorflow (CTranslate2 "
                                  "has no constrained search)")  # fmt: skip
        if alignment not in (None, -1):
            raise TranslatorError(f"alignment_layer={alignment}: engine=ctranslate2 aligns with "
                                  "the last layer only (-1)")  # fmt: skip
        align = alignment is not None
        prefixes = check_prefixes(sentences, prefixes)
        results: list[Translation | None] = [None] * len(sentences)
        pieces, truncated = {}, set()
        for i, sentence in enumerate(sentences):
            if not sentence.strip():
                results[i] = Translation(source=sentence, text="", score=0.0)
                continue
            pieces[i] = self._pieces(sentence.strip())
            if len(pieces[i]) + 2 > self.max_tokens:
                truncated.add(i)
                pieces[i] = pieces[i][: self.max_tokens - 2]
        if progress and len(pieces) < len(sentences):
            progress(len(sentences) - len(pieces))
        forced = {i: self._prefix_pieces(sentences[i], prefixes[i], len(pieces[i]))
                  for i in pieces}  # fmt: skip
        order = sorted(pieces, key=lambda i: len(pieces[i]))
        size = self.decode.batch_size
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        batches = ([(pieces[i], forced[i]) for i in chunk] for chunk in chunks)
        found = in_order(
            partial(self._search_batch, align=align), batches,
            min(self.decode.parallel_batches, len(chunks)),
        )  # fmt: skip
        for chunk, chunk_results in zip(chunks, found, strict=True):
            for i, result in zip(chunk, chunk_results, strict=True):
                results[i] = self._translation(sentences[i].strip(), result, i in truncated,
                                               align)  # fmt: skip
            if progress:
                progress(len(chunk))
        return results  # type: ignore[return-value]

    def score(self, sources: list[str], targets: list[str],
              progress: Callable[[int], None] | None = None) -> list[PairScore]:  # fmt: skip
        """log P(target | source) of each pair with CTranslate2's `score_batch` (sources
        truncated as for translation), in decode.batch_size batches."""
        check_pairs(sources, targets)
        source_pieces = [self._pieces(s.strip())[: self.max_tokens - 2] for s in sources]
        target_pieces = [self._target_pieces(t.strip()) for t in targets]
        for i, pieces in enumerate(target_pieces):
            check_target_length(i, len(pieces) + 1, self.max_positions)
        results, size = [], self.decode.batch_size
        for start in range(0, len(sources), size):
            scored = self.engine.score_batch(
                source_pieces[start : start + size],
                target_pieces[start : start + size],
                max_input_length=0,
            )
            results += [PairScore(float(sum(r.log_probs)), len(r.log_probs)) for r in scored]
            if progress:
                progress(len(scored))
        return results

    def _target_pieces(self, sentence: str) -> list[str]:
        text = sentence.lower() if self.tokenizers.target.lowercase else sentence
        return self._target.encode(text, out_type=str)

    def _search_batch(self, batch: list[tuple[list[str], list[str] | None]], align: bool = False
                      ) -> list:  # fmt: skip
        """Search (source pieces, prefix pieces or None) pairs with the batch's largest output
        limit (CTranslate2 takes one per call); a sentence whose hypotheses reach its own
        smaller limit is searched again alone with it, so each sentence keeps its own limit as
        in the TensorFlow decoder."""
        sources, prefixes = [source for source, _ in batch], [prefix for _, prefix in batch]
        limits = [self._limit(len(source)) for source in sources]
        found = self._search(sources, max(limits), prefixes, align)
        for b, (source, limit) in enumerate(zip(sources, limits, strict=True)):
            if limit < max(limits) and max(map(len, found[b].hypotheses)) >= limit:
                found[b] = self._search([source], limit, [prefixes[b]], align)[0]
        for b, prefix in enumerate(prefixes):
            if prefix:
                found[b] = self._prefix_rescored(sources[b], found[b])
        return found

    def _prefix_rescored(self, source: list[str], result) -> SimpleNamespace:
        """`result` with scores that count the prefix's tokens too, as the TensorFlow search's
        do (CTranslate2 leaves them out): each hypothesis rescored whole with `score_batch`,
        then normalised by length**alpha as CTranslate2 normalises its own."""
        alpha = self.decode.length_penalty if self.decode.strategy == "beam" else 0.0
        ended = [bool(h) and h[-1] == END_PIECE for h in result.hypotheses]
        bodies = [h[:-1] if end else h for h, end in zip(result.hypotheses, ended, strict=True)]
        scored = self.engine.score_batch([source] * len(bodies), bodies, max_input_length=0)
        totals = [sum(r.log_probs) if end else sum(r.log_probs[:-1])  # no END: not its score
                  for r, end in zip(scored, ended, strict=True)]  # fmt: skip
        scores = [total / max(len(h), 1) ** alpha
                  for total, h in zip(totals, result.hypotheses, strict=True)]  # fmt: skip
        return SimpleNamespace(hypotheses=result.hypotheses, scores=scores,
                               attention=getattr(result, "attention", None))  # fmt: skip

    def _prefix_pieces(self, sentence: str, prefix: str, source_pieces: int) -> list[str] | None:
        """A prefix's target pieces (None for none), refused when they leave no room within
        the sentence's output length limit."""
        if not prefix:
            return None
        pieces = self._target_pieces(prefix)
        limit = self._limit(source_pieces)
        if len(pieces) >= limit:
            raise TranslatorError(
                f"prefix {prefix[:40]!r} has {len(pieces)} tokens: no room left within the output "
                f"length limit of {limit} for {sentence.strip()[:40]!r} (decode.max_length_a, _b)"
            )
        return pieces

    def _pieces(self, sentence: str) -> list[str]:
        """The source pieces, without START/END (a warning when they exceed max_tokens)."""
        text = sentence.lower() if self.tokenizers.source.lowercase else sentence
        pieces = self._source.encode(text, out_type=str)
        if len(pieces) + 2 > self.max_tokens:
            print(
                f"warning: source truncated to {self.max_tokens} tokens ({len(pieces) + 2} "
                f"given): {sentence[:60]!r}",
                file=sys.stderr,
            )
        return pieces

    def _limit(self, pieces: int) -> int:
        """The output length limit of a source of `pieces` pieces (START and END added)."""
        a, b = self.decode.max_length_a, self.decode.max_length_b
        return min(math.ceil(a * (pieces + 2)) + b, self.max_positions)

    def _search(self, batch: list[list[str]], limit: int,
                prefixes: list[list[str] | None] | None = None, align: bool = False):  # fmt: skip
        beam = self.decode.strategy == "beam"
        return self.engine.translate_batch(
            batch,
            target_prefix=prefixes if prefixes and any(prefixes) else None,
            beam_size=self.decode.beam_size if beam else 1,
            num_hypotheses=self.decode.beam_size if beam else 1,
            length_penalty=self.decode.length_penalty if beam else 0.0,
            min_decoding_length=0,
            max_decoding_length=limit,
            max_input_length=0,
            return_scores=True,
            return_end_token=True,
            return_attention=align,
            **self._sampling(),
        )

    def _sampling(self) -> dict:
        """CTranslate2's own sampling options, as the decode settings ask (greedy search)."""
        options = sampling_options(self.decode) or {}
        return {CT2_SAMPLING[key]: value for key, value in options.items()}

    def _translation(self, source: str, result, truncated: bool, align: bool = False
                     ) -> Translation:  # fmt: skip
        alpha = self.decode.length_penalty if self.decode.strategy == "beam" else 0.0
        ranked = []
        for h, (hypothesis, score) in enumerate(zip(result.hypotheses, result.scores,
                                                    strict=True)):  # fmt: skip
            length = len(hypothesis)  # with END when it ended
            total = score * length**alpha  # undo CTranslate2's length normalisation
            ended = bool(hypothesis) and hypothesis[-1] == END_PIECE
            ranked.append((self._text(hypothesis), total / ((5 + length) / 6) ** alpha, ended, h))
        ranked.sort(key=lambda entry: -entry[1])
        n_best = [(text, score) for text, score, _, _ in ranked]
        n_best = n_best[: self.decode.n_best if self.decode.strategy == "beam" else 1]
        translation = Translation(
            source,
            n_best[0][0],
            n_best[0][1],
            n_best,
            truncated=truncated,
            length_limited=not ranked[0][2],
        )
        if align:
            translation.alignment = self._links(source, result, ranked[0][3])
        return translation

    def _links(self, source: str, result, best: int) -> list[tuple[int, int]]:
        """The word links of hypothesis `best` from the cross-attention CTranslate2 returned
        for it (target pieces x source pieces, without the START and END it adds itself)."""
        text = source.lower() if self.tokenizers.source.lowercase else source
        pieces = self._source.encode(text, out_type=str)[: self.max_tokens - 2]
        return links(np.asarray(result.attention[best]), pieces, result.hypotheses[best])

    def _text(self, hypothesis: list[str]) -> str:
        ids = [self._target.piece_to_id(piece) for piece in hypothesis]
        return self._target.decode([i for i in ids if i >= NUM_RESERVED])
