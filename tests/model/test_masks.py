import numpy as np

from translator.model.masks import look_ahead_mask, merge_masks, padding_mask

T, F = True, False
IDS = np.array([[1, 3, 2, 7, 4, 5], [1, 3, 6, 0, 0, 0]])


def test_padding_mask_literal():
    expected = [[T, T, T, T, T, T], [T, T, T, F, F, F]]
    np.testing.assert_array_equal(np.asarray(padding_mask(IDS, pad_id=0)), expected)


def test_padding_mask_other_pad_id():
    np.testing.assert_array_equal(np.asarray(padding_mask(np.array([[5, 1, 1]]), 1)), [[T, F, F]])


def test_look_ahead_mask_literal_lower_triangle():
    expected = [
        [T, F, F, F],
        [T, T, F, F],
        [T, T, T, F],
        [T, T, T, T],
    ]
    np.testing.assert_array_equal(np.asarray(look_ahead_mask(4)), expected)


def test_look_ahead_mask_with_offset_for_cached_step():
    # One query at position 2 over 4 cache slots: it sees slots 0..2.
    np.testing.assert_array_equal(np.asarray(look_ahead_mask(1, 4, offset=2)), [[T, T, T, F]])


def test_merged_self_attention_mask_literal():
    pad = padding_mask(IDS)
    mask = np.asarray(merge_masks(query_padding=pad, key_padding=pad))
    row = [T, T, T, F, F, F]
    none = [F] * 6
    expected = np.array([[[T] * 6] * 6, [row, row, row, none, none, none]])
    assert mask.shape == (2, 6, 6)
    np.testing.assert_array_equal(mask, expected)


def test_decoder_self_attention_mask_literal():
    pad = padding_mask(IDS)
    mask = np.asarray(merge_masks(key_padding=pad, look_ahead=look_ahead_mask(6)))
    expected_0 = np.tril(np.ones((6, 6), bool))
    expected_1 = np.array(
        [
            [T, F, F, F, F, F],
            [T, T, F, F, F, F],
            [T, T, T, F, F, F],
            [T, T, T, F, F, F],
            [T, T, T, F, F, F],
            [T, T, T, F, F, F],
        ]
    )
    np.testing.assert_array_equal(mask, np.stack([expected_0, expected_1]))


def test_cross_attention_mask_shape_t_differs_from_s():
    target = np.array([[1, 2, 0]])
    source = np.array([[4, 5, 6, 0, 0]])
    mask = np.asarray(merge_masks(padding_mask(target), padding_mask(source)))
    expected = [[[T, T, T, F, F], [T, T, T, F, F], [F, F, F, F, F]]]
    np.testing.assert_array_equal(mask, expected)
