#!/usr/bin/env bash
# mpi_enum: one-step setup, quick-start run, and test suite.
#
#   ./setup.sh [setup]        install system packages (MPICH, parallel HDF5), create .venv,
#                             build h5py against parallel HDF5, pip install -e .
#   ./setup.sh run [NET ARGS] setup, then enumerate the default example on $NP (default 2)
#                             ranks into results/quickstart.h5 and print its summary
#   ./setup.sh test [PYTEST]  setup, then the serial pytest suite and the MPI suite
#                             (tests/mpi) at 1, 2 and 3 ranks; extra arguments go to pytest
#
# Idempotent: a second run skips everything already done (apt packages are checked with
# dpkg, the pip steps are skipped while pyproject.toml and this script are unchanged).
#
# Environment overrides: PYTHON (interpreter for the venv, default python3), MPICC,
# MPIEXEC, HDF5_PKGCONFIG_NAME (default: Debian's MPICH flavour, see below), NP.
set -euo pipefail

# ---- quick-start example (used by `./setup.sh run`) ---------------------------------------
DEFAULT_NET="inputs/acasxu_1_1.nnet"
# Word-split into separate arguments.
DEFAULT_ARGS="--box 1500,-0.06,3.10,980,960 1800,0.06,3.14,1200,1200"
DEFAULT_NP=2

# ---- configuration -------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$ROOT/$(basename "${BASH_SOURCE[0]}")"
cd "$ROOT"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.mpi_enum_setup_stamp"
PYTHON="${PYTHON:-python3}"

APT_PACKAGES=(mpich libmpich-dev libhdf5-mpich-dev pkg-config
              python3 python3-venv python3-dev build-essential ca-certificates)
# Only what pip needs to build without isolation: h5py from source against parallel HDF5
# (setuptools, wheel, Cython, pkgconfig, numpy) and this package's kernel (scikit-build-core).
# Everything the package and its tests use is listed in pyproject.toml alone.
BUILD_PACKAGES=("setuptools>=77" wheel Cython pkgconfig "scikit-build-core>=0.10" numpy)

# Always name the MPICH tools explicitly: plain mpicc/mpiexec may be Open MPI's.
pick() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return; }; done; echo "$1"; }

