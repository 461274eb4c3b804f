# syntax=docker/dockerfile:1
# rocketchat-livechat-exporter: Prometheus exporter for Rocket.Chat Omnichannel (livechat).
#
#   docker build -t rocketchat-livechat-exporter:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm -p 9776:9776 rocketchat-livechat-exporter:0.1.0 --demo
#
# Two stages: the build stage installs the package and its dependencies (all published as
# wheels) into a virtualenv; the final stage is the same slim Python image plus that virtualenv,
# with no compiler, no pip cache and no source tree, running as an unprivileged numeric user.

# Python 3.11: the version CI runs the test suite on (Debian bookworm's). CI builds on a stand-in
# base with Debian's own python3 (see .ci/image); both stages must use the same base.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Only for builds behind a TLS-intercepting proxy: the path of a CA bundle mounted into the
# build (.ci/image does so); pip reads it from the environment. Nothing of it stays in the image.
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/exporter
WORKDIR /src
# Dependency pins first, so that a code change does not invalidate this layer's inputs.
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY exporter ./exporter
# constraints.txt pins the versions the test suite ran with. pip and setuptools leave the
# virtualenv afterwards: nothing installs at run time, and they are attack surface.
RUN /opt/exporter/bin/pip install --no-cache-dir --constraint constraints.txt . \
    && /opt/exporter/bin/pip uninstall --yes pip setuptools \
    && /opt/exporter/bin/rocketchat-livechat-exporter --version

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
# RFC 3339, e.g. $(date -u +%FT%TZ); CI sets it.
ARG CREATED=unknown
ARG SOURCE=https://github.com/rocketchat-livechat-exporter/rocketchat-livechat-exporter
LABEL org.opencontainers.image.title="rocketchat-livechat-exporter" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/README.md" \
      org.opencontainers.image.description="Prometheus exporter for Rocket.Chat Omnichannel (livechat): load per agent and department, waiting visitors, agent availability" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Bytecode was compiled at install time; nothing is written at run time, so the root
# filesystem can be mounted read-only.
ENV PATH=/opt/exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/exporter /opt/exporter
# 65532: the conventional "nonroot" id; numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9776
ENTRYPOINT ["rocketchat-livechat-exporter"]
