# syntax=docker/dockerfile:1
# SRE Agent worker image: the image the Helm chart (helm/sre-agent) runs.
#   docker build -t sre-agent:0.1.0 .
#   docker run --rm -e SRE_AGENT_KAFKA__BROKER=kafka://host:9092 -p 6066:6066 sre-agent:0.1.0

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its pinned dependencies into a venv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# compilers only for the odd dependency without a wheel; they stay in this stage
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# 1. the dependencies alone, from pyproject.toml's list pinned by constraints.txt: this layer
#    is rebuilt only when those two files change, not on every source change
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install -c constraints.txt -r requirements.txt
# 2. the package itself (no dependency resolution left to do)
COPY README.md ./
COPY src ./src
RUN pip install --no-deps -c constraints.txt .

# ---- runtime: no compilers, non-root, data on a volume
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sre-agent" \
      org.opencontainers.image.description="Kafka-native AIOps agent (Faust workers, RocksDB tables)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 sre \
 && useradd --system --uid 10001 --gid sre --home-dir /home/sre --create-home sre \
 && mkdir -p /data /etc/sre-agent \
 && chown sre:sre /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SRE_AGENT_WORKER__DATA_DIR=/data \
    SRE_AGENT_WORKER__WEB_HOST=0.0.0.0 \
    SRE_AGENT_WORKER__WEB_PORT=6066
USER 10001:10001
WORKDIR /home/sre
VOLUME ["/data"]
EXPOSE 6066
# liveness (a wedged or crashed worker); readiness is GET /readyz (see docs/deploy.md)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/livez', timeout=4); sys.exit(0)"]
ENTRYPOINT ["sre-agent"]
CMD ["worker"]
