#!/usr/bin/env bash
# Runs rnnlab's main entry point locally, on a SLURM cluster or on every
# worker of a TPU VM: the same training command everywhere. slurm-sweep runs
# a config's sweep (rnnlab.sweep) as a SLURM job array.
#
#   ./launch.sh [local] --config=configs/gru_shakespeare.py --workdir=runs/gru
#   ./launch.sh slurm [--nodes=2] [--gpus_per_node=8] [--partition=P] \
#       [--time=04:00:00] [--job_name=rnnlab] [--dry-run] -- --config=... --workdir=...
#   ./launch.sh slurm-sweep [--parallel=4] [--gpus_per_node=1] [--partition=P] \
#       [--time=04:00:00] [--job_name=rnnlab] [--dry-run] -- \
#       --config=configs/x.py:arg --root=runs/sweep [--config.<key>=<value> ...]
#   ./launch.sh tpu-vm --tpu=NAME --zone=ZONE [--project=P] [--repo_dir=DIR] \
#       [--dry-run] -- --config=... --workdir=...
#
# Before training, every mode but tpu-vm runs `python -m rnnlab.native
# build` where the job runs (each node, for SLURM): it compiles the native
# CPU kernels for that CPU and, for one-node runs, times the config's
# implementation="auto" choice, so that no compile happens inside training.
# Its output (the CPU, the kernels, auto's choice) starts the job's log.
#
# local   (default) passes every argument to `python -m rnnlab.main`.
# slurm   writes <workdir>/slurm/<job>.sbatch and submits it with sbatch:
#         one process per node (srun), each seeing its node's GPUs; JAX's
#         multi-controller runtime (jax.distributed.initialize) finds the
#         coordinator, process count and id from SLURM's environment. Needs
#         sbatch/srun, this repository on a shared filesystem and its .venv
#         (or PYTHON) usable on the nodes.
# slurm-sweep  writes <root>/slurm/<job>.sbatch, a job array over the trials
#         of the config's get_sweep(arg) not done yet (`python -m rnnlab.sweep
#         --pending`, which also writes <root>/trials.json: index -> trial),
#         at most --parallel running at once (default: no limit), and submits
#         it. Array task K runs trial K alone (`rnnlab.sweep --trial=K`) on
#         one node with --gpus_per_node GPUs, logging to
#         <root>/slurm/<job>-<array job id>_<K>.out. Rerunning submits only
#         what is still not done; with nothing pending it says so (exit 0).
#         After the array, `python -m rnnlab.sweep --config=... --root=...
#         --report_only` writes <root>/report.md and lists trials not done.
#         Paths after -- are relative to the directory launch.sh runs in.
# tpu-vm  runs the command on all workers of a TPU VM with
#         `gcloud compute tpus tpu-vm ssh --worker=all`; JAX detects the TPU
#         pod slice itself. Needs gcloud authenticated and the repository at
#         --repo_dir (default: this path) on every worker. (No native build:
#         the CPU kernels never run next to a TPU.)
# --dry-run prints the script / command instead of submitting or running it
# (slurm-sweep still writes <root>/trials.json, which the indices refer to).
# slurm and slurm-sweep refuse (exit 2) a --job_name, --partition, --time,
# --nodes, --gpus_per_node, --parallel, --workdir or --root outside a strict
# pattern (no spaces or shell characters): they go into #SBATCH lines, which
# no quoting protects.
# PYTHON picks the interpreter (default: the repo's .venv if present).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then PYTHON="$here/.venv/bin/python"
  else PYTHON=python3; fi
fi

