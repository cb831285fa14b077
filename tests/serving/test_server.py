"""The real server (scripts/serve.py on uvicorn) on a free localhost port, over real sockets."""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from translator.config import PROJECT_ROOT
from translator.data import load_corpus
from translator.inference.translator import Translator

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body=None, method: str | None = None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one HTTP request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def start_server(run_dir, log_path, *overrides):
    """scripts/serve.py for `run_dir` on a free port, once /health says ready: (url, process)."""
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "serve.py"), f"run_dir={run_dir}",
         f"port={port}", "log_level=warning", *overrides],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if request(f"{url}/health")[0] == 200:
                return url, process
        except (urllib.error.URLError, ConnectionError):
            pass
        if process.poll() is not None:
            pytest.fail(open(log.name).read()[-2000:])
        time.sleep(0.5)
    process.terminate()
    pytest.fail("the server did not become ready in 180 s")


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    """The tiny run served on a free port (its own decode settings: greedy)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    url, process = start_server(trained_run[0].run_dir, log, "max_wait_ms=50",
                                "max_attention_weights=20000", "read_timeout_s=2",
                                "max_connections=64")  # fmt: skip
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def sentences(trained_run):
    cfg, _ = trained_run
    corpus = load_corpus(cfg.data, "train")
    return corpus.source[:32]


@pytest.fixture(scope="module")
def expected(trained_run, sentences):
    translator = Translator.from_run_dir(trained_run[0].run_dir)  # greedy, as the run says
    return dict(zip(sentences, translator.translate(sentences), strict=True))


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M).group(1))


def test_translations_equal_the_translators(server, sentences, expected):
    status, one = request(f"{server}/translate", {"text": sentences[0]})
    assert status == 200 and one["text"] == expected[sentences[0]]
    assert one["decode"]["strategy"] == "greedy" and one["timing"]["queue_and_decode_ms"] > 0
    status, many = request(f"{server}/translate", {"texts": sentences[:8]})
    assert status == 200
    assert [t["text"] for t in many["translations"]] == [expected[s] for s in sentences[:8]]


def test_a_paragraph_is_translated_sentence_by_sentence_with_its_layout(
    server, trained_run, sentences, expected
):
    text = f"{sentences[0]} {sentences[1]}\n\n{sentences[2]}"
    status, answer = request(f"{server}/translate", {"text": text, "attention": True})
    assert status == 200
    assert answer["text"] == f"{expected[sentences[0]]} {expected[sentences[1]]}\n\n" \
        f"{expected[sentences[2]]}"  # fmt: skip
    parts = answer["sentences"]
    assert [text[p["start"] : p["end"]] for p in parts] == sentences[:3]
    assert [p["source"] for p in parts] == sentences[:3]
    assert [p["text"] for p in parts] == [expected[s] for s in sentences[:3]]
    assert answer["score"] == pytest.approx(sum(p["score"] for p in parts), abs=1e-3)
    assert "attention" not in answer  # each sentence has its own
    for part in parts:
        cross = part["attention"]["kinds"]["cross"]
        assert len(cross["columns"]) == len(cross["weights"][0][0][0])  # its own source pieces
    # segment=false: the whole text is one model input, as before segmentation existed.
    whole = Translator.from_run_dir(trained_run[0].run_dir).translate([text])[0]
    status, answer = request(f"{server}/translate", {"text": text, "segment": False})
    assert status == 200 and answer["text"] == whole and "sentences" not in answer
    status, answer = request(f"{server}/translate", {"texts": [" ", sentences[3]]})
    assert status == 200
    assert [t["text"] for t in answer["translations"]] == ["", expected[sentences[3]]]
    assert answer["translations"][0]["sentences"] == []


def test_a_prefix_begins_the_translation_and_keeps_its_text_whole(server, trained_run, sentences):
    translator = Translator.from_run_dir(trained_run[0].run_dir)
    text = f"{sentences[0]} {sentences[1]}"
    forced = translator.translate_detailed([text], prefixes=["A young"])[0]
    status, answer = request(f"{server}/translate", {"text": text, "prefix": "A young"})
    assert status == 200 and answer["text"] == forced.text and answer["text"].startswith("A young")
    assert len(answer["sentences"]) == 1  # one model input: the prefix starts the whole text
    status, answer = request(f"{server}/translate",
                             {"texts": [sentences[2], text], "prefix": [None, "Two"]})  # fmt: skip
    assert status == 200
    plain = translator.translate([sentences[2]])[0]
    assert [t["text"] for t in answer["translations"]][0] == plain
    assert answer["translations"][1]["text"].startswith("Two")


def test_constraints_appear_in_the_translations(server, sentences, expected):
    text = f"{sentences[0]} {sentences[1]}"
    status, answer = request(
        f"{server}/translate", {"texts": [text, sentences[2]], "constraints": [["dog"], []]}
    )
    assert status == 200, answer
    first, second = answer["translations"]
    assert "dog" in first["text"] and len(first["sentences"]) == 1  # translated whole
    assert second["text"] == expected[sentences[2]]


def test_alignment_links_the_words_of_texts_and_of_their_sentences(server, trained_run, sentences):
    translator = Translator.from_run_dir(trained_run[0].run_dir)
    own = translator.translate_detailed(sentences[:2], alignment=-1)
    status, answer = request(f"{server}/translate", {"text": sentences[0], "alignment": True})
    assert status == 200 and answer["alignment"] == [list(link) for link in own[0].alignment]
    text = f"{sentences[0]} {sentences[1]}"
    status, answer = request(f"{server}/translate", {"text": text, "alignment": True})
    parts = answer["sentences"]
    assert [p["alignment"] for p in parts] == [[list(x) for x in t.alignment] for t in own]
    words = len(sentences[0].split()), len(own[0].text.split())
    second = [[i + words[0], j + words[1]] for i, j in own[1].alignment]
    assert answer["alignment"] == parts[0]["alignment"] + second  # counted from the text's start
    status, plain = request(f"{server}/translate", {"text": sentences[0]})
    assert "alignment" not in plain


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own(server, sentences, expected):
    before = request(f"{server}/metrics")[1]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(
            lambda s: request(f"{server}/translate", {"text": s}), sentences
        ))  # fmt: skip
    assert [status for status, _ in answers] == [200] * 32
    assert [body["text"] for _, body in answers] == [expected[s] for s in sentences]
    after = request(f"{server}/metrics")[1]
    name = "translator_batch_requests"
    batches = metric(after, f"{name}_count") - metric(before, f"{name}_count")
    single = metric(after, f'{name}_bucket{{le="1"}}') - metric(before, f'{name}_bucket{{le="1"}}')
    requests = metric(after, f"{name}_sum") - metric(before, f"{name}_sum")
    assert requests == 32 and batches < 32 and single < batches  # some batches held several


def test_an_n_best_list_on_a_greedy_run_widens_the_beam(server, sentences):
    status, result = request(f"{server}/translate", {"text": sentences[2], "decode": {"n_best": 3}})
    assert status == 200 and len(result["n_best"]) == 3
    # The run decodes greedily (beam 1, alpha 0): the beam widens to the list.
    assert result["decode"] == {"strategy": "beam", "beam_size": 3, "length_penalty": 0.0,
                                "n_best": 3}  # fmt: skip


def test_n_best_beam_and_attention_on_request(server, sentences):
    body = {"text": sentences[1], "decode": {"n_best": 3, "beam_size": 4}, "attention": True}
    status, result = request(f"{server}/translate", body)
    assert status == 200 and result["decode"]["strategy"] == "beam"
    scores = [alt["score"] for alt in result["n_best"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    cross = result["attention"]["kinds"]["cross"]
    assert len(cross["weights"]) == 2  # layers of the tiny model
    for row in cross["weights"][-1][0]:
        assert sum(row) == pytest.approx(1.0, abs=2e-3)


BAD_INPUTS = [
    ("not json", b"{text: hello}", 400, "not valid JSON"),
    ("not an object", b'["hello"]', 422, "expected a JSON object"),
    ("text not a string", b'{"text": 5}', 422, "text must be a string, not int"),
    ("texts not a list", b'{"texts": "hello"}', 422, "texts must be a list of strings"),
    ("a text that is not a string", b'{"texts": ["a", null]}', 422, "texts[1] must be a string"),
    ("both text and texts", b'{"text": "a", "texts": ["b"]}', 422, 'either "text"'),
    ("neither", b'{"decode": {}}', 422, 'either "text"'),
    ("empty texts", b'{"texts": []}', 422, "texts is empty"),
    ("too many texts", json.dumps({"texts": ["a"] * 33}).encode(), 413, "the limit is 32"),
    ("too long a text", json.dumps({"text": "a" * 5001}).encode(), 413, "5001 characters"),
    ("too many sentences", json.dumps({"text": "Ja. " * 129}).encode(), 413,
     "the texts hold 129 sentences; the limit is 128 (max_segments)"),
    ("too large a body", json.dumps({"text": "a" * 70000}).encode(), 413, "the limit is 65536"),
    ("unknown field", b'{"text": "a", "beam": 4}', 422, "unknown field 'beam'"),
    ("beam size too large", b'{"text": "a", "decode": {"beam_size": 9}}', 422, "1 to 8"),
    ("beam size not an integer", b'{"text": "a", "decode": {"beam_size": "4"}}', 422,
     "beam_size must be an integer"),
    ("n-best over the beam", b'{"text": "a", "decode": {"n_best": 3, "beam_size": 2}}', 422,
     "n_best=3: expected at most decode.beam_size=2"),
    ("negative length penalty", b'{"text": "a", "decode": {"length_penalty": -1}}', 422,
     "expected 0 to 5"),
    ("unknown decode setting", b'{"text": "a", "decode": {"temperature": 1}}', 422,
     "unknown decode setting 'temperature'"),
    ("attention not a boolean", b'{"text": "a", "attention": "yes"}', 422,
     "attention must be true, false or an object"),
    ("an unknown attention kind", b'{"text": "a", "attention": {"kinds": ["self"]}}', 422,
     "attention.kinds must be a list of cross, encoder_self, decoder_self"),
    ("a layer the model lacks", b'{"text": "a", "attention": {"layers": [2]}}', 422,
     "attention.layers: 2 is not one of the model's 2 layers"),
    ("heads neither all, mean nor a list", b'{"text": "a", "attention": {"heads": "max"}}', 422,
     'attention.heads must be "all", "mean" or a list'),
    ("an unknown attention field", b'{"text": "a", "attention": {"layer": 1}}', 422,
     "unknown attention field 'layer'"),
    ("segment not a boolean", b'{"text": "a", "segment": "yes"}', 422,
     "segment must be true or false, not 'yes'"),
    ("prefix not a string", b'{"text": "a", "prefix": 5}', 422, "prefix must be a string, not int"),
    ("prefixes not one per text", b'{"texts": ["a", "b"], "prefix": ["x"]}', 422,
     "prefix must be a list of 2 strings"),
    ("a prefix not a string", b'{"texts": ["a", "b"], "prefix": ["x", 3]}', 422,
     "prefix[1] must be a string, not int"),
    ("alignment not a boolean", b'{"text": "a", "alignment": 1}', 422,
     "alignment must be true or false, not 1"),
    ("constraints not a list", b'{"text": "a", "constraints": "dog"}', 422,
     "constraints must be a list of strings"),
    ("constraints not one list per text", b'{"texts": ["a", "b"], "constraints": [["x"]]}', 422,
     "constraints must be a list of 2 lists of strings"),
    ("too many constraints", json.dumps({"text": "a", "constraints": ["x"] * 17}).encode(), 413,
     "constraints has 17 phrases; the limit is 16 (max_constraints)"),
    ("constraints without room", json.dumps({"text": "Ja.", "constraints": ["a " * 40]}).encode(),
     422, "its constraints need"),
    ("too long a prefix", json.dumps({"text": "a", "prefix": "b" * 501}).encode(), 413,
     "prefix has 501 characters; the limit is 500 (max_prefix_chars)"),
    ("a prefix without room", json.dumps({"text": "Ja.", "prefix": "a " * 40}).encode(), 422,
     "no room left within the output length limit"),
    ("a lone surrogate", b'{"text": "a \\ud800 b"}', 422, "text is not valid Unicode"),
    ("an integer too long to read", b'{"text": "a", "decode": {"beam_size": 1' + b"1" * 5000
     + b"}}", 400, "not valid JSON"),
    ("nested too deeply", b"[" * 60000, 400, "nested too deeply"),
    ("not UTF-8", b'{"text": "caf\xe9"}', 400, "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_INPUTS,
                         ids=[c[0] for c in BAD_INPUTS])  # fmt: skip
def test_bad_input_gets_a_4xx_with_a_one_line_json_error(server, case, body, status, message):
    got, answer = request(f"{server}/translate", raw=body, method="POST")
    assert got == status, answer
    assert message in answer["error"] and "\n" not in answer["error"]


def test_attention_holds_the_kinds_layers_and_heads_asked_for(server, sentences):
    body = {"text": sentences[1], "attention": {"kinds": ["cross", "encoder_self"],
                                                "layers": [-1], "heads": "mean"}}  # fmt: skip
    status, result = request(f"{server}/translate", body)
    assert status == 200 and set(result["attention"]["kinds"]) == {"cross", "encoder_self"}
    for kind in result["attention"]["kinds"].values():
        assert kind["layers"] == [1] and kind["heads"] == "mean"
        (heads,) = kind["weights"]  # one layer
        assert len(heads) == 1 and len(heads[0]) == len(kind["rows"])  # their mean, rows
        for row in heads[0]:
            assert len(row) == len(kind["columns"]) and sum(row) == pytest.approx(1, abs=2e-3)
    body["attention"] = {"heads": [1, 0]}
    status, result = request(f"{server}/translate", body)
    cross = result["attention"]["kinds"]["cross"]
    assert status == 200 and cross["heads"] == [1, 0]
    assert [len(w) for w in cross["weights"]] == [2, 2]  # two layers of two heads


def test_an_answer_with_too_much_attention_is_refused_naming_the_limit(server, sentences):
    body = {"texts": sentences, "attention": {"kinds": ["cross", "encoder_self", "decoder_self"]}}
    status, answer = request(f"{server}/translate", body)
    assert status == 413 and "the limit is 20000 (max_attention_weights)" in answer["error"]
    assert request(f"{server}/health")[0] == 200


def send(url: str, head: bytes, body: bytes = b"") -> tuple[int, str]:
    """(status, body) of a request written by hand, headers and all."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"}"):
                break
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1].decode()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    answer = b""
    with sock:
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


