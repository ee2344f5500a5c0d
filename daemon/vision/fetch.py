"""Downloading a remote image (only when the image_fetch setting allows it), bounded in bytes and time."""

from __future__ import annotations

import time

import httpx

from .errors import ImageFetchFailed, size_text

MAX_REDIRECTS = 3


def fetch_image(url: str, *, where: str, max_bytes: int, timeout: float) -> bytes:
    """The body of `url` (http or https), at most `max_bytes`, within about `timeout` seconds in total.

    httpx's timeouts bound each connect and read, not the whole download, so a server that trickles
    bytes is stopped by a deadline checked between chunks.
    """
    deadline = time.monotonic() + timeout
    too_big = (
        f"{where}: the image at {url} is larger than {size_text(max_bytes)}. "
        "Send a smaller image, or inline it as a data URL."
    )
    slow = f"{where}: downloading {url} took longer than {timeout:g} s. Send the image inline as a data URL."
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client,
            # identity: images are compressed already; a server that compresses anyway is decoded, and the
            # limit counts decoded bytes (a deflate chunk expands at most ~1000x before the check)
            client.stream(
                "GET", url, headers={"Accept": "image/*", "Accept-Encoding": "identity"}
            ) as response,
        ):
            if response.status_code != 200:
                raise ImageFetchFailed(
                    f"{where}: {url} answered HTTP {response.status_code}. Check the address, or send the "
                    "image inline as a data URL."
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ImageFetchFailed(too_big)
            data = bytearray()
            for chunk in response.iter_bytes():  # as received: a chunk_size would buffer past the deadline
                data += chunk
                if len(data) > max_bytes:
                    raise ImageFetchFailed(too_big)
                if time.monotonic() > deadline:
                    raise ImageFetchFailed(slow)
            return bytes(data)
    except httpx.TimeoutException:
        raise ImageFetchFailed(slow) from None
    except httpx.HTTPError as exc:
        raise ImageFetchFailed(
            f"{where}: could not download {url} ({type(exc).__name__}: {exc}). Check the address, or send the "
            "image inline as a data URL."
        ) from None
