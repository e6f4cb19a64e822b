"""Benchmarks: the cost of choosing activations, against a plain relu MLP.

Every figure is measured side by side in one process: variants are timed in
interleaved rounds (so machine noise hits them alike) and reported as medians
and as ratios to the plain relu MLP of the same shape, dtype and batch.

    python experiments/benchmark.py                 # full suite, prints a table
    python experiments/benchmark.py --quick         # fewer rounds, no epoch timings
    python experiments/benchmark.py --out FILE.json # where the figures go

Besides the library's formulations it times the alternatives they were chosen
over: the naive Phase 1 that stacks all activations of every neuron (as the
reference code does), and two Phase 2 formulations, gather/scatter per group
and slice-and-concatenate.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import smartmixed_jax as sm

SHAPES = {
  "medium_5layer": dict(layer_sizes=(784, *sm.ARCHITECTURES["medium_5layer"], 10), batch=128),
  "wide_4x1024": dict(layer_sizes=(784, 1024, 1024, 1024, 1024, 10), batch=1024),
}
TARGETS = {
  "phase1_step / relu_step": 1.3,
  "frozen_inference / relu_inference": 1.05,
  "phase2_step / relu_step": 1.1,
  "phase1_peak_memory / relu_peak_memory": 2.0,
}


# ---------------------------------------------------------------------------
# Reference formulations (the limit, and the designs we did not choose).


def mlp_apply(params, x, layer_activations):
  """An MLP whose hidden layer ``i`` applies ``layer_activations[i]`` to its pre-activations."""
  h = x
  for layer, activation in zip(params["layers"][:-1], layer_activations, strict=True):
    h = activation(h @ layer["w"] + layer["b"])
  last = params["layers"][-1]
  return h @ last["w"] + last["b"]


def plain_mlp_apply(params, x, activation=lambda z: jnp.maximum(z, 0)):
  """The limit: a plain MLP with one activation (relu) everywhere."""
  return mlp_apply(params, x, [activation] * (len(params["layers"]) - 1))


def naive_selective_apply(params, x, key, *, temperature, pool):
  """Phase 1 as the reference computes it: all K activations of every neuron,
  stacked to ``[batch, neurons, K]`` and weighted by the straight-through sample."""
  fns = [fn for _, fn in sm.resolve_pool(pool)]
  keys = jax.random.split(key, len(params["logits"]))
  samples = [
    sm.gumbel_straight_through(lg, k, temperature=temperature) for lg, k in zip(params["logits"], keys)
  ]
  stacked = lambda y: lambda z: jnp.einsum("bnk,nk->bn", jnp.stack([f(z) for f in fns], -1), y)
  return mlp_apply(params, x, [stacked(y) for y in samples])


def gather_scatter_apply(params, x, *, groups, pool):
  """Phase 2 with neurons indexed per group: gather, activate, scatter back."""
  fns = dict(sm.resolve_pool(pool))

  def activation(layer_groups):
    def apply(z):
      out = jnp.zeros_like(z)
      for name, idx in layer_groups:
        out = out.at[..., idx].set(fns[name](z[..., idx]))
      return out

    return apply

  return mlp_apply(params, x, [activation(g) for g in groups])


def slice_concat_apply(params, x, *, segments, pool):
  """Phase 2 with contiguous segments sliced, activated and concatenated."""
  fns = dict(sm.resolve_pool(pool))
  activation = lambda segs: lambda z: jnp.concatenate([fns[n](z[..., a:b]) for n, a, b in segs], axis=-1)
  return mlp_apply(params, x, [activation(s) for s in segments])


# ---------------------------------------------------------------------------
# Measurement.


def interleaved_medians(variants: dict, *, rounds: int, min_seconds: float) -> dict[str, float]:
  """Median seconds per call of each ``name -> thunk``, timed in interleaved rounds."""
  calls = {}
  for name, thunk in variants.items():  # warm up (compile) and size each batch of calls
    jax.block_until_ready(thunk())
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds / 4 or n < 2:
      jax.block_until_ready(thunk())
      n += 1
    calls[name] = max(2, int(n * min_seconds / (time.perf_counter() - start) / 4))
  samples = {name: [] for name in variants}
  for _ in range(rounds):
    for name, thunk in variants.items():
      start = time.perf_counter()
      for _ in range(calls[name]):
        out = thunk()
      jax.block_until_ready(out)
      samples[name].append((time.perf_counter() - start) / calls[name])
  return {name: statistics.median(s) for name, s in samples.items()}


def cast(tree, dtype):
  return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def peak_bytes(fn, *args) -> int:
  """Peak device memory of one call of a jit-compiled ``fn``, from XLA's analysis."""
  m = jax.jit(fn).lower(*args).compile().memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def bench_shape(name, layer_sizes, batch, dtype, *, rounds, min_seconds):
  key = jax.random.key(0)
  pool = sm.DEFAULT_POOL
  params = sm.init_mlp(key, layer_sizes)
  # Trained-looking choices: every layer mixes all six activations.
  params["logits"] = [
    jax.random.normal(k, logits.shape) for k, logits in zip(jax.random.split(key, 99), params["logits"])
  ]
  params = cast(params, dtype)
  model = sm.freeze(params)
  relu = sm.fixed_mlp(key, layer_sizes, "relu")
  relu_params = cast(relu.params, dtype)
  x = jax.random.uniform(jax.random.key(1), (batch, layer_sizes[0]), dtype)
  y = jax.random.randint(jax.random.key(2), (batch,), 0, layer_sizes[-1])
  mask = jnp.ones(batch, bool)
  optimizer = sm.make_optimizer(1e-3, 1.0)

  def step_thunk(apply_fn, p):
    step = jax.jit(sm.make_train_step(apply_fn, optimizer))
    state = optimizer.init(p)
    return (lambda: step(p, state, x, y, mask, key)), (step, state)

  selective = lambda p, x, k: sm.apply_selective(p, x, k, pool=pool)
  naive = lambda p, x, k: naive_selective_apply(p, x, k, temperature=0.3, pool=pool)
  frozen = lambda p, x, k: model.apply(p, x)
  plain = lambda p, x, k: plain_mlp_apply(p, x)
  steps = {
    "relu_step": step_thunk(plain, relu_params),
    "phase1_step": step_thunk(selective, params),
    "naive_phase1_step": step_thunk(naive, params),
    "phase2_step": step_thunk(frozen, model.params),
  }
  groups = [
    tuple((n, jnp.asarray(np.flatnonzero(np.asarray(c) == sm.DEFAULT_POOL.index(n)))) for n, _, _ in segs)
    for segs, c in zip(model.segments, sm.choices(params))
  ]
  unpermuted = {"layers": params["layers"]}
  inference = {
    "relu_inference": (jax.jit(plain_mlp_apply), relu_params),
    # Context: what one transcendental activation everywhere costs over relu.
    "elu_inference": (jax.jit(lambda p, x: plain_mlp_apply(p, x, sm.ACTIVATIONS["elu"])), relu_params),
    "frozen_inference": (model.apply, model.params),
    "gather_scatter_inference": (
      jax.jit(lambda p, x: gather_scatter_apply(p, x, groups=groups, pool=pool)),
      unpermuted,
    ),
    "slice_concat_inference": (
      jax.jit(lambda p, x: slice_concat_apply(p, x, segments=model.segments, pool=pool)),
      model.params,
    ),
  }
  variants = {k: v[0] for k, v in steps.items()}
  variants.update({k: (lambda f=f, p=p: f(p, x)) for k, (f, p) in inference.items()})
  times = interleaved_medians(variants, rounds=rounds, min_seconds=min_seconds)

  memory = {}
  for label, step_name in (
    ("relu", "relu_step"),
    ("phase1", "phase1_step"),
    ("naive_phase1", "naive_phase1_step"),
  ):
    (step, state), p = steps[step_name][1], (relu_params if label == "relu" else params)
    memory[f"{label}_peak_memory"] = peak_bytes(step, p, state, x, y, mask, key)
  ratios = {
    "phase1_step / relu_step": times["phase1_step"] / times["relu_step"],
    "naive_phase1_step / relu_step": times["naive_phase1_step"] / times["relu_step"],
    "phase2_step / relu_step": times["phase2_step"] / times["relu_step"],
    "frozen_inference / relu_inference": times["frozen_inference"] / times["relu_inference"],
    "elu_inference / relu_inference": times["elu_inference"] / times["relu_inference"],
    "gather_scatter_inference / relu_inference": times["gather_scatter_inference"] / times["relu_inference"],
    "slice_concat_inference / relu_inference": times["slice_concat_inference"] / times["relu_inference"],
    "phase1_peak_memory / relu_peak_memory": memory["phase1_peak_memory"] / memory["relu_peak_memory"],
    "naive_phase1_peak_memory / relu_peak_memory": memory["naive_phase1_peak_memory"]
    / memory["relu_peak_memory"],
  }
  return {
    "shape": name,
    "dtype": jnp.dtype(dtype).name,
    "batch": batch,
    "seconds": times,
    "bytes": memory,
    "ratios": ratios,
  }


