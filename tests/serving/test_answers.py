"""Answers: the attention a request selects, counted, and serialised to the JSON it stands for;
internal errors answered with a request id only."""

import asyncio
import json
import logging
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from translator.inference.translator import Translation
from translator.serving.answers import (
    attention_size,
    check_attention,
    encode,
    select_attention,
    translation_json,
)
from translator.serving.app import Server, timed
from translator.serving.requests import AttentionRequest, BadRequest, attention_of


def translation(layers=3, heads=2, rows=4, cols=5) -> Translation:
    rng = np.random.default_rng(0)

    def weights(r, c):
        rows = [rng.dirichlet(np.ones(c), size=(heads, r)) for _ in range(layers)]
        return [w.astype(np.float32) for w in rows]

    return Translation(
        source="a b c", text="x y z", score=-1.5,
        source_pieces=[f"s{i}" for i in range(cols)], target_pieces=[f"t{i}" for i in range(rows)],
        target_input_pieces=[f"i{i}" for i in range(rows)],
        attention={"cross": weights(rows, cols), "encoder_self": weights(cols, cols),
                   "decoder_self": weights(rows, rows)},
    )  # fmt: skip


def test_true_asks_for_every_layer_and_head_of_cross_attention_only():
    t = translation()
    selected = select_attention(t, attention_of(True))
    assert list(selected["kinds"]) == ["cross"]
    cross = selected["kinds"]["cross"]
    assert cross["layers"] == [0, 1, 2] and cross["heads"] == "all"
    assert cross["columns"] == t.source_pieces and cross["rows"] == t.target_pieces
    for got, want in zip(cross["weights"], t.attention["cross"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert attention_size([selected]) == 3 * 2 * 4 * 5


def test_layers_heads_and_their_mean_are_chosen_as_asked():
    t = translation()
    request = attention_of({"kinds": ["decoder_self"], "layers": [-1, 0], "heads": [1]})
    chosen = select_attention(t, request)["kinds"]["decoder_self"]
    assert chosen["layers"] == [2, 0] and chosen["heads"] == [1]
    np.testing.assert_array_equal(chosen["weights"][0], t.attention["decoder_self"][2][[1]])
    np.testing.assert_array_equal(chosen["weights"][1], t.attention["decoder_self"][0][[1]])
    mean = select_attention(t, AttentionRequest(("cross",), (1,), "mean"))["kinds"]["cross"]
    np.testing.assert_allclose(mean["weights"][0][0], t.attention["cross"][1].mean(axis=0))
    assert attention_size([{"kinds": {"cross": mean}}]) == 4 * 5


def test_indices_the_model_lacks_are_422():
    check_attention(AttentionRequest(layers=(-3, 2), heads=(0, -2)), layers=3, heads=2)
    for request, named in ((AttentionRequest(layers=(3,)), "attention.layers: 3"),
                           (AttentionRequest(heads=(-3,)), "attention.heads: -3")):  # fmt: skip
        with pytest.raises(BadRequest, match=named) as error:
            check_attention(request, layers=3, heads=2)
        assert error.value.status == 422


def test_encode_gives_the_json_of_rounded_numbers_with_every_flag():
    t = translation(layers=1)
    t.truncated = t.length_limited = True
    body = {"translations": [translation_json(t, 1, select_attention(t, attention_of(True)))],
            "decode": {"strategy": "greedy"}, "note": "Grüße \u2581"}  # fmt: skip
    text = encode(body).decode("utf-8")
    decoded = json.loads(text)
    weights = decoded["translations"][0]["attention"]["kinds"]["cross"]["weights"]
    np.testing.assert_allclose(weights[0], t.attention["cross"][0], atol=5e-5)
    decimals = [len(n) for n in re.findall(r"\.(\d+)", text)]
    assert len(decimals) >= 30 and max(decimals) <= 4  # 0.1234, not 0.12340000271797
    assert decoded["translations"][0]["length_limited"] is True
    assert decoded["translations"][0]["truncated"] is True
    assert decoded["note"] == "Grüße \u2581" and decoded["decode"] == {"strategy": "greedy"}


def test_an_internal_error_is_a_500_with_a_request_id_and_no_details(caplog):
    server = Server(OmegaConf.create({}), lambda: None)

    async def failing():
        raise RuntimeError("/home/someone/secret/path: boom")

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(timed(server, failing))
    answer = json.loads(response.body)
    assert response.status_code == 500 and "secret" not in answer["error"]
    assert f"request id {answer['request_id']}" in answer["error"]
    assert answer["request_id"] in caplog.text and "boom" in caplog.text
