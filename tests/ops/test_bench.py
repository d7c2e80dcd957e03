"""bench/: the runner finds the scripts; the load generator is bounded and measures for real."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import __main__ as runner
from bench import _load


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        body = b"ok" if self.path == "/ok" else b"no"
        self.send_response(200 if self.path == "/ok" else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_runner_discovers_benchmark_scripts_not_helpers():
    scripts = runner.discover()
    assert "serving" in scripts and scripts == sorted(scripts)
    assert not [name for name in scripts if name.startswith("_")]  # _load, _settings, _urls are helpers
    assert runner.main(["nope"]) == 2


def test_load_generator_counts_requests_and_latency(server):
    result = _load.run(server, "/ok", concurrency=4, seconds=1, warmup=0.2, processes=2)
    assert result["errors"] == 0
    assert result["requests"] > 20
    assert result["req_per_s"] == round(result["requests"] / 1, 1)
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["concurrency"] == 4


def test_load_generator_counts_non_200_as_errors(server):
    result = _load.run(server, "/fail", concurrency=2, seconds=0.5, warmup=0, processes=1)
    assert result["requests"] == 0
    assert result["errors"] > 0


@pytest.mark.parametrize(("concurrency", "seconds"), [(0, 1), (257, 1), (4, 0), (4, 121)])
def test_load_generator_is_bounded(concurrency, seconds):
    with pytest.raises(ValueError, match="bounded load only"):
        _load.run(1, "/", concurrency=concurrency, seconds=seconds)
