"""Document collections: parsing, chunking, index, hybrid search; the worker and the daemon's service."""
