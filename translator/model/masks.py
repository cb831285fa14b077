"""Boolean attention masks. One convention everywhere: True = may attend.

Dimension letters: B batch, T query (target) length, S key (source) length.

Masks are built from token ids by the pure helpers below and combined in exactly one place,
`merge_masks`, with logical AND. They become an additive bias only inside the softmax of
`translator.model.attention.scaled_dot_product_attention`.
"""

from __future__ import annotations

from keras import ops


def padding_mask(token_ids, pad_id: int = 0):
    """True where `token_ids` is a real token.

    Args:
        token_ids: integer tensor (B, S).
        pad_id: the padding id.

    Returns:
        Boolean tensor (B, S).
    """
    return ops.not_equal(token_ids, pad_id)


def look_ahead_mask(length: int, key_length: int | None = None, offset: int = 0):
    """Causal mask: query i may attend to keys j <= i + offset.

    Args:
        length: number of queries T.
        key_length: number of keys S (default T).
        offset: position of the first query among the keys (used by cached decoding).

    Returns:
        Boolean tensor (T, S), lower-triangular when offset is 0 and S == T.
    """
    key_length = length if key_length is None else key_length
    rows = ops.arange(length)[:, None] + offset  # (T, 1)
    cols = ops.arange(key_length)[None, :]  # (1, S)
    return ops.greater_equal(rows, cols)


def merge_masks(query_padding=None, key_padding=None, look_ahead=None):
    """Merge query padding, key padding and look-ahead masks with AND into one (B, T, S) mask.

    Each argument may be None. At least one of the padding masks must be given so that the
    batch size is known.

    Args:
        query_padding: boolean (B, T); a padded query attends to nothing.
        key_padding: boolean (B, S); no query attends to a padded key.
        look_ahead: boolean (T, S); see `look_ahead_mask`.

    Returns:
        Boolean tensor (B, T, S).
    """
    if query_padding is None and key_padding is None:
        raise ValueError("merge_masks needs query_padding or key_padding to know the batch size.")
    mask = None
    if query_padding is not None:
        mask = query_padding[:, :, None]  # (B, T, 1)
    if key_padding is not None:
        keys = key_padding[:, None, :]  # (B, 1, S)
        mask = keys if mask is None else ops.logical_and(mask, keys)
    if look_ahead is not None:
        mask = ops.logical_and(mask, look_ahead[None, :, :])  # (B, T, S)
    # Broadcast the (B, T|1, S|1) product to its full (B, T, S) shape.
    batch = ops.shape(mask)[0]
    t = _length(query_padding, look_ahead, axis=0)
    s = _length(key_padding, look_ahead, axis=1)
    return ops.broadcast_to(mask, (batch, t, s))


def _length(padding, look_ahead, axis: int):
    """Length of the query (axis 0) or key (axis 1) dimension, 1 when nothing fixes it."""
    if padding is not None:
        return ops.shape(padding)[1]
    if look_ahead is not None:
        return ops.shape(look_ahead)[axis]
    return 1
