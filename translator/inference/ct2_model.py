"""Convert a run into a CTranslate2 model directory (OpenNMT's C++ inference engine).

The spec is built from our weights with CTranslate2's model-spec API, so nothing is approximated:
the same sinusoidal table (given explicitly; CTranslate2's own differs), sqrt(D) embedding scale,
layer-norm epsilon, fused Q|K|V projections, shared or tied embeddings, pre- or post-layer-norm.
The directory also holds the run's SentencePiece models and a README.txt saying how to load it.

Keras kernels are (in, out); CTranslate2's linear weights are (out, in), hence the transposes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from translator.atomic import temporary_beside
from translator.errors import TranslatorError
from translator.model.embedding import sinusoidal_positions
from translator.model.transformer import Transformer
from translator.tokenizer import TokenizerPair

QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16")
SOURCE_FILE = "converted_from.json"  # which weights file the directory was made from

README = """\
CTranslate2 model converted from {run} ({weights}), {quantization} weights.

    import ctranslate2, sentencepiece as spm
    translator = ctranslate2.Translator("{path}", device="cpu", compute_type="default")
    source = spm.SentencePieceProcessor(model_file="{path}/source.model")
    target = spm.SentencePieceProcessor(model_file="{path}/target.model")
    pieces = source.encode({example!r}, out_type=str){lower}
    result = translator.translate_batch([pieces], beam_size=1, length_penalty=0.0,
                                        min_decoding_length=0, max_decoding_length={limit})
    print(target.decode(result[0].hypotheses[0]))

