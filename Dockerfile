# syntax=docker/dockerfile:1
# The sozu-operator image: the `sozu-operator` command (operator and GitOps CLI) in a virtual
# environment on a slim Python runtime, running as uid 65532.
#
#   docker build -t sozu-operator:0.1.0 .
#
# Releases pin the base by digest (reproducible and tamper-evident), e.g.
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# with the digest of the tag at release time (`docker buildx imagetools inspect
# python:3.11-slim-bookworm`). Both stages must use the same base: the virtual environment
# links to its Python.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sozu-operator
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/sozu-operator/bin/pip install --no-compile . \
    && /opt/sozu-operator/bin/python -m compileall -q /opt/sozu-operator/lib \
    && /opt/sozu-operator/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
COPY --from=builder /opt/sozu-operator /opt/sozu-operator
ENV PATH=/opt/sozu-operator/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# No shell is needed at run time: exec-form entry point, and the chart mounts the root file
# system read-only.
USER 65532:65532
ENTRYPOINT ["sozu-operator"]
CMD ["run", "--socket", "/run/sozu/sozu.sock"]
