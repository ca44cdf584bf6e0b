"""Any OpenAI-compatible endpoint (OpenAI, YandexGPT, DeepSeek, Grok, vLLM, Ollama) over its wire format:
chat completions and embeddings, one aiohttp POST each.

Not the `openai` package: we used only its plain `post()`, and it still cost about 19 MB of memory in
each service that asks a model and four times this client's CPU per call (docs/performance.md).
The provider's bytes are treated as hostile: a body is read up to a bound, then checked for shape
before any of it is used.

The embeddings' endpoint and key default to the LLM's (`LLM_BASE_URL`, `LLM_API_KEY`); a provider
whose embeddings live elsewhere gets `EMBEDDINGS_BASE_URL` and `EMBEDDINGS_API_KEY` (base.EmbeddingsSettings).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from yarl import URL

from ..context import REQUEST_ID_HEADER, request_id_var
from .base import ChatResult, EmbeddingsSettings, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable

# A chat completion of LLM_MAX_TOKENS is a few KiB; a body near this is not one.
MAX_CHAT_BYTES = 4 * 1024 * 1024
# An embeddings answer is bounded by what was asked: texts × numbers per vector × the bytes of a
# number in JSON ("-0.012345678901234567, " is 23; 32 leaves room for exponents and indentation),
# plus the fields around the vectors.
JSON_BYTES_PER_NUMBER = 32
WIDEST_EMBEDDINGS = 8192  # numbers per vector assumed when EMBEDDINGS_DIMENSIONS is not set
ENVELOPE_BYTES = 64 * 1024
# Connections to one endpoint: as many as the secretary's pool sends one service at once
# (ServiceClient's pool_size), with room; more wait for one, inside their timeout.
POOL_SIZE = 256
# Below the 5 s after which uvicorn (vLLM, many gateways) closes an idle connection: we drop it
# first instead of sending a request on a connection being closed (a POST is not retried on another).
KEEPALIVE_SECONDS = 4.0

_dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False)  # UTF-8 text is half the bytes of \u escapes


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


class OpenAIWire:
    """JSON POSTs to one endpoint of an OpenAI-compatible provider: the answer's JSON, read bounded;
    every failure one of our LLMError classes, whose messages carry no key and none of the provider's text."""

    def __init__(self, what: str, base_url: str, path: str, *, api_key: SecretStr, timeout: float):
        self.what = what  # "LLM" or "embeddings", for the messages
        self.url = URL(base_url.rstrip("/") + "/" + path)
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)  # per attempt; the callers retry
        # HTTPS_PROXY and NO_PROXY, as the openai client honoured them (egress often goes through a
        # proxy): aiohttp's own lookup, once. Its trust_env does it on every request, in a thread,
        # together with reading ~/.netrc: 0.2 ms of CPU per call, as much as all the rest.
        try:
            self._proxy, self._proxy_auth = get_env_proxy_for_url(self.url)
        except LookupError:
            self._proxy, self._proxy_auth = None, None
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop; one keep-alive pool per endpoint.
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            # Stripped: a key read from a file often ends in a newline, which no header may hold.
            if key := self._api_key.get_secret_value().strip():
                headers["Authorization"] = f"Bearer {key}"
            # Without a key (vLLM or Ollama started without one) no Authorization header at all: a
            # made-up one says nothing, and a server that wants a key answers 401 either way.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS),
                headers=headers,
                timeout=self._timeout,
                json_serialize=_dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, body: dict[str, Any], *, max_bytes: int) -> Any:
        """POST the body as JSON; the answer's JSON value, or LLMTimeout, LLMUnavailable, LLMRateLimited, LLMError."""
        # Lets an LLM gateway's logs be joined with ours.
        headers = {REQUEST_ID_HEADER: request_id} if (request_id := request_id_var.get()) else None
        try:
            # Not redirected: a base URL that moves is misconfigured, and a redirect would carry the
            # key to another host or turn the POST into a GET.
            async with self._open_session().post(
                self.url, json=body, headers=headers, allow_redirects=False, proxy=self._proxy, proxy_auth=self._proxy_auth,
            ) as response:
                if response.status == 429:
                    raise LLMRateLimited(f"the {self.what} provider is rate limiting us (429)")
                if response.status >= 500:
                    raise LLMUnavailable(f"the {self.what} provider failed ({response.status})")
                if not 200 <= response.status < 300:
                    raise LLMError(f"the {self.what} provider rejected the request ({response.status})")
                raw = await _read_bounded(response, max_bytes, self.what)
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too, and are caught here first
            raise LLMTimeout(f"the {self.what} did not answer in time") from exc
        except aiohttp.ClientError as exc:  # refused, reset, DNS, TLS, a body cut short
            raise LLMUnavailable(f"the {self.what} endpoint is unreachable: {type(exc).__name__}") from exc
        try:
            # NaN and Infinity are Python's extensions to JSON, not JSON: refused as such.
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # not JSON, or nested deeper than the decoder goes
            # A proxy in front of the provider answered 200 with something else (an HTML page).
            raise LLMError(f"the {self.what} endpoint answered 200 with a body that is not JSON") from exc


