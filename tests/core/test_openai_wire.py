"""Our OpenAI-wire client (multyworkemon_common.llm.openai_wire) against the local peer: what it sends, and
each way a provider's answer can go wrong ending as one of our LLMError classes, at a bounded cost."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from multyworkemon_common.context import trace
from multyworkemon_common.llm import (
    Embeddings, EmbeddingsSettings, LLMError, LLMRateLimited, LLMSettings, LLMTimeout, LLMUnavailable, OpenAICompatibleModel,
)
from multyworkemon_common.llm.openai_wire import MAX_CHAT_BYTES
from resilience.processes import start_service
from support.client import get
from support.openai_wire import Reply, word_vector
from support.stack import free_port

KEY = f"sk-{uuid.uuid4().hex}"
MESSAGES = [{"role": "system", "content": "Отвечай JSON"}, {"role": "user", "content": "Срез авторизаций"}]
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


def chat_model(base_url: str, **settings) -> OpenAICompatibleModel:
    return OpenAICompatibleModel(LLMSettings(**{
        "llm_provider": "openai", "llm_base_url": base_url, "llm_api_key": KEY, "llm_model": "wire-model", "llm_timeout": 2, **settings,
    }))


def embeddings(base_url: str, **settings) -> Embeddings:
    return Embeddings(EmbeddingsSettings(**{
        "llm_base_url": base_url, "llm_api_key": KEY, "embeddings_model": "wire-embeddings", "embeddings_timeout": 2,
        "embeddings_max_retries": 0, **settings,
    }))


@pytest.fixture
async def model(openai_server):
    client = chat_model(openai_server.base_url)
    yield client
    await client.close()


async def chat(client: OpenAICompatibleModel):
    return await client.chat(MESSAGES, schema_name="Answer", schema=SCHEMA)


async def test_what_a_chat_call_sends_and_reads(model, openai_server):
    openai_server.push(Reply(text='{"ok": true}'))
    with trace("req-wire-1"):
        result = await chat(model)
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ('{"ok": true}', 11, 7)
    sent = openai_server.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sent["headers"]["X-Request-ID"] == "req-wire-1", "an LLM gateway's logs join ours"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["body"] == {
        "model": "wire-model", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 1024,
        "response_format": {"type": "json_schema", "json_schema": {"name": "Answer", "schema": SCHEMA, "strict": True}},
    }


@pytest.mark.parametrize("mode, response_format", [("json_object", {"type": "json_object"}), ("none", None)])
async def test_json_mode_decides_the_response_format(openai_server, mode, response_format):
    # A trailing slash on the base URL is joined without a double one (the peer's route would not match).
    client = chat_model(openai_server.base_url + "/", llm_json_mode=mode)
    try:
        await chat(client)
    finally:
        await client.close()
    assert openai_server.requests[0]["body"].get("response_format") == response_format


async def test_without_a_key_no_authorization_header_and_a_key_from_a_file_loses_its_newline(openai_server):
    for key, expected in (("", None), (KEY + "\n", f"Bearer {KEY}")):
        client = chat_model(openai_server.base_url, llm_api_key=key)
        try:
            await chat(client)
        finally:
            await client.close()
        headers = openai_server.requests[-1]["headers"]
        assert headers.get("Authorization") == expected
        assert "X-Request-ID" not in headers, "outside a request, no made-up request id"


@pytest.mark.parametrize("status, error", [
    (400, LLMError), (401, LLMError), (404, LLMError), (429, LLMRateLimited), (500, LLMUnavailable), (503, LLMUnavailable),
])
async def test_statuses_map_to_our_errors_without_the_providers_text(model, openai_server, status, error):
    openai_server.push(Reply(status=status))
    with pytest.raises(LLMError) as failed:
        await chat(model)
    assert type(failed.value) is error and str(status) in str(failed.value)
    assert "scripted error" not in str(failed.value) and KEY not in str(failed.value)


async def test_a_redirect_is_not_followed(model, openai_server):
    async def moved(request: web.Request) -> web.StreamResponse:
        # 307 keeps the POST and its body: followed, it would reach the same endpoint again and succeed.
        raise web.HTTPTemporaryRedirect(str(request.url))

    openai_server.push(Reply(respond=moved))
    with pytest.raises(LLMError, match=r"\(307\)"):
        await chat(model)
    assert len(openai_server.requests) == 1


async def test_a_refused_port_is_unavailable():
    client = chat_model(f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(LLMUnavailable, match="unreachable"):
            await chat(client)
    finally:
        await client.close()


async def test_an_egress_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(monkeypatch):
    seen = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        # A forward proxy gets the target in absolute form; this one answers for the provider itself.
        seen.append((request.host, request.path))
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "via the proxy"}}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", str(server.make_url("")))
    try:
        # A name no resolver knows: only the proxy can reach it.
        client = chat_model("http://llm.example.invalid/v1")
        try:
            assert (await chat(client)).text == "via the proxy"
        finally:
            await client.close()
        assert seen == [("llm.example.invalid", "/v1/chat/completions")]
        monkeypatch.setenv("NO_PROXY", "example.invalid")
        client = chat_model("http://llm.example.invalid/v1")
        try:
            with pytest.raises(LLMUnavailable):
                await chat(client)
        finally:
            await client.close()
        assert len(seen) == 1
    finally:
        await server.close()


async def test_a_slow_answer_or_a_trickled_body_times_out(openai_server):
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while True:  # a byte at a time, each well inside any read timeout: only a total one ends it
                await response.write(b" ")
                await asyncio.sleep(0.05)
        except ConnectionError:
            return response

    client = chat_model(openai_server.base_url, llm_timeout=0.5)
    try:
        for reply in (Reply(text='{"ok": true}', delay=3), Reply(respond=trickle)):
            openai_server.push(reply)
            started = time.monotonic()
            with pytest.raises(LLMTimeout):
                await chat(client)
            assert time.monotonic() - started < 1.5
    finally:
        await client.close()


async def endless(request: web.Request) -> web.StreamResponse:
    """A 200 whose body never ends (chunked, no length given)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        while True:
            await response.write(b'{"choices": "' + b"x" * 65536)
    except ConnectionError:
        return response


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    """64 MiB of JSON whitespace in about 64 KiB of gzip, with an honest Content-Length."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = b"".join(compressor.compress(b" " * (1 << 20)) for _ in range(64)) + compressor.flush()
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


@pytest.mark.parametrize("reply", [
    Reply(raw="[" + " " * MAX_CHAT_BYTES + "]"),
    Reply(respond=endless),
    Reply(respond=gzip_bomb),
], ids=["with a length", "endless", "gzip bomb"])
async def test_an_over_large_body_is_refused_unread(model, openai_server, reply):
    openai_server.push(reply)
    started = time.monotonic()
    with pytest.raises(LLMError, match=f"over {MAX_CHAT_BYTES} bytes") as failed:
        await chat(model)
    assert type(failed.value) is LLMError, "a hostile answer is not retried"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("raw", [
    "<html>proxy error</html>", "[]", "{}", '{"choices": []}', '{"choices": [{"text": "legacy"}]}',
    '{"choices": [{"message": {"content": 5}}]}', '{"choices": [{"message": {"content": NaN}}]}', "[" * 100_000,
])
async def test_a_200_that_is_not_a_chat_completion_is_an_error(model, openai_server, raw):
    openai_server.push(Reply(raw=raw))
    with pytest.raises(LLMError) as failed:
        await chat(model)
    assert type(failed.value) is LLMError


async def test_a_refusal_is_empty_text_and_odd_usage_counts_nothing(model, openai_server):
    openai_server.push(Reply(raw=json.dumps({
        "choices": [{"message": {"role": "assistant", "content": None, "refusal": "no"}}],
        "usage": {"prompt_tokens": -5, "completion_tokens": "7"},
    })))
    result = await chat(model)
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("", 0, 0)


async def test_embeddings_send_what_is_asked_and_come_back_in_the_texts_order(openai_server):
    texts = ["пополнения кошельков", "авторизации по кодам ответа", "выписка"]

    async def shuffled(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        data = [{"object": "embedding", "index": i, "embedding": word_vector(t, 8)} for i, t in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})

    client = embeddings(openai_server.base_url, embeddings_dimensions=8, embeddings_query_model="wire-query")
    try:
        openai_server.embedding_script.append(Reply(respond=shuffled))
        assert await client.documents(texts) == [word_vector(t, 8) for t in texts]
        assert await client.query("выписка") == word_vector("выписка", 8)
    finally:
        await client.close()
    documents, query = openai_server.embedding_requests
    assert documents["body"] == {"model": "wire-embeddings", "input": texts, "encoding_format": "float", "dimensions": 8}
    assert query["body"]["model"] == "wire-query"
    assert documents["headers"]["Authorization"] == f"Bearer {KEY}", "the LLM's key unless EMBEDDINGS_API_KEY is set"


async def test_embeddings_have_their_own_endpoint_and_key_when_set(openai_server):
    client = embeddings("http://127.0.0.1:9/nowhere", embeddings_base_url=openai_server.base_url, embeddings_api_key="sk-embeddings")
    try:
        assert len(await client.query("текст")) == 256
    finally:
        await client.close()
    assert openai_server.embedding_requests[0]["headers"]["Authorization"] == "Bearer sk-embeddings"


def embeddings_answer(*vectors, indexes=None) -> str:
    indexes = indexes or range(len(vectors))
    return json.dumps({"data": [{"index": i, "embedding": v} for i, v in zip(indexes, vectors)]}).replace('"NAN"', "NaN")


@pytest.mark.parametrize("raw", [
    embeddings_answer([0.1, 0.2, 0.3, 0.4]),  # one vector for two texts
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], indexes=[0, 0]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3]),  # another length than asked for
    embeddings_answer([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, "0.2", 0.3, 0.4]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, None, 0.3, 0.4]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, [0.2], 0.3, 0.4]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, "NAN", 0.3, 0.4]),
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]).replace("0.2", "1e999", 1),  # json reads it as infinity
    embeddings_answer([0.1, 0.2, 0.3, 0.4], "0.1,0.2,0.3,0.4"),
    '{"data": {"0": [0.1, 0.2, 0.3, 0.4]}}', '{"object": "list"}', "[]", "not json",
    embeddings_answer([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])[:-1] + ', "padding": "' + "x" * 70_000 + '"}',  # over the bound
])
async def test_embeddings_that_pgvector_would_not_take_are_an_error(openai_server, raw):
    client = embeddings(openai_server.base_url, embeddings_dimensions=4)
    openai_server.embedding_script.append(Reply(raw=raw))
    try:
        with pytest.raises(LLMError) as failed:
            await client.documents(["один", "два"])
    finally:
        await client.close()
    assert type(failed.value) is LLMError and len(openai_server.embedding_requests) == 1, "not retried"


async def test_embeddings_errors_are_ours_and_transient_ones_retried(openai_server):
    client = embeddings(openai_server.base_url, embeddings_max_retries=2)
    openai_server.embedding_script.extend([Reply(status=500), Reply(status=429), Reply(status=401)])
    try:
        with pytest.raises(LLMError, match=r"rejected the request \(401\)"):
            await client.documents(["один"])
    finally:
        await client.close()
    assert len(openai_server.embedding_requests) == 3


async def test_no_key_and_no_authorization_reach_the_logs_of_a_failing_run(openai_server, tmp_path):
    """A real guesser at debug level, through every way the model fails: its log names none of it."""
    openai_server.push(Reply(status=401), Reply(status=500), Reply(raw="<html>"), Reply(respond=endless), Reply(text="{}", delay=5))
    env = {"LOG_LEVEL": "debug", "LLM_PROVIDER": "openai", "LLM_BASE_URL": openai_server.base_url, "LLM_API_KEY": KEY,
           "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT": "1"}
    guesser = await start_service("ai_guesser", env, tmp_path)
    try:
        fields = {"username": "u", "department": "d", "position": "p", "request": "r"}
        for expected in (502, 503, 502, 502, 504):
            status, _, _ = await get(f"{guesser.url}/get-context", fields)
            assert status == expected
        (tmp_path / "refused").mkdir()
        refused = await start_service("ai_guesser", {**env, "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}, tmp_path / "refused")
        try:
            status, _, _ = await get(f"{refused.url}/get-context", fields)
            assert status == 503
        finally:
            refused.terminate()
            await refused.wait(timeout=30)
    finally:
        guesser.terminate()
        await guesser.wait(timeout=30)
    assert all(f"Bearer {KEY}" == r["headers"]["Authorization"] for r in openai_server.requests), "the key was sent"
    for service in (guesser, refused):
        log = service.log()
        assert '"LLM call failed"' in log, "the failures were logged"
        assert KEY not in log and KEY[3:] not in log and "Authorization" not in log and "Bearer" not in log
