#!/usr/bin/env bash
# Regenerate the image's hash-pinned locks from pyproject.toml.
#
#   requirements.lock                       runtime dependencies of the service
#   infra/docker/build-requirements.lock    the build backend, for the build stage only
#
# Run it from anywhere after changing [project].dependencies or [build-system]
# in pyproject.toml; tests/repository/test_infra.py fails until the lock agrees again.
# Needs pip-tools (pip install pip-tools) and Python 3.11, the image's Python.
# Hashes come from PyPI itself: local mirrors and find-links are ignored so that
# the hashes are those `pip install --require-hashes` will see in the build.
set -euo pipefail
cd "$(dirname "$0")/../.."

python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$python_version" != "3.11" ]; then
    echo "update-locks.sh: run with Python 3.11 (the image's), not $python_version" >&2
    exit 2
fi

compile() {
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
        --index-url https://pypi.org/simple "$@"
}

compile --output-file requirements.lock pyproject.toml
compile --allow-unsafe --output-file infra/docker/build-requirements.lock infra/docker/build-requirements.in
echo "requirements.lock and infra/docker/build-requirements.lock regenerated" >&2
