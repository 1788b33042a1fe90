# Shared environment of the experiment scripts: private home, shared data, 2 passive OpenMP threads
# (on this shared 2-core machine spinning OpenMP threads lost ~40% to preemption).
# Paths come from the environment; the defaults stay inside the checkout (experiments/out is git-ignored).
export BADREC_HOME=${BADREC_HOME:-$PWD/experiments/out/home}
export BADREC_DATA_DIRS=${BADREC_DATA_DIRS:-../shared/data}
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
mkdir -p experiments/logs
run() {  # run NAME ARGS...: the attack CLI with --json, result in experiments/logs/NAME.json, progress in .log
  local name=$1; shift
  echo "$(date -u +%FT%TZ) python -m core attack $*" > "experiments/logs/$name.cmd"
  /usr/bin/time -v python -m core -v attack "$@" --json > "experiments/logs/$name.json" 2> "experiments/logs/$name.log"
}
