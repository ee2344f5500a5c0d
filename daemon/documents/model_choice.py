"""Which embedding model and reranker the collections use: the setting when given, else the one in the models
folders (the catalog's default first, then the first by name), else none; "none" turns it off."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

OFF = {"none", "off"}
WHAT = {"embedding": "embedding model", "rerank": "reranker"}


@dataclass(frozen=True)
class Choice:
    name: str | None
    problem: str | None = None  # why none is used when one was wanted (None: one is used, or "none" was set)


def choose(models: Iterable[Any], kind: str, setting: str | None, preferred_file: str | None) -> Choice:
    """The model of `kind` ("embedding" or "rerank") among `models` (views with name, file, kind, error).

    `setting` is the user's choice (None: automatic); `preferred_file` the catalog default's file name.
    """
    what = WHAT.get(kind, kind)
    if setting is not None and setting.strip().lower() in OFF:
        return Choice(None)
    models = list(models)
    usable = {m.name: m for m in models if m.kind == kind}
    if setting:
        if setting in usable:
            return Choice(setting)
        other = next((m for m in models if m.name == setting), None)
        if other is not None:
            return Choice(
                None, f"{setting} (setting `{kind}_model`) is not an {what}: {other.error or other.kind}"
            )
        return Choice(
            None,
            f"{setting} (setting `{kind}_model`) is not in the models folders: add it, or change the setting",
        )
    if not usable:
        return Choice(None, f"there is no {what} in the models folders")
    if preferred_file:
        for model in usable.values():
            if PurePath(model.file).name.lower() == preferred_file.lower():
                return Choice(model.name)
    return Choice(sorted(usable)[0])
