"""
The logits workers' wire format, both ends: how the trusted evaluator asks a worker for the
hidden states of the trained model, and how a worker answers.

A logits worker (logits_worker.py) runs the agent's model in a sandbox of its own; the evaluator
reaches worker i over a Unix stream socket, $PB_WORKERS_DIR/<i>/logits.sock (the worker's own
$PB_WORKER_DIR). Nothing a worker sends is trusted: WorkerClient checks each frame's kind and
exact length before reading it, and every value after (shape, dtype, finiteness); the evaluator
applies the lm_head it loaded itself and computes every loss. A request carries model inputs
only: no labels, no targets, no answers.

Frames, all integers little-endian: a 16-byte header, then the payload.

    header    magic b"PBLW" | uint32 kind | uint64 payload bytes
    HELLO     worker -> evaluator, once, when the model is loaded:
              uint32 version | uint32 n_embd | uint32 block_size | uint32 vocab_size
    ERROR     worker -> evaluator, then the worker exits: UTF-8 text, at most 4096 bytes
    REQUEST   evaluator -> worker: uint32 B | uint32 T | uint32 K |
              int32 tokens[B * T] (B sequences of T tokens, row-major) |
              int32 positions[K] (flat indices b * T + t, strictly increasing)
    RESPONSE  worker -> evaluator, one per request, in order:
              uint32 K | uint32 C | float32 hidden[K * C] (row k: the input of lm_head at
              positions[k], C = n_embd)

The evaluator has at most one request in flight per worker (it sends the next request once it
has read the previous response), so neither end can block the other on a full socket buffer.
"""

import builtins
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

# -----------------------------------------------------------------------------
# the format

MAGIC = b"PBLW"
VERSION = 1
HELLO, ERROR, REQUEST, RESPONSE = 1, 2, 3, 4
HEADER = struct.Struct("<4sIQ")  # magic, kind, payload bytes
HELLO_BODY = struct.Struct("<IIII")  # version, n_embd, block_size, vocab_size
REQUEST_HEAD = struct.Struct("<III")  # B, T, K
RESPONSE_HEAD = struct.Struct("<II")  # K, C
SOCKET_NAME = "logits.sock"
MAX_ERROR_BYTES = 4096
MAX_REQUEST_TOKENS = 1 << 24  # B * T of one request (a 32 x 1024 batch is 1 << 15)
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes; longer paths go through /proc/self/fd


class WorkerError(Exception):
    """A worker cannot be used. `refused`: it answered something invalid (the evaluation is
    refused); else it stopped, timed out or reported an error of the model (the evaluation failed).

    str(error) is what the agent may read; `detail` (the evaluator's log only) may quote what
    the worker sent. Once a worker has seen an evaluation input, the agent-facing text holds no
    byte the worker chose: an error message, a frame length or a shape could otherwise carry the
    evaluation data it was served back to the agent."""

    def __init__(self, message, refused=False, detail=None):
        super().__init__(message)
        self.refused = refused
        self.detail = detail or message


def socket_path(directory):
    """The socket of the worker whose directory this is."""
    return Path(directory) / SOCKET_NAME


def _address(path):
    """A connectable name for path, also when it is longer than a Unix socket address may be."""
    path = Path(path)
    if len(str(path)) <= MAX_UNIX_PATH:
        return str(path), None
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def _recv_into(sock, view):
    while len(view):
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionError("the connection was closed")
        view = view[n:]


def _recv_exact(sock, n):
    buf = bytearray(n)
    _recv_into(sock, memoryview(buf))
    return buf


def send_frame(sock, kind, *parts):
    """One frame whose payload is the concatenation of parts (bytes or contiguous arrays)."""
    views = [memoryview(p).cast("B") for p in parts]
    sock.sendall(HEADER.pack(MAGIC, kind, sum(len(v) for v in views)))
    for v in views:
        sock.sendall(v)


def recv_header(sock):
    """(kind, payload bytes) of the next frame, or None at a clean end of the connection."""
    first = sock.recv(HEADER.size)
    if not first:
        return None
    head = bytes(first) + (bytes(_recv_exact(sock, HEADER.size - len(first))) if len(first) < HEADER.size else b"")
    magic, kind, length = HEADER.unpack(head)
    if magic != MAGIC:
        raise ValueError(f"bad frame magic {magic!r}")
    return kind, length


