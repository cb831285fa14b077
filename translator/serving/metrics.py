"""The server's counters and histograms, in Prometheus's text exposition format."""

from __future__ import annotations

import bisect
from collections import Counter

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    """Cumulative bucket counts, sum and count of observations."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip([*self.buckets, "+Inf"], self.counts, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        return [*lines, f"{name}_sum {self.sum:.6f}", f"{name}_count {self.count}"]


class ServerMetrics:
    """What `GET /metrics` reports: requests by status, latency, batch sizes, queue depth."""

    def __init__(self):
        self.requests = Counter()  # status code -> count
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sentences = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.sentences = 0
        self.queue_depth = 0  # requests waiting for a batch

    def request_done(self, status: int, seconds: float | None = None) -> None:
        self.requests[status] += 1
        if seconds is not None:
            self.latency.observe(seconds)

    def batch_done(self, requests: int, sentences: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_sentences.observe(sentences)
        self.sentences += sentences

    def render(self) -> str:
        lines = [
            "# HELP translator_requests_total HTTP requests answered, by status code.",
            "# TYPE translator_requests_total counter",
            *(
                f'translator_requests_total{{status="{s}"}} {n}'
                for s, n in sorted(self.requests.items())
            ),  # fmt: skip
            "# HELP translator_errors_total Requests answered with a 4xx or 5xx status.",
            "# TYPE translator_errors_total counter",
            f"translator_errors_total {sum(n for s, n in self.requests.items() if s >= 400)}",
            "# HELP translator_request_seconds Time from a request's arrival to its answer.",
            "# TYPE translator_request_seconds histogram",
            *self.latency.lines("translator_request_seconds"),
            "# HELP translator_batch_requests Requests decoded together in one batch.",
            "# TYPE translator_batch_requests histogram",
            *self.batch_requests.lines("translator_batch_requests"),
            "# HELP translator_batch_sentences Sentences decoded together in one batch.",
            "# TYPE translator_batch_sentences histogram",
            *self.batch_sentences.lines("translator_batch_sentences"),
            "# HELP translator_sentences_total Sentences translated.",
            "# TYPE translator_sentences_total counter",
            f"translator_sentences_total {self.sentences}",
            "# HELP translator_queue_depth Requests waiting for a batch.",
            "# TYPE translator_queue_depth gauge",
            f"translator_queue_depth {self.queue_depth}",
        ]
        return "\n".join(lines) + "\n"
