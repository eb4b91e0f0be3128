"""The HTTP API (`runner serve`): a real server on loopback, and a schema-driven fuzz test."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from runner._api import create_api
from runner.cli import app as cli_app
from tests._fixtures.worlds import TaskWorld

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILE = "nanoGPT/custom_pretrain.py"
HIDDEN = "lm-eval-tiny"  # the fake task's hidden setting
REPO = Path(__file__).resolve().parents[2]
#: what answers without the token; written out here, not imported, so that opening a path
#: is a visible change to this test
OPEN = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


class LoopbackServer:
    """uvicorn serving an app on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def api_server(runner_env: TaskWorld, tmp_path: Path) -> Iterator[LoopbackServer]:
    app = create_api(runs_dir=tmp_path / "runs", token=TOKEN, db=f"sqlite:///{tmp_path / 'lb.db'}")
    server = LoopbackServer(app)
    yield server
    server.close()


def test_session_over_http(api_server: LoopbackServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=api_server.url, timeout=60) as http:
        assert http.post("/sessions", json={"task": "fake-lr"}).status_code == 401
        bad = http.post(
            "/sessions", json={"task": "fake-lr"}, headers={"Authorization": "Bearer wrong"}
        )
        assert bad.status_code == 401
        assert http.post("/sessions", json={"task": "nope"}, headers=AUTH).status_code == 404
        assert (
            http.post("/sessions", json={"task": "fake-lr", "extra": 1}, headers=AUTH).status_code
            == 422
        )
        created = http.post("/sessions", json={"task": "fake-lr", "max_tests": 1}, headers=AUTH)
        assert created.status_code == 201, created.text
        body = created.json()
        sid = body["session_id"]
        assert "Fake learning-rate task" in body["observation"]
        assert body["budget"] == {
            "steps_used": 0,
            "max_steps": 8,
            "tests_used": 0,
            "max_tests": 1,
            "submitted_test": None,
            "done": False,
        }

        tool = f"/sessions/{sid}/tools"
        assert http.post(f"{tool}/view", json={"filename": FILE}).status_code == 401
        assert http.post(f"{tool}/read", json={}, headers=AUTH).status_code == 422
        viewed = http.post(
            f"{tool}/view", json={"filename": FILE, "start_line": 9, "end_line": 11}, headers=AUTH
        ).json()
        assert viewed["ok"] and viewed["cost_step"] == 1 and "get_lr" in viewed["text"]
        wrong = http.post(f"{tool}/edit", json={"op": "replace"}, headers=AUTH).json()
        assert not wrong["ok"] and wrong["text"].startswith("ERROR: Invalid arguments for 'edit'")

        # follow the test live on the events stream while it runs
        events: list[str] = []

        def listen() -> None:
            time.sleep(0.3)
            with httpx.stream(
                "GET", f"{api_server.url}/sessions/{sid}/events", headers=AUTH, timeout=60
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        events.append(line.split(":", 1)[1].strip())

        listener = threading.Thread(target=listen)
        listener.start()
        tested = http.post(f"{tool}/test", headers=AUTH).json()
        listener.join(timeout=60)
        assert tested["ok"] and tested["text"].startswith("[Test #1]") and tested["cost_test"] == 1
        assert events and events[0] == "state"
        submitted = http.post(f"{tool}/submit", json={"n": 1}, headers=AUTH).json()
        assert submitted["ok"] and submitted["done"] and submitted["cost_step"] == 0

        state = http.get(f"/sessions/{sid}", headers=AUTH).json()
        assert state["budget"]["submitted_test"] == 1 and state["budget"]["steps_used"] == 3
        transcript = http.get(f"/sessions/{sid}/transcript", headers=AUTH).json()
        assert transcript[0]["kind"] == "header"
        assert [e["name"] for e in transcript if e["kind"] == "tool_result"] == [
            "view",
            "edit",
            "test",
            "submit",
        ]
        assert http.get("/sessions/unknown-id", headers=AUTH).status_code == 404
        schema = http.get("/openapi.json").json()  # the API's description needs no token
        assert "/sessions/{session_id}/tools/{tool}" in schema["paths"]
    from leaderboard import Store

    assert Store(f"sqlite:///{tmp_path / 'lb.db'}").get_run(sid) is not None


def _example_path(path: str) -> str:
    """A concrete URL for a route template: any value the path parameters accept."""
    return re.sub(r"\{tool\}", "view", re.sub(r"\{[^}]+\}", "some-session", path))


def test_every_route_but_health_needs_the_token(api_server: LoopbackServer) -> None:
    """Every route the app has (enumerated, so a new one cannot be forgotten) refuses a
    request without the token, or with a wrong one, with 401 and ``WWW-Authenticate``."""
    from fastapi.routing import iter_route_contexts

    app = api_server.server.config.app  # the app being served
    routes = [  # the app's own routes and those of the routers it includes, flattened
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        for method in sorted(route.methods or {"GET"})
        if method != "HEAD"
    ]
    assert {path for _, path in routes} >= {"/sessions", "/sessions/{session_id}/events", *OPEN}
    assert len(routes) >= 14
    with httpx.Client(base_url=api_server.url, timeout=30) as http:
        with http.stream("GET", "/sessions", headers=AUTH) as ok:  # the token does open them
            assert ok.status_code == 200
        for method, path in [*routes, ("GET", "/no-such-route"), ("DELETE", "/sessions")]:
            url = _example_path(path)
            if path in OPEN:
                assert http.request(method, url).status_code == 200, (method, path)
                continue
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": TOKEN},
            ):
                response = http.request(method, url, headers=headers, json={"task": "fake-lr"})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json() == {"detail": "missing or wrong bearer token"}
        assert http.get("/sessions", headers=AUTH).json() == []  # nothing slipped through


