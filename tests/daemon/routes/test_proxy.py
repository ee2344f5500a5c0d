"""The /v1 proxy's pure parts: the `model` rewrite, request parsing, engine errors."""

from __future__ import annotations

import asyncio

from qwendesk.daemon.routes.proxy import ModelRewriter


def test_rewriter_replaces_only_the_model_key_even_across_chunk_boundaries() -> None:
    rewrite = ModelRewriter("smol")
    event = (
        b'data: {"choices":[{"delta":{"content":"say \\"model\\":\\"x\\""}}],'
        b'"model":"/a/b/c.gguf","object":"chat.completion.chunk"}\n\n'
    )
    assert rewrite(event) == event.replace(b'"/a/b/c.gguf"', b'"smol"')
    assert rewrite(b'{"model": "/p/with \\"quote\\".gguf", "x": 1}') == b'{"model":"smol", "x": 1}'

    async def split() -> list[bytes]:
        async def chunks():
            for i in range(0, len(event) * 3, 7):  # cut in the middle of the key and value
                yield (event * 3)[i : i + 7]

        return [b async for b in rewrite.stream(chunks())]

    out = b"".join(asyncio.run(split()))
    assert out == (event * 3).replace(b'"/a/b/c.gguf"', b'"smol"')
