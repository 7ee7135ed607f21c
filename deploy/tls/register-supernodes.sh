#!/bin/sh
# One-shot `supernode-register` job (compose.tls.yaml): with
# --enable-supernode-auth the SuperLink only admits SuperNodes whose public key
# was registered through the Control API (`flwr supernode register`). The
# Control API is never published, so registration runs inside the network.
# Idempotent: an already registered key is fine.
set -eu

CERT_DIR=${CERT_DIR:-/certs}
SUPERLINK_ADDRESS=${SUPERLINK_ADDRESS:-superlink:8000}
export FLWR_HOME=${FLWR_HOME:-/tmp/flwr-home}
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "compose"

[superlink.compose]
address = "$SUPERLINK_ADDRESS"
root-certificates = "$CERT_DIR/ca.crt"
TOML

status=0
for pub in "$CERT_DIR"/supernode-*.pub; do
    [ -e "$pub" ] || { echo "no SuperNode public keys in $CERT_DIR" >&2; exit 1; }
    name=$(basename "$pub" .pub)
    if out=$(flwr supernode register "$pub" compose --name "$name" 2>&1); then
        echo "registered $name"
    elif echo "$out" | grep -qi "already in use"; then
        echo "$name was already registered"
    else
        echo "registering $name failed: $out" >&2
        status=1
    fi
done
exit $status
