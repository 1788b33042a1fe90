"""A guarded client for any OpenAI-compatible chat-completions endpoint (agent and LLM judge).

Nothing is sent unless an endpoint is configured: base URL and model come
from explicit settings or `BADREC_LLM_BASE_URL` / `BADREC_LLM_MODEL`, the key
from `BADREC_LLM_API_KEY` or `OPENAI_API_KEY` (never logged, never stored).
Every call has a timeout, a bounded number of retries and a cap on the size of
the reply (read as a stream and cut off, so a huge answer cannot fill memory);
the reply must be JSON that the caller's validator accepts. Every failure ends
as one `EndpointError` line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import EndpointError, InputError

log = logging.getLogger(__name__)
T = TypeVar("T")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to call the endpoint.

    Args:
        base_url (`str`): e.g. `"http://127.0.0.1:8000/v1"`.
        model (`str`): model name the endpoint serves.
        api_key (`str`): bearer key; local servers often take any string. Hidden from `repr`.
        timeout_s (`float`): per-request timeout.
        max_retries (`int`): retries after a failed or invalid reply.
        max_reply_bytes (`int`): replies longer than this are cut off and rejected.
        temperature (`float`): sampling temperature asked for.
    """

    base_url: str
    model: str
    api_key: str = field(default="not-needed", repr=False)
    timeout_s: float = 30.0
    max_retries: int = 2
    max_reply_bytes: int = 256_000
    temperature: float = 0.7

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise InputError(f"LLM base URL {self.base_url!r} must start with http:// or https://")
        if not self.model.strip():
            raise InputError("LLM model name is empty; set BADREC_LLM_MODEL")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.max_reply_bytes < 1024:
            raise InputError("LLM timeout must be > 0, retries >= 0 and the reply cap >= 1024 bytes")

    @classmethod
    def from_env(cls, base_url: str | None = None, model: str | None = None, **kw: Any) -> "LLMSettings | None":
        """Settings from explicit values, else the environment; `None` when no endpoint is configured."""
        base_url = base_url or os.environ.get("BADREC_LLM_BASE_URL")
        model = model or os.environ.get("BADREC_LLM_MODEL")
        if not base_url or not model:
            return None
        key = os.environ.get("BADREC_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"
        return cls(base_url=base_url.rstrip("/"), model=model, api_key=key, **kw)


def extract_json(content: str) -> Any:
    """JSON from a chat reply, tolerating a ```json fence around it."""
    text = _FENCE.sub("", content.strip())
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EndpointError(f"endpoint reply is not JSON ({exc.msg} at char {exc.pos})") from exc


class LLMClient:
    """Chat calls that return validated JSON.

    Args:
        settings (`LLMSettings`): endpoint, model, key and limits.
    """

    def __init__(self, settings: LLMSettings):
        import openai  # the client library is only needed when an endpoint is configured

        self.settings = settings
        self._openai = openai
        self._client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key,
                                     timeout=settings.timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.settings.base_url!r}, model={self.settings.model!r})"

    def _complete(self, system: str, user: str) -> str:
        """One request; the reply body is read as a stream and capped."""
        s = self.settings
        try:
            with self._client.chat.completions.with_streaming_response.create(
                    model=s.model, temperature=s.temperature,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}]) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body.extend(chunk)
                    if len(body) > s.max_reply_bytes:
                        raise EndpointError(f"endpoint reply exceeds {s.max_reply_bytes} bytes; cut off")
        except self._openai.APITimeoutError as exc:
            raise EndpointError(f"endpoint timed out after {s.timeout_s:g} s") from exc
        except self._openai.APIConnectionError as exc:
            raise EndpointError(f"endpoint {s.base_url} unreachable: {type(exc.__cause__ or exc).__name__}") from exc
        except self._openai.APIStatusError as exc:
            raise EndpointError(f"endpoint answered HTTP {exc.status_code}") from exc
        try:
            payload = json.loads(bytes(body).decode("utf-8"))
            content = payload["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise EndpointError("endpoint did not answer in the chat-completions format") from exc
        if not isinstance(content, str):
            raise EndpointError("endpoint reply has no text content")
        return content

    def chat_json(self, system: str, user: str, validate: Callable[[Any], T]) -> T:
        """Ask, parse the reply as JSON and validate it; retries on any failure.

        Args:
            system (`str`): system message.
            user (`str`): user message.
            validate (`Callable`): turns the parsed JSON into the result or raises `EndpointError`.

        Returns:
            whatever `validate` returns.

        Raises:
            EndpointError: after `max_retries + 1` failed attempts, with the last reason.
        """
        last: EndpointError | None = None
        for attempt in range(self.settings.max_retries + 1):
            try:
                return validate(extract_json(self._complete(system, user)))
            except EndpointError as exc:
                last = exc
                log.info("LLM endpoint attempt %d failed: %s", attempt + 1, exc)
                if attempt < self.settings.max_retries:
                    time.sleep(min(0.2 * 2 ** attempt, 2.0))
        raise EndpointError(f"{last} (after {self.settings.max_retries + 1} attempts)")


def client_from_env(**kw: Any) -> LLMClient | None:
    """A client when an endpoint is configured, else `None` (and nothing is ever sent)."""
    settings = LLMSettings.from_env(**kw)
    return None if settings is None else LLMClient(settings)
