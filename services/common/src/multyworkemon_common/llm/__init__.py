"""The LLM layer: one interface (ChatModel), two providers, structured answers on top."""

from __future__ import annotations

from .base import (
    ChatModel, ChatResult, EmbeddingsSettings, LLMBadOutput, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable,
)
from .offline import OfflineModel
from .openai_wire import Embeddings, OpenAICompatibleModel
from .structured import StructuredAsker


def build_model(settings: LLMSettings) -> ChatModel:
    if settings.llm_provider == "offline":
        return OfflineModel()
    return OpenAICompatibleModel(settings)


def build_embeddings(settings: EmbeddingsSettings) -> Embeddings | None:
    """The embeddings client, or None when EMBEDDINGS_MODEL is not set."""
    if not settings.embeddings_model:
        return None
    return Embeddings(settings)


__all__ = [
    "ChatModel", "ChatResult", "Embeddings", "EmbeddingsSettings", "LLMBadOutput", "LLMError", "LLMRateLimited", "LLMSettings",
    "LLMTimeout", "LLMUnavailable", "OfflineModel", "OpenAICompatibleModel", "StructuredAsker", "build_embeddings", "build_model",
]
