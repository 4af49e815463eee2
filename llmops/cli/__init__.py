"""The ``llmops`` command line: one small module per command, assembled in ``main``."""
