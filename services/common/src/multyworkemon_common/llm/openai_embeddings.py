"""Embeddings (text -> vector) from any OpenAI-compatible `/v1/embeddings` endpoint: OpenAI, YandexGPT, vLLM, Ollama.

The endpoint and key default to the LLM's (`LLM_BASE_URL`, `LLM_API_KEY`); a provider whose
embeddings live elsewhere gets `EMBEDDINGS_BASE_URL` and `EMBEDDINGS_API_KEY` (base.EmbeddingsSettings).
"""

from __future__ import annotations

import openai
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .base import EmbeddingsSettings, LLMError, LLMRateLimited, LLMTimeout, LLMUnavailable
from .openai_model import provider_errors


class Embeddings:
    def __init__(self, settings: EmbeddingsSettings):
        self.model = settings.embeddings_model
        self.query_model = settings.embeddings_query_model or settings.embeddings_model
        self.dimensions = settings.embeddings_dimensions
        self.batch_size = settings.embeddings_batch_size
        self._retries = settings.embeddings_max_retries
        self._client = openai.AsyncOpenAI(
            base_url=settings.embeddings_base_url or settings.llm_base_url,
            # Local servers (vLLM, Ollama) take any key; the client insists on one.
            api_key=(settings.embeddings_api_key.get_secret_value() or settings.llm_api_key.get_secret_value() or "not-needed"),
            timeout=settings.embeddings_timeout,
            max_retries=0,  # ours below, with tenacity, as for the LLM
            http_client=openai.DefaultAioHttpClient(),
        )

    @property
    def name(self) -> str:
        """What the vectors are comparable by: the model, and the length asked for."""
        return self.model if self.dimensions is None else f"{self.model}:{self.dimensions}"

    async def documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors of documents, one call, retried on timeouts, 429 and 5xx."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((LLMTimeout, LLMUnavailable, LLMRateLimited)),
            stop=stop_after_attempt(1 + self._retries),
            wait=wait_random_exponential(multiplier=0.5, max=20.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._embed(self.model, texts)
        raise AssertionError("unreachable: tenacity reraises")

    async def query(self, text: str) -> list[float]:
        """The vector of a text to search with: one attempt, a search does not wait for retries."""
        return (await self._embed(self.query_model, [text]))[0]

    async def _embed(self, model: str, texts: list[str]) -> list[list[float]]:
        with provider_errors("embeddings"):
            response = await self._client.embeddings.create(
                model=model, input=texts, encoding_format="float",
                **({"dimensions": self.dimensions} if self.dimensions is not None else {}),
            )
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        if len(vectors) != len(texts):
            raise LLMError(f"the embeddings endpoint answered {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def close(self) -> None:
        await self._client.close()
