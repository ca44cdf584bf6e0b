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


def attach_llm(app, settings: LLMSettings) -> StructuredAsker:
    """Give a service app its model (closed with the app) and return the structured asker."""
    from ..app import METRICS

    model = build_model(settings)

    async def close_model(_app) -> None:
        if hasattr(model, "close"):
            await model.close()

    app.on_cleanup.append(close_model)
    return StructuredAsker(model, settings, app[METRICS])
