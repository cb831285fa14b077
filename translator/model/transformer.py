"""The encoder-decoder Transformer (Vaswani et al., 2017).

Dimension letters: B batch, S source length, T target length, D model width, V target vocabulary.
"""

from __future__ import annotations

import keras
from keras import ops
from omegaconf import DictConfig

from translator.model.decoder import Decoder
from translator.model.encoder import Encoder
from translator.model.masks import padding_mask


@keras.saving.register_keras_serializable(package="translator")
class Transformer(keras.Model):
    """Encoder-decoder Transformer returning next-token logits.

    Masks are built from token ids (PAD = 0) inside the encoder and decoder; nothing relies on
    Keras's implicit mask propagation.

    Args:
        source_vocab_size: source vocabulary size.
        target_vocab_size: target vocabulary size V.
        num_layers: encoder and decoder layers each.
        d_model: width D.
        num_heads: attention heads (divide D).
        dff: feed-forward inner width.
        dropout: dropout rate (embeddings and residual branches).
        norm_first: pre-layer-norm when True.
        tie_embeddings: use the target embedding matrix as the output projection.
        share_embeddings: one embedding matrix for source and target tokens (a joint vocabulary:
            the two sizes must be equal).
        max_positions: length of the sinusoidal position table.
        attention_dropout: rate for attention weights (None: `dropout`).
        activation_dropout: rate inside the feed-forward blocks (None: `dropout`).
        attention_score: `scaled_dot`, `dot` or `additive` (`translator.model.scores`).

    Call arguments:
        inputs: (source_ids (B, S), target_in (B, T)), int.

    Returns:
        Logits (B, T, V), float32 whatever the compute dtype.
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        num_layers: int = 4,
        d_model: int = 128,
        num_heads: int = 8,
        dff: int = 512,
        dropout: float = 0.1,
        norm_first: bool = False,
        tie_embeddings: bool = False,
        share_embeddings: bool = False,
        max_positions: int = 1024,
        attention_dropout: float | None = None,
        activation_dropout: float | None = None,
        attention_score: str = "scaled_dot",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary: source has {source_vocab_size} tokens, "
                f"target {target_vocab_size}"
            )
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.norm_first = norm_first
        self.tie_embeddings = tie_embeddings
        self.share_embeddings = share_embeddings
        self.max_positions = max_positions
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.attention_score = attention_score
        stack = dict(
            num_layers=num_layers,
            d_model=d_model,
            num_heads=num_heads,
            dff=dff,
            dropout=dropout,
            norm_first=norm_first,
            max_positions=max_positions,
            attention_dropout=attention_dropout,
            activation_dropout=activation_dropout,
            attention_score=attention_score,
            dtype=self.dtype_policy,
        )
        self.encoder = Encoder(source_vocab_size, name="encoder", **stack)
        shared = self.encoder.embedding if share_embeddings else None
        self.decoder = Decoder(target_vocab_size, name="decoder", embedding=shared, **stack)
        self.output_projection = (
            None
            if tie_embeddings
            else keras.layers.Dense(target_vocab_size, dtype=self.dtype_policy, name="logits")
        )

    @classmethod
    def from_settings(cls, model: DictConfig, source_vocab_size: int, target_vocab_size: int):
        """Build from the `model` config group."""
        return cls(
            source_vocab_size=source_vocab_size,
            target_vocab_size=target_vocab_size,
            num_layers=model.num_layers,
            d_model=model.d_model,
            num_heads=model.num_heads,
            dff=model.dff,
            dropout=model.dropout,
            norm_first=model.norm_first,
            tie_embeddings=model.tie_embeddings,
            share_embeddings=model.share_embeddings,
            max_positions=model.max_positions,
            attention_dropout=model.attention_dropout,
            activation_dropout=model.activation_dropout,
            attention_score=model.attention_score,
        )

    def call(self, inputs, training=None):
        source, target_in = inputs
        memory, source_padding, _ = self.encode(source, training=training)
        logits, _, _ = self.decode(target_in, memory, source_padding, training=training)
        return logits

    def encode(self, source, training=None):
        """Source ids (B, S) -> (memory (B, S, D), source padding (B, S), encoder weights)."""
        memory, weights = self.encoder(source, training=training)
        return memory, padding_mask(source), weights

    def decode(self, target_in, memory, source_padding, training=None):
        """Whole-prefix decoding: (logits (B, T, V), self weights, cross weights) per layer."""
        hidden, self_weights, cross_weights = self.decoder(
            target_in, memory, source_padding, training=training
        )
        return self.project(hidden), self_weights, cross_weights

    def project(self, hidden):
        """Hidden states (..., D) -> float32 logits (..., V)."""
        if self.tie_embeddings:
            logits = self.decoder.embedding.logits(hidden)
        else:
            logits = self.output_projection(hidden)
        return ops.cast(logits, "float32")

    def init_cache(self, memory) -> list[dict]:
        """An empty decoder cache for this memory (see `Decoder.init_cache`)."""
        if not self.built:
            raise ValueError("call the model once (or load its weights) before cached decoding")
        return self.decoder.init_cache(memory)

    def decode_step(self, token_ids, cache, index, source_padding):
        """One cached decoding step: token (B, 1) at `index` -> (logits (B, V), cache, cross)."""
        hidden, cache, cross_weights = self.decoder.step(token_ids, cache, index, source_padding)
        return self.project(hidden), cache, cross_weights

    def attention_weights(self, source, target_in) -> dict:
        """Every layer's attention for plotting: lists of (B, H, ., .) arrays per kind."""
        memory, source_padding, encoder_self = self.encode(source)
        _, decoder_self, cross = self.decode(target_in, memory, source_padding)
        return {"encoder_self": encoder_self, "decoder_self": decoder_self, "cross": cross}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size,
                "num_layers": self.num_layers,
                "d_model": self.d_model,
                "num_heads": self.num_heads,
                "dff": self.dff,
                "dropout": self.dropout,
                "norm_first": self.norm_first,
                "tie_embeddings": self.tie_embeddings,
                "share_embeddings": self.share_embeddings,
                "max_positions": self.max_positions,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout,
                "attention_score": self.attention_score,
            }
        )
        return config
