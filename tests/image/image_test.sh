#!/usr/bin/env bash
# `make image-test`: build the Dockerfile and run the image for real, against the host's
# PostgreSQL. Needs root (it installs docker.io and mmdebstrap when missing and runs its own
# dockerd); everything it starts (daemon, container, database) is removed on exit.
#
# Checks: the image builds; it is at most MAX_IMAGE_MB; its HEALTHCHECK reports healthy;
# its process runs as uid 10001; /livez answers; a step submitted over REST completes.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN_URL=${FLEETQ_IMAGE_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/fleetq
MAX_IMAGE_MB=200
IMAGE=fleetq:image-test
HEALTHY_TIMEOUT_S=120  # the HEALTHCHECK runs every 15 s
STEP_TIMEOUT_S=30
started_at=$SECONDS
passed=0

step() { echo "image-test: $*"; }
ok() { passed=$((passed + 1)); step "ok: $*"; }
fail() { step "FAILED: $*"; exit 1; }

apt_install() {
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" "$@" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive "${apt[@]}" "$@"; }
}
command -v dockerd >/dev/null || apt_install docker.io
command -v mmdebstrap >/dev/null || apt_install mmdebstrap
command -v psql >/dev/null || apt_install postgresql-client

# A daemon of our own: private socket and data; no bridge or iptables rules (host network).
# The data root must be on a disk overlayfs can stack on; sockets want a short path.
data_root=$(mktemp -d /var/tmp/fleetq-image-test.XXXXXX)
exec_root=$(mktemp -d /tmp/fleetq-dockerd.XXXXXX)
export DOCKER_HOST=unix://$exec_root/docker.sock
export DOCKER_BUILDKIT=0  # the classic builder: BuildKit would fetch its frontend image
database=fleetq_image_test_$$
container=""
dockerd_pid=""

cleanup() {
    local status=$?
    set +e
    if [ -n "$container" ]; then
        [ $status -eq 0 ] || docker logs --tail 40 "$container" 2>&1 | sed 's/^/  container: /'
        docker rm -f "$container" >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
        [ $status -eq 0 ] || tail -20 "$data_root/dockerd.log" | sed 's/^/  dockerd: /'
    fi
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
    # dockerd leaves its network namespace mounted under the exec root.
    findmnt -rn -o TARGET | grep -E "^($exec_root|$data_root)/" | sort -r | xargs -r umount
    rm -rf "$data_root" "$exec_root"
    step "took $((SECONDS - started_at)) s"
    exit $status
}
trap cleanup EXIT

dockerd --host "$DOCKER_HOST" --data-root "$data_root/data" --exec-root "$exec_root/exec" \
    --pidfile "$exec_root/dockerd.pid" --bridge none --iptables=false \
    >"$data_root/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 150); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker version >/dev/null || fail "dockerd did not start"

# The base image the Dockerfile names, bootstrapped offline (bootstrap_base.sh).
base_image=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
[ -n "$base_image" ] || fail "the Dockerfile has no ARG PYTHON_IMAGE default"
tarball=$(bash tests/image/bootstrap_base.sh "$CACHE_DIR" "${base_image##*-}")
docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$tarball" "$base_image" >/dev/null
wanted_python=${base_image#python:}
wanted_python=${wanted_python%%-*}
docker run --rm --network none "$base_image" python --version | grep -q "Python $wanted_python\." \
    || fail "the bootstrapped $base_image has no Python $wanted_python"

build_started=$SECONDS
docker build --network host -t "$IMAGE" . >"$data_root/build.log" 2>&1 \
    || { tail -40 "$data_root/build.log"; fail "docker build"; }
ok "built $IMAGE in $((SECONDS - build_started)) s"

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
size_mb=$((size / 1000000))
[ "$size_mb" -le "$MAX_IMAGE_MB" ] || fail "image size $size_mb MB > $MAX_IMAGE_MB MB"
ok "image size $size_mb MB (at most $MAX_IMAGE_MB MB)"

read -r http_port grpc_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
psql -q "$ADMIN_URL" -c "CREATE DATABASE $database" >/dev/null
database_url=${ADMIN_URL%/*}/$database
# Built-in demo handlers on explicitly (where they are a setting): the test submits one.
container=$(docker run -d --network host \
    -e FLEETQ_DATABASE_URL="$database_url" \
    -e FLEETQ_HTTP_HOST=127.0.0.1 -e FLEETQ_HTTP_PORT="$http_port" \
    -e FLEETQ_GRPC_HOST=127.0.0.1 -e FLEETQ_GRPC_PORT="$grpc_port" \
    -e FLEETQ_DEMO_HANDLERS=true \
    "$IMAGE")

deadline=$((SECONDS + HEALTHY_TIMEOUT_S))
while health=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$container"); do
    [ "$health" = "running healthy" ] && break
    [[ $health == running* ]] || fail "container stopped ($health)"
    [ $SECONDS -lt $deadline ] || fail "not healthy after $HEALTHY_TIMEOUT_S s ($health)"
    sleep 1
done
ok "HEALTHCHECK reports healthy after $((SECONDS - deadline + HEALTHY_TIMEOUT_S)) s"

uid=$(docker exec "$container" awk '/^Uid:/ {print $2}' /proc/1/status)
[ "$uid" = 10001 ] || fail "the pod runs as uid $uid, not 10001"
ok "the pod runs as uid 10001"

base=http://127.0.0.1:$http_port
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/livez")
[ "$code" = 200 ] || fail "GET /livez answered $code"
ok "GET /livez answers 200"

answer=$(curl -sf -X POST "$base/submit" -H 'Content-Type: application/json' \
    -d '{"type": "hello_world", "args": {"message": "from make image-test"}}') \
    || fail "POST /submit"
step_id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["step_id"])' "$answer")
deadline=$((SECONDS + STEP_TIMEOUT_S))
until status=$(curl -sf "$base/status/$step_id" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])') \
    && [ "$status" = completed ]; do
    [ "${status:-}" != failed ] || fail "step $step_id failed"
    [ $SECONDS -lt $deadline ] || fail "step $step_id not completed after $STEP_TIMEOUT_S s"
    sleep 0.5
done
ok "step $step_id submitted over REST and completed"

echo "image-test: $passed passed, 0 failed"