POST = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(("header", "status", "message"), [
    (b"Host: evil.example:80\r\n", 403, "Host 'evil.example' is not one of this server's names"),
    (b"Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n", 403,
     "requests from pages of http://evil.example are not allowed"),
    (b"Host: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n", 200, '"text"'),
    (b"Host: localhost:{port}\r\n", 200, '"text"'),
])  # fmt: skip
def test_foreign_hosts_and_pages_are_refused(server, header, status, message):
    port = server.rsplit(":", 1)[1].encode()
    head = b"POST /translate HTTP/1.1\r\n" + header.replace(b"{port}", port)
    head += b"Content-Type: application/json\r\nConnection: close\r\n"
    got, text = send(server, head, b'{"text": "Hallo."}')
    assert got == status and message in text


def test_only_json_bodies_are_read(server):
    head = POST.replace(b"application/json", b"text/plain") + b"Connection: close\r\n"
    status, text = send(server, head, b'{"text": "Hallo."}')
    assert status == 415 and "Content-Type must be application/json, not 'text/plain'" in text


def test_slow_clients_are_cut_off_and_cannot_exhaust_the_server(server, sentences):
    """300 connections that send part of a body, or part of their headers, and stall: each is
    answered 408 or closed after read_timeout_s (2 s); the server answers others meanwhile
    (503 beyond max_connections, never a crash) and normally once they are gone."""
    host, port = server.removeprefix("http://").split(":")
    few = [socket.create_connection((host, int(port)), timeout=30) for _ in range(8)]
    for sock in few:
        sock.sendall(POST + b'Content-Length: 100\r\n\r\n{"te')
    for sock in few:
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")  # answered, then closed
    stalled = []
    for i in range(300):
        sock = socket.create_connection((host, int(port)), timeout=30)
        part = POST + b'Content-Length: 100\r\n\r\n{"te' if i % 2 else POST[:40]
        sock.sendall(part)
        stalled.append(sock)
    status, _ = request(f"{server}/translate", {"text": sentences[0]})
    assert status in (200, 503)
    answers = [read_until_closed(sock) for sock in stalled]
    assert all(a == b"" or a.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) for a in answers)
    assert request(f"{server}/translate", {"text": sentences[0]})[0] == 200