def test_oversized_bodies_get_413_unparsed(api_server: LoopbackServer) -> None:
    """2 MiB of invalid JSON gets 413 — not 422 — with and without Content-Length: the
    cap answers before anything parses the body. Just under the cap, the same bytes are
    parsed (and refused as JSON)."""
    cap = 1 << 20
    junk = b"{" * (2 * cap)

    def chunked(data: bytes) -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    with httpx.Client(base_url=api_server.url, timeout=30) as http:
        headers = {**AUTH, "content-type": "application/json"}
        for path in ("/sessions", "/sessions/some-session/tools/edit"):
            declared = http.post(path, content=junk, headers=headers)
            assert declared.status_code == 413, declared.text
            assert declared.json() == {"detail": f"request body larger than {cap} bytes"}
            streamed = http.post(path, content=chunked(junk), headers=headers)
            assert streamed.request.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in streamed.request.headers
            assert streamed.status_code == 413, streamed.text
            assert streamed.json()["detail"].startswith("request body larger than")
        # the token is checked first: an anonymous client cannot even make the server read
        anonymous = http.post(
            "/sessions", content=junk, headers={"content-type": "application/json"}
        )
        assert anonymous.status_code == 401
        under = http.post("/sessions", content=b"{" * (cap - 1), headers=headers)
        assert under.status_code == 422, under.text
        under_streamed = http.post("/sessions", content=chunked(b"{" * cap), headers=headers)
        assert under_streamed.status_code == 422, under_streamed.text
        assert http.get("/health").json() == {"status": "ok"}  # the server is still fine


