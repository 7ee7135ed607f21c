#!/bin/sh
# Writes, into $CERT_DIR (the `certs` volume), once:
#   ca.crt / ca.key            a private CA, valid 10 years
#   server.crt / server.key    SuperLink + fleet proxy certificate, SANs:
#                              superlink, fleet-proxy, localhost, 127.0.0.1,
#                              and $FLOWERBED_PUBLIC_HOSTNAME (what remote
#                              SuperNodes dial)
#   supernode-N.key / .pub     SuperNode auth key pairs (EC P-384, OpenSSH
#                              format, which flower-supernode requires), N=1..$NUM_SUPERNODES
# Existing files are kept, so re-running never rotates keys under a live
# federation; delete the volume to start over.
#
# Then, on every run, it hands out copies under $OUT_DIR (one volume each):
#   public/                    ca.crt, server.crt, supernode-*.pub   (0644)
#   superlink/, fleet-proxy/   server.key                            (0600)
#   supernode-N/               supernode.key (that node's only)      (0600)
# each key owned by the uid named in $KEY_OWNERS ("consumer=uid ..."), the one
# service that mounts it. ca.key stays in $CERT_DIR, which only this job mounts.
set -eu

CERT_DIR=${CERT_DIR:-/certs}
NUM_SUPERNODES=${NUM_SUPERNODES:-3}
PUBLIC_HOSTNAME=${FLOWERBED_PUBLIC_HOSTNAME:-localhost}
cd "$CERT_DIR"

if [ ! -f ca.crt ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -sha256 \
        -keyout ca.key -out ca.crt -subj "/CN=Flowerbed CA"
fi

if [ ! -f server.crt ]; then
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -keyout server.key -out server.csr -subj "/CN=superlink"
    printf 'subjectAltName=DNS:superlink,DNS:fleet-proxy,DNS:localhost,IP:127.0.0.1,DNS:%s\n' \
        "$PUBLIC_HOSTNAME" > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days 825 -sha256 -extfile server.ext -out server.crt
    rm -f server.csr server.ext
fi

i=1
while [ "$i" -le "$NUM_SUPERNODES" ]; do
    if [ ! -f "supernode-$i.key" ]; then
        ssh-keygen -q -t ecdsa -b 384 -N "" -C "flowerbed-supernode-$i" -f "supernode-$i.key"
        mv "supernode-$i.key.pub" "supernode-$i.pub"
    fi
    i=$((i + 1))
done

for f in ./*; do
    case "$f" in
        *.key) chmod 0600 "$f" ;;
        *) chmod 0644 "$f" ;;
    esac
done

OUT_DIR=${OUT_DIR:-}
[ -n "$OUT_DIR" ] || exit 0

# install SOURCE DEST UID MODE: an atomic copy, so a reader never sees half a key.
install_file() {
    cp "$1" "$2.tmp" && chown "$3:$3" "$2.tmp" && chmod "$4" "$2.tmp" && mv "$2.tmp" "$2"
}
owner_of() {
    for pair in ${KEY_OWNERS:-}; do
        [ "${pair%%=*}" = "$1" ] && { echo "${pair#*=}"; return; }
    done
    echo "owner of $1's key missing from KEY_OWNERS" >&2
    exit 1
}

if [ -d "$OUT_DIR/public" ]; then
    for f in ca.crt server.crt supernode-*.pub; do
        [ -e "$f" ] && install_file "$f" "$OUT_DIR/public/$f" 0 0644
    done
fi
for consumer in superlink fleet-proxy; do
    [ -d "$OUT_DIR/$consumer" ] && install_file server.key "$OUT_DIR/$consumer/server.key" "$(owner_of "$consumer")" 0600
done
i=1
while [ "$i" -le "$NUM_SUPERNODES" ]; do
    dir="$OUT_DIR/supernode-$i"
    [ -d "$dir" ] && install_file "supernode-$i.key" "$dir/supernode.key" "$(owner_of "supernode-$i")" 0600
    i=$((i + 1))
done
ls -ln "$OUT_DIR"/*