# exception names a model error may be reported by (built-in ones only: a class the agent
# defines could be named after anything, the evaluation data included)
_BUILTIN_ERRORS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


def error_kind(text):
    """The built-in exception name a worker's error text starts with, or "an exception"."""
    name = text.split(":", 1)[0].strip()
    return name if name in _BUILTIN_ERRORS else "an exception"


def _printable(raw):
    text = bytes(raw[:MAX_ERROR_BYTES]).decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


# -----------------------------------------------------------------------------
# the evaluator's end


class WorkerClient:
    """The trusted evaluator's connection to logits worker `index`.

    connect() waits for the worker's socket and its HELLO (the model loaded), which must agree
    with `expect` = (n_embd, block_size, vocab_size). submit() sends one request; fetch() reads
    its response and returns the hidden states (K, n_embd) float32, all checked.
    """

    def __init__(self, directory, index, expect, timeout):
        self.path = socket_path(directory)
        self.index = index
        self.n_embd, self.block_size, self.vocab_size = expect
        self.timeout = timeout
        self.sock = None
        self.pending = []  # K of each request sent and not yet answered
        self.served = False  # True once it has been sent an evaluation input

    def _fail(self, what, refused=False, public=None):
        """Raise WorkerError: `what` in full for the log; for the agent, once the worker has
        seen an input, only `public` (text of ours) or a fixed phrase."""
        detail = f"logits worker {self.index}: {what}"
        if not self.served:
            raise WorkerError(detail, refused=refused)
        fixed = public or ("sent an answer that is not valid" if refused else "stopped answering")
        raise WorkerError(f"logits worker {self.index}: {fixed}", refused=refused, detail=detail)

    def connect(self):
        deadline = time.monotonic() + self.timeout
        while True:  # the harness starts the workers with the job: wait until one listens
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address, fd = _address(self.path) if self.path.parent.is_dir() else (str(self.path), None)
            try:
                sock.connect(address)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                sock.close()
                if time.monotonic() > deadline:
                    self._fail(f"cannot connect to {self.path} after {self.timeout:.0f} s ({type(e).__name__}): "
                               "the worker did not start, or serves another connection")
                time.sleep(0.05)
            finally:
                if fd is not None:
                    os.close(fd)
        sock.settimeout(self.timeout)
        self.sock = sock
        kind, length = self._header()
        if kind == ERROR:
            raise WorkerError(f"logits worker {self.index} could not load the model: {self._error_text(length)}",
                              refused=True)
        if kind != HELLO or length != HELLO_BODY.size:
            self._fail(f"sent a frame of kind {kind} and {length} bytes where HELLO was due", refused=True)
        version, n_embd, block_size, vocab_size = HELLO_BODY.unpack(self._recv(length))
        got, want = (version, n_embd, block_size, vocab_size), (VERSION, self.n_embd, self.block_size, self.vocab_size)
        if got != want:
            self._fail(f"HELLO (version, n_embd, block_size, vocab_size) = {got}, expected {want}", refused=True)
        return self

    def _recv(self, n):
        try:
            return _recv_exact(self.sock, n)
        except (OSError, ConnectionError) as e:  # socket.timeout is an OSError
            self._fail(f"stopped answering ({type(e).__name__}: {e})")

    def _header(self):
        try:
            header = recv_header(self.sock)
        except ValueError as e:
            self._fail(str(e), refused=True)
        except (OSError, ConnectionError) as e:
            self._fail(f"stopped answering ({type(e).__name__}: {e})")
        if header is None:
            self._fail("closed the connection: the worker died or exited")
        return header

    def _error_text(self, length):
        if length > MAX_ERROR_BYTES:
            self._fail(f"sent an error frame of {length} bytes", refused=True)
        return _printable(self._recv(length))

    def submit(self, tokens, positions):
        """Send one request: tokens (B, T) and flat positions (K,), both checked here first."""
        tokens = np.ascontiguousarray(tokens, dtype="<i4")
        positions = np.ascontiguousarray(positions, dtype="<i4")
        B, T = tokens.shape
        K = positions.shape[0]
        assert 0 < T <= self.block_size and 0 < B * T <= MAX_REQUEST_TOKENS and K > 0
        try:
            send_frame(self.sock, REQUEST, REQUEST_HEAD.pack(B, T, K), tokens, positions)
        except OSError as e:
            self._fail(f"stopped taking requests ({type(e).__name__}: {e})")
        self.served = True
        self.pending.append(K)

    def fetch(self):
        """The hidden states (K, n_embd) float32 of the oldest request sent, all checked."""
        K = self.pending.pop(0)
        kind, length = self._header()
        if kind == ERROR:
            text = self._error_text(length)
            self._fail(f"the model failed: {text}", public=f"the model raised {error_kind(text)}")
        want = RESPONSE_HEAD.size + 4 * K * self.n_embd
        if kind != RESPONSE or length != want:  # checked before a byte of the payload is read
            self._fail(f"sent a frame of kind {kind} and {length} bytes where a RESPONSE of {want} bytes "
                       f"({K} x {self.n_embd} float32) was due", refused=True)
        got = RESPONSE_HEAD.unpack(self._recv(RESPONSE_HEAD.size))
        if got != (K, self.n_embd):
            self._fail(f"answered with shape {got}, expected {(K, self.n_embd)}", refused=True)
        hidden = np.empty((K, self.n_embd), dtype="<f4")
        try:
            _recv_into(self.sock, memoryview(hidden).cast("B"))
        except (OSError, ConnectionError) as e:
            self._fail(f"stopped answering ({type(e).__name__}: {e})")
        if not np.isfinite(hidden).all():
            what = "returned non-finite hidden states (NaN or inf): the model's outputs cannot be scored"
            self._fail(what, refused=True, public=what)
        return hidden

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# -----------------------------------------------------------------------------
# the worker's end


