#!/bin/sh
# The container's entrypoint (installed as /usr/local/bin/parledger-entrypoint
# by deploy/Dockerfile).
#
#   parledger-entrypoint [node [SERVE-FLAGS...]]   a node of the StatefulSet
#   parledger-entrypoint COMMAND [ARGS...]         `parledger COMMAND ARGS...`
#
# As a node of the StatefulSet in deploy/kubernetes it derives everything
# that differs between pods from the pod's name, `STATEFULSET-ORDINAL`:
#
#   node id      ORDINAL + 1 (pod parledger-0 is node 1)
#   own address  STATEFULSET-ORDINAL.$PARLEDGER_PEER_SERVICE.$PARLEDGER_NAMESPACE.svc.$PARLEDGER_CLUSTER_DOMAIN
#   founder      ORDINAL < $PARLEDGER_FOUNDERS: started with --peer for every
#                other founder (the same set on each), so that they elect a
#                leader together
#   joiner       ORDINAL >= $PARLEDGER_FOUNDERS: started with --join and
#                --peer for every lower ordinal; an admin then adds it
#                (`parledger cluster add`, see deploy/README.md)
#
# Once the cluster is founded, PARLEDGER_FOUNDED=true starts every pod with
# --join, which a node ignores once its Raft log exists: a founder's pod
# that comes back with an empty volume then waits to be added again instead
# of founding a cluster of its own.
#
# Files it expects (Secrets mounted as files, see deploy/README.md):
#
#   $PARLEDGER_CLUSTER_TLS_DIR/ca.pem            the consortium CA
#   $PARLEDGER_CLUSTER_TLS_DIR/node-ID.pem       node ID's certificate (DNS SAN node-ID.parledger)
#   $PARLEDGER_CLUSTER_TLS_DIR/node-ID-key.pem   its private key
#   $PARLEDGER_JWT_KEY_FILE                      the token-signing key every node shares
#   *.pub.pem beside it                          (optional) more trusted public keys, during a rotation
#   $PARLEDGER_INIT_PASSWORD_FILE                (node 1, optional) the founding admin's password
#
# The API listens on plain HTTP on 0.0.0.0:8080 (--allow-plain-http): TLS
# for clients terminates at the Service's Ingress or load balancer in this
# deployment. Node-to-node traffic on 9080 is always mutual TLS.
set -eu

# Fixed: the manifests' containerPorts and the Services' targetPorts name
# these (scripts/k8s_rules.py checks that they agree).
API_PORT=8080
CLUSTER_PORT=9080
DATA_DIR=${PARLEDGER_DATA_DIR:-/var/lib/parledger}
CLUSTER_TLS_DIR=${PARLEDGER_CLUSTER_TLS_DIR:-/etc/parledger/cluster}
JWT_KEY_FILE=${PARLEDGER_JWT_KEY_FILE:-/etc/parledger/jwt/jwt-ed25519.pem}
INIT_PASSWORD_FILE=${PARLEDGER_INIT_PASSWORD_FILE:-/etc/parledger/init/password}
# Public keys (`*.pub.pem`) trusted besides the signing key: by default the
# JWT Secret's own directory, so that a rotation adds the next key's public
# half to that Secret before it swaps the signing key (deploy/README.md).
JWT_TRUST_DIR=${PARLEDGER_JWT_TRUST_DIR:-$(dirname "$JWT_KEY_FILE")}

say() {
    echo "parledger-entrypoint: $*" >&2
}

die() {
    say "$*"
    exit 64
}

# Anything but `node`: the parledger command line itself.
if [ "$#" -gt 0 ] && [ "$1" != node ]; then
    exec parledger "$@"
fi
if [ "$#" -gt 0 ]; then
    shift
fi
# "$@" now holds extra `parledger serve` flags, passed last.

