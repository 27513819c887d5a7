# shellcheck shell=bash disable=SC2034,SC2153
# Shared helpers for the Slurm templates in this folder (sourced, not submitted).
#
# The templates set MPI_ENUM_DIR (the repository) and source this file; everything below can be
# overridden from the environment at submission, e.g.
#     MPI_ENUM_LAUNCHER=mpiexec sbatch slurm/single_node.sbatch
# (sbatch passes the submitting shell's environment on by default).
#
#   MPI_ENUM_LAUNCHER     srun (default) or mpiexec
#   MPI_ENUM_SRUN_MPI     the --mpi plugin for srun (default pmi2: works with MPICH)
#   MPI_ENUM_SRUN_FLAGS   extra srun flags (default --label: every line starts with "RANK: ")
#   MPI_ENUM_MPIEXEC      the mpiexec program (default mpiexec.mpich if present, else mpiexec)
#   MPI_ENUM_MPIEXEC_FLAGS  extra mpiexec flags (default -prepend-rank: lines start "[RANK] ")
#   MPI_ENUM_RESULTS      folder for result files (default $MPI_ENUM_DIR/results)
#   MPI_ENUM_ARGS         extra arguments for `mpi-enum run` (a domain, --tol, ...), word-split
#   MPI_ENUM_PROGRESS     seconds between progress lines (default 60; empty or 0: none)
#   MPI_ENUM_TIME_LIMIT   pass --time-limit S to mpi-enum (default: none)
#   MPI_ENUM_STOP_SIGNAL  the signal forwarded to the ranks when the batch shell is told to stop
#                         (default USR1: srun and MPICH's mpiexec both pass it on to the ranks;
#                         srun turns TERM into a kill, so do not use TERM with srun)

mpi_enum_log() { printf '[mpi-enum job %s] %s\n' "${SLURM_JOB_ID:-?}" "$*"; }

# mpi_enum_setup: cd to the repository, check the program, create the results folder.
mpi_enum_setup() {
    cd "$MPI_ENUM_DIR" || { mpi_enum_log "cannot cd to MPI_ENUM_DIR=$MPI_ENUM_DIR"; exit 2; }
    if ! command -v mpi-enum >/dev/null 2>&1; then
        mpi_enum_log "mpi-enum is not on PATH: edit the environment line of the template"
        exit 2
    fi
    MPI_ENUM_RESULTS=${MPI_ENUM_RESULTS:-$MPI_ENUM_DIR/results}
    mkdir -p "$MPI_ENUM_RESULTS"
    MPI_ENUM_LAUNCHER=${MPI_ENUM_LAUNCHER:-srun}
    MPI_ENUM_STOP_SIGNAL=${MPI_ENUM_STOP_SIGNAL:-USR1}
    MPI_ENUM_PROGRESS=${MPI_ENUM_PROGRESS-60}
    MPI_ENUM_T0=$SECONDS
    # A stop request outside mpi_enum_run (e.g. --signal=B:USR1 during the summary) must not
    # kill the batch shell: SIGUSR1's default action is to terminate.
    trap 'mpi_enum_log "got SIGUSR1 outside the run: ignored"' USR1
    mpi_enum_log "start $(date '+%F %T') on ${SLURM_JOB_NODELIST:-?}: ${SLURM_NNODES:-?} node(s)," \
        "${SLURM_NTASKS:-?} tasks, launcher $MPI_ENUM_LAUNCHER, in $MPI_ENUM_DIR"
}

# mpi_enum_resolve PATH: PATH as given if it exists relative to the repository (or is absolute),
# else relative to the submission folder when it exists there.
mpi_enum_resolve() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) if [ ! -e "$1" ] && [ -n "${SLURM_SUBMIT_DIR:-}" ] && [ -e "$SLURM_SUBMIT_DIR/$1" ]; then
               printf '%s\n' "$SLURM_SUBMIT_DIR/$1"
           else
               printf '%s\n' "$1"
           fi ;;
    esac
}

# mpi_enum_launcher_cmd: the launcher prefix, in the array MPI_ENUM_LAUNCH.
mpi_enum_launcher_cmd() {
    case "$MPI_ENUM_LAUNCHER" in
        srun)
            # shellcheck disable=SC2206
            MPI_ENUM_LAUNCH=(srun --mpi="${MPI_ENUM_SRUN_MPI:-pmi2}" ${MPI_ENUM_SRUN_FLAGS---label})
            ;;
        mpiexec)
            local exe=${MPI_ENUM_MPIEXEC:-}
            if [ -z "$exe" ]; then
                exe=$(command -v mpiexec.mpich || command -v mpiexec || echo mpiexec)
            fi
            # Hydra (MPICH) reads the allocation from Slurm; -n keeps the count explicit.
            # shellcheck disable=SC2206
            MPI_ENUM_LAUNCH=("$exe" -n "${SLURM_NTASKS:-1}" ${MPI_ENUM_MPIEXEC_FLAGS--prepend-rank})
            ;;
        *)
            mpi_enum_log "unknown MPI_ENUM_LAUNCHER=$MPI_ENUM_LAUNCHER (srun or mpiexec)"
            exit 2
            ;;
    esac
}