def listen(directory):
    """A listening socket at directory/logits.sock (bound before the model loads, so the
    evaluator's connection waits in the backlog rather than failing)."""
    path = socket_path(directory)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address, fd = _address(path)
    try:
        listener.bind(address)
    finally:
        if fd is not None:
            os.close(fd)
    listener.listen(1)
    return listener


def read_request(sock, block_size, vocab_size):
    """(tokens int64 (B, T), positions int64 (K,)) of the next request, or None at the end."""
    header = recv_header(sock)
    if header is None:
        return None
    kind, length = header
    if kind != REQUEST or length < REQUEST_HEAD.size or length > REQUEST_HEAD.size + 8 * MAX_REQUEST_TOKENS:
        raise ValueError(f"expected a REQUEST frame, got kind {kind} of {length} bytes")
    B, T, K = REQUEST_HEAD.unpack(_recv_exact(sock, REQUEST_HEAD.size))
    if not (0 < T <= block_size and 0 < B * T <= MAX_REQUEST_TOKENS and 0 < K <= B * T):
        raise ValueError(f"bad request shape B={B} T={T} K={K} (block size {block_size})")
    if length != REQUEST_HEAD.size + 4 * (B * T + K):
        raise ValueError(f"request of {length} bytes does not hold {B}x{T} tokens and {K} positions")
    body = np.frombuffer(_recv_exact(sock, 4 * (B * T + K)), dtype="<i4")
    tokens, positions = body[:B * T].reshape(B, T), body[B * T:]
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError("token ids out of the vocabulary")
    if positions[0] < 0 or positions[-1] >= B * T or (K > 1 and not (np.diff(positions) > 0).all()):
        raise ValueError("positions must be increasing flat indices into the batch")
    return tokens.astype(np.int64), positions.astype(np.int64)


def send_hello(sock, n_embd, block_size, vocab_size):
    send_frame(sock, HELLO, HELLO_BODY.pack(VERSION, n_embd, block_size, vocab_size))


def send_error(sock, message):
    send_frame(sock, ERROR, str(message).encode("utf-8", errors="replace")[:MAX_ERROR_BYTES])


def send_response(sock, hidden):
    hidden = np.ascontiguousarray(hidden, dtype="<f4")
    K, C = hidden.shape
    send_frame(sock, RESPONSE, RESPONSE_HEAD.pack(K, C), hidden)