def test_wrong_routes_and_methods_are_json_errors(server):
    assert request(f"{server}/nowhere")[0] == 404
    status, answer = request(f"{server}/translate")  # GET
    assert status == 405 and "error" in answer


def test_health_and_metrics_parse(server):
    status, health = request(f"{server}/health")
    assert status == 200 and health["status"] == "ready" and health["run_dir"] == "run"
    assert "/" not in health["run_dir"]  # no local paths for anyone to read
    status, text = request(f"{server}/metrics")
    assert status == 200
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"\})? [0-9.e+-]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert metric(text, 'translator_requests_total{status="200"}') >= 1
    assert metric(text, "translator_errors_total") >= 1  # the bad inputs above
    assert metric(text, "translator_queue_depth") == 0


def test_a_client_that_disconnects_while_queued_costs_nothing(server, sentences):
    """A request still waiting behind a long batch is dropped when its client goes."""
    before = metric(request(f"{server}/metrics")[1], "translator_sentences_total")
    # Four long batches, one after the other (their settings differ): a second or more of work.
    long_batches = [{"texts": sentences, "decode": {"beam_size": 8, "n_best": 8,
                                                    "length_penalty": alpha}}
                    for alpha in (0.0, 0.5, 1.0, 1.5)]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(request, f"{server}/translate", b) for b in long_batches]
        time.sleep(0.2)  # the first long batch is decoding
        body = json.dumps({"texts": sentences[:5]}).encode()
        host, port = server.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(POST + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert [b.result()[0] for b in busy] == [200] * 4
    time.sleep(0.5)
    after = metric(request(f"{server}/metrics")[1], "translator_sentences_total")
    assert after - before == 4 * len(sentences)  # the long batches only


def test_ctranslate2_engine_serves_the_same_translations(
    trained_run, tmp_path, sentences, expected
):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)  # the conversion is written into the run
    url, process = start_server(run, tmp_path / "serve.log", "engine=ctranslate2")
    try:
        assert request(f"{url}/health")[1]["engine"] == "ct2-default"
        status, many = request(f"{url}/translate", {"texts": sentences[:8], "attention": True})
        assert status == 200
        assert [t["text"] for t in many["translations"]] == [expected[s] for s in sentences[:8]]
        assert "engine=tensorflow" in many["warning"]
        assert not any("attention" in t for t in many["translations"])
        body = {"text": sentences[0], "decode": {"n_best": 3}}
        status, listed = request(f"{url}/translate", body)
        assert status == 200 and len(listed["n_best"]) == 3
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_bad_batch_size_is_refused_before_serving(trained_run):
    value = "0"
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "serve.py"),
         f"run_dir={trained_run[0].run_dir}", f"max_batch_size={value}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"max_batch_size={value}: expected a number >= 1" in done.stderr
    assert "serving" not in done.stdout
