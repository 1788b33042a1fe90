# Shared set-up of the GPU scripts (run through the device tool): the carried wheels in .whl/ installed into
# BADREC_SCRATCH (default experiments/out, git-ignored), which also holds the home; data from .whl/data.
set -u
scratch=${BADREC_SCRATCH:-$PWD/experiments/out}
export PYTHONUNBUFFERED=1 BADREC_HOME=${BADREC_HOME:-$scratch/home} BADREC_DATA_DIRS=${BADREC_DATA_DIRS:-$PWD/.whl/data}
python3 -m pip install -q --no-index --no-deps --target "$scratch/site" .whl/*.whl || exit 1
cp -r .whl/site/. "$scratch/site/"
export PYTHONPATH=$scratch/site:$PWD
