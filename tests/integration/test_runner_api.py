"""The HTTP API (`runner serve`): a real server on loopback, and a schema-driven fuzz test."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from runner._api import create_api
from tests._fixtures.runner import FakeTaskRoot

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILE = "nanoGPT/custom_pretrain.py"


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
def api_server(runner_env: FakeTaskRoot, tmp_path: Path):
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
            with httpx.stream("GET", f"{api_server.url}/sessions/{sid}/events", timeout=60) as r:
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

        state = http.get(f"/sessions/{sid}").json()
        assert state["budget"]["submitted_test"] == 1 and state["budget"]["steps_used"] == 3
        transcript = http.get(f"/sessions/{sid}/transcript").json()
        assert transcript[0]["kind"] == "header"
        assert [e["name"] for e in transcript if e["kind"] == "tool_result"] == [
            "view",
            "edit",
            "test",
            "submit",
        ]
        assert http.get("/sessions/unknown-id").status_code == 404
        schema = http.get("/openapi.json").json()
        assert "/sessions/{session_id}/tools/{tool}" in schema["paths"]
    from leaderboard import Store

    assert Store(f"sqlite:///{tmp_path / 'lb.db'}").get_run(sid) is not None


def test_api_fuzz_no_server_errors(runner_env: FakeTaskRoot, tmp_path: Path) -> None:
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
