"""The fixed flows over built components: ``ingest`` (sources → index) and ``query``
(question → retrieval → generation → answer with sources)."""
