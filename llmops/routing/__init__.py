"""Experiments in production: sticky weighted splits, Thompson-sampling bandits and the state
they keep (per-arm traffic and rewards) in SQLite or Redis."""
