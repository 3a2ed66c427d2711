#!/usr/bin/env bash
# Installs the Debian packages Sluice needs, only those that are missing.
#
#   scripts/deps.sh build   what building needs
#   scripts/deps.sh test    that, plus what the tests need (clang + libFuzzer, python3, curl, ps)
#
# Fast and silent when everything is installed; runs 'apt-get update' only when something is
# missing. Needs root (or sudo) only then.
set -euo pipefail

BUILD_PACKAGES=(build-essential cmake pkg-config git libnng-dev libmsgpack-dev liblua5.4-dev lua-cjson-dev
    libcurl4-openssl-dev libpq-dev libraft-dev libuv1-dev
    zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev)
TEST_PACKAGES=(clang libclang-rt-14-dev python3 curl procps kcat python3-confluent-kafka postgresql
    librdkafka-dev lua5.4 lua-cjson)

usage() {
    echo "Usage: scripts/deps.sh build|test"
}

case "${1:-}" in
build) wanted=("${BUILD_PACKAGES[@]}") ;;
test) wanted=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    usage >&2
    exit 2
    ;;
esac

# 'dpkg -s' also succeeds for a removed package whose config files remain: ask for the state.
installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for package in "${wanted[@]}"; do
    installed "$package" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "deps.sh: missing packages ${missing[*]}, and installing them needs root or sudo" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get update -qq >"$log" 2>&1 ||
    ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" </dev/null >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "deps.sh: could not install ${missing[*]}" >&2
    exit 1
fi

for package in "${missing[@]}"; do
    if ! installed "$package"; then
        echo "deps.sh: $package is still not installed" >&2
        exit 1
    fi
done