# mpi_enum_run NETWORK OUT [extra mpi-enum run arguments...]
# Runs `LAUNCHER mpi-enum run NETWORK -o OUT ...` in the background so that the batch shell can
# forward a stop request (SIGUSR1 from `#SBATCH --signal=B:USR1@T`, or SIGTERM) to the ranks.
# Sets MPI_ENUM_RC to the run's exit status (3: stopped early with a checkpoint; corrected with
# `mpi-enum status OUT` where MPICH's mpiexec, signalled itself, reports 0 instead).
mpi_enum_run() {
    local network out=$2
    network=$(mpi_enum_resolve "$1")
    shift 2
    mpi_enum_launcher_cmd
    local args=(run "$network" -o "$out")
    # shellcheck disable=SC2206
    [ -n "${MPI_ENUM_ARGS:-}" ] && args+=(${MPI_ENUM_ARGS})
    [ -n "$MPI_ENUM_PROGRESS" ] && [ "$MPI_ENUM_PROGRESS" != 0 ] && args+=(--progress "$MPI_ENUM_PROGRESS")
    [ -n "${MPI_ENUM_TIME_LIMIT:-}" ] && args+=(--time-limit "$MPI_ENUM_TIME_LIMIT")
    args+=("$@")
    mpi_enum_log "${MPI_ENUM_LAUNCH[*]} mpi-enum ${args[*]}"
    MPI_ENUM_STOPPING=0
    "${MPI_ENUM_LAUNCH[@]}" mpi-enum "${args[@]}" &
    MPI_ENUM_PID=$!
    trap 'mpi_enum_forward_stop USR1' USR1
    trap 'mpi_enum_forward_stop TERM' TERM
    trap 'mpi_enum_forward_stop INT' INT
    local rc
    while :; do
        wait "$MPI_ENUM_PID"
        rc=$?
        # A trapped signal interrupts `wait` (status > 128) while the ranks still run.
        if [ "$rc" -gt 128 ] && kill -0 "$MPI_ENUM_PID" 2>/dev/null; then
            continue
        fi
        break
    done
    if [ "$rc" -gt 128 ]; then  # the launcher ended just as the signal came: get its own status
        wait "$MPI_ENUM_PID" 2>/dev/null
        local rc2=$?
        [ "$rc2" -ne 127 ] && rc=$rc2
    fi
    trap - TERM INT
    trap 'mpi_enum_log "got SIGUSR1 outside the run: ignored"' USR1
    # MPICH's mpiexec (hydra), when it is itself signalled, can report 0 although every rank
    # stopped early with a checkpoint and exited 3 (it loses the ranks' statuses): ask the files.
    # `mpi-enum status OUT` exits 3 exactly when OUT is missing and OUT.partial.h5 is a partial
    # result whose checkpoint exists.
    if { [ "$rc" = 0 ] || [ "$rc" -gt 128 ]; } && { [ "$MPI_ENUM_STOPPING" = 1 ] || [ ! -e "$out" ]; }; then
        mpi-enum status "$out" >/dev/null 2>&1
        if [ $? = 3 ]; then
            mpi_enum_log "the launcher reported $rc, but the run stopped early with a checkpoint: status 3"
            rc=3
        fi
    fi
    MPI_ENUM_RC=$rc
    mpi_enum_log "mpi-enum exited with status $rc after $((SECONDS - MPI_ENUM_T0)) s"
}

mpi_enum_forward_stop() {
    if [ "${MPI_ENUM_STOPPING:-0}" = 1 ]; then
        return
    fi
    MPI_ENUM_STOPPING=1
    mpi_enum_log "got SIG$1: asking the ranks to checkpoint and stop (SIG$MPI_ENUM_STOP_SIGNAL to the launcher)"
    kill -s "$MPI_ENUM_STOP_SIGNAL" "$MPI_ENUM_PID" 2>/dev/null
}

# mpi_enum_summary OUT: one final line with region count, wall time and load balance, from
# `mpi-enum info --json`.
mpi_enum_summary() {
    local out=$1 extra=""
    [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && extra=" array=${SLURM_ARRAY_JOB_ID:-?}_$SLURM_ARRAY_TASK_ID"
    mpi-enum info "$out" --json 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    print("regions=? (mpi-enum info failed)")
    sys.exit(0)
lb = d.get("load_balance_max_over_mean")
w = d.get("wall_seconds")
print("regions=%s complete=%s wall_seconds=%s load_balance=%s ranks=%s" % (
    d.get("n_regions"), str(d.get("complete")).lower(),
    "%.2f" % w if isinstance(w, (int, float)) else "?",
    "%.3f" % lb if isinstance(lb, (int, float)) else "n/a", d.get("n_ranks")))
' | {
        read -r line
        echo "mpi-enum summary: job=${SLURM_JOB_ID:-?}$extra $line job_seconds=$((SECONDS - MPI_ENUM_T0)) file=$out"
    }
}
