"""Offline evaluation: metrics over retrieval runs and answers (trec_eval definitions) and
readers for evaluation datasets such as BEIR folders."""
