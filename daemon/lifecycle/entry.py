"""One model the daemon knows of: its files and its lifecycle state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from qwendesk.models.folder import ModelFiles

from ..schemas import ModelState, ModelView, StartRequest
from ..speech.models import SpeechModel
from .launch import Engine


@dataclass
class ModelEntry:
    """A model in the table, with what its lifecycle needs to remember.

    Two kinds share the table: GGUF files run by Xinference (`files` is a ModelFiles) and Whisper folders run
    by a speech worker of ours (`files` is a SpeechModel)."""

    files: ModelFiles | SpeechModel
    state: ModelState = ModelState.AVAILABLE
    error: str | None = None
    uid: str | None = None  # Xinference's id while launched
    options: StartRequest = field(default_factory=StartRequest)
    n_ctx: int | None = None
    on_demand: bool = False  # started by a /v1 request, so stopped again when idle
    relaunch: bool = False  # was running when Xinference crashed: start again once it is back
    engine: Engine | None = None
    busy: int = 0  # requests in flight: a busy model is never stopped for being idle
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hears: bool = False  # a GGUF whose projector has an audio encoder: chat requests may carry audio

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def speech(self) -> bool:
        """A Whisper model, run by a speech worker rather than Xinference."""
        return isinstance(self.files, SpeechModel)

    @property
    def active(self) -> bool:
        return self.state in (ModelState.RUNNING, ModelState.STARTING, ModelState.STOPPING)

    def view(self) -> ModelView:
        fields = self.files.view_fields()
        unusable = self.files.error is not None and not self.files.pending
        fields["state"] = ModelState.ERROR if unusable else self.state
        fields["error"] = self.error or fields["error"]
        fields["n_ctx"] = self.n_ctx if self.state == ModelState.RUNNING else None
        reg = self.files.registration
        if not self.speech:
            fields["kind"] = reg.kind if reg is not None else None
            fields["format"] = "gguf"
        if self.hears and "audio" not in fields["abilities"]:
            fields["abilities"] = [*fields["abilities"], "audio"]
        return ModelView(**fields)