The source gets <s> and </s> added by CTranslate2 (config.json: add_source_bos/eos).
{lowercase_note}Scores with length_penalty=0 are summed log-probabilities, as in the
TensorFlow decoder; CTranslate2's length penalty is length**alpha, not GNMT's.
Or, from the project: make translate RUN={run} ARGS="engine=ctranslate2"
"""


def check_convertible(model: Transformer) -> None:
    """A TranslatorError naming the first setting CTranslate2 cannot reproduce exactly."""
    if model.attention_score == "additive":
        raise TranslatorError(
            "model.attention_score=additive cannot be exported to CTranslate2: its attention "
            "is dot-product only (scaled_dot and dot convert)"
        )


def _linear(spec, dense, weight=None) -> None:
    spec.weight = _f32(dense.kernel).T if weight is None else weight
    if dense.bias is not None:
        spec.bias = _f32(dense.bias)


def _fused(spec, denses) -> None:
    """One linear layer computing the given Dense layers side by side (rows stacked)."""
    spec.weight = np.concatenate([_f32(d.kernel).T for d in denses])
    if denses[0].bias is not None:
        spec.bias = np.concatenate([_f32(d.bias) for d in denses])


def _norm(spec, layer_norm) -> None:
    spec.gamma = _f32(layer_norm.gamma)
    spec.beta = _f32(layer_norm.beta)


def _f32(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, np.float32)


def _attention(spec, attention, residual, self_attention: bool) -> None:
    if self_attention:
        _fused(spec.linear[0], [attention.query_dense, attention.key_dense, attention.value_dense])
        _linear(spec.linear[1], attention.output_dense)
    else:
        _linear(spec.linear[0], attention.query_dense)
        _fused(spec.linear[1], [attention.key_dense, attention.value_dense])
        _linear(spec.linear[2], attention.output_dense)
    _norm(spec.layer_norm, residual.norm)
    if attention.score == "dot":  # g * q.k: CTranslate2 scales the queries by g
        spec.queries_scale = np.float32(_f32(attention.score_layer.scale))


def _feed_forward(spec, layer) -> None:
    _linear(spec.linear_0, layer.feed_forward.inner)
    _linear(spec.linear_1, layer.feed_forward.outer)
    _norm(spec.layer_norm, layer.feed_forward_residual.norm)


def build_spec(model: Transformer, tokenizers: TokenizerPair):
    """The `ctranslate2.specs.TransformerSpec` of a built, loaded model."""
    from ctranslate2.specs import common_spec, transformer_spec

    check_convertible(model)
    layers, heads, pre_norm = model.num_layers, model.num_heads, model.norm_first
    relu = common_spec.Activation.RELU
    encoder = transformer_spec.TransformerEncoderSpec(layers, heads, pre_norm, relu)
    # Attention returned for word alignment: the last layer's, all heads averaged.
    decoder = transformer_spec.TransformerDecoderSpec(
        layers, heads, pre_norm, relu, alignment_layer=-1, alignment_heads=heads
    )
    positions = sinusoidal_positions(model.max_positions, model.d_model)
    source_table = _f32(model.encoder.embedding.token_embedding.embeddings)
    target_table = _f32(model.decoder.embedding.token_embedding.embeddings)
    encoder.embeddings[0].weight = source_table
    decoder.embeddings.weight = target_table
    encoder.position_encodings.encodings = decoder.position_encodings.encodings = positions
    for spec, layer in zip(encoder.layer, model.encoder.layers, strict=True):
        _attention(spec.self_attention, layer.self_attention, layer.attention_residual, True)
        _feed_forward(spec.ffn, layer)
    for spec, layer in zip(decoder.layer, model.decoder.layers, strict=True):
        _attention(spec.self_attention, layer.self_attention, layer.self_residual, True)
        _attention(spec.attention, layer.cross_attention, layer.cross_residual, False)
        _feed_forward(spec.ffn, layer)
    if pre_norm:
        _norm(encoder.layer_norm, model.encoder.final_norm)
        _norm(decoder.layer_norm, model.decoder.final_norm)
    if model.tie_embeddings:
        decoder.projection.weight = target_table  # the same array: stored once
    else:
        _linear(decoder.projection, model.output_projection)
    spec = transformer_spec.TransformerSpec(encoder, decoder)
    spec.config.layer_norm_epsilon = 1e-6
    spec.config.add_source_bos = spec.config.add_source_eos = True
    spec.register_source_vocabulary(_pieces(tokenizers.source))
    spec.register_target_vocabulary(_pieces(tokenizers.target))
    return spec


def _pieces(tokenizer) -> list[str]:
    """The vocabulary in id order (<pad>, <unk>, <s>, </s> first: CTranslate2's defaults)."""
    ids = np.arange(tokenizer.vocab_size)
    return [p.decode("utf-8") for p in tokenizer.id_to_piece(ids).numpy()]


def write_model(
    model: Transformer,
    tokenizers: TokenizerPair,
    target: Path,
    quantization: str,
    origin: dict,
) -> Path:
    """Convert `model` into the folder `target`, written beside it and moved into place whole.

    `origin` (run, weights file, its size and time) is kept in converted_from.json, so a stale
    conversion can be recognised."""
    from ctranslate2.converters.converter import Converter

    if quantization not in QUANTIZATIONS:
        raise TranslatorError(f"quantization={quantization!r}: expected one of {QUANTIZATIONS}")
    spec = build_spec(model, tokenizers)

    class _SpecConverter(Converter):
        def _load(self):
            return spec

    target = Path(target)
    with temporary_beside(target) as partial:
        _SpecConverter().convert(str(partial), quantization=quantization, force=True)
        for side in ("source", "target"):
            tokenizer = getattr(tokenizers, side)
            (partial / f"{side}.model").write_bytes(tokenizer.model_proto)
            (partial / f"{side}.json").write_text(json.dumps({"lowercase": tokenizer.lowercase}))
        readme = _readme(target, tokenizers, quantization, origin, model)
        (partial / "README.txt").write_text(readme)
        (partial / SOURCE_FILE).write_text(json.dumps({**origin, "quantization": quantization}))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    return target


def _readme(target, tokenizers, quantization, origin, model) -> str:
    lowercase = tokenizers.source.lowercase
    return README.format(
        run=origin["run"],
        weights=Path(origin["weights"]).name,
        quantization=quantization,
        path=target,
        example="A dog runs on the beach.",
        lower=".lower()" if lowercase else "",
        lowercase_note="The model was trained on lowercased text: lowercase the input.\n"
        if lowercase
        else "",
        limit=min(model.max_positions, 256),
    )


ALIGNMENT = "last decoder layer, heads averaged"


def weights_origin(run, weights_file: Path) -> dict:
    """What identifies a conversion's source: the run, its weights file, size and time, and
    the attention it returns for alignment (a conversion made before it did is remade)."""
    stat = Path(weights_file).stat()
    return {
        "run": str(run),
        "weights": str(weights_file),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "alignment": ALIGNMENT,
    }


def converted_from(folder: Path) -> dict | None:
    """The origin a conversion recorded, or None when `folder` holds none."""
    try:
        return json.loads((Path(folder) / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
