"""Serving under load: the real server, 1, 8 and 32 concurrent clients, one sentence a request,
then the same normal clients beside hostile ones.

    make bench-serve RUN=checkpoints/<run>
    make bench-serve ARGS="serve_clients=[1,32] serve_seconds=30"

Starts `scripts/serve.py` on a free localhost port, and for each number of clients sends the
run's test sentences, one per request, for `serve_seconds` (the last level for
`serve_soak_seconds`, to see memory settle). The hostile level then runs
`serve_hostile_clients` normal clients twice for `serve_seconds`: alone, and beside
`serve_hostile_slow_bodies` connections that send 4 bytes of a declared body and stall, and one
client cycling through every decode setting a request may choose. Prints one JSON object:
sentences/s, p50/p95/p99 latency, errors and the server's resident memory per level, the
hostile level's p95 against its own baseline, and the same translator on one sentence in this
process for comparison.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from translator.config import CONFIG_DIR, PROJECT_ROOT, load_config
from translator.data import load_corpus
from translator.inference.engines import load_translator
from translator.run_dir import locate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run_dir: str, port: int, overrides: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "serve.py"), f"run_dir={run_dir}",
         f"port={port}", "log_level=warning", *overrides],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: the server exited ({process.returncode}) before it was ready")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("error: the server was not ready within 300 s")


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal)
    from /proc/stat, or None where there is none."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_percent(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time the hypervisor gave to other machines between two `cpu_times()`: on a
    shared virtual machine, a level with more steal ran on a slower machine."""
    if before is None or after is None:
        return None
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return round(100 * spent[7] / max(1, sum(spent)), 1)


def batch_totals(port: int) -> tuple[float, float]:
    """(sentences, batches) the server has decoded so far, from its /metrics."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    lines = connection.getresponse().read().decode().splitlines()
    values = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    return (float(values["translator_batch_sentences_sum"]),
            float(values["translator_batch_sentences_count"]))  # fmt: skip


def sample_rss(pid: int, every: float, done: threading.Event) -> list[float]:
    """The server's resident MB every `every` seconds until `done` is set (filled in the
    background; read it after setting `done`)."""
    samples: list[float] = []

    def sample():
        while not done.wait(every):
            samples.append(round(rss_mb(pid), 1))

    threading.Thread(target=sample, daemon=True).start()
    return samples


def load(port: int, sentences: list[str], clients: int, seconds: float, pid: int,
         rss_every: float) -> dict:  # fmt: skip
    """`clients` threads, each on its own keep-alive connection, for `seconds`."""
    latencies, errors, lock = [], [0], threading.Lock()
    counter, stop_at = itertools.count(), time.perf_counter() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < stop_at:
            body = json.dumps({"text": sentences[next(counter) % len(sentences)]})
            start = time.perf_counter()
            try:
                connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1

    rss_before, done, cpu_before = rss_mb(pid), threading.Event(), cpu_times()
    decoded_before = batch_totals(port)
    samples = sample_rss(pid, rss_every, done)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    done.set()
    sentences, batches = (b - a for a, b in zip(decoded_before, batch_totals(port), strict=True))
    ms = np.percentile(latencies, [50, 95, 99]) * 1000 if latencies else [float("nan")] * 3
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "sentences": len(latencies),
        "sentences_per_second": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(ms[0]), 1),
        "p95_ms": round(float(ms[1]), 1),
        "p99_ms": round(float(ms[2]), 1),
        "errors": errors[0],
        "cpu_steal_percent": steal_percent(cpu_before, cpu_times()),
        "sentences_per_batch": round(sentences / max(1, batches), 2),
        "server_rss_mb_before": round(rss_before, 1),
        "server_rss_mb_after": round(rss_mb(pid), 1),
        "server_rss_mb_every_interval": list(samples),
    }


SLOW_BODY = (
    b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"te'
)


def slow_bodies(port: int, count: int, stop: threading.Event) -> Counter:
    """`count` connections at a time that declare a body, send 4 bytes of it and wait; each is
    opened again once the server answers or closes it. Counts how each one ended (filled in the
    background until `stop` is set)."""
    ends: Counter = Counter()

    def attacker():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
                    sock.sendall(SLOW_BODY)
                    answer = sock.recv(64)
                ends[answer[9:12].decode() if answer else "closed"] += 1
            except OSError as error:
                ends[type(error).__name__] += 1
                time.sleep(0.1)

    for _ in range(count):
        threading.Thread(target=attacker, daemon=True).start()
    return ends


def decode_settings(max_beam: int = 8) -> list[dict]:
    """Every beam size, n-best size and a range of length penalties a request may choose."""
    penalties = [round(0.1 * i, 1) for i in range(0, 51, 7)]
    return [{"beam_size": beam, "n_best": n, "length_penalty": penalty}
            for beam in range(1, max_beam + 1) for n in range(1, beam + 1)
            for penalty in penalties]  # fmt: skip


def cycling_client(port: int, sentences: list[str], stop: threading.Event) -> Counter:
    """One client sending each request with the next decode setting of `decode_settings`,
    until `stop` is set; counts the answers' status codes."""
    statuses: Counter = Counter()

    def cycle():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i, decode in enumerate(itertools.cycle(decode_settings())):
            if stop.is_set():
                return
            body = json.dumps({"text": sentences[i % len(sentences)], "decode": decode})
            try:
                connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                statuses[str(response.status)] += 1
            except OSError as error:
                statuses[type(error).__name__] += 1
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    threading.Thread(target=cycle, daemon=True).start()
    return statuses