log()  { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die()  { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---- 1. system packages --------------------------------------------------------------------
ensure_apt() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        note "not a Debian/Ubuntu system: make sure MPICH, parallel HDF5 (MPICH build),"
        note "pkg-config, a C compiler and Python 3 with venv and headers are installed."
        return
    fi
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        note "system packages present"
        return
    fi
    if ! is_root; then
        die "missing system packages; run as root: apt-get install -y ${missing[*]}"
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The PyPI mpi4py wheel dlopens libmpi.so.12 (the MPICH ABI name); Debian's MPICH ships only
# libmpich.so.12. Add the alias when nothing called libmpi.so.12 can be loaded.
ensure_libmpi_alias() {
    if "$PYTHON" -c 'import ctypes; ctypes.CDLL("libmpi.so.12")' >/dev/null 2>&1; then
        return
    fi
    local multiarch libdir
    multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || true)"
    libdir="/usr/lib/${multiarch}"
    if [ -n "$multiarch" ] && [ -e "$libdir/libmpich.so.12" ]; then
        if ! is_root; then
            die "libmpi.so.12 not found; run as root: ln -s libmpich.so.12 $libdir/libmpi.so.12 && ldconfig"
        fi
        log "linking $libdir/libmpi.so.12 -> libmpich.so.12"
        ln -sfn libmpich.so.12 "$libdir/libmpi.so.12"
        ldconfig
    else
        note "warning: no libmpi.so.12 and no libmpich.so.12 found; mpi4py may not find MPI"
    fi
}

# ---- 2. virtual environment ----------------------------------------------------------------
ensure_venv() {
    if [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1; then
        return
    fi
    log "creating virtual environment .venv ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv --clear "$VENV"
    rm -f "$STAMP"
}

pip_() { "$VPY" -m pip "$@"; }

install_mpi4py() {
    if "$VPY" -c 'import mpi4py' >/dev/null 2>&1; then return; fi
    log "pip install mpi4py (binary wheel)"
    if ! pip_ install -q --only-binary=mpi4py mpi4py; then
        # No wheel for this platform: compile against MPICH, without heavy optimisation
        # (mpi4py's generated C at -O3 needs ~20 GB of memory).
        log "no mpi4py wheel; building from source with $MPICC at -O0"
        MPICC="$MPICC" CC="$MPICC" CFLAGS="-O0" pip_ install -q --no-binary=mpi4py --no-cache-dir mpi4py
    fi
}

h5py_has_mpi() {
    "$VPY" -c 'import sys, h5py; sys.exit(0 if h5py.get_config().mpi else 1)' >/dev/null 2>&1
}

# h5py from PyPI is serial; build it from source against the MPICH parallel HDF5.
ensure_h5py_mpi() {
    if h5py_has_mpi; then return; fi
    log "building h5py against parallel HDF5 ($HDF5_PKGCONFIG_NAME) - takes a few minutes"
    pip_ uninstall -y -q h5py >/dev/null 2>&1 || true
    local t0=$SECONDS
    CC="$MPICC" HDF5_MPI=ON HDF5_PKGCONFIG_NAME="$HDF5_PKGCONFIG_NAME" \
        pip_ install -q --no-build-isolation --no-binary=h5py --no-cache-dir --no-deps h5py
    note "h5py built in $((SECONDS - t0)) s"
    h5py_has_mpi || die "h5py was built but reports no MPI support (check $HDF5_PKGCONFIG_NAME)"
}

# pip install -e ".[test]": the package, its compiled kernel mpi_enum.engine._kernel (CMake through
# scikit-build-core; incremental in build/) and the dependencies pyproject.toml lists (with the
# test extra). --no-build-isolation: this venv's scikit-build-core (BUILD_PACKAGES) builds it.
# h5py and mpi4py are installed before, so pip finds them satisfied and never replaces the
# MPI-built h5py by a serial wheel (ensure_h5py_mpi checks it afterwards).
install_project() {
    local cmv
    cmv="$({ cmake --version || "$VENV/bin/cmake" --version; } 2>/dev/null | sed -nE '1s/.* ([0-9]+)\.([0-9]+).*/\1 \2/p' || true)"
    if [ -z "$cmv" ] || [ "$(printf '%s\n' "$cmv" | awk '{print ($1 > 3 || ($1 == 3 && $2 >= 18))}')" != 1 ]; then
        log "pip install cmake (the kernel build needs CMake >= 3.18)"
        pip_ install -q "cmake>=3.18"
    fi
    log "pip install -e . (builds the compiled kernel)"
    pip_ install -q --no-build-isolation -e ".[test]"
    "$VPY" -c 'import mpi_enum.engine' || die "the compiled kernel did not build or import (see above)"
    ensure_h5py_mpi
}

setup_hash() {
    { cat pyproject.toml "$SELF"; "$VPY" --version 2>&1; } | sha256sum | cut -d' ' -f1
}

ensure_python_packages() {
    local want have=""
    want="$(setup_hash)"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ "$want" = "$have" ] && "$VPY" -c 'import importlib.metadata as m; m.version("mpi_enum")' >/dev/null 2>&1; then
        note "python packages up to date"
        ensure_h5py_mpi
        # the compiled kernel is missing or older than its C sources: rebuild it (incremental)
        "$VPY" -c 'import mpi_enum.engine' >/dev/null 2>&1 || install_project
        return
    fi
    local t0=$SECONDS
    log "pip install (into .venv)"
    pip_ install -q --upgrade pip || note "warning: could not upgrade pip; continuing"
    pip_ install -q "${BUILD_PACKAGES[@]}"
    install_mpi4py
    ensure_h5py_mpi
    install_project
    ensure_torch
    echo "$want" > "$STAMP"
    note "python packages installed in $((SECONDS - t0)) s"
}

# torch (the optional .pt/.pth loader) only when a wheel of it lies in pip's local wheelhouse
# (find-links): PyPI's default torch is a multi-GB CUDA build. MPI_ENUM_TORCH=0 skips it,
# MPI_ENUM_TORCH=1 installs it from the index whatever it costs.
ensure_torch() {
    "$VPY" -c 'import torch' >/dev/null 2>&1 && return
    case "${MPI_ENUM_TORCH:-auto}" in
        0) return ;;
        1) pip_ install -q torch || note "warning: could not install torch"; return ;;
    esac
    if pip_ install -q --no-index --no-deps torch >/dev/null 2>&1; then
        local v
        v="$("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
        pip_ install -q "torch==$v" >/dev/null 2>&1 || note "warning: torch's dependencies did not install"
        note "torch $v installed from a local wheel (for .pt/.pth networks and their tests)"
    else
        note "torch: no local wheel; .pt/.pth support stays optional (MPI_ENUM_TORCH=1 ./setup.sh to install it)"
    fi
}