usage() {  # the header above: every comment line after the shebang;
  # $1: the exit status (0 when asked for with --help, 2 after bad input)
  awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" |
    sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

mode=local
# --help/-h: this usage (`./launch.sh local --help` shows rnnlab.main's flags).
if [[ $# -gt 0 && ( "$1" != -* || "$1" == -h || "$1" == --help ) ]]; then
  mode="$1"; shift
fi

# Launcher options come before "--"; what follows goes to rnnlab.main (or
# rnnlab.sweep). The first argument lists the options this mode accepts.
declare -A opt=([nodes]=1 [gpus_per_node]=1 [partition]="" [time]="" \
  [job_name]=rnnlab [tpu]="" [zone]="" [project]="" [repo_dir]="$here" \
  [parallel]="")
dry_run=0
parse_launcher_options() {
  local valid=" $1 "; shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --) shift; main_args=("$@"); return ;;
      --dry-run|--dry_run) dry_run=1 ;;
      --*=*)
        key="${1%%=*}"; key="${key#--}"; key="${key//-/_}"
        if [[ "$valid" != *" $key "* ]]; then
          echo "launch.sh $mode: unknown option $1 (valid:${valid}--dry-run;" \
               "then -- and the entry point's flags)" >&2
          usage
        fi
        opt[$key]="${1#*=}" ;;
      *) echo "launch.sh $mode: expected --option=value or --, got $1" >&2
         exit 2 ;;
    esac
    shift
  done
  main_args=()
}

flag_value() {  # flag_value NAME ARGS...: the value of --NAME=... in ARGS
  local name="$1"; shift
  for a in "$@"; do
    if [[ "$a" == --$name=* ]]; then echo "${a#--$name=}"; return; fi
  done
  echo "launch.sh $mode: needs --$name=... after --" >&2
  exit 2
}

quote() { printf '%q ' "$@"; }

# check NAME VALUE REGEX ALLOWED: VALUE (of --NAME) must match REGEX whole,
# else a one-line usage error (exit 2). Values written into #SBATCH lines
# cannot be protected by quoting: sbatch reads such a line as it is, and a
# newline in one starts a shell line of its own, after which sbatch ignores
# every later #SBATCH line.
check() {
  local LC_ALL=C re="^($3)\$"  # C: the ranges mean ASCII only
  if [[ ! "$2" =~ $re ]]; then
    echo "launch.sh $mode: invalid --$1=$(printf %q "$2"); allowed: $4" >&2
    exit 2
  fi
}
path_re='[A-Za-z0-9/._+=,:@~-]+'
path_allowed="letters, digits and / . _ + = , : @ ~ - (no spaces, quotes, \$, %, ; or other shell characters)"

# check_slurm_options PATH_FLAG PATH: the launcher options both SLURM modes
# write into #SBATCH lines, and the path (--workdir or --root) of their log.
check_slurm_options() {
  check job_name "${opt[job_name]}" '[A-Za-z0-9._-]+' \
    "letters, digits and . _ -"
  if [[ -n "${opt[partition]}" ]]; then  # empty: the cluster's default
    check partition "${opt[partition]}" '[A-Za-z0-9._,-]+' \
      "letters, digits and . _ - , (a comma-separated list)"
  fi
  if [[ -n "${opt[time]}" ]]; then
    check time "${opt[time]}" \
      '[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|UNLIMITED|unlimited|INFINITE|infinite' \
      "SLURM's MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"
  fi
  check gpus_per_node "${opt[gpus_per_node]}" '[0-9]+' \
    "a whole number (0 or more)"
  check "$1" "$2" "$path_re" "$path_allowed"
}

# config_args ARGS...: the --config and --config.* flags among ARGS, one
# per line, for `rnnlab.native build` (which times that config's "auto").
config_args() {
  for a in "$@"; do
    if [[ "$a" == --config=* || "$a" == --config.* ]]; then
      printf '%s\n' "$a"
    fi
  done
}

# The sbatch lines both SLURM modes share after their own #SBATCH lines.
job_preamble() {
  echo "${opt[partition]:+#SBATCH --partition=${opt[partition]}
}${opt[time]:+#SBATCH --time=${opt[time]}
}set -euo pipefail
# Relative --config/--workdir/--root mean what they meant where launch.sh ran.
cd $(printf %q "$PWD")
export PYTHONPATH=$(printf %q "$here")\${PYTHONPATH:+:\$PYTHONPATH}"
}

# submit DIR SCRIPT: prints SCRIPT (--dry-run), or writes it to
# DIR/slurm/<job>.sbatch and submits it.
submit() {
  if [[ $dry_run == 1 ]]; then echo "$2"; exit 0; fi
  mkdir -p "$1/slurm"
  local file="$1/slurm/${opt[job_name]}.sbatch"
  echo "$2" > "$file"
  exec sbatch "$file"
}

