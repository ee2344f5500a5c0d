"""The package-wide error base (here, so models/ need not import daemon/) and model-file errors."""

from __future__ import annotations


class QwendeskError(Exception):
    """An error a person can act on; `message` says what happened and what to do next."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class ModelFileError(QwendeskError):
    """A model file is missing, unreadable, corrupt or of an unsupported kind."""

    status, code = 422, "bad_model_file"


class DownloadError(QwendeskError):
    """A pull failed: network, checksum, or not found upstream."""

    status, code = 502, "download_error"


class NotEnoughSpace(QwendeskError):
    status, code = 507, "insufficient_storage"
