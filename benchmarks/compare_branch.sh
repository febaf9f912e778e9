#!/usr/bin/env bash
# Compare this branch's benchmarks with main's on this machine, before merging:
#
#   benchmarks/compare_branch.sh                     # HEAD against main, every benchmark
#   benchmarks/compare_branch.sh --bench TrainingStep # only benchmarks matching a regex
#   BASE=v0.1 BRANCH=my-branch FACTOR=1.1 benchmarks/compare_branch.sh
#
# asv builds one virtualenv per commit (torch pinned as in the README, then the project
# from that commit), runs the benchmarks of both commits interleaved on one thread, and
# prints the benchmarks whose ratio (branch / base) passes FACTOR in either direction.
# Exit status 1 when something got slower (or a tracked statistic grew) by more than
# FACTOR: treat that as a failed check. Extra arguments go to `asv continuous`.
set -euo pipefail
cd "$(dirname "$0")/.."
ASV="${ASV:-.venv/bin/asv}"
export DGBENCH_DATA_DIR="${DGBENCH_DATA_DIR:-$(cd .. && pwd)/shared/data}"
"$ASV" machine --yes >/dev/null
exec "$ASV" continuous --split --show-stderr --interleave-rounds --factor "${FACTOR:-1.15}" \
    "$@" "${BASE:-main}" "${BRANCH:-HEAD}"
