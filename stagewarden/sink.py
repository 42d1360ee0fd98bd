"""A local Slack: an HTTP server on 127.0.0.1 that records incoming-webhook posts, with fault injection.

`stagewarden local sink` runs one in the foreground and points the emulator's webhook secret
at it; the demo, `stagewarden alerts test`, the bench and the tests start one in-process.
It answers like Slack: 200 ``ok`` on its webhook path, 404 ``no_service`` elsewhere, and,
when told to, 429 (with ``Retry-After``) or 500 to a share of posts, decided by a seeded
random generator so a run can be repeated.

The URL carries a random token, as Slack's do, so tests can prove it never leaks.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable


@dataclass
class Post:
    at: float  # time.time() when received
    payload: dict[str, Any]
    status: int  # what the sink answered


@dataclass
class Faults:
    share_429: float = 0.0
    share_500: float = 0.0
    retry_after: float = 1.0
    seed: int = 7
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - fault injection, not cryptography

    def answer(self) -> int:
        roll = self.rng.random()
        if roll < self.share_429:
            return 429
        if roll < self.share_429 + self.share_500:
            return 500
        return 200


class Sink:
    """Start with :meth:`start`; posts accepted (200) are in :attr:`posts`, every answer in :attr:`answers`."""

    def __init__(self, port: int = 0, faults: Faults | None = None, record: Path | None = None,
                 on_post: Callable[[Post], None] | None = None):
        self.token = secrets.token_hex(12)
        self.path = f"/services/T0LOCAL/B0LOCAL/{self.token}"
        self.faults = faults or Faults()
        self.record = record
        self.on_post = on_post
        self.posts: list[Post] = []
        self.answers: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The webhook URL (a credential, as Slack's are: never print it)."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def shown_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0LOCAL/B0LOCAL/<redacted>"

    def set_faults(self, share_429: float = 0.0, share_500: float = 0.0, retry_after: float | None = None) -> None:
        with self._lock:
            self.faults = Faults(share_429, share_500, self.faults.retry_after if retry_after is None else retry_after,
                                 self.faults.seed)

    def start(self) -> "Sink":
        self._thread = threading.Thread(target=self._server.serve_forever, name="stagewarden-sink", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.payload for p in self.posts]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.posts) < count:
            time.sleep(0.01)
        return self.payloads()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the request line holds the token
                return

            def _reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path != sink.path:
                    self._reply(404, "no_service")
                    return
                try:
                    payload = json.loads(raw)
                except json.JSONDecodeError:
                    self._reply(400, "invalid_payload")
                    return
                with sink._lock:
                    status = sink.faults.answer()
                    retry_after = sink.faults.retry_after
                    sink.answers[status] += 1
                if status == 429:
                    self._reply(429, "rate_limited", {"Retry-After": f"{retry_after:g}"})
                    return
                if status == 500:
                    self._reply(500, "internal_error")
                    return
                post = Post(time.time(), payload, 200)
                with sink._lock:
                    sink.posts.append(post)
                    if sink.record is not None:
                        with sink.record.open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"at": post.at, "payload": payload}) + "\n")
                self._reply(200, "ok")
                if sink.on_post is not None:
                    sink.on_post(post)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(404, "no_service")

        return Handler


def point_secret(secretsmanager: Any, name: str, url: str) -> str | None:
    """Make the emulator's webhook secret hold ``url``; returns the previous value (None when it was created)."""
    try:
        previous = secretsmanager.get_secret_value(SecretId=name).get("SecretString")
    except Exception as exc:  # noqa: BLE001 - ResourceNotFoundException: create it
        if "ResourceNotFound" not in type(exc).__name__ and "ResourceNotFound" not in str(getattr(exc, "response", "")):
            raise
        secretsmanager.create_secret(Name=name, SecretString=url)
        return None
    secretsmanager.put_secret_value(SecretId=name, SecretString=url)
    return previous
