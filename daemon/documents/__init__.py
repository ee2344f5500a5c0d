"""Document collections: parsing, chunking, the index and hybrid search."""
