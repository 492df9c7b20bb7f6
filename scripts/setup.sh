#!/usr/bin/env bash
# Set up everything the demo and the tests need; safe to run again (it only does what is missing).
#
#   - Debian packages the tests use (installed with apt-get when missing; needs root);
#   - .venv: Python 3.11+ with the template's and the generated atom's dev requirements;
#   - .venv-py312: the atom's dev requirements on Python 3.12, to run the suite of an atom
#     baked for 3.12.
#
# Python packages are reinstalled only when a requirements file changed (a hash is kept).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium)      # headless browser: /docs and /redoc render offline
APT_PACKAGES+=(gcc python3-dev)  # the post-gen hook compiles the atom's protector (Cython)
APT_PACKAGES+=(nginx wrk)        # the nginx lane and the worker benchmark
APT_PACKAGES+=(podman buildah runc debootstrap)  # the container lane builds the Dockerfile
# The readme_blocks lane runs the READMEs' commands as written: their install line names these.
APT_PACKAGES+=(sudo pipx python3-venv make git curl)
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

install_debian_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

requirements_hash() {
    cat requirements-dev.txt requirements-py312.txt "{{cookiecutter.project_slug}}"/requirements*.txt \
        | sha256sum | cut -d' ' -f1
}

# make_venv DIR PYTHON REQUIREMENTS: create DIR and install REQUIREMENTS unless up to date.
make_venv() {
    local dir=$1 python=$2 requirements=$3 stamp="$1/.requirements.sha256" want
    want=$(requirements_hash)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
        return 0
    fi
    log "creating $dir with $("$python" --version)"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q -r "$requirements"
    echo "$want" > "$stamp"
}

# find_python312: print an interpreter of Python 3.12 that really runs (pyenv shims may not).
find_python312() {
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "$(command -v python3.12 2>/dev/null)" "$root"/versions/3.12*/bin/python3.12; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' \
            2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_debian_packages
# The two environments are made side by side (pip mostly waits on downloads and disk).
make_venv .venv "$PYTHON" requirements-dev.txt &
venv=$!
python312=$(find_python312 || true)
if [ -n "$python312" ]; then
    make_venv .venv-py312 "$python312" requirements-py312.txt
else
    log "WARNING: no python3.12 found; the Python 3.12 lane of the tests will fail"
fi
wait "$venv"
log "ready"
