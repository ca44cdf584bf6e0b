"""Embeddings (text -> vector) from any OpenAI-compatible `/v1/embeddings` endpoint: OpenAI, YandexGPT, vLLM, Ollama.

Off unless `EMBEDDINGS_MODEL` is set. The endpoint and key default to the LLM's (`LLM_BASE_URL`,
`LLM_API_KEY`); a provider whose embeddings live elsewhere gets `EMBEDDINGS_BASE_URL` and
`EMBEDDINGS_API_KEY`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from .base import LLMSettings

if TYPE_CHECKING:
    from .openai_embeddings import Embeddings


class EmbeddingsSettings(LLMSettings):
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


def build_embeddings(settings: EmbeddingsSettings) -> Embeddings | None:
    """The embeddings client, or None when EMBEDDINGS_MODEL is not set."""
    if not settings.embeddings_model:
        return None
    # Imported when used: the openai package costs about 25 MB and 0.7 s of start-up (bench/).
    from .openai_embeddings import Embeddings

    return Embeddings(settings)