def test_body_cap_is_a_parameter(runner_env: TaskWorld, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    app = create_api(runs_dir=tmp_path / "runs", token=TOKEN, max_body_bytes=64)
    with TestClient(app) as client:
        small = client.post("/sessions", json={"task": "nope"}, headers=AUTH)
        assert small.status_code == 404
        large = client.post("/sessions", json={"task": "x" * 100}, headers=AUTH)
        assert large.status_code == 413 and "64 bytes" in large.json()["detail"]
    with pytest.raises(ValueError):
        create_api(runs_dir=tmp_path / "runs", token="")


def test_events_during_submit_never_name_a_hidden_setting(
    runner_env: TaskWorld, tmp_path: Path
) -> None:
    """The final evaluation of a submit runs the hidden setting, which reports progress for
    about two seconds while we listen: none of it reaches the stream or the transcript."""
    (runner_env.codebase / "scripts" / "lm_eval.sh").write_text(
        "set -e\n"
        "for i in 1 2 3 4 5 6 7 8; do\n"
        '  echo "PB_PROGRESS {\\"step\\": $i, \\"max_steps\\": 8, \\"phase\\": \\"eval\\"}"\n'
        "  sleep 0.25\n"
        "done\n"
        "python evaluate.py --kind lm_eval\n"
    )
    server = LoopbackServer(create_api(runs_dir=tmp_path / "runs", token=TOKEN))
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as http:
            created = http.post("/sessions", json={"task": "fake-lr", "max_tests": 1})
            sid = created.json()["session_id"]
            tested = http.post(f"/sessions/{sid}/tools/test").json()
            assert tested["ok"], tested
            submitted: dict[str, object] = {}
            submitter = threading.Thread(
                target=lambda: submitted.update(
                    http.post(f"/sessions/{sid}/tools/submit", json={"n": 1}).json()
                )
            )
            submitter.start()
            deadline = time.monotonic() + 30
            while http.get(f"/sessions/{sid}").json()["busy_with"] != "submit":
                assert time.monotonic() < deadline and submitter.is_alive(), "submit never ran"
                time.sleep(0.02)
            with http.stream("GET", f"/sessions/{sid}/events") as stream:
                raw = "\n".join(stream.iter_lines())
            submitter.join(timeout=60)
            transcript = http.get(f"/sessions/{sid}/transcript").text
        run_dir = tmp_path / "runs" / sid
    finally:
        server.close()
    assert submitted.get("ok") and submitted.get("done"), submitted
    kinds = re.findall(r"^event: (\w+)", raw, flags=re.MULTILINE)
    assert kinds[0] == "state" and kinds[-1] == "result", raw  # listened to the whole submit
    # the hidden setting did run (and report progress) while the stream was open
    assert any(HIDDEN in str(p) for p in run_dir.rglob("*")), "no final run of the hidden setting"
    assert HIDDEN not in raw, raw
    assert HIDDEN not in transcript


def test_api_fuzz_no_server_errors(runner_env: TaskWorld, tmp_path: Path) -> None:
    """Schema-driven requests (valid and invalid) against every operation: never a 5xx."""
    from hypothesis import given
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from starlette.testclient import TestClient

    app = create_api(runs_dir=tmp_path / "runs", token=TOKEN, max_sessions=8)
    with TestClient(app) as client:  # one real session, for the read-only operations
        client.post("/sessions", json={"task": "fake-lr"}, headers=AUTH)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # The event stream is long-lived; the functional test above covers it.
    operations = [op for op in operations if not op.path.endswith("/events")]
    assert len(operations) >= 7
    calls: list[tuple[str, str, int]] = []

    def fuzz_operation(operation: object) -> None:
        @given(case=operation.as_strategy(), with_token=st.booleans())  # type: ignore[attr-defined]
        @settings(
            max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case: object, with_token: bool) -> None:
            headers = dict(getattr(case, "headers", None) or {})
            if with_token:
                headers["Authorization"] = AUTH["Authorization"]
            response = case.call(headers=headers)  # type: ignore[attr-defined]
            calls.append((case.method, case.path, response.status_code))  # type: ignore[attr-defined]
            case.validate_response(response, checks=[not_a_server_error])  # type: ignore[attr-defined]
            assert response.status_code < 500, (case.path, response.text)  # type: ignore[attr-defined]

        fuzz()

    for operation in operations:
        fuzz_operation(operation)
    assert len(calls) >= 30
    assert any(400 <= code < 500 for _, _, code in calls), "invalid requests were generated"


# ── `runner serve`: the home is prepared before the first request ──────────────────────────


def test_serve_refuses_a_home_it_cannot_prepare(runner_env: TaskWorld, tmp_path: Path) -> None:
    home = tmp_path / "not-a-directory"
    home.write_text("a file where the home should be\n")
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--token", TOKEN, "--run-dir", str(tmp_path / "runs")],
        env={"PRETRAINBENCH_HOME": str(home)},
    )
    assert result.exit_code == 1, result.output
    assert "runner setup" in result.output and str(home) in result.output
    assert not (tmp_path / "runs").exists()


