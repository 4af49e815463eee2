"""Deployment files rendered from one app config: a container image's compose stack and a
Kubernetes kustomize tree (base + overlays, optional mesh canary), plus the one rule deciding
whether a config may run as several replicas. Pure functions of the config: no I/O but the
caller writing the files."""