is_count() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# The manifest passes the pod's name; a pod's host name is the same.
pod=${PARLEDGER_POD_NAME:-$(cat /proc/sys/kernel/hostname 2>/dev/null || true)}
statefulset=${pod%-*}
ordinal=${pod##*-}
if [ -z "$pod" ] || [ "$statefulset" = "$pod" ] || ! is_count "$ordinal"; then
    die "the pod name '$pod' is not STATEFULSET-ORDINAL: run me in the StatefulSet (or give a parledger command)"
fi
founders=${PARLEDGER_FOUNDERS:-}
if ! is_count "$founders" || [ "$founders" -lt 1 ]; then
    die "PARLEDGER_FOUNDERS must be the number of founding nodes (1 or more), not '$founders'"
fi
peer_service=${PARLEDGER_PEER_SERVICE:-}
namespace=${PARLEDGER_NAMESPACE:-}
cluster_domain=${PARLEDGER_CLUSTER_DOMAIN:-cluster.local}
if [ -z "$peer_service" ] || [ -z "$namespace" ]; then
    die "PARLEDGER_PEER_SERVICE (the headless Service) and PARLEDGER_NAMESPACE must be set"
fi
founded=${PARLEDGER_FOUNDED:-false}
case $founded in
    true | false) ;;
    *) die "PARLEDGER_FOUNDED must be true or false, not '$founded'" ;;
esac

# The stable DNS name of the pod with ordinal $1 (the headless Service's
# record, published before the pod is ready).
host_of() {
    echo "$statefulset-$1.$peer_service.$namespace.svc.$cluster_domain"
}

node_id=$((ordinal + 1))
self=$(host_of "$ordinal")

cert=$CLUSTER_TLS_DIR/node-$node_id.pem
key=$CLUSTER_TLS_DIR/node-$node_id-key.pem
ca=$CLUSTER_TLS_DIR/ca.pem
for f in "$ca" "$cert" "$key"; do
    [ -r "$f" ] || die "cannot read $f: the Secret parledger-cluster-tls needs ca.pem, node-$node_id.pem and node-$node_id-key.pem (deploy/README.md)"
done
[ -r "$JWT_KEY_FILE" ] || die "cannot read $JWT_KEY_FILE: create the Secret parledger-jwt (deploy/README.md)"

# Founders peer with every other founder; a joiner with every lower ordinal
# (the founders and the nodes added before it). Built back to front because
# POSIX sh has no arrays: each flag is put in front of "$@".
if [ "$ordinal" -lt "$founders" ]; then
    role=founder
    last=$((founders - 1))
else
    role=joiner
    last=$((ordinal - 1))
fi
if [ "$role" = joiner ] || [ "$founded" = true ]; then
    set -- --join "$@"
fi
i=$last
while [ "$i" -ge 0 ]; do
    if [ "$i" -ne "$ordinal" ]; then
        set -- --peer "$((i + 1))=$(host_of "$i"):$CLUSTER_PORT" "$@"
    fi
    i=$((i - 1))
done

# Node 1 founds the consortium on the cluster's first start when an
# organization is configured (ignored once it exists; never when joining,
# which would wait for a leader that does not know it yet). The password is
# read from the mounted Secret; parledger takes it from the environment only.
if [ "$node_id" -eq 1 ] && [ "$founded" = false ] && [ -n "${PARLEDGER_FOUNDING_ORG:-}" ]; then
    if [ -r "$INIT_PASSWORD_FILE" ]; then
        PARLEDGER_INIT_PASSWORD=$(cat "$INIT_PASSWORD_FILE")
        export PARLEDGER_INIT_PASSWORD
        set -- --init-org "$PARLEDGER_FOUNDING_ORG" \
            --init-org-name "${PARLEDGER_FOUNDING_ORG_NAME:-$PARLEDGER_FOUNDING_ORG}" \
            --init-admin "${PARLEDGER_FOUNDING_ADMIN:-admin}" "$@"
    else
        say "PARLEDGER_FOUNDING_ORG is set but $INIT_PASSWORD_FILE is missing: not founding (fine once the consortium exists)"
    fi
fi

say "node $node_id ($role; $founders founders; founded: $founded) at $self"
exec parledger serve \
    --data-dir "$DATA_DIR" \
    --listen "0.0.0.0:$API_PORT" --allow-plain-http \
    --advertise "http://$self:$API_PORT" \
    --jwt-key "$JWT_KEY_FILE" --jwt-trust-dir "$JWT_TRUST_DIR" \
    --node-id "$node_id" \
    --cluster-listen "0.0.0.0:$CLUSTER_PORT" \
    --cluster-advertise "$self:$CLUSTER_PORT" \
    --cluster-cert "$cert" --cluster-key "$key" --cluster-ca "$ca" \
    "$@"