async def _read_bounded(response: aiohttp.ClientResponse, max_bytes: int, what: str) -> bytes:
    """The body, at most max_bytes of it after decompression; a longer one is refused unread
    (aiohttp decompresses as it is read, so a compressed bomb stops here too)."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise LLMError(f"the {what} endpoint answered with a body over {max_bytes} bytes")
    return bytes(body)


class OpenAICompatibleModel:
    provider = "openai"

    def __init__(self, settings: LLMSettings):
        self.model = settings.llm_model
        self._settings = settings
        self._wire = OpenAIWire("LLM", settings.llm_base_url, "chat/completions", api_key=settings.llm_api_key, timeout=settings.llm_timeout)

    async def close(self) -> None:
        await self._wire.close()

    def _response_format(self, schema_name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        mode = self._settings.llm_json_mode
        if mode == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        if mode == "json_object":
            return {"type": "json_object"}
        return None

    async def chat(self, messages: list[dict[str, Any]], *, schema_name: str, schema: dict[str, Any]) -> ChatResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self._settings.llm_temperature,
            "max_tokens": self._settings.llm_max_tokens,
        }
        if (response_format := self._response_format(schema_name, schema)) is not None:
            body["response_format"] = response_format
        return _chat_result(await self._wire.post(body, max_bytes=MAX_CHAT_BYTES))


def _chat_result(completion: Any) -> ChatResult:
    try:
        message = completion["choices"][0]["message"]
        # null when the model refused or said nothing: the schema check (structured.py) asks again.
        text = message.get("content") or ""
        usage = completion.get("usage")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError("the LLM endpoint answered with a body that is not a chat completion") from exc
    if not isinstance(text, str):
        raise LLMError("the LLM endpoint answered with a message whose content is not text")
    return ChatResult(text=text, prompt_tokens=_token_count(usage, "prompt_tokens"), completion_tokens=_token_count(usage, "completion_tokens"))


def _token_count(usage: Any, key: str) -> int:
    # Only counts go to the token counter (a negative one would break it); the usage is not worth refusing an answer over.
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if type(value) is int and value >= 0 else 0


class Embeddings:
    def __init__(self, settings: EmbeddingsSettings):
        self.model = settings.embeddings_model
        self.query_model = settings.embeddings_query_model or settings.embeddings_model
        self.dimensions = settings.embeddings_dimensions
        self.batch_size = settings.embeddings_batch_size
        self._retries = settings.embeddings_max_retries
        self._wire = OpenAIWire(
            "embeddings", settings.embeddings_base_url or settings.llm_base_url, "embeddings",
            api_key=settings.embeddings_api_key if settings.embeddings_api_key.get_secret_value() else settings.llm_api_key,
            timeout=settings.embeddings_timeout,
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
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        max_bytes = len(texts) * (self.dimensions or WIDEST_EMBEDDINGS) * JSON_BYTES_PER_NUMBER + ENVELOPE_BYTES
        return _vectors(await self._wire.post(body, max_bytes=max_bytes), len(texts), self.dimensions)

    async def close(self) -> None:
        await self._wire.close()


def _vectors(answer: Any, count: int, dimensions: int | None) -> list[list[float]]:
    """The answer's vectors in the order of the texts, each a list of finite numbers of one length
    (the length asked for, when one was): what pgvector will take."""
    try:
        items = sorted(answer["data"], key=lambda item: item["index"])
        vectors = [item["embedding"] for item in items]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError("the embeddings endpoint answered with a body that is not embeddings") from exc
    if len(vectors) != count or [item["index"] for item in items] != list(range(count)):
        raise LLMError(f"the embeddings endpoint answered {len(vectors)} vectors for {count} texts")
    length = dimensions or (len(vectors[0]) if vectors and type(vectors[0]) is list else 0)
    for vector in vectors:
        if type(vector) is not list or not vector or len(vector) != length:
            raise LLMError("the embeddings endpoint answered vectors of another length than asked for, or of no length")
        try:
            # sum() takes numbers alone, and is not finite when one of them is not (a 1e999 that json
            # reads as infinity): one pass in C over what pgvector would refuse.
            finite = math.isfinite(sum(vector))
        except TypeError:
            finite = False
        if not finite:
            raise LLMError("the embeddings endpoint answered a vector that is not all finite numbers")
    return vectors
