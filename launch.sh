#!/usr/bin/env bash
# Runs rnnlab's main entry point locally, on a SLURM cluster or on every
# worker of a TPU VM: the same training command everywhere.
#
#   ./launch.sh [local] --config=configs/gru_shakespeare.py --workdir=runs/gru
#   ./launch.sh slurm [--nodes=2] [--gpus_per_node=8] [--partition=P] \
#       [--time=04:00:00] [--job_name=rnnlab] [--dry-run] -- --config=... --workdir=...
#   ./launch.sh tpu-vm --tpu=NAME --zone=ZONE [--project=P] [--repo_dir=DIR] \
#       [--dry-run] -- --config=... --workdir=...
#
# local   (default) passes every argument to `python -m rnnlab.main`.
# slurm   writes <workdir>/slurm/<job>.sbatch and submits it with sbatch:
#         one process per node (srun), each seeing its node's GPUs; JAX's
#         multi-controller runtime (jax.distributed.initialize) finds the
#         coordinator, process count and id from SLURM's environment. Needs
#         sbatch/srun, this repository on a shared filesystem and its .venv
#         (or PYTHON) usable on the nodes.
# tpu-vm  runs the command on all workers of a TPU VM with
#         `gcloud compute tpus tpu-vm ssh --worker=all`; JAX detects the TPU
#         pod slice itself. Needs gcloud authenticated and the repository at
#         --repo_dir (default: this path) on every worker.
# --dry-run prints the script / command instead of submitting or running it.
# PYTHON picks the interpreter (default: the repo's .venv if present).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then PYTHON="$here/.venv/bin/python"
  else PYTHON=python3; fi
fi

usage() {
  sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

mode=local
if [[ $# -gt 0 && "$1" != --* ]]; then mode="$1"; shift; fi

# Launcher options come before "--"; what follows goes to rnnlab.main.
declare -A opt=([nodes]=1 [gpus_per_node]=1 [partition]="" [time]="" \
  [job_name]=rnnlab [tpu]="" [zone]="" [project]="" [repo_dir]="$here")
dry_run=0
parse_launcher_options() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --) shift; main_args=("$@"); return ;;
      --dry-run|--dry_run) dry_run=1 ;;
      --*=*)
        key="${1%%=*}"; key="${key#--}"; key="${key//-/_}"
        if [[ -z "${opt[$key]+set}" ]]; then
          echo "launch.sh $mode: unknown option $1 (valid: ${!opt[*]}," \
               "--dry-run; then -- and rnnlab.main's flags)" >&2
          exit 2
        fi
        opt[$key]="${1#*=}" ;;
      *) echo "launch.sh $mode: expected --option=value or --, got $1" >&2
         exit 2 ;;
    esac
    shift
  done
  main_args=()
}

workdir_of() {
  for a in "$@"; do
    if [[ "$a" == --workdir=* ]]; then echo "${a#--workdir=}"; return; fi
  done
  echo "launch.sh: rnnlab.main needs --workdir=... after --" >&2
  exit 2
}

quote() { printf '%q ' "$@"; }

case "$mode" in
  local)
    exec "$PYTHON" -m rnnlab.main "$@" ;;
  slurm)
    parse_launcher_options "$@"
    workdir="$(workdir_of "${main_args[@]}")"
    script="#!/usr/bin/env bash
#SBATCH --job-name=${opt[job_name]}
#SBATCH --nodes=${opt[nodes]}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=${opt[gpus_per_node]}
#SBATCH --output=${workdir}/slurm/%x-%j.out
${opt[partition]:+#SBATCH --partition=${opt[partition]}
}${opt[time]:+#SBATCH --time=${opt[time]}
}set -euo pipefail
cd $(quote "$here")
# One process per node; jax.distributed.initialize() reads SLURM_* for the
# coordinator (first node), the process count and this process's id.
srun $(quote "$PYTHON" -m rnnlab.main "${main_args[@]}")"
    if [[ $dry_run == 1 ]]; then echo "$script"; exit 0; fi
    mkdir -p "$workdir/slurm"
    file="$workdir/slurm/${opt[job_name]}.sbatch"
    echo "$script" > "$file"
    exec sbatch "$file" ;;
  tpu-vm)
    parse_launcher_options "$@"
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
    usage ;;
  *)
    echo "launch.sh: unknown mode '$mode'. Valid modes: local, slurm, tpu-vm." >&2
    usage ;;
esac
