# One image for the API and the workers; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# a C compiler: the workers build the engine's update kernels (update_kernels.c) at first
# use; without one they run the same updates as slower torch ops
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# torch first, so the range in pyproject.toml installs nothing else; pass PyTorch's CPU
# wheel index as TORCH_INDEX (docker build --build-arg TORCH_INDEX=...) for a small image
ARG TORCH_INDEX=""
RUN pip install torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
COPY pyproject.toml README.md ./
COPY aimc_spec aimc_spec
COPY aimc_study aimc_study
COPY aimc_store aimc_store
COPY aimc_engine aimc_engine
COPY aimc_cli aimc_cli
COPY aimc_client aimc_client
COPY service service
COPY worker worker
COPY examples examples
RUN pip install .
# the artifact store volume mounts here; a named volume takes this ownership
RUN useradd --create-home aimc && mkdir /artifacts && chown aimc /artifacts
USER aimc
EXPOSE 8000
CMD ["uvicorn", "service.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