def hostile_level(port: int, sentences: list[str], cfg: DictConfig, pid: int) -> dict:
    """The normal clients alone, then beside slow bodies and a client cycling decode settings."""
    clients, seconds = cfg.serve_hostile_clients, cfg.serve_seconds
    print(
        f"{clients} client(s) for {seconds} s, then again beside "
        f"{cfg.serve_hostile_slow_bodies} slow bodies and a settings cycler",
        file=sys.stderr,
    )
    alone = load(port, sentences, clients, seconds, pid, cfg.serve_rss_every_seconds)
    stop = threading.Event()
    ends = slow_bodies(port, cfg.serve_hostile_slow_bodies, stop)
    statuses = cycling_client(port, sentences, stop)
    beside = load(port, sentences, clients, seconds, pid, cfg.serve_rss_every_seconds)
    stop.set()
    return {
        "alone": alone,
        "beside_attackers": beside,
        "p95_beside_to_alone": round(beside["p95_ms"] / alone["p95_ms"], 2),
        "slow_bodies_ended": dict(ends),
        "cycling_client_statuses": dict(statuses),
    }


def translate_one_ms(run, sentences: list[str], overrides: list[str], count: int = 50) -> float:
    """Median time of the server's translator (same engine and decode settings) translating one
    sentence, in this process."""
    serve = load_config("serve", list(overrides))
    translator = load_translator(run, serve.decode, serve.weights, serve.engine)
    translator.translate(sentences[:2])  # trace
    times = []
    for sentence in sentences[:count]:
        start = time.perf_counter()
        translator.translate([sentence])
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 1)


def bench_serve(cfg: DictConfig) -> dict:
    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    sentences = load_corpus(run.load_config().data, cfg.split).source
    port = free_port()
    server = start_server(str(run), port, cfg.serve_overrides)
    try:
        levels = []
        for i, clients in enumerate(cfg.serve_clients):
            last = i == len(cfg.serve_clients) - 1
            seconds = cfg.serve_soak_seconds if last else cfg.serve_seconds
            print(f"{clients} client(s) for {seconds} s", file=sys.stderr)
            levels.append(
                load(port, sentences, clients, seconds, server.pid, cfg.serve_rss_every_seconds)
            )
        normal_peak = rss_mb(server.pid, "VmHWM")
        hostile = None
        if cfg.serve_hostile_slow_bodies:
            hostile = hostile_level(port, sentences, cfg, server.pid)
        peak = rss_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=60)
    one = translate_one_ms(run, sentences, cfg.serve_overrides)
    first, most = levels[0], levels[-1]
    soak = most["server_rss_mb_after"] / most["server_rss_mb_before"] - 1
    samples = most["server_rss_mb_every_interval"]
    half = samples[len(samples) // 2 :] or [most["server_rss_mb_after"]]
    return {
        "machine": machine(),
        "run_dir": str(run),
        "server_overrides": list(cfg.serve_overrides),
        "split": cfg.split,
        "levels": levels,
        "server_peak_rss_mb": round(peak, 1),
        "server_peak_rss_mb_before_the_hostile_level": round(normal_peak, 1),
        "hostile": hostile,
        "translate_one_sentence_ms": one,
        "throughput_ratio_most_to_one_client": round(
            most["sentences_per_second"] / first["sentences_per_second"], 2
        ),
        "p50_one_client_to_translate": round(first["p50_ms"] / one, 2),
        "rss_growth_during_last_level": round(soak, 4),
        # Settling: growth over the second half of the last level alone.
        "rss_growth_during_its_second_half": round(half[-1] / half[0] - 1, 4),
    }


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_serve(cfg), cfg.output)


if __name__ == "__main__":
    main()
