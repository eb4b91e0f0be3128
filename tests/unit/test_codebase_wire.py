"""The logits workers' wire format (pb_logits.py) against scripted workers on a real Unix socket,
the causality sampler of the evaluator, and the reasons agents read (pb_jobs.py)."""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._fixtures.codebase import codebase_module

pb_logits = codebase_module("pb_logits")
pb_jobs = codebase_module("pb_jobs")

C, BLOCK, VOCAB = 8, 16, 50304


def scripted_worker(directory: Path, script: Callable[[socket.socket], None]) -> threading.Thread:
    """A worker thread: listens like logits_worker.py, then runs script on the connection."""
    listener = pb_logits.listen(directory)

    def run() -> None:
        conn, _ = listener.accept()
        listener.close()
        try:
            script(conn)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def honest(conn: socket.socket, requests: int = 100) -> None:
    """HELLO, then answers row k with the value of positions[k] in every column."""
    pb_logits.send_hello(conn, C, BLOCK, VOCAB)
    for _ in range(requests):
        request = pb_logits.read_request(conn, BLOCK, VOCAB)
        if request is None:
            return
        _, positions = request
        pb_logits.send_response(conn, np.repeat(positions[:, None], C, axis=1).astype(np.float32))


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    clients = []

    def make(script: Callable[[socket.socket], None], timeout: float = 10.0) -> Any:
        directory = tmp_path / f"w{len(clients)}"
        directory.mkdir()
        scripted_worker(directory, script)
        client = pb_logits.WorkerClient(directory, len(clients), (C, BLOCK, VOCAB), timeout)
        clients.append(client)
        return client.connect()

    yield make
    for client in clients:
        client.close()


def request(client: Any, B: int = 2, T: int = 4) -> np.ndarray:
    tokens = np.arange(B * T).reshape(B, T) % 50257
    positions = np.array([1, 3, 5, 6])
    client.submit(tokens, positions)
    out: np.ndarray = client.fetch()
    return out


def test_round_trip_and_pipelining(connect: Callable[..., Any]) -> None:
    client = connect(honest)
    tokens = np.zeros((3, 5), dtype=np.int64)
    client.submit(tokens, np.array([0, 4, 14]))
    client.submit(tokens, np.array([2]))  # a second request in flight
    first, second = client.fetch(), client.fetch()
    assert first.dtype == np.float32 and first.shape == (3, C)
    assert first[:, 0].tolist() == [0, 4, 14] and second.tolist() == [[2.0] * C]


def test_a_long_socket_path_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / "logits.sock")) > 108
    scripted_worker(deep, honest)
    client = pb_logits.WorkerClient(deep, 0, (C, BLOCK, VOCAB), 10).connect()
    assert request(client).shape == (4, C)
    client.close()


def send_raw(conn: socket.socket, kind: int, payload: bytes) -> None:
    conn.sendall(struct.pack("<4sIQ", b"PBLW", kind, len(payload)) + payload)


