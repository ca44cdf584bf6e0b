"""Any OpenAI-compatible chat endpoint (OpenAI, YandexGPT, DeepSeek, Grok, vLLM, Ollama)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai

from ..context import REQUEST_ID_HEADER, request_id_var
from .base import ChatResult, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable


class OpenAICompatibleModel:
    provider = "openai"

    def __init__(self, settings: LLMSettings):
        self.model = settings.llm_model
        self._settings = settings
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            # Local servers (vLLM, Ollama) take any key; the client insists on one.
            api_key=settings.llm_api_key.get_secret_value() or "not-needed",
            timeout=settings.llm_timeout,
            max_retries=0,  # our own retry policy decides (structured.py)
            # The aiohttp transport costs half the CPU of the default httpx one per call (bench/).
            http_client=openai.DefaultAioHttpClient(),
        )

    async def close(self) -> None:
        await self._client.close()

    def _response_format(self, schema_name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        mode = self._settings.llm_json_mode
        if mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        if mode == "json_object":
            return {"type": "json_object"}
        return None

    async def chat(self, messages: list[dict[str, Any]], *, schema_name: str, schema: dict[str, Any]) -> ChatResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self._settings.llm_temperature,
            "max_tokens": self._settings.llm_max_tokens,
        }
        if (response_format := self._response_format(schema_name, schema)) is not None:
            body["response_format"] = response_format
        # The client's plain post (its README's "undocumented endpoints") keeps its transport, auth,
        # timeouts and error classes but skips the typed-parameter walk and response models, which
        # cost more CPU than the HTTP call itself (bench/, docs/performance.md).
        with provider_errors("LLM"):
            raw = await self._client.post(
                "/chat/completions",
                body=body,
                cast_to=bytes,
                # Lets an LLM gateway's logs be joined with ours.
                options={"headers": {REQUEST_ID_HEADER: request_id_var.get() or ""}},
            )
        try:
            completion = json.loads(raw)
            choices = completion.get("choices") or [{}]
            text = (choices[0].get("message") or {}).get("content") or ""
            usage = completion.get("usage") or {}
            return ChatResult(
                text=str(text),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            # A proxy in front of the provider answered 200 with something that is not a chat completion.
            raise LLMError("the LLM endpoint answered with a body that is not a chat completion") from exc


@contextmanager
def provider_errors(what: str) -> Iterator[None]:
    """The openai client's errors as our LLMError classes (the statuses our API answers, and what a retry may fix)."""
    try:
        yield
    except openai.APITimeoutError as exc:
        cause = _root_cause(exc)
        if not isinstance(cause, TimeoutError):
            # The aiohttp transport reports a refused or dropped connection as a timeout.
            raise LLMUnavailable(f"the {what} endpoint is unreachable: {type(cause).__name__}") from exc
        raise LLMTimeout(f"the {what} did not answer in time") from exc
    except openai.APIConnectionError as exc:
        raise LLMUnavailable(f"the {what} endpoint is unreachable: {type(exc.__cause__ or exc).__name__}") from exc
    except openai.RateLimitError as exc:
        raise LLMRateLimited(f"the {what} provider is rate limiting us (429)") from exc
    except openai.InternalServerError as exc:
        raise LLMUnavailable(f"the {what} provider failed ({exc.status_code})") from exc
    except openai.APIStatusError as exc:
        raise LLMError(f"the {what} provider rejected the request ({exc.status_code})") from exc
    except openai.OpenAIError as exc:
        raise LLMError(f"the {what} call failed: {type(exc).__name__}") from exc


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
