#!/usr/bin/env bash
# Development PKI for a relay and its agents, with openssl, in the layout the
# relay itself creates (security.dev_certs_dir, default .dev/certs):
#
#   ca.pem, ca-key.pem            the development CA (its key signs node certificates)
#   server.pem, server-key.pem    the relay's certificate (SAN: localhost, 127.0.0.1, ::1
#                                 and any names in RELAY_NAMES, comma-separated)
#   client-<node>.pem, -key.pem   one client certificate per node named on the
#                                 command line (SAN DNS:<node>, CN <node>)
#
# Usage: infra/dev/dev-certs.sh [DIR] [NODE...]
#   DIR defaults to .dev/certs. An existing CA in DIR is reused, so new nodes can
#   be added later; the relay certificate is only created when missing.
# Never for production: the CA key sits beside the certificates, unencrypted.
set -euo pipefail

dir=${1:-.dev/certs}
[ "$#" -gt 0 ] && shift
mkdir -p "$dir"
umask 077
days=825

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca-key.pem" ]; then
    key "$dir/ca-key.pem"
    openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days "$days" \
        -subj "/CN=Horizon Telemetry development CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem"
    rm -f "$dir/server.pem"
    echo "created the development CA in $dir"
fi

sign() { # name, csr, extfile, out
    openssl x509 -req -in "$2" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
        -sha256 -days "$days" -extfile "$3" -out "$4" 2>/dev/null
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -s "$dir/server.pem" ]; then
    sans="DNS:localhost,IP:127.0.0.1,IP:::1"
    IFS=',' read -r -a extra <<< "${RELAY_NAMES:-}"
    for n in "${extra[@]}"; do
        [ -n "$n" ] && sans="$sans,DNS:$n"
    done
    key "$dir/server-key.pem"
    openssl req -new -key "$dir/server-key.pem" -subj "/CN=horizon-relay" -out "$tmp/server.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' "$sans" > "$tmp/server.ext"
    sign server "$tmp/server.csr" "$tmp/server.ext" "$dir/server.pem"
    echo "created the relay certificate ($sans)"
fi

for node in "$@"; do
    if ! [[ "$node" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]]; then
        echo "error: $node is not a valid node name (letters, digits, '.', '-')" >&2
        exit 2
    fi
    key "$dir/client-$node-key.pem"
    openssl req -new -key "$dir/client-$node-key.pem" -subj "/CN=$node" -out "$tmp/$node.csr"
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' "$node" > "$tmp/$node.ext"
    sign "$node" "$tmp/$node.csr" "$tmp/$node.ext" "$dir/client-$node.pem"
    echo "created $dir/client-$node.pem"
done
