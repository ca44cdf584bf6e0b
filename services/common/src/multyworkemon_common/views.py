"""Base view that answers validation errors in the contract's ErrorResponse shape."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_pydantic import PydanticView
from pydantic import ValidationError

from .responses import error_response


def describe_validation_error(exc: ValidationError, context: str) -> str:
    """One sentence per problem, in the seed's style: "Parameter 'channel' must be one of: ..."."""
    noun = "Field" if context == "body" else "Parameter"
    messages = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__") or "body"
        kind = error.get("type", "")
        if kind == "missing":
            messages.append(f"{noun} '{location}' is required")
        elif kind in ("literal_error", "enum"):
            expected = error.get("ctx", {}).get("expected", "")
            choices = expected.replace("'", "").replace(" or ", ", ")
            messages.append(f"{noun} '{location}' must be one of: {choices}")
        else:
            messages.append(f"{noun} '{location}': {error.get('msg', 'invalid value')}")
    return "; ".join(messages) or "Invalid request"


class ContractView(PydanticView):
    async def on_validation_error(self, exception: ValidationError, context: Any) -> web.StreamResponse:
        return error_response(400, describe_validation_error(exception, context))
