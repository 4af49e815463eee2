"""Reusable test suites for people writing components: call them from your own tests to check
that a backend keeps the contracts in ``llmops.protocols``."""
