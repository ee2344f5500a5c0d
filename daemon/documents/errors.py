"""Errors of document collections: a file that cannot be read, an embedder that fails, a bad collection."""

from __future__ import annotations

from qwendesk.models.errors import BadRequest, Conflict, NotFound, QwendeskError


class DocumentError(QwendeskError):
    """One file could not be indexed; the message says why and what to do (indexing goes on)."""

    code = "document_unreadable"


class EmbeddingError(QwendeskError):
    """The embedding model did not answer or answered badly (search falls back to keywords)."""

    code = "embedding_failed"


class CollectionNotFound(NotFound):
    code = "collection_not_found"


class CollectionExists(Conflict):
    code = "collection_exists"


class CollectionFolderError(BadRequest):
    """The folder given for a collection is missing, not a folder, or a bad name was given."""

    code = "collection_folder_invalid"


class DocumentsUnavailable(QwendeskError):
    """The documents worker (the process that holds the indexes) could not start or stopped mid-request."""

    code = "documents_unavailable"
