#!/bin/sh
# Start one member of scim-bridge's Redis Sentinel topology (deploy/redis/sentinel.md): a Redis
# server or a Sentinel. compose.yaml and kubernetes/redis.yaml run every Redis and Sentinel
# container through it.
#
#   sentinel-topology.sh redis      a Redis server: a replica of the primary the Sentinels name;
#                                   the primary itself when no Sentinel knows one yet and this is
#                                   FIRST_PRIMARY (a first start), or when they name this server
#   sentinel-topology.sh sentinel   a Sentinel that monitors that primary; its state file is kept
#                                   in DATA_DIR, so a restarted Sentinel resumes what it knew
#
# Asking the Sentinels first is what makes a restart safe: a server that was primary before a
# failover comes back as a replica of the promoted one, instead of as a second primary with an
# older copy of the data.
#
# Environment:
#   SENTINELS          every Sentinel, host:port, comma- or space-separated (as
#                      SCIM_BRIDGE_REDIS_SENTINELS)
#   MASTER_NAME        the name the Sentinels monitor (SCIM_BRIDGE_REDIS_SENTINEL_MASTER)
#   FIRST_PRIMARY      host[:port] of the server that starts as primary on the very first start
#   ANNOUNCE_HOST      this container's stable host name, as the others reach it
#   REDIS_PORT         the Redis servers' port (6379)
#   SENTINEL_PORT      this Sentinel's port (26379)
#   REDIS_CONF         the Redis configuration (/etc/redis/redis.conf: deploy/redis/redis.conf)
#   DATA_DIR           where Redis keeps its files, and a Sentinel its state (/data)
#   BIND_ADDRESS       the address to listen on (0.0.0.0: the network policy decides who connects)
#   SENTINEL_PASSWORD  the Sentinels' own password (SCIM_BRIDGE_REDIS_SENTINEL_PASSWORD), optional
#   REDIS_PASSWORD     the Redis servers' password (the one in SCIM_BRIDGE_REDIS_URL), optional
#   QUORUM, DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS   Sentinel's quorum (2), down-after (5000) and
#                      failover timeout (60000)
set -eu

role=${1:?usage: sentinel-topology.sh redis|sentinel [extra redis-server arguments]}
shift
: "${SENTINELS:?}" "${MASTER_NAME:?}" "${FIRST_PRIMARY:?}" "${ANNOUNCE_HOST:?}"
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
REDIS_CONF=${REDIS_CONF:-/etc/redis/redis.conf}
DATA_DIR=${DATA_DIR:-/data}
BIND_ADDRESS=${BIND_ADDRESS:-0.0.0.0}
if [ -n "${SENTINEL_PASSWORD:-}" ]; then
    export REDISCLI_AUTH="$SENTINEL_PASSWORD" # redis-cli talks only to the Sentinels here
fi

# "host port" of the primary as the first Sentinel that answers names it; empty if none does.
current_primary() {
    for node in $(echo "$SENTINELS" | tr ',' ' '); do
        host=${node%:*}
        port=${node##*:}
        if [ "$role" = sentinel ] && [ "$host" = "$ANNOUNCE_HOST" ] && [ "$port" = "$SENTINEL_PORT" ]; then
            continue # this Sentinel itself, not started yet
        fi
        answer=$(redis-cli -h "$host" -p "$port" --raw \
            sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tr '\n' ' ') || true
        set -- $answer
        if [ $# -eq 2 ] && [ "$2" -gt 0 ] 2>/dev/null; then
            echo "$1 $2"
            return
        fi
    done
}

primary=$(current_primary)
if [ -z "$primary" ]; then
    case "$FIRST_PRIMARY" in
    *:*) primary="${FIRST_PRIMARY%:*} ${FIRST_PRIMARY##*:}" ;;
    *) primary="$FIRST_PRIMARY $REDIS_PORT" ;;
    esac
fi

case "$role" in
redis)
    set -- redis-server "$REDIS_CONF" --port "$REDIS_PORT" --bind "$BIND_ADDRESS" --protected-mode no \
        --dir "$DATA_DIR" --replica-announce-ip "$ANNOUNCE_HOST" "$@"
    if [ -n "${REDIS_PASSWORD:-}" ]; then
        set -- "$@" --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"
    fi
    if [ "$primary" = "$ANNOUNCE_HOST $REDIS_PORT" ]; then
        echo "sentinel-topology: $ANNOUNCE_HOST starts as the primary" >&2
    else
        echo "sentinel-topology: $ANNOUNCE_HOST starts as a replica of $primary" >&2
        # shellcheck disable=SC2086 # "host port": two arguments
        set -- "$@" --replicaof $primary
    fi
    exec "$@"
    ;;
sentinel)
    conf="$DATA_DIR/sentinel.conf"
    if [ ! -s "$conf" ]; then
        # Sentinel rewrites this file with what it learns: written once, then its own.
        cat >"$conf" <<EOF
port $SENTINEL_PORT
bind $BIND_ADDRESS
protected-mode no
dir $DATA_DIR
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ANNOUNCE_HOST
sentinel announce-port $SENTINEL_PORT
sentinel monitor $MASTER_NAME $primary ${QUORUM:-2}
sentinel down-after-milliseconds $MASTER_NAME ${DOWN_AFTER_MS:-5000}
sentinel failover-timeout $MASTER_NAME ${FAILOVER_TIMEOUT_MS:-60000}
sentinel parallel-syncs $MASTER_NAME 1
EOF
        if [ -n "${SENTINEL_PASSWORD:-}" ]; then
            printf 'requirepass %s\nsentinel sentinel-pass %s\n' "$SENTINEL_PASSWORD" \
                "$SENTINEL_PASSWORD" >>"$conf"
        fi
        if [ -n "${REDIS_PASSWORD:-}" ]; then
            printf 'sentinel auth-pass %s %s\n' "$MASTER_NAME" "$REDIS_PASSWORD" >>"$conf"
        fi
    fi
    exec redis-server "$conf" --sentinel "$@"
    ;;
*)
    echo "sentinel-topology: unknown role $role (redis or sentinel)" >&2
    exit 2
    ;;
esac
