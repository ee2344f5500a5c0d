"""One plain field (e.g. `model`) read out of a multipart/form-data body that is forwarded unchanged.

The daemon routes /v1/audio requests by their `model` field but sends the body on as it came; this reads the
field with python-multipart's streaming parser, skipping file parts without keeping their bytes.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from qwendesk.models.errors import BadRequest

MAX_FIELD_BYTES = 4096  # a model name; longer values are refused rather than buffered


class FieldReader:
    """Feed the body in chunks; `value` is the named field's text once its part has ended (else None)."""

    def __init__(self, content_type: str, name: str) -> None:
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise BadRequest("Send the audio as multipart/form-data (a `file` field and a `model` field).")
        self.name = name.encode()
        self.value: str | None = None
        self._header_field = self._header_value = b""
        self._part_name: bytes | None = None
        self._is_file = False
        self._data: list[bytes] = []
        self._size = 0
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._header_end,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    @property
    def done(self) -> bool:
        return self.value is not None

    def feed(self, chunk: bytes) -> None:
        if not self.done:
            try:
                self._parser.write(chunk)
            except BadRequest:
                raise
            except (
                Exception
            ) as exc:  # python-multipart raises its own MultipartParseError (a ValueError) and others
                raise BadRequest(f"The request is not a valid multipart form ({exc}).") from exc

    def _part_begin(self) -> None:
        self._part_name, self._is_file, self._data, self._size = None, False, [], 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.strip().lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value)
            self._part_name = params.get(b"name")
            self._is_file = b"filename" in params
        self._header_field = self._header_value = b""

    def _wanted(self) -> bool:
        return self._part_name == self.name and not self._is_file

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted():
            self._size += end - start
            if self._size > MAX_FIELD_BYTES:
                raise BadRequest(f"The `{self.name.decode()}` field is longer than {MAX_FIELD_BYTES} bytes.")
            self._data.append(data[start:end])

    def _part_end(self) -> None:
        if self._wanted() and self.value is None:
            self.value = b"".join(self._data).decode("utf-8", errors="replace").strip()


def form_field(body: bytes, content_type: str, name: str) -> str | None:
    """The text of field `name` in a multipart body, or None when the body has no such plain field."""
    reader = FieldReader(content_type, name)
    reader.feed(body)
    return reader.value
