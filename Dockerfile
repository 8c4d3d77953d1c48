# syntax=docker/dockerfile:1
# The agentrun worker image: `docker compose build worker`, or on its own
#   docker build --tag agentrun-worker .
# It connects through Temporal's environment configuration (TEMPORAL_ADDRESS,
# TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, ...) like every other process
# of agentrun; see docs/deploy.md.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/agentrun
WORKDIR /src
# Only what the package is built from (pyproject.toml's packages): nothing else in the
# build context, such as a worker.env, can reach the image.
COPY pyproject.toml README.md ./
COPY agentrun ./agentrun
COPY workflows ./workflows
COPY activities ./activities
# Optional extras, e.g. --build-arg EXTRAS=openai for model agents.
ARG EXTRAS=""
RUN /opt/agentrun/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM python:${PYTHON_VERSION}-slim
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin agentrun
# Large payloads' store; a named volume mounted here takes this owner on first use.
RUN mkdir -p /var/lib/agentrun/payloads && chown agentrun:agentrun /var/lib/agentrun/payloads
COPY --from=build /opt/agentrun /opt/agentrun
ENV PATH=/opt/agentrun/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER agentrun
WORKDIR /home/agentrun
# The worker stops gracefully on SIGTERM (agentrun worker); give it 30 s before a SIGKILL
# (`docker stop --time 30`, compose's stop_grace_period).
STOPSIGNAL SIGTERM
# Healthy while this container's worker polls its task queue (agentrun healthcheck).
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["agentrun", "healthcheck"]
CMD ["agentrun", "worker"]
