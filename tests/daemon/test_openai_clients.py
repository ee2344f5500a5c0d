"""Unmodified real clients against a real daemon: openai (sync, async, streaming), LangChain, LlamaIndex."""

from __future__ import annotations

import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"


def base_url(daemon: DaemonProcess) -> str:
    return daemon.url + "/v1"


def test_openai_sdk_sync_and_streaming(daemon: DaemonProcess) -> None:
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=base_url(daemon), api_key="unused", max_retries=0, timeout=300)
    assert SMOLLM2_NAME in [m.id for m in client.models.list()]

    reply = client.chat.completions.create(
        model=SMOLLM2_NAME, messages=[{"role": "user", "content": QUESTION}], max_tokens=12, temperature=0
    )
    assert reply.model == SMOLLM2_NAME
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 12

    stream = client.chat.completions.create(
        model=SMOLLM2_NAME,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content  # greedy: streaming and not agree
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    completion = client.completions.create(model=SMOLLM2_NAME, prompt="Paris is", max_tokens=5)
    assert completion.choices[0].text

    with pytest.raises(NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in str(err.value)


async def test_openai_sdk_async_streaming(daemon: DaemonProcess) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url(daemon), api_key="unused", max_retries=0, timeout=300)
    try:
        stream = await client.chat.completions.create(
            model=SMOLLM2_NAME, messages=[{"role": "user", "content": QUESTION}], max_tokens=10, stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces).strip()
        reply = await client.chat.completions.create(
            model=SMOLLM2_NAME, messages=[{"role": "user", "content": QUESTION}], max_tokens=6
        )
        assert reply.choices[0].message.content
    finally:
        await client.close()


def test_langchain_chat_openai(daemon: DaemonProcess) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url(daemon),
        api_key="unused",
        model=SMOLLM2_NAME,
        max_tokens=10,
        temperature=0,
        max_retries=0,
    )
    answer = llm.invoke(QUESTION)
    assert answer.content.strip()
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed == answer.content


def test_llama_index_openai_like(daemon: DaemonProcess) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(
        model=SMOLLM2_NAME,
        api_base=base_url(daemon),
        api_key="unused",
        is_chat_model=True,
        max_tokens=10,
        temperature=0,
        max_retries=0,
        timeout=300,
    )
    reply = llm.chat([ChatMessage(role="user", content=QUESTION)])
    assert reply.message.content.strip()
    streamed = "".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content=QUESTION)]))
    assert streamed == reply.message.content
    assert llm.complete("Paris is").text
