"""The LLM layer: one interface (ChatModel), two providers, structured answers on top."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    ChatModel, ChatResult, EmbeddingsSettings, LLMBadOutput, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable,
)
from .offline import OfflineModel
from .structured import StructuredAsker

if TYPE_CHECKING:
    from .openai_embeddings import Embeddings


def build_model(settings: LLMSettings) -> ChatModel:
    if settings.llm_provider == "offline":
        return OfflineModel()
    # Imported when used: the openai package costs about 25 MB and 0.7 s of start-up (bench/).
    from .openai_model import OpenAICompatibleModel

    return OpenAICompatibleModel(settings)


def build_embeddings(settings: EmbeddingsSettings) -> Embeddings | None:
    """The embeddings client, or None when EMBEDDINGS_MODEL is not set."""
    if not settings.embeddings_model:
        return None
    from .openai_embeddings import Embeddings  # imported when used, as above

    return Embeddings(settings)


__all__ = [
    "ChatModel", "ChatResult", "EmbeddingsSettings", "LLMBadOutput", "LLMError", "LLMRateLimited", "LLMSettings", "LLMTimeout",
    "LLMUnavailable", "OfflineModel", "StructuredAsker", "build_embeddings", "build_model",
]

