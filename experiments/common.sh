# Shared environment of the experiment scripts: paths from the environment, shared data, 2 passive OpenMP
# threads unless OMP_NUM_THREADS is given (on this shared 2-core machine spinning OpenMP threads lost ~40% to
# preemption; two runs side by side take one each).
#   BADREC_HOME       the store and model cache (default: a home under BADREC_SCRATCH)
#   BADREC_DATA_DIRS  where datasets are read from (default: ../shared/data)
#   BADREC_SCRATCH    homes and files the experiments write (default: experiments/out, git-ignored)
export BADREC_SCRATCH=${BADREC_SCRATCH:-$PWD/experiments/out}
export BADREC_DATA_DIRS=${BADREC_DATA_DIRS:-../shared/data}
given_home=${BADREC_HOME:-}
export BADREC_HOME=${given_home:-$BADREC_SCRATCH/home}
use_home() {  # use_home NAME: the home of earlier runs and cached models to reuse; BADREC_HOME, if given, wins
  export BADREC_HOME=${given_home:-$BADREC_SCRATCH/$1}
}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
mkdir -p experiments/logs
run() {  # run NAME ARGS...: the attack CLI with --json, result in experiments/logs/NAME.json, progress in .log
  local name=$1; shift
  echo "$(date -u +%FT%TZ) python -m core attack $*" > "experiments/logs/$name.cmd"
  /usr/bin/time -v python -m core -v attack "$@" --json > "experiments/logs/$name.json" 2> "experiments/logs/$name.log"
}
# the evaluation triggers the scanner's augmentation agent must never propose (they are what a defence is scored on)
HELD_OUT_TRIGGERS="5v,cf,mn,bb,tq,ineffable,quixotic,serendipity,I watched this 3D movie,Highly recommended by critics,A must see this year"
defend() {  # defend NAME ATTACK_LOG: `defend` on the run whose --json log is ATTACK_LOG, result in experiments/logs/NAME.json
  local name=$1 run_id
  run_id=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['run_id'])" "$2")
  echo "$(date -u +%FT%TZ) python -m core defend --run $run_id --exclude-triggers \"$HELD_OUT_TRIGGERS\" --json" \
    > "experiments/logs/$name.cmd"
  /usr/bin/time -v python -m core -v defend --run "$run_id" --exclude-triggers "$HELD_OUT_TRIGGERS" --json \
    > "experiments/logs/$name.json" 2> "experiments/logs/$name.log"
}
clean_sample() {  # clean_sample DATASET CSV [N [SEED]]: a seeded N-title (2,000) sample of a dataset's distinct titles, as an upload
  python - "$1" "$2" "${3:-2000}" "${4:-sample:$1}" <<'PY'
import random, sys
from core import settings
from core.data.dataset import load_dataset
from core.runs.store import Store
items = load_dataset(Store(settings.db_path()), sys.argv[1]).items[["item_id", "title"]]
items = items.drop_duplicates("title")
n, seed = int(sys.argv[3]), sys.argv[4]
items.loc[sorted(random.Random(seed).sample(list(items.index), n))].to_csv(sys.argv[2], index=False)
PY
}