def test_serve_prepares_an_unprepared_home_first(runner_env: TaskWorld, tmp_path: Path) -> None:
    """A home with the tokenizer but no corpus: `runner serve` builds the offline corpus
    (a few seconds, no network), says so in one line, then serves."""
    from runner._setup import setup_ready

    tokenizer = runner_env.home / "tokenizer" / "gpt2.tiktoken"
    if not tokenizer.is_file():
        pytest.skip("no GPT-2 tokenizer on this machine to copy (run `runner setup` once)")
    home = tmp_path / "fresh-home"
    (home / "tokenizer").mkdir(parents=True)
    shutil.copy(tokenizer, home / "tokenizer" / "gpt2.tiktoken")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PRETRAINBENCH_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("PRETRAINBENCH_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "serve", "--port", str(port), "--token", TOKEN],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(
                        f"runner serve did not start:\n{proc.communicate()}"
                    ) from None
                time.sleep(0.3)
        assert health.status_code == 200
        assert setup_ready(home)  # prepared before the first request was answered
        assert httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=5).status_code == 401
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    preparing = [line for line in stderr.splitlines() if line.startswith("preparing")]
    assert len(preparing) == 1 and str(home) in preparing[0], stderr


def test_a_client_cannot_label_its_run_as_one_the_harness_drives(
    api_server: LoopbackServer, runner_env: TaskWorld, tmp_path: Path
) -> None:
    """A client's code is untrusted: labelled ``baseline:`` its run would be ranked as a
    baseline (and its jobs would add to the shared compile cache), labelled ``openai:`` it would
    be taken for the harness's own agent. The HTTP API, a hosted run (MCP) and the reopening of
    a baseline's run directory by `runner mcp --run-dir` all refuse such a label."""
    from runner._display import Display
    from runner._host import HostedRun
    from runner._run import ActiveRun, RunConfig, RunError

    with httpx.Client(base_url=api_server.url, timeout=60) as http:
        for label in ("baseline:cosine", "openai:gpt-x", "mcp:client", "cosine"):
            refused = http.post("/sessions", json={"task": "fake-lr", "agent": label}, headers=AUTH)
            assert refused.status_code == 422, (label, refused.text)
        created = http.post(
            "/sessions", json={"task": "fake-lr", "agent": "http:mine"}, headers=AUTH
        )
        assert created.status_code == 201, created.text
    for label in ("baseline:cosine", "openai:gpt-x"):
        config = RunConfig(task="fake-lr", agent=label, profile="tiny")
        with pytest.raises(RunError, match="http:<name> or mcp:<name>"):
            HostedRun(config, tmp_path / "hosted")
    assert not (tmp_path / "hosted").exists() or not any((tmp_path / "hosted").iterdir())
    baseline_run = ActiveRun.create(
        RunConfig(task="fake-lr", agent="baseline:cosine", profile="tiny"),
        tmp_path / "runs-cli",
        Display(),
        run_id="killed-baseline",
    )
    with pytest.raises(RunError, match="http:<name> or mcp:<name>"):
        HostedRun.reopen(baseline_run.run_dir)
