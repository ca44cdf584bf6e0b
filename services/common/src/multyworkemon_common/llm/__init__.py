"""The LLM layer: one interface (ChatModel), two providers, structured answers on top."""

from .base import ChatModel, ChatResult, LLMBadOutput, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable
from .offline import OfflineModel
from .structured import StructuredAsker


def build_model(settings: LLMSettings) -> ChatModel:
    if settings.llm_provider == "offline":
        return OfflineModel()
    # Imported when used: the openai package costs about 25 MB and 0.7 s of start-up (bench/).
    from .openai_model import OpenAICompatibleModel

    return OpenAICompatibleModel(settings)


__all__ = [
    "ChatModel", "ChatResult", "LLMBadOutput", "LLMError", "LLMRateLimited", "LLMSettings", "LLMTimeout",
    "LLMUnavailable", "OfflineModel", "StructuredAsker", "build_model",
]