def hello_then(answer: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        pb_logits.send_hello(conn, C, BLOCK, VOCAB)
        pb_logits.read_request(conn, BLOCK, VOCAB)
        answer(conn)

    return script


GARBAGE = {
    "wrong width": lambda c: pb_logits.send_response(c, np.zeros((4, C + 1), np.float32)),
    "too few rows": lambda c: pb_logits.send_response(c, np.zeros((3, C), np.float32)),
    "header lies about the shape": lambda c: send_raw(
        c, 4, struct.pack("<II", 4, C - 1) + b"\0" * (4 * 4 * C)
    ),
    "float64 payload": lambda c: send_raw(c, 4, struct.pack("<II", 4, C) + b"\0" * (8 * 4 * C)),
    "a HELLO again": lambda c: pb_logits.send_hello(c, C, BLOCK, VOCAB),
    "bad magic": lambda c: c.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 64),
    "huge frame": lambda c: c.sendall(struct.pack("<4sIQ", b"PBLW", 4, 1 << 62)),
    "huge error": lambda c: c.sendall(struct.pack("<4sIQ", b"PBLW", 2, 1 << 40)),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_is_refused(connect: Callable[..., Any], case: str) -> None:
    client = connect(hello_then(GARBAGE[case]))
    with pytest.raises(pb_logits.WorkerError) as info:
        request(client)
    assert info.value.refused, info.value
    assert str(info.value).startswith("logits worker 0: ")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_hidden_states_are_refused(connect: Callable[..., Any], value: float) -> None:
    def answer(conn: socket.socket) -> None:
        hidden = np.zeros((4, C), np.float32)
        hidden[2, 5] = value
        pb_logits.send_response(conn, hidden)

    client = connect(hello_then(answer))
    with pytest.raises(pb_logits.WorkerError, match="non-finite") as info:
        request(client)
    assert info.value.refused


def test_a_worker_that_dies_or_errs_fails_the_evaluation(connect: Callable[..., Any]) -> None:
    died = connect(hello_then(lambda c: c.close()))
    with pytest.raises(pb_logits.WorkerError, match="stopped answering") as info:
        request(died)
    assert not info.value.refused and "closed the connection" in info.value.detail
    truncated = (
        struct.pack("<4sIQ", b"PBLW", 4, 8 + 4 * 4 * C) + struct.pack("<II", 4, C) + b"\0" * 10
    )
    half = connect(hello_then(lambda c: c.sendall(truncated)))  # then the worker is gone
    with pytest.raises(pb_logits.WorkerError, match="stopped answering") as info:
        request(half)
    assert not info.value.refused
    erred = connect(hello_then(lambda c: pb_logits.send_error(c, "RuntimeError: boom\x00\x1b[2J")))
    with pytest.raises(pb_logits.WorkerError, match=r"the model raised RuntimeError$") as info:
        request(erred)
    assert not info.value.refused and "the model failed: RuntimeError: boom" in info.value.detail
    assert "\x1b" not in info.value.detail


def test_nothing_a_serving_worker_chose_reaches_the_agent(connect: Callable[..., Any]) -> None:
    """Once a worker has been sent evaluation inputs, its error text, frame lengths and shapes
    would be a channel for them: the agent-facing message is ours alone."""
    secret = "50256 1212 318 262 3280"
    leaky = connect(hello_then(lambda c: pb_logits.send_error(c, f"MyError: {secret}")))
    with pytest.raises(pb_logits.WorkerError) as info:
        request(leaky)
    assert str(info.value).endswith("the model raised an exception")
    assert secret in info.value.detail and secret not in str(info.value)
    odd = struct.pack("<4sIQ", b"PBLW", 4, 123456789)  # a RESPONSE of a length it chose
    sized = connect(hello_then(lambda c: c.sendall(odd)))
    with pytest.raises(pb_logits.WorkerError) as info:
        request(sized)
    assert "123456789" in info.value.detail and "123456789" not in str(info.value)
    assert info.value.refused


def test_a_silent_worker_times_out(connect: Callable[..., Any]) -> None:
    stop = threading.Event()
    client = connect(hello_then(lambda c: stop.wait(5)), timeout=0.5)
    with pytest.raises(pb_logits.WorkerError, match="stopped answering") as info:
        request(client)
    stop.set()
    assert not info.value.refused


def test_hello_is_checked(connect: Callable[..., Any]) -> None:
    with pytest.raises(pb_logits.WorkerError, match="expected") as info:
        connect(lambda c: pb_logits.send_hello(c, C * 2, BLOCK, VOCAB))
    assert info.value.refused
    with pytest.raises(pb_logits.WorkerError, match="could not load the model: boom"):
        connect(lambda c: pb_logits.send_error(c, "boom"))


def test_no_worker_is_a_clear_failure(tmp_path: Path) -> None:
    client = pb_logits.WorkerClient(tmp_path, 3, (C, BLOCK, VOCAB), 0.2)
    with pytest.raises(pb_logits.WorkerError, match="logits worker 3: cannot connect") as info:
        client.connect()
    assert not info.value.refused


@pytest.mark.parametrize(
    ("B", "T", "K", "tokens", "positions", "message"),
    [
        (1, BLOCK + 1, 1, None, [0], "bad request shape"),
        (1, 4, 1, [0, 1, 2, VOCAB], [0], "out of the vocabulary"),
        (1, 4, 1, [0, 1, 2, -1], [0], "out of the vocabulary"),
        (1, 4, 2, [0, 1, 2, 3], [2, 1], "increasing"),
        (1, 4, 1, [0, 1, 2, 3], [4], "increasing"),
        (1, 4, 5, [0, 1, 2, 3], [0, 1, 2, 3, 3], "bad request shape"),
    ],
)
def test_the_worker_checks_requests(
    B: int, T: int, K: int, tokens: Any, positions: list[int], message: str
) -> None:
    a, b = socket.socketpair()
    body = np.array(tokens if tokens is not None else [0] * (B * T), dtype="<i4").tobytes()
    body += np.array(positions, dtype="<i4").tobytes()
    send_raw(a, 3, struct.pack("<III", B, T, K) + body)
    with pytest.raises(ValueError, match=message):
        pb_logits.read_request(b, BLOCK, VOCAB)
    a.close()
    b.close()


def test_the_worker_reads_a_request_and_a_clean_end() -> None:
    a, b = socket.socketpair()
    client_side = np.array([[1, 2, 3], [4, 5, 6]], dtype="<i4")
    pb_logits.send_frame(a, 3, struct.pack("<III", 2, 3, 2), client_side, np.array([1, 5], "<i4"))
    tokens, positions = pb_logits.read_request(b, BLOCK, VOCAB)
    assert tokens.tolist() == client_side.tolist() and positions.tolist() == [1, 5]
    assert tokens.dtype == positions.dtype == np.int64
    a.close()
    assert pb_logits.read_request(b, BLOCK, VOCAB) is None
    b.close()


# --- the evaluator's sample of sequences for the causality check ------------------------------


@pytest.fixture(scope="module")
def evaluate() -> Any:
    return codebase_module("evaluate")


def offer_batches(probes: Any, n_batches: int, B: int = 4, T: int = 6) -> None:
    for n in range(n_batches):
        tokens = np.arange(n * B * T, (n + 1) * B * T).reshape(B, T)
        positions = np.array([r * T + c for r in range(B) for c in range(2, T)])
        probes.offer(tokens, positions, np.ones((len(positions), C), np.float32) * n)


def test_the_sample_is_uniform_and_secretly_seeded(evaluate: Any) -> None:
    counts = np.zeros(40)
    for seed in range(300):
        probes = evaluate.CausalityProbes(8, random.Random(seed))
        offer_batches(probes, 10)  # 40 sequences
        assert probes.seen == 40 and len(probes.kept) == 8
        for tokens, cols, cut, hidden in probes.kept:
            counts[tokens[0] // 6] += 1
            assert cols.tolist() == [2, 3, 4, 5] and 3 <= cut <= 6
            assert hidden.shape == (int((cols < cut).sum()), C)
    assert counts.min() > 0.5 * counts.mean()  # every sequence can be probed, about equally
    a, b = (evaluate.CausalityProbes(8, random.Random(s)) for s in (1, 2))
    offer_batches(a, 10)
    offer_batches(b, 10)
    assert [t[0] for t, *_ in a.kept] != [t[0] for t, *_ in b.kept]


def test_a_probe_is_an_ordinary_row_that_differs_from_its_cut_on(evaluate: Any) -> None:
    probes = evaluate.CausalityProbes(1, random.Random(0))
    tokens = np.array([5, 6, 7, 8, 50256, 50256])  # a row of 4 tokens, padded in its batch
    for cut in range(1, 5):
        probe = probes.probe_tokens(tokens, 4, cut, 8)
        assert probe.tolist()[:cut] == tokens.tolist()[:cut]
        assert all(probe[t] != tokens[t] for t in range(cut, 4))
        assert probe.tolist()[4:] == [50256] * 4  # padded as the adapter pads
        assert (probe < 50257).all() and (probe >= 0).all()


# --- the reasons agents read ------------------------------------------------------------------


def raise_in(path: Path, body: str) -> BaseException:
    """The exception of running `body` as the file `path` (its frames name that file)."""
    path.write_text(body)  # where the traceback finds the lines it shows
    code = compile(body, str(path), "exec")
    try:
        exec(code, {})
    except BaseException as e:
        return e
    raise AssertionError("no exception")


def test_agent_failure_keeps_only_the_edited_files_frames(tmp_path: Path) -> None:
    edited = tmp_path / "custom_pretrain.py"
    exc = raise_in(
        edited, f"def get_lr():\n    return 1 / 0\nopen({str(edited)!r} + 'x')\nget_lr()\n"
    )
    text = pb_jobs.agent_failure(
        f"get_lr raised {pb_jobs.exception_text(exc, edited)}", exc, edited
    )
    assert str(tmp_path) not in text
    assert 'File "custom_pretrain.py", line 3, in <module>' in text
    assert "test_codebase_wire" not in text and sys.prefix not in text
    exc = raise_in(edited, "def get_lr():\n    return 1 / 0\nget_lr()\n")
    text = pb_jobs.agent_failure("get_lr raised ZeroDivisionError", exc, edited)
    assert text.splitlines()[-2:] == [
        '  File "custom_pretrain.py", line 2, in get_lr',
        "    return 1 / 0",
    ]


def test_agent_failure_is_capped_and_keeps_the_innermost_frames(tmp_path: Path) -> None:
    edited = tmp_path / "custom_pretrain.py"
    exc = raise_in(edited, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert isinstance(exc, RecursionError)
    text = pb_jobs.agent_failure("x" * 300 + " " + pb_jobs.exception_text(exc, edited), exc, edited)
    assert len(text) <= pb_jobs.MAX_REASON_CHARS
    assert text.splitlines()[-1] == "    return f(n + 1)"
    long = pb_jobs.exception_text(ValueError("y" * 5000), edited)
    assert len(long) <= pb_jobs.MAX_MESSAGE_CHARS + 20 and long.endswith("…")


def test_write_failure_caps_the_reason(tmp_path: Path) -> None:
    import json

    pb_jobs.write_failure(tmp_path, "z" * 5000)
    reason = json.loads((tmp_path / "failure.json").read_text())["reason"]
    assert len(reason) == pb_jobs.MAX_REASON_CHARS
