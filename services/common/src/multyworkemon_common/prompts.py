"""Saved prompts: the built-in default unless the operator gives one by variable or file."""

from __future__ import annotations

from .llm import LLMSettings


def saved_prompt(settings: LLMSettings, default: str) -> str:
    # SYSTEM_PROMPT_FILE is read by the settings loader into system_prompt (settings.py).
    return settings.system_prompt.strip() or default
