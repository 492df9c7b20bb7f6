#!/usr/bin/env bash
# Set up this checkout for `make run` and `make test`; safe to run again (it only does
# what is missing or out of date, in well under a second when nothing is):
#
#   .venv               a virtual environment (PYTHON=/path/to/python uses yours instead)
#   packages            requirements-dev.txt, installed again when a requirements file or
#                       pyproject.toml changes (their hash is kept in build/setup.sha256)
#   the protector       <package>/protection/model_protector.*.so, compiled again when its
#                       .pyx or setup.py changes (python setup.py build_ext --inplace)
#   secrets/model.key   this checkout's model key, when missing
#   models/face.enc     the demo model, when missing
#
# `scripts/setup.sh protector` compiles the protector again (make protector);
# `scripts/setup.sh model NAME [SRC]` encrypts SRC (default: the demo's face cascade) into
# models/NAME.enc with the checkout's key (make model NAME=... SRC=...).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE={{ cookiecutter.package_name }}
VENV_PYTHON=.venv/bin/python
PYTHON=${PYTHON:-$VENV_PYTHON}
KEY_FILE=secrets/model.key
STAMP=build/setup.sha256
PROTECT=(-m "$PACKAGE.protection.protect")

log() { printf '[setup] %s\n' "$*" >&2; }
die() {
    printf '[setup] error: %s\n' "$*" >&2
    exit 1
}

# base_python: print the interpreter that makes .venv (BASE_PYTHON, else the image's
# version if installed, else python3).
base_python() {
    local candidate
    for candidate in ${BASE_PYTHON:-} python{{ cookiecutter.python_version }} python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c '' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

make_venv() {
    if [ "$PYTHON" != "$VENV_PYTHON" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: no such interpreter"
        return 0
    fi
    [ -x "$PYTHON" ] && return 0
    local base
    base=$(base_python) || die "no python3 on PATH (Debian/Ubuntu: sudo apt-get install python3)"
    "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$base is $("$base" --version 2>&1): the atom needs Python 3.11 or newer"
    "$base" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$base cannot make virtual environments (Debian/Ubuntu: sudo apt-get install python3-venv)"
    log "creating .venv with $("$base" --version 2>&1) ($base)"
    "$base" -m venv .venv || {
        rm -rf .venv
        die "$base -m venv .venv failed"
    }
}

# python_facts: this interpreter's prefix, extension suffix, C compiler and header folder,
# one per line.
python_facts() {
    "$PYTHON" -c 'import sys, sysconfig
cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
print(sys.prefix, sysconfig.get_config_var("EXT_SUFFIX"), cc, sysconfig.get_paths()["include"],
      sep="\n")'
}

install_packages() {
    local want
    want="$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1) $PREFIX"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return 0
    fi
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (python -m ensurepip)"
    # Debian 12's venv comes with pip 23.0, which warns about requirements.txt's --no-binary
    # (a change of 23.1): a newer pip first.
    if ! "$PYTHON" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (23, 1))'; then
        log "upgrading the .venv's pip $("$PYTHON" -m pip --version | cut -d' ' -f2) (23.1 or newer reads --no-binary quietly)"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "pip>=23.1,<27"
    fi
    log "installing requirements-dev.txt into $PREFIX (a minute or two the first time)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    mkdir -p build
    echo "$want" >"$STAMP"
}

check_build_tools() {
    local cc=${CC:-$CC_DEFAULT}
    command -v "${cc%% *}" >/dev/null 2>&1 \
        || die "no C compiler ($cc) to compile the model protector (Debian/Ubuntu: sudo apt-get install gcc)"
    [ -f "$INCLUDE/Python.h" ] \
        || die "$INCLUDE/Python.h is missing: the model protector is compiled against the headers of $("$PYTHON" --version 2>&1) (Debian/Ubuntu: sudo apt-get install python3-dev)"
}

build_protector() {
    local module=$PACKAGE/protection/model_protector$EXT_SUFFIX
    local source=$PACKAGE/protection/model_protector.pyx
    # Built before dependency/ became protection/: it would shadow the old path's
    # dependency/model_protector.py and fail to import.
    rm -f "$PACKAGE"/dependency/model_protector.*.so
    if [ -f "$module" ] && [ "$module" -nt "$source" ] && [ "$module" -nt setup.py ]; then
        return 0
    fi
    check_build_tools
    log "compiling the model protector for $("$PYTHON" --version 2>&1) (Cython, about 10 s)"
    "$PYTHON" setup.py --quiet build_ext --inplace
    touch "$module"  # newer than its sources, also when setuptools found it up to date
}

make_key() {
    [ -f "$KEY_FILE" ] && return 0
    log "writing this checkout's model key, $KEY_FILE (mode 600; git and docker ignore it)"
    "$PYTHON" "${PROTECT[@]}" keygen --out "$KEY_FILE"
}

# cascade: print the path of OpenCV's frontal-face cascade, the demo model.
cascade() {
    "$PYTHON" -c 'import os, sys, cv2
path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
if not os.path.isfile(path):
    sys.exit(f"OpenCV {cv2.__version__} has no Haar cascades (5.x wheels no longer ship "
             "them): install the opencv-python-headless of requirements.txt")
print(path)' || die "the demo model's source, OpenCV's face cascade, was not found"
}

# encrypt NAME SOURCE: models/NAME.enc, for the model id NAME, with the checkout's key.
encrypt() {
    local name=$1 source=$2
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
        || die "NAME='$name' is not a model id (letters, digits, '.', '_', '-'): make model NAME=<id> SRC=<file>"
    [ -f "$source" ] || die "SRC=$source: no such file"
    "$PYTHON" "${PROTECT[@]}" encrypt --quiet --force --key-file "$KEY_FILE" \
        --model-id "$name" "$source" "models/$name.enc"
}

make_demo_model() {
    [ -f models/face.enc ] && return 0
    log "encrypting the demo model (OpenCV's face cascade) into models/face.enc"
    local source
    source=$(cascade)
    encrypt face "$source"
}

step=${1:-}
make_venv
facts=$(python_facts) || die "$PYTHON does not run"
{ read -r PREFIX; read -r EXT_SUFFIX; read -r CC_DEFAULT; read -r INCLUDE; } <<<"$facts"
install_packages
[ "$step" != protector ] || rm -f "$PACKAGE/protection/model_protector$EXT_SUFFIX"
build_protector
make_key
case "$step" in
    "") make_demo_model ;;
    protector) ;;
    model)
        source=${3:-}
        [ -n "$source" ] || source=$(cascade)
        encrypt "${2:-face}" "$source"
        ;;
    *) die "unknown step: $step (none, protector, or model NAME [SRC])" ;;
esac
