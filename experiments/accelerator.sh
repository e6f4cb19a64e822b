#!/usr/bin/env bash
# On a machine with an accelerator: install JAX's wheels for it, then run the test suite and the
# benchmark there. The benchmark writes experiments/results/benchmark_<backend>.json next to
# benchmark_cpu.json (e.g. benchmark_gpu.json), so the two can be compared side by side.
#
#   experiments/accelerator.sh cuda12     # NVIDIA GPU (CUDA 12 wheels)
#   experiments/accelerator.sh tpu        # a TPU VM
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-cuda12}"
case "$kind" in cuda12|tpu) ;; *) echo "usage: $0 cuda12|tpu" >&2; exit 2 ;; esac
make .venv/.installed
version="$(.venv/bin/python -c 'import jax; print(jax.__version__)')"
.venv/bin/pip install --quiet "jax[$kind]==$version"
.venv/bin/python - <<'PY'
import jax
backend = jax.default_backend()
print(f"jax {jax.__version__}: {backend}, {jax.device_count()} x {jax.devices()[0].device_kind}")
if backend == "cpu":
  raise SystemExit("jax sees no accelerator here; nothing to measure.")
PY
[ "$kind" = cuda12 ] && export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true"
SMARTMIXED_TEST_BACKEND="$(.venv/bin/python -c 'import jax; print(jax.default_backend())')" .venv/bin/python -m pytest -q
.venv/bin/python experiments/benchmark.py
