"""Monitoring: Prometheus metrics, the request log, drift detection between a reference and a
current window, and Evidently reports."""
