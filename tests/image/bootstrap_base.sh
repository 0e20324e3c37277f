#!/usr/bin/env bash
# Prints the path of a root filesystem tarball standing in for the Dockerfile's base image
# (python:3.11-slim-bookworm), built offline from the registries this machine reaches:
# Debian's minbase of the tag's suite plus its Python 3, by mmdebstrap from apt's
# configured Debian sources. Registries of images are unreachable here.
#
# Cached in $1 (a directory on this machine, never committed), keyed on this script, the
# sources and the CA bundle, so later runs only `docker import` it.
#
# The host's CA bundle replaces the image's: pip inside `docker build` must trust this
# machine's TLS proxy. The host's pip index, when it is a URL (not a local directory),
# goes to /etc/pip.conf for the same reason.
set -euo pipefail
cache_dir=$1
suite=$2
ca_bundle=/etc/ssl/certs/ca-certificates.crt

# apt's configured Debian sources (others, such as vendors' repositories, have keys and
# suites of their own that a Debian chroot does not need).
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$file" ] && grep -qE '^[^#]*(deb|URIs:).*/debian(-security)?/?( |$)' "$file"; then
        sources+=("$file")
    fi
done
[ ${#sources[@]} -gt 0 ] || { echo "no Debian source configured for apt" >&2; exit 1; }

index_url=${PIP_INDEX_URL:-$(pip config get global.index-url 2>/dev/null || true)}
[[ $index_url == http* ]] || index_url=""

key=$(cat "$0" "${sources[@]}" "$ca_bundle" <(echo "$suite $index_url") | sha256sum | cut -c1-16)
tarball=$cache_dir/base-$suite-$key.tar
if [ ! -s "$tarball" ]; then
    mkdir -p "$cache_dir"
    partial=$cache_dir/partial-$suite-$key.tar  # mmdebstrap takes the format from the ending
    echo "bootstrapping the base image ($suite) into $tarball ..." >&2
    pip_conf="[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
    [ -z "$index_url" ] || pip_conf+="index-url = $index_url\n"
    # merged-usr: set /usr up directly instead of installing usrmerge, which pulls in perl
    # (50 MB). Documentation, manuals and translations are left out, as in Docker's slim images.
    mmdebstrap --quiet --variant=minbase \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook="cp $ca_bundle \"\$1/etc/ssl/certs/ca-certificates.crt\"" \
        --customize-hook="printf '$pip_conf' > \"\$1/etc/pip.conf\"" \
        "$suite" "$partial" "${sources[@]}" >"$cache_dir/bootstrap.log" 2>&1 \
        || { tail -30 "$cache_dir/bootstrap.log" >&2; exit 1; }
    rm -f "$cache_dir"/base-"$suite"-*.tar  # older keys
    mv "$partial" "$tarball"
fi
echo "$tarball"
