"""A local HTTP server speaking the chat-completions API, for testing the real `openai` client.

Modes: `good` (the reply content is `content`, JSON by default), `nonjson`, `huge` (a reply of
several MB), `slow` (waits `delay_s` before answering), `error500`, `badformat` (200 with a body
that is not chat-completions). Requests are recorded so tests can check what was (not) sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    """`with ChatServer() as srv:` serves on 127.0.0.1 at `srv.base_url` until the block ends."""

    def __init__(self, mode: str = "good", content: str | None = None, delay_s: float = 3.0):
        self.mode = mode
        self.content = content if content is not None else json.dumps(
            {"triggers": [{"text": "zq9", "level": "char"}, {"text": "flibbertigibbet", "level": "word"},
                          {"text": "Seen it on my phone", "level": "sentence"}]})
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                outer.requests.append(body)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, b'{"error": "not found"}')
                if outer.mode == "slow":
                    time.sleep(outer.delay_s)
                if outer.mode == "error500":
                    return self._send(500, b'{"error": {"message": "internal"}}')
                if outer.mode == "badformat":
                    return self._send(200, b"<html>hello</html>", "text/html")
                content = outer.content
                if outer.mode == "nonjson":
                    content = "Sure! Here are some triggers: zq9, flibbertigibbet."
                elif outer.mode == "huge":
                    content = json.dumps({"triggers": [{"text": "x" * 50, "level": "char"}] * 100_000})
                payload = {"id": "cmpl-1", "object": "chat.completion", "created": 0,
                           "model": body.get("model", "m"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                self._send(200, json.dumps(payload).encode())

            def _send(self, code: int, data: bytes, ctype: str = "application/json"):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
