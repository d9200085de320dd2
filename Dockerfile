# syntax=docker/dockerfile:1
# Build stage: compile wheels for the project and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip build
COPY pyproject.toml README.md ./
COPY consumer ./consumer
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no compilers, a non-root user, the wheels only.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --create-home --uid 10001 calibration
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER calibration
# Compile the numba kernels once at build time so the first run starts fast.
RUN python -c "from consumer.irt.simulate import simulate; from consumer.irt.estimate import estimate_items; \
from consumer.irt.scoring import score_eap; d = simulate(200, 20, 10); score_eap(d.responses, estimate_items(d.responses).params)"
ENTRYPOINT ["python", "-m", "consumer"]
CMD ["calibrate"]