write_launcher() {  # NAME TARGET: a tiny exec wrapper (a symlink would not do: Hydra
    # looks for hydra_pmi_proxy next to the path it was started as)
    local dst="$VENV/bin/$1"
    rm -f "$dst"   # never write through an old symlink into /usr/bin
    printf '#!/bin/sh\n# Written by setup.sh: the MPI launcher matching mpi4py and h5py in this venv.\nexec %s "$@"\n' \
        "$2" > "$dst"
    chmod +x "$dst"
}

ensure_launchers() {
    # Users of the venv get the launcher that matches the MPI mpi4py and h5py use.
    write_launcher mpiexec "$MPIEXEC"
    if command -v mpirun.mpich >/dev/null 2>&1 && [ "$(basename "$MPIEXEC")" = mpiexec.mpich ]; then
        write_launcher mpirun "$(command -v mpirun.mpich)"
    fi
    # With Debian's MPICH, pin mpi4py to the MPICH ABI so that an Open MPI installed alongside
    # (and owning the libmpi.so alternative) can never be picked up next to h5py's MPICH.
    local pth
    pth="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mpi_enum_mpiabi.pth"
    if [ "$HDF5_PKGCONFIG_NAME" = "hdf5-mpich" ]; then
        echo 'import os; os.environ.setdefault("MPI4PY_MPIABI", "mpich")' > "$pth"
    else
        rm -f "$pth"
    fi
}

verify() {
    "$VPY" - <<'EOF' || die "the environment check failed (see above)"
from mpi4py import MPI
import h5py
import mpi_enum
assert h5py.get_config().mpi, "h5py has no MPI support"
print("    mpi_enum %s | %s | HDF5 %s (parallel) | h5py %s | mpi4py %s" % (
    mpi_enum.__version__, MPI.Get_library_version().splitlines()[0].strip(),
    h5py.version.hdf5_version, h5py.__version__, __import__("mpi4py").__version__))
EOF
}

do_setup() {
    local t0=$SECONDS
    log "setup: system packages"
    ensure_apt
    MPICC="${MPICC:-$(pick mpicc.mpich mpicc)}"
    MPIEXEC="${MPIEXEC:-$(pick mpiexec.mpich mpiexec)}"
    command -v "$MPICC" >/dev/null 2>&1 || die "no MPI C compiler ($MPICC) found"
    command -v "$MPIEXEC" >/dev/null 2>&1 || die "no MPI launcher ($MPIEXEC) found"
    MPIEXEC="$(command -v "$MPIEXEC")"
    if [ -z "${HDF5_PKGCONFIG_NAME:-}" ]; then
        if pkg-config --exists hdf5-mpich 2>/dev/null; then HDF5_PKGCONFIG_NAME=hdf5-mpich
        else HDF5_PKGCONFIG_NAME=hdf5; fi
    fi
    ensure_libmpi_alias
    ensure_venv
    ensure_python_packages
    ensure_launchers
    log "setup: check"
    verify
    note "setup done in $((SECONDS - t0)) s"
}

# ---- 3. commands ---------------------------------------------------------------------------
do_run() {
    local np="${NP:-$DEFAULT_NP}" net args
    if [ $# -gt 0 ]; then
        net="$1"; shift; args=("$@")
    else
        net="$DEFAULT_NET"
        read -r -a args <<< "$DEFAULT_ARGS"
    fi
    mkdir -p results
    export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    log "run: mpiexec -n $np mpi-enum run $net ${args[*]} -o results/quickstart.h5"
    "$VENV/bin/mpiexec" -n "$np" "$VENV/bin/mpi-enum" run "$net" "${args[@]}" \
        -o results/quickstart.h5 --force
    log "info: results/quickstart.h5"
    "$VENV/bin/mpi-enum" info results/quickstart.h5
}

do_test() {
    # tests/run_suites.py: the serial suite, then the MPI suite at 1, 2 and 3 ranks (with timeouts);
    # totals from pytest's JUnit reports; the last line is "tests: N passed, N failed, N skipped"
    log "test: $VPY tests/run_suites.py $*"
    "$VPY" tests/run_suites.py "$@"
}

cmd="${1:-setup}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) do_setup ;;
    run)   do_setup; do_run "$@" ;;
    test)  do_setup; do_test "$@" ;;
    -h|--help|help) sed -n '2,15p' "$SELF" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (usage: ./setup.sh [setup|run|test])" ;;
esac
