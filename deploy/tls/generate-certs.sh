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

# Flower's containers run as uid 49999 and ours as 10001: they must read these.
# The volume is mounted read-only and only into Flowerbed's own containers.
chmod 0644 ./*
chmod 0600 ca.key
ls -l "$CERT_DIR"
