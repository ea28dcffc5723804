#!/usr/bin/env bash
# Checks that the machine's backing services answer, restarting any that is down with the
# machine's documented command. Redis and NATS (with JetStream) are required — the key-value
# conformance suite runs against both — so the script fails if either stays down. PostgreSQL is
# reported only, until a test needs it.
set -u
check() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" 2>/dev/null; }
declare -A start=(
  [postgres]="pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
  [redis]="redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
  [nats]="start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"
)
declare -A port=([postgres]=5432 [redis]=6379 [nats]=4222)
for svc in postgres redis nats; do
  if check "$svc" "${port[$svc]}"; then
    echo "service $svc: up (127.0.0.1:${port[$svc]})"
  else
    echo "service $svc: down, starting it"
    bash -c "${start[$svc]}" >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do check "$svc" "${port[$svc]}" && break; sleep 0.1; done
    if check "$svc" "${port[$svc]}"; then
      echo "service $svc: up"
    elif [ "$svc" = redis ] || [ "$svc" = nats ]; then
      echo "service $svc: still down, and the test suite needs it" >&2
      failed=1
    else
      echo "service $svc: still down (not needed by the current suite)"
    fi
  fi
done
exit "${failed:-0}"
