"""Retrieval-quality and speed benchmark of qwendesk.daemon.documents (run: python -m bench.retrieval)."""
