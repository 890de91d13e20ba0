"""`harness judge check` / `validate_judge` against a real local HTTP server (http.server in a
thread): a 2xx model list is ok; any other status, or a body that is not a model list, is a
one-line error naming the URL and the status, and the CLI exits 2."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from typing import Iterator

import pytest

from harness.errors import ConfigError
from harness.evaluate.judges import validate_judge
from tests.test_judges import KEY, KEY_ENV, judge_block, make_suite

MODEL_LIST = json.dumps({"object": "list", "data": [{"id": "judge", "object": "model"}]}).encode()


@contextlib.contextmanager
def models_server(status: int, body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """A server on a free 127.0.0.1 port whose GET /v1/models answers `status` with `body`;
    yields its /v1 root and counts the requests it saw."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            code, payload = (status, body) if self.path == "/v1/models" else (404, b'{"error": "no route"}')
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
        assert "/v1/models" in seen, seen  # the check really asked the server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def judge_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("HARNESS_JUDGE_BASE_URL", "HARNESS_JUDGE_MODEL", "HARNESS_JUDGE_API_KEY_ENV", "HARNESS_JUDGE"):
        monkeypatch.delenv(name, raising=False)


def _cli(suite_path, capsys) -> tuple[int, str, str]:
    from harness.cli import main

    with pytest.raises(SystemExit) as code:
        main(["judge", "check", str(suite_path)])
    captured = capsys.readouterr()
    return code.value.code, captured.out, captured.err


def test_model_list_is_ok(tmp_path, capsys):
    with models_server(200, MODEL_LIST) as url:
        suite = make_suite(tmp_path / "ok", judge_block(url))
        check = validate_judge(suite)
        assert check.ping.status == 200 and check.ping.models == ["judge"] and check.ping.note == ""
        code, out, err = _cli(suite.path, capsys)
    assert code == 0, out + err
    assert "reachable, GET /models -> HTTP 200" in out and "models: judge" in out
    assert out.strip().endswith("ok") and err == ""


@pytest.mark.parametrize("status", [500, 503, 404, 302])
def test_non_2xx_models_answer_fails_with_url_and_status(tmp_path, capsys, status):
    with models_server(status, b'{"error": {"message": "boom inside"}}') as url:
        suite = make_suite(tmp_path / "bad", judge_block(url, retries=0))
        with pytest.raises(ConfigError) as err:
            validate_judge(suite)
        text = str(err.value)
        assert "\n" not in text and "; fix: " in text
        assert f"GET {url}/models answered HTTP {status}" in text
        code, out, cli_err = _cli(suite.path, capsys)
    assert code == 2 and "ok" not in out.split()
    assert cli_err.count("\n") == 1 and f"{url}/models answered HTTP {status}" in cli_err
    assert KEY not in cli_err


@pytest.mark.parametrize("body, content_type", [
    (b"<html>Internal proxy page</html>", "text/html"),
    (b"", "application/json"),
    (b'["judge"]', "application/json"),
    (b'{"models": "judge"}', "application/json"),
])
def test_unparseable_model_list_fails(tmp_path, capsys, body, content_type):
    with models_server(200, body, content_type) as url:
        suite = make_suite(tmp_path / "garbled", judge_block(url))
        with pytest.raises(ConfigError, match=r"answered HTTP 200 with a body that is not a model list") as err:
            validate_judge(suite)
        assert f"{url}/models" in str(err.value) and "\n" not in str(err.value)
        code, out, cli_err = _cli(suite.path, capsys)
    assert code == 2 and cli_err.count("\n") == 1 and "not a model list" in cli_err


def test_plugin_backend_reporting_an_error_status_fails_the_check(tmp_path):
    from harness.evaluate.judges.base import JUDGE_BACKENDS, PingResult
    from harness.evaluate.judges.openai_client import OpenAIBackend

    class Lenient(OpenAIBackend):  # a third-party backend that reports instead of raising
        def ping(self, timeout: float = 3.0) -> PingResult:
            return PingResult(url=self.shown_url, status=500, latency_s=0.0)

    JUDGE_BACKENDS.add("lenient-test", Lenient)
    try:
        suite = make_suite(tmp_path / "plugin", judge_block("http://127.0.0.1:9/v1", backend="lenient-test"))
        with pytest.raises(ConfigError, match=r"http://127.0.0.1:9/v1 answered HTTP 500; fix: "):
            validate_judge(suite)
    finally:
        JUDGE_BACKENDS.remove("lenient-test")
