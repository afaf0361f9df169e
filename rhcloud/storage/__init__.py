"""Persistence and paths: fsspec helpers (what is remote, storage options, redaction,
staged outputs), the climatology cache and the field store."""
