"""Which Host names and page origins the server answers."""

import pytest

from translator.serving.guard import GuardMiddleware, host_name, server_names


def test_host_names_are_read_without_port_or_brackets():
    assert host_name("Example.ORG:8000") == "example.org"
    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


def test_a_loopback_server_answers_loopback_names_and_the_allowed_ones():
    names = server_names("127.0.0.1", ["Translate.example"])
    assert {"localhost", "127.0.0.1", "::1", "translate.example"} <= names
    assert "evil.example" not in names and "0.0.0.0" not in names
    assert server_names("127.0.0.1", ["*"]) is None  # any


@pytest.mark.parametrize(("host", "origin", "refused"), [
    ("127.0.0.1:8000", None, None),
    ("localhost:8000", "http://localhost:8000", None),  # the server's own page
    (None, None, None),  # HTTP/1.0 without Host: no browser sends that
    ("rebound.example:8000", None, "Host 'rebound.example'"),
    ("127.0.0.1:8000", "http://evil.example", "pages of http://evil.example"),
    ("127.0.0.1:8000", "http://127.0.0.1:9999", "pages of http://127.0.0.1:9999"),
    ("127.0.0.1:8000", "null", "pages of null"),
    ("127.0.0.1:8000", "https://app.example", None),  # in allowed_origins
])  # fmt: skip
def test_foreign_hosts_and_origins_are_refused(host, origin, refused):
    guard = GuardMiddleware(None, server_names("127.0.0.1", []), ["https://app.example/"])
    problem = guard.problem(host, origin)
    assert (problem is None) if refused is None else (refused in problem)
