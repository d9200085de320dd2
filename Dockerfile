# The calibration consumer's image: `python -m consumer serve` by default.
#
#   docker build -t irt-calibration .
#   docker run --rm -e GOOGLE_CLOUD_PROJECT=... -e INSTANCE_CONNECTION_NAME=... irt-calibration
#   docker run --rm irt-calibration calibrate --help      # any other command of the CLI
#
# Two stages: the build stage installs the hash-pinned wheels of requirements.lock
# into a virtual environment and builds the project's own wheel; the runtime stage
# gets that environment only (no pip, no build backend, no compiler), runs as an
# unprivileged user, and carries the numba kernels compiled at build time.
# See infra/README.md for deploying it.

# Pin by digest for reproducible builds, e.g. python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# The build backend named in pyproject.toml, hash-pinned; it stays in this stage.
COPY infra/docker/build-requirements.lock /tmp/build-requirements.lock
RUN pip install --require-hashes --only-binary=:all: -r /tmp/build-requirements.lock

# Runtime dependencies: exactly the pinned versions and hashes of requirements.lock,
# wheels only (nothing is compiled), into a virtual environment without pip.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --require-hashes --only-binary=:all: --no-deps \
        -r /tmp/requirements.lock

# The project itself, as a wheel, on top of the locked dependencies (never re-resolved).
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY consumer ./consumer
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/dist/*.whl \
 && pip --python /opt/venv/bin/python check


FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
LABEL org.opencontainers.image.title="irt-calibration" \
      org.opencontainers.image.description="Event-driven IRT item calibration: calibration-requested in, calibration-completed out"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/var/cache/numba

# No package installer in the final image; an unprivileged user owning only the numba cache.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true \
 && groupadd --system --gid "${APP_UID}" calibration \
 && useradd --system --uid "${APP_UID}" --gid calibration --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin calibration \
 && install -d -o calibration -g calibration -m 0755 /var/cache/numba

COPY --from=build /opt/venv /opt/venv
COPY infra/docker/selfcheck.py infra/docker/warm_numba.py /opt/irt-calibration/

USER ${APP_UID}:${APP_UID}
# Refuse to produce an image whose code or data files are missing (every module imports,
# the event schemas and migrations are there), then compile the numba kernels once (importing
# them compiles them), against the installed package, into NUMBA_CACHE_DIR, so that the first
# run in a new container does not spend ~13 s compiling (Kubernetes copies this cache into a
# writable volume at start: see infra/k8s/deployment.yaml).
RUN python /opt/irt-calibration/selfcheck.py \
 && python /opt/irt-calibration/warm_numba.py

# /healthz and /readyz (PORT, default 8080).
EXPOSE 8080
ENTRYPOINT ["python", "-m", "consumer"]
CMD ["serve"]