def bench_freeze_compile(batch=128):
  """Wall time to freeze the 14-layer architecture and compile its forward pass
  (median of 5, each with a fresh model and so a fresh compilation)."""
  sizes = (784, *sm.ARCHITECTURES["wide_14layer"], 10)
  params = sm.init_mlp(jax.random.key(0), sizes)
  params["logits"] = [
    jax.random.normal(k, logits.shape)
    for k, logits in zip(jax.random.split(jax.random.key(1), 99), params["logits"])
  ]
  x = jnp.ones((batch, 784))
  samples = []
  for _ in range(5):
    start = time.perf_counter()
    model = sm.freeze(params)
    jax.block_until_ready(model.apply(model.params, x))
    samples.append(time.perf_counter() - start)
  return statistics.median(samples)


def bench_epochs(epochs: int = 3):
  """Whole-epoch wall time on MNIST (54k, batch 128), validation and test included."""
  data = sm.load_mnist()
  sizes = (784, *sm.ARCHITECTURES["medium_5layer"], 10)
  key = jax.random.key(0)
  optimizer = sm.make_optimizer(1e-3, 1.0)
  params = sm.init_mlp(key, sizes)
  model = sm.freeze(params)
  relu = sm.fixed_mlp(key, sizes, "relu")
  runs = {
    "phase1": (lambda p, x, k: sm.apply_selective(p, x, k), lambda p, x, k: sm.apply_hard(p, x), params),
    "phase2": ((lambda p, x, k: model.apply(p, x),) * 2 + (model.params,)),
    "relu": ((lambda p, x, k: relu.apply(p, x),) * 2 + (relu.params,)),
  }
  train = jax.device_put((data.train.x, data.train.y))
  held_out = [jax.device_put((s.x, s.y)) for s in (data.validation, data.test)]
  results = {}
  for name, (train_apply, eval_apply, p) in runs.items():
    epoch = sm.make_train_epoch(train_apply, optimizer, batch_size=128)
    evaluate = sm.make_evaluate(eval_apply, batch_size=2000)
    state = optimizer.init(p)
    samples = []
    for e in range(epochs + 1):  # the first epoch compiles
      start = time.perf_counter()
      p, state, _ = epoch(p, state, *train, jax.random.key(e))
      for split in held_out:
        jax.block_until_ready(evaluate(p, *split, key))
      samples.append(time.perf_counter() - start)
    results[name] = {
      "epoch_seconds_median": statistics.median(samples[1:]),
      "first_epoch_seconds": samples[0],
    }
  return results


