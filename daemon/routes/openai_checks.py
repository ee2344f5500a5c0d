"""The request shapes OpenAI validates on /v1, checked on the parsed body before a model is started.

Only the fields OpenAI defines are checked; anything else (llama.cpp's `top_k`, `ignore_eos`, `grammar`, ...)
passes through. The models never re-serialise the body: the engine gets the client's bytes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import BadRequest


class InvalidParameter(BadRequest):
    """A /v1 request field OpenAI would refuse; `param` names it as OpenAI does (`messages[0].role`)."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


class _Shape(BaseModel):
    # strict: "0.5" is not a number and 1 is not a boolean, as for OpenAI; extra: engine options pass.
    model_config = ConfigDict(extra="allow", strict=True)


Unit = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Positive = Annotated[int, Field(ge=1)]
Stop = str | Annotated[list[str], Field(max_length=4)]
Tokens = Annotated[list[int], Field(min_length=1)]


# ---- messages --------------------------------------------------------------------------------------
class TextPart(_Shape):
    type: Literal["text"]
    text: str


class ImageUrl(_Shape):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Shape):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Shape):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(_Shape):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(_Shape):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(_Shape):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


class FunctionCall(_Shape):
    name: str
    arguments: str


class ToolCall(_Shape):
    id: str
    type: Literal["function"]
    function: FunctionCall


class SystemMessage(_Shape):
    role: Literal["system", "developer"]
    content: str | list[TextPart]


class UserMessage(_Shape):
    role: Literal["user"]
    content: str | list[UserPart]


class AssistantMessage(_Shape):
    role: Literal["assistant"]
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    # Last, so its check sees the two above (and an error names `content`).
    content: str | list[AssistantPart] | None = Field(None, validate_default=True)

    @field_validator("content")
    @classmethod
    def _says_something(cls, content: Any, info: ValidationInfo) -> Any:
        if content is None and not info.data.get("tool_calls") and info.data.get("function_call") is None:
            raise ValueError("an assistant message needs `content` unless it has `tool_calls`")
        return content


class ToolMessage(_Shape):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


class FunctionMessage(_Shape):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


# ---- tools and formats -----------------------------------------------------------------------------
class FunctionDef(_Shape):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Shape):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Shape):
    name: str


class NamedTool(_Shape):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(_Shape):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Shape):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("`json_schema` is required when type is 'json_schema'")
        return self


class StreamOptions(_Shape):
    include_usage: bool | None = None


class _Sampling(_Shape):
    """What chat and text completions share."""

    model: str
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Unit | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: Stop | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = None


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("`top_logprobs` needs `logprobs` set to true")
        return value


class CompletionRequest(_Sampling):
    # OpenAI allows 0 here (with `echo`, to score the prompt alone).
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Tokens
        | Annotated[list[Tokens], Field(min_length=1)]
    )
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    suffix: str | None = None


NonEmpty = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(_Shape):
    model: str
    input: (
        NonEmpty
        | Annotated[list[NonEmpty], Field(min_length=1, max_length=2048)]
        | Tokens
        | Annotated[list[Tokens], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Positive | None = None
    user: str | None = None


SHAPES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}


# ---- checking ----------------------------------------------------------------------------------------
def check_request(path: str, body: dict[str, Any]) -> None:
    """Raise InvalidParameter naming the first field OpenAI would refuse in `body` (a /v1 `path`)."""
    shape = SHAPES.get(path)
    if shape is None:
        return
    try:
        shape.model_validate(body)
    except ValidationError as exc:
        raise _first_problem(exc.errors(include_url=False), body) from None


_KINDS = {
    "string_type": "a string",
    "list_type": "an array",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
}


def _first_problem(errors: list[Any], body: dict[str, Any]) -> InvalidParameter:
    """One clear error from pydantic's list: the deepest field, its union branches' expected types joined."""
    located = [(_param(e, body), e) for e in errors]
    deepest = max(len(p) for p, _ in located)
    param_parts = next(p for p, _ in located if len(p) == deepest)
    same = [e for p, e in located if p == param_parts]
    # A value of the right type but out of range says more than "not the other branch's type".
    first = next((e for e in same if e["type"] not in _KINDS), same[0])
    param = _spell(param_parts)
    if first["type"] in ("missing", "union_tag_not_found"):
        return InvalidParameter(f"Missing required parameter: '{param}'.", param)
    if first["type"] in _KINDS:
        kinds = list(dict.fromkeys(_KINDS[e["type"]] for e in same))
        detail = "expected " + (" or ".join(kinds))
    elif first["type"] == "union_tag_invalid":
        ctx = first.get("ctx", {})
        detail = f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    else:
        detail = first["msg"][0].lower() + first["msg"][1:]
        detail = detail.removeprefix("value error, ").removeprefix("input ").replace(" after validation", "")
    got = first.get("input")
    shown = f" (got {_short(got)})" if param_parts and not isinstance(got, (dict, list, type(None))) else ""
    return InvalidParameter(f"Invalid '{param or 'body'}': {detail}{shown}.", param or None)


def _param(error: Any, body: Any) -> tuple[str | int, ...]:
    """The error's location in the body, without pydantic's union-branch labels; a bad tag names its key."""
    parts: list[str | int] = []
    node = body
    loc = error["loc"]
    for i, item in enumerate(loc):
        # The last item may name a field the body lacks (a union branch's label never is an identifier).
        missing_here = i == len(loc) - 1 and item.isidentifier() if isinstance(item, str) else False
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            parts.append(item)
            node = node[item]
        elif isinstance(item, str) and isinstance(node, dict) and (item in node or missing_here):
            parts.append(item)
            node = node.get(item)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    return tuple(parts)


def _spell(parts: tuple[str | int, ...]) -> str:
    """('messages', 0, 'role') -> 'messages[0].role', as OpenAI names a parameter."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
