"""Bearer-token authentication: one check for every HTTP surface of PretrainBench.

The leaderboard's write route, the runner's HTTP API and MCP over streamable HTTP all accept
``Authorization: Bearer <token>`` through ``bearer_token_matches`` (constant-time). It lives
here because the leaderboard is the lowest layer that serves HTTP and the runner may import it.
Two adapters use it: ``BearerTokenGate`` guards a whole ASGI app before routing (nothing is
read from a request without the token), and ``BEARER_SCHEME`` declares the scheme in an
OpenAPI schema so that ``/docs`` offers "Authorize".
"""

from __future__ import annotations

import json
import secrets

from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

#: Declares bearer auth in the OpenAPI schema; enforcement is ``bearer_token_matches``.
BEARER_SCHEME = HTTPBearer(auto_error=False)
MISSING_OR_WRONG = "missing or wrong bearer token"


def bearer_token_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant-time)."""
    if authorization is None:
        return False
    scheme, _, presented = authorization.partition(b" ")
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a header may hold any byte.
    return scheme.lower() == b"bearer" and secrets.compare_digest(presented.strip(), token.encode())


async def send_problem(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    """Answer with a JSON problem body ``{"detail": …}`` straight from ASGI."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerTokenGate:
    """Refuse every HTTP request without ``Authorization: Bearer <token>`` with 401.

    Pure ASGI, so it runs before routing and before the body is read; paths in
    ``open_paths`` pass without a token. Lifespan events pass through untouched.
    """

    def __init__(self, app: ASGIApp, *, token: str, open_paths: frozenset[str] = frozenset()):
        if not token:
            raise ValueError("a bearer token gate needs a non-empty token")
        self.app = app
        self.token = token
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope`` when it carries the token or asks for an open path."""
        if scope["type"] in ("http", "websocket") and scope["path"] not in self.open_paths:
            authorization = dict(scope["headers"]).get(b"authorization")
            if not bearer_token_matches(authorization, self.token):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send_problem(send, 401, MISSING_OR_WRONG, {"WWW-Authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)