def print_table(report):
  print(f"\nbackend {report['backend']} ({report['device']}), jax {report['jax']}")
  for r in report["shapes"]:
    print(f"\n{r['shape']} batch {r['batch']} {r['dtype']}")
    for k, v in r["seconds"].items():
      print(f"  {k:<28}{v * 1e6:>12.1f} us")
    for k, v in r["bytes"].items():
      print(f"  {k:<28}{v / 2**20:>12.2f} MiB")
    for k, v in r["ratios"].items():
      target = TARGETS.get(k)
      verdict = "" if target is None else (f"  target <= {target}: " + ("met" if v <= target else "MISSED"))
      print(f"  {k:<46}{v:>7.2f}x{verdict}")
  if "freeze_compile_seconds" in report:
    s = report["freeze_compile_seconds"]
    print(f"\nfreeze + compile wide_14layer: {s:.2f} s  target < 2 s: {'met' if s < 2 else 'MISSED'}")
  if "epochs" in report:
    print("\nMNIST epoch, medium_5layer, batch 128, validation + test included (median):")
    for k, v in report["epochs"].items():
      print(
        f"  {k:<8}{v['epoch_seconds_median']:>7.2f} s"
        f"   (first epoch, compiling: {v['first_epoch_seconds']:.2f} s)"
      )
    for k in ("phase1", "phase2"):
      s = report["epochs"][k]["epoch_seconds_median"]
      print(f"  {k} target <= 1.6 s: {'met' if s <= 1.6 else 'MISSED'}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer rounds, no MNIST epochs")
  parser.add_argument("--out", type=Path, default=None, help="JSON output (default: experiments/results/)")
  parser.add_argument("--rounds", type=int, default=None)
  args = parser.parse_args()
  rounds = args.rounds or (5 if args.quick else 15)
  min_seconds = 0.2 if args.quick else 0.5
  backend = jax.default_backend()
  dtypes = [jnp.float32, jnp.bfloat16]
  report = {
    "backend": backend,
    "device": str(jax.devices()[0].device_kind),
    "jax": jax.__version__,
    "machine": platform.processor() or platform.machine(),
    "rounds": rounds,
    "shapes": [],
  }
  for name, shape in SHAPES.items():
    for dtype in dtypes:
      print(f"timing {name} {jnp.dtype(dtype).name} ...", flush=True)
      report["shapes"].append(
        bench_shape(name, shape["layer_sizes"], shape["batch"], dtype, rounds=rounds, min_seconds=min_seconds)
      )
  report["freeze_compile_seconds"] = bench_freeze_compile()
  if not args.quick:
    print("timing MNIST epochs ...", flush=True)
    report["epochs"] = bench_epochs()
  print_table(report)
  out = args.out or Path(__file__).parent / "results" / f"benchmark_{backend}.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  print(f"\nwrote {out}")


if __name__ == "__main__":
  main()
