#!/usr/bin/env bash
# Everything the GPU checks need, in one call on a machine with an NVIDIA GPU:
#   scripts/device_run.sh STAGE...   stages: env tests sanitizer mnist cifar resnet9 precision bench pack
# TEST_ARGS narrows the tests stage (default: the whole suite); RESNET9_PRECISIONS the resnet9 runs.
# Missing Python packages are installed from wheels in .whl/ (if present); logs go to $OUT.
# The cifar stage reads CIFAR-10 from $CIFAR_DATA (default .devdata/, e.g. cifar10-jpeg.tar.gz there).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:/tmp/site"
PY=${PYTHON:-python3}

install_missing() {
  local need=()
  $PY -c "import tqdm" 2>/dev/null || need+=(tqdm)
  $PY -c "import hypothesis" 2>/dev/null || need+=(hypothesis attrs sortedcontainers)
  $PY -c "import PIL" 2>/dev/null || need+=(pillow)
  $PY -c "import matplotlib" 2>/dev/null || need+=(matplotlib contourpy cycler fonttools kiwisolver pyparsing python_dateutil six packaging)
  [ ${#need[@]} -eq 0 ] && return
  echo "installing from .whl: ${need[*]}"
  local files=()
  for n in "${need[@]}"; do files+=(.whl/${n}-*.whl); done
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "${files[@]}"
}

run_training() {  # name, then mytensor train arguments
  local name=$1; shift
  $PY -m mytensor train --device cuda --no-progress --overwrite --out /tmp/runs/$name "$@" 2>&1 | tee "$OUT/$name.log"
  cp /tmp/runs/$name/metrics.csv "$OUT/$name-metrics.csv" 2>/dev/null
}

install_missing
for stage in "$@"; do
  echo "=== $stage  $(date +%T)"
  case $stage in
    env)
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
      $PY -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)" ;;
    tests)
      timeout "${TEST_SECONDS:-400}" $PY -m pytest -q -rs -p no:cacheprovider ${TEST_ARGS:-} 2>&1 \
        | tee "$OUT/pytest.log" | tail -25 ;;
    sanitizer)
      timeout "${SANITIZER_SECONDS:-150}" compute-sanitizer --tool memcheck --error-exitcode 1 \
        $PY -m pytest -q -p no:cacheprovider tests/test_cuda_backend.py \
        -k "im2col or col2im or pool or softmax or matmul or sgd or adam or captured or batch_norm or sixteen" 2>&1 \
        | tee "$OUT/sanitizer.log" | tail -8
      echo "compute-sanitizer exit code: ${PIPESTATUS[0]}" | tee -a "$OUT/sanitizer.log" ;;
    mnist)
      run_training mnist-lenet5 --dataset mnist --model lenet5 --epochs 3 ;;
    cifar)
      run_training cifar-lenet --dataset cifar10 --data-dir "${CIFAR_DATA:-.devdata}" --model cifar_lenet --augment \
        --epochs "${CIFAR_EPOCHS:-15}" --lr 0.05 --schedule cosine ;;
    resnet9)  # the mixed-precision check: the same recipe in each precision
      for p in ${RESNET9_PRECISIONS:-fp32 bf16}; do
        run_training cifar-resnet9-$p --dataset cifar10 --data-dir "${CIFAR_DATA:-.devdata}" --model resnet9 \
          --augment --epochs "${RESNET9_EPOCHS:-10}" --batch-size 512 --lr 0.4 --nesterov --weight-decay 5e-4 \
          --label-smoothing 0.2 --precision $p
      done ;;
    precision)
      $PY -m benchmarks --device cuda --only precision --out "$OUT/bench" 2>&1 | tee "$OUT/precision.log" | tail -12 ;;
    bench)
      $PY -m benchmarks --device cuda --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log" | tail -60 ;;
    pack)  # everything under $OUT as one archive, handy to copy off the machine
      (cd "$OUT" && tar czf /tmp/results.tgz --exclude=results.tgz . && rm -rf ./* && mv /tmp/results.tgz .) ;;
    *) echo "unknown stage $stage" ;;
  esac
done