case "$mode" in
  local)
    mapfile -t build_args < <(config_args "$@")
    "$PYTHON" -m rnnlab.native build "${build_args[@]}"
    exec "$PYTHON" -m rnnlab.main "$@" ;;
  slurm)
    parse_launcher_options "nodes gpus_per_node partition time job_name" "$@"
    workdir="$(flag_value workdir "${main_args[@]}")"
    check nodes "${opt[nodes]}" '[1-9][0-9]*' "a positive whole number"
    check_slurm_options workdir "$workdir"
    # One node: time "auto" for the config too (several nodes time the
    # sharded step together inside the run, as one decision).
    build_args=()
    if [[ "${opt[nodes]}" == 1 ]]; then
      mapfile -t build_args < <(config_args "${main_args[@]}")
    fi
    script="#!/usr/bin/env bash
#SBATCH --job-name=${opt[job_name]}
#SBATCH --nodes=${opt[nodes]}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=${opt[gpus_per_node]}
#SBATCH --output=${workdir}/slurm/%x-%j.out
$(job_preamble)
# Compile the native kernels on every node (its own CPU) before training.
srun --ntasks-per-node=1 $(quote "$PYTHON" -m rnnlab.native build ${build_args[@]+"${build_args[@]}"})
# One process per node; jax.distributed.initialize() reads SLURM_* for the
# coordinator (first node), the process count and this process's id.
srun $(quote "$PYTHON" -m rnnlab.main "${main_args[@]}")"
    submit "$workdir" "$script" ;;
  slurm-sweep)
    parse_launcher_options "parallel gpus_per_node partition time job_name" "$@"
    root="$(flag_value root "${main_args[@]}")"
    check_slurm_options root "$root"
    if [[ -n "${opt[parallel]}" ]]; then  # empty: no limit
      check parallel "${opt[parallel]}" '[1-9][0-9]*' "a positive whole number"
    fi
    # Only the trials not done become array tasks (this also writes
    # <root>/trials.json, so the indices can be looked up).
    pending="$("$PYTHON" -m rnnlab.sweep "${main_args[@]}" --pending)"
    if [[ -z "$pending" ]]; then
      echo "launch.sh slurm-sweep: no pending trials under $root (all done);" \
           "nothing to submit."
      exit 0
    fi
    sweep=("$PYTHON" -m rnnlab.sweep "${main_args[@]}")
    script="#!/usr/bin/env bash
#SBATCH --job-name=${opt[job_name]}
#SBATCH --array=${pending}${opt[parallel]:+%${opt[parallel]}}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=${opt[gpus_per_node]}
#SBATCH --output=${root}/slurm/%x-%A_%a.out
$(job_preamble)
# The native kernels for this node's CPU, compiled before the trial trains.
$(quote "$PYTHON" -m rnnlab.native build)
# One trial per array task: trial \$SLURM_ARRAY_TASK_ID of ${root}/trials.json
# (one already done is skipped, so a requeued task costs nothing).
$(quote "${sweep[@]}")--trial=\"\${SLURM_ARRAY_TASK_ID:?not a SLURM array task}\"
# After the array, the report (and the trials not done, if any):
#   $(quote "${sweep[@]}")--report_only"
    submit "$root" "$script" ;;
  tpu-vm)
    parse_launcher_options "tpu zone project repo_dir" "$@"
    if [[ -z "${opt[tpu]}" || -z "${opt[zone]}" ]]; then
      echo "launch.sh tpu-vm: --tpu=NAME and --zone=ZONE are required" >&2
      exit 2
    fi
    remote="cd $(quote "${opt[repo_dir]}") && $(quote "$PYTHON" -m rnnlab.main "${main_args[@]}")"
    cmd=(gcloud compute tpus tpu-vm ssh "${opt[tpu]}" --zone="${opt[zone]}"
         --worker=all --command="$remote")
    [[ -n "${opt[project]}" ]] && cmd+=(--project="${opt[project]}")
    if [[ $dry_run == 1 ]]; then quote "${cmd[@]}"; echo; exit 0; fi
    exec "${cmd[@]}" ;;
  -h|--help|help)
    usage 0 ;;
  *)
    echo "launch.sh: unknown mode '$mode'. Valid modes: local, slurm, slurm-sweep, tpu-vm." >&2
    usage ;;
esac
