"""The test peer (support/openai_wire.py) driven by the official `openai` client: what the services' own
client (llm/openai_wire.py) is tested against is the wire format the library itself speaks and reads."""

from __future__ import annotations

import json

import openai
import pytest

from support.openai_wire import EMBEDDING_DIMENSIONS, Reply, word_vector


@pytest.fixture
async def client(openai_server):
    official = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-peer", max_retries=0, timeout=5)
    yield official
    await official.close()


async def test_chat_completion_as_the_library_reads_it(client, openai_server):
    answer = json.dumps({"is_enough": True, "response": "Готово"}, ensure_ascii=False)
    openai_server.push(Reply(text=answer))
    completion = await client.chat.completions.create(
        model="peer-model", messages=[{"role": "user", "content": "Привет"}], temperature=0.2, max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "Answer", "schema": {"type": "object"}, "strict": True}},
    )
    assert completion.choices[0].message.content == answer and completion.choices[0].finish_reason == "stop"
    assert completion.model == "peer-model" and completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 7
    sent = openai_server.requests[0]
    assert sent["headers"]["Authorization"] == "Bearer sk-peer"
    assert sent["body"]["messages"] == [{"role": "user", "content": "Привет"}] and sent["body"]["max_tokens"] == 64


@pytest.mark.parametrize("encoding", ["float", None], ids=["float", "library default (base64)"])
async def test_embeddings_as_the_library_reads_them(client, openai_server, encoding):
    texts = ["пополнения кошельков", "авторизации по кодам ответа"]
    options = {"encoding_format": encoding} if encoding else {}
    response = await client.embeddings.create(model="peer-embeddings", input=texts, dimensions=64, **options)
    vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
    assert [len(v) for v in vectors] == [64, 64]
    for vector, text in zip(vectors, texts):
        assert vector == pytest.approx(word_vector(text, 64), abs=1e-6), "base64 holds float32"
    assert openai_server.embedding_requests[0]["body"]["input"] == texts
    single = await client.embeddings.create(model="peer-embeddings", input="один текст", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == EMBEDDING_DIMENSIONS


@pytest.mark.parametrize("status, error", [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (429, openai.RateLimitError), (500, openai.InternalServerError),
])
async def test_scripted_errors_are_the_errors_the_library_knows(client, openai_server, status, error):
    openai_server.push(Reply(status=status))
    openai_server.embedding_script.append(Reply(status=status))
    with pytest.raises(error) as chat_failed:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert chat_failed.value.status_code == status and chat_failed.value.body["message"] == f"scripted error {status}"
    with pytest.raises(error):
        await client.embeddings.create(model="m", input=["x"], encoding_format="float")
