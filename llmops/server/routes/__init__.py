"""One router per resource: query, ingest, health."""
