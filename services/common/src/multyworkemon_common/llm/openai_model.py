"""Any OpenAI-compatible chat endpoint (OpenAI, YandexGPT, DeepSeek, Grok, vLLM, Ollama)."""

from __future__ import annotations

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
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self._settings.llm_temperature,
            "max_tokens": self._settings.llm_max_tokens,
            # Lets an LLM gateway's logs be joined with ours.
            "extra_headers": {REQUEST_ID_HEADER: request_id_var.get() or ""},
        }
        if (response_format := self._response_format(schema_name, schema)) is not None:
            kwargs["response_format"] = response_format
        try:
            completion = await self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise LLMTimeout("the LLM did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise LLMUnavailable(f"the LLM endpoint is unreachable: {type(exc.__cause__ or exc).__name__}") from exc
        except openai.RateLimitError as exc:
            raise LLMRateLimited("the LLM provider is rate limiting us (429)") from exc
        except openai.InternalServerError as exc:
            raise LLMUnavailable(f"the LLM provider failed ({exc.status_code})") from exc
        except openai.APIStatusError as exc:
            raise LLMError(f"the LLM provider rejected the request ({exc.status_code})") from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"the LLM call failed: {type(exc).__name__}") from exc
        except ValueError as exc:
            # A proxy in front of the provider answered 200 with something that is not JSON.
            raise LLMError("the LLM endpoint answered with a body that is not JSON") from exc
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content or "") if choice is not None and choice.message is not None else ""
        usage = completion.usage
        return ChatResult(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
