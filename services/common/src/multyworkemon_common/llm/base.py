"""What every language model behind our services looks like, whatever the provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, SecretStr

from ..errors import ServiceError
from ..settings import ServiceSettings


class LLMSettings(ServiceSettings):
    """Settings of a service that asks a language model (the guesser and the analyst)."""

    # offline: the built-in deterministic model; openai: any OpenAI-compatible endpoint.
    llm_provider: Literal["offline", "openai"] = "offline"
    llm_base_url: str = "https://api.openai.com/v1"
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = 30.0  # seconds per attempt
    llm_max_retries: int = 2  # extra attempts on timeouts, 429 and 5xx
    llm_total_timeout: float = 90.0  # seconds for all attempts together
    # json_schema where the provider supports it, json_object otherwise, none for plain text.
    llm_json_mode: Literal["json_schema", "json_object", "none"] = "json_schema"
    llm_temperature: float = 0.2
    llm_max_tokens: int = 1024
    system_prompt: str = ""  # empty: the service's built-in prompt


class EmbeddingsSettings(LLMSettings):
    """Embeddings (text -> vector) from any OpenAI-compatible `/v1/embeddings` endpoint, off unless
    `EMBEDDINGS_MODEL` is set; the endpoint and key default to the LLM's."""

    embeddings_model: str = ""  # empty: no embeddings
    # For the text searched with, where the provider has a model of its own for it (YandexGPT's
    # text-search-query beside text-search-doc); empty: EMBEDDINGS_MODEL.
    embeddings_query_model: str = ""
    embeddings_base_url: str = ""  # empty: LLM_BASE_URL
    embeddings_api_key: SecretStr = SecretStr("")  # empty: LLM_API_KEY
    # Shorter vectors where the model can give them (OpenAI's text-embedding-3-*); pgvector's index takes at most 2000.
    embeddings_dimensions: int | None = Field(None, ge=1, le=2000)
    embeddings_batch_size: int = Field(64, ge=1, le=2048)  # texts per call while loading
    embeddings_timeout: float = 30.0  # seconds per call
    embeddings_max_retries: int = 4  # extra attempts of a call while loading, on timeouts, 429 and 5xx


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    provider: str
    model: str

    async def chat(self, messages: list[dict[str, Any]], *, schema_name: str, schema: dict[str, Any]) -> ChatResult:
        """Send the messages; answer the model's text. Raises LLMError subclasses."""


class LLMError(ServiceError):
    """The model could not give a usable answer; `status` is what our API answers."""

    status = 502
    outcome = "error"


class LLMTimeout(LLMError):
    status = 504
    outcome = "timeout"


class LLMUnavailable(LLMError):
    status = 503
    outcome = "unavailable"


class LLMRateLimited(LLMError):
    status = 503
    outcome = "rate_limited"


class LLMBadOutput(LLMError):
    status = 502
    outcome = "invalid_output"
