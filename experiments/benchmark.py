"""Benchmarks: the cost of choosing activations, against a plain relu MLP.

Every figure is measured side by side in one process: variants are timed in
interleaved rounds (so machine noise hits them alike) and reported as medians
and as ratios to the plain relu MLP of the same shape, dtype and batch.

    python experiments/benchmark.py                 # full suite, prints a table
    python experiments/benchmark.py --quick         # fewer rounds, no epoch timings
    python experiments/benchmark.py --out FILE.json # where the figures go
    python experiments/benchmark.py --smoke         # tiny shapes, one round: checks it runs (CI)

Besides the library's formulations it times the alternatives they were chosen
over: the naive Phase 1 that stacks all activations of every neuron (as the
reference code does), and two Phase 2 formulations, gather/scatter per group
and every activation in use on every feature, selected by masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from records import shown

import smartmixed_jax as sm
from smartmixed_jax import app

SHAPES = {
  "medium_5layer": dict(layer_sizes=(784, *app.ARCHITECTURES["medium_5layer"], 10), batch=128),
  "wide_4x1024": dict(layer_sizes=(784, 1024, 1024, 1024, 1024, 10), batch=1024),
}
SMOKE_SHAPES = {"tiny": dict(layer_sizes=(784, 32, 16, 10), batch=64)}
TARGETS = {
  "phase1_step / relu_step": 1.3,
  "frozen_inference / relu_inference": 1.05,
  "phase2_step / relu_step": 1.1,
  "phase1_peak_memory / relu_peak_memory": 2.0,
  "frozen_lm_inference / gelu_lm_inference": 1.1,
}


# ---------------------------------------------------------------------------
# Reference formulations (the limit, and the designs we did not choose).


def mlp_apply(layers, x, layer_activations):
  """An MLP of :class:`sm.Dense` ``layers`` whose hidden layer ``i`` applies ``layer_activations[i]``."""
  h = x
  for layer, activation in zip(layers[:-1], layer_activations, strict=True):
    h = activation(h @ layer.w + layer.b)
  return h @ layers[-1].w + layers[-1].b


def plain_mlp_apply(layers, x, activation=lambda z: jnp.maximum(z, 0)):
  """The limit: a plain MLP with one activation (relu) everywhere."""
  return mlp_apply(layers, x, [activation] * (len(layers) - 1))


def naive_selective_apply(params, x, key, *, temperature):
  """Phase 1 as the reference computes it: all K activations of every neuron,
  stacked to ``[batch, neurons, K]`` and weighted by the straight-through sample."""
  fns = [sm.ACTIVATIONS[name] for name in sm.pool_names(params.pool)]
  keys = jax.random.split(key, len(params.logits))
  samples = [sm.gumbel_straight_through(lg, k, temperature=temperature) for lg, k in zip(params.logits, keys)]
  stacked = lambda y: lambda z: jnp.einsum("bnk,nk->bn", jnp.stack([f(z) for f in fns], -1), y)
  return mlp_apply(params.layers, x, [stacked(y) for y in samples])


def gather_scatter_apply(layers, x, *, groups):
  """Phase 2 with neurons indexed per group: gather, activate, scatter back."""
  fns = sm.ACTIVATIONS

  def activation(layer_groups):
    def apply(z):
      out = jnp.zeros_like(z)
      for name, idx in layer_groups:
        out = out.at[..., idx].set(fns[name](z[..., idx]))
      return out

    return apply

  return mlp_apply(layers, x, [activation(g) for g in groups])


def where_mask_apply(layers, x, *, segments):
  """Phase 2 with every activation in use computed on every feature, each segment selected by a
  compile-time ``iota >= start`` mask (the library's form before the slices)."""
  fns = sm.ACTIVATIONS

  def activation(segs):
    def apply(z):
      (first, *rest) = segs
      out, position = fns[first[0]](z), jax.lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1)
      for name, start, _ in rest:
        out = jnp.where(position >= start, fns[name](z), out)
      return out

    return apply

  return mlp_apply(layers, x, [activation(s) for s in segments])


def make_step(apply_fn, optimizer):
  """A jit-compiled optimizer step ``(params, state, x, y, key) -> (params, state)`` on the mean loss."""

  def loss(params, x, y, key):
    return jnp.mean(sm.cross_entropy(apply_fn(params, x, key).astype(jnp.float32), y))

  @jax.jit
  def step(params, state, x, y, key):
    updates, state = optimizer.update(jax.grad(loss)(params, x, y, key), state, params)
    return optax.apply_updates(params, updates), state

  return step


def with_random_logits(params, key):
  """``params`` with standard-normal logits: every layer mixes all activations, as trained ones do."""
  keys = jax.random.split(key, len(params.logits))
  return dataclasses.replace(
    params, logits=tuple(jax.random.normal(k, lg.shape) for k, lg in zip(keys, params.logits))
  )


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
  params = cast(with_random_logits(sm.init_mlp(key, layer_sizes), key), dtype)
  model = sm.freeze(params)
  relu = cast(sm.fixed_mlp(key, layer_sizes, "relu").layers, dtype)
  x = jax.random.uniform(jax.random.key(1), (batch, layer_sizes[0]), dtype)
  y = jax.random.randint(jax.random.key(2), (batch,), 0, layer_sizes[-1])
  optimizer = sm.make_optimizer(1e-3, 1.0)

  def step_thunk(apply_fn, p):
    step, state = make_step(apply_fn, optimizer), optimizer.init(p)
    return (lambda: step(p, state, x, y, key)), (step, state)

  selective = lambda p, x, k: sm.apply_selective(p, x, k)
  naive = lambda p, x, k: naive_selective_apply(p, x, k, temperature=0.3)
  steps = {
    "relu_step": step_thunk(lambda p, x, k: plain_mlp_apply(p, x), relu),
    "phase1_step": step_thunk(selective, params),
    "naive_phase1_step": step_thunk(naive, params),
    "phase2_step": step_thunk(lambda m, x, k: m(x), model),
  }
  names = sm.pool_names(params.pool)
  groups = [
    tuple((n, jnp.asarray(np.flatnonzero(np.asarray(c) == names.index(n)))) for n, _, _ in segs)
    for segs, c in zip(model.segments, sm.choices(params))
  ]
  inference = {
    "relu_inference": (jax.jit(plain_mlp_apply), relu),
    # Context: what one transcendental activation everywhere costs over relu.
    "elu_inference": (jax.jit(lambda p, x: plain_mlp_apply(p, x, sm.ACTIVATIONS["elu"])), relu),
    "frozen_inference": (lambda m, x: m(x), model),
    "gather_scatter_inference": (
      jax.jit(lambda p, x: gather_scatter_apply(p, x, groups=groups)),
      params.layers,
    ),
    "where_mask_inference": (
      jax.jit(lambda p, x: where_mask_apply(p, x, segments=model.segments)),
      model.layers,
    ),
  }
  variants = {k: v[0] for k, v in steps.items()}
  variants.update({k: (lambda f=f, p=p: f(p, x)) for k, (f, p) in inference.items()})
  times = interleaved_medians(variants, rounds=rounds, min_seconds=min_seconds)

  memory = {}
  for label, p in (("relu", relu), ("phase1", params), ("naive_phase1", params)):
    step, state = steps[f"{label}_step"][1]
    memory[f"{label}_peak_memory"] = peak_bytes(step, p, state, x, y, key)
  ratios = {
    "phase1_step / relu_step": times["phase1_step"] / times["relu_step"],
    "naive_phase1_step / relu_step": times["naive_phase1_step"] / times["relu_step"],
    "phase2_step / relu_step": times["phase2_step"] / times["relu_step"],
    "frozen_inference / relu_inference": times["frozen_inference"] / times["relu_inference"],
    "elu_inference / relu_inference": times["elu_inference"] / times["relu_inference"],
    "gather_scatter_inference / relu_inference": times["gather_scatter_inference"] / times["relu_inference"],
    "where_mask_inference / relu_inference": times["where_mask_inference"] / times["relu_inference"],
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


def bench_freeze_compile(batch=128, *, arch="wide_14layer", repeats=5):
  """Wall time to freeze an architecture and compile its forward pass
  (median of ``repeats``, each after clearing JAX's caches, so a fresh compilation)."""
  sizes = (784, *app.ARCHITECTURES[arch], 10)
  params = with_random_logits(sm.init_mlp(jax.random.key(0), sizes), jax.random.key(1))
  x = jnp.ones((batch, 784))
  samples = []
  for _ in range(repeats):
    jax.clear_caches()
    start = time.perf_counter()
    jax.block_until_ready(sm.freeze(params)(x))
    samples.append(time.perf_counter() - start)
  return statistics.median(samples)


PANEL_SELECTION = (
  Path(__file__).parent / "results" / "panel" / "runs" / "char_lm" / "smartmixed" / "seed0.json"
)
"""The selection the task panel's SmartMixed learned on the transformer (seed 0), once that run is done."""


def bench_transformer(
  *, batch: int = 32, rounds: int, min_seconds: float, selection: Optional[Path] = None
) -> dict:
  """The panel's character-level transformer (``panel_tasks.CharLM``), every MLP activation frozen by
  ``snx.freeze(model, probe=x)``, against the same transformer with gelu everywhere: inference at the
  task's batch, side by side. The selection: random over the pool of 8 (``selection=None``: every
  activation in use in every block, the most segments), or the one a panel record learned."""
  import panel_tasks
  from flax import nnx

  import smartmixed_jax.nnx as snx

  learned = json.loads(selection.read_text())["choices"] if selection else None
  act_rngs = nnx.Rngs(params=1)
  mixed = panel_tasks.CharLM(
    lambda n: snx.MixedActivation(n, pool=panel_tasks.LM_POOL, rngs=act_rngs), nnx.Rngs(params=0)
  )
  for path, layer in nnx.iter_modules(mixed):
    if isinstance(layer, snx.MixedActivation):
      shape = layer.logits[...].shape
      if learned is None:
        layer.logits[...] = jax.random.normal(jax.random.key(2), shape)
      else:  # each feature's logits favour its learned choice
        layer.logits[...] = 10.0 * jax.nn.one_hot(jnp.asarray(learned["/".join(map(str, path))]), shape[-1])
  mixed.eval()
  x = jax.random.randint(jax.random.key(0), (batch, panel_tasks.CONTEXT), 0, 84)
  frozen = snx.freeze(mixed, probe=x)
  gelu = panel_tasks.CharLM(lambda n: jax.nn.gelu, nnx.Rngs(params=0))
  frozen_fn, gelu_fn = jax.jit(lambda x: frozen(x)), jax.jit(lambda x: gelu(x))
  seconds = interleaved_medians(
    {"gelu_lm_inference": lambda: gelu_fn(x), "frozen_lm_inference": lambda: frozen_fn(x)},
    rounds=rounds, min_seconds=min_seconds,
  )  # fmt: skip
  counts = [sum(1 for v in layer.values() if v) for layer in snx.counts(frozen)]
  ratio = seconds["frozen_lm_inference"] / seconds["gelu_lm_inference"]
  chosen = "random selection" if learned is None else f"selection learned in {shown(selection)}"
  return {
    "shape": f"char_lm {panel_tasks.BLOCKS} blocks, width {panel_tasks.WIDTH}, context {panel_tasks.CONTEXT},"
    f" {chosen}",
    "batch": batch, "dtype": "float32", "activations_in_use": counts, "seconds": seconds, "bytes": {},
    "ratios": {"frozen_lm_inference / gelu_lm_inference": ratio},
  }  # fmt: skip


def bench_epochs(epochs: int = 3):
  """Whole-epoch wall time on MNIST (54k, batch 128), validation and test included."""
  data = app.load_mnist()
  sizes = (784, *app.ARCHITECTURES["medium_5layer"], 10)
  key = jax.random.key(0)
  optimizer = sm.make_optimizer(1e-3, 1.0)
  params = sm.init_mlp(key, sizes)
  frozen = lambda m, x, k, s: m(x)  # noqa: E731
  runs = {
    "phase1": (
      lambda p, x, k, s: sm.apply_selective(p, x, k),
      lambda p, x, k, s: sm.apply_hard(p, x),
      params,
    ),
    "phase2": (frozen, frozen, sm.freeze(params)),
    "relu": (frozen, frozen, sm.fixed_mlp(key, sizes, "relu")),
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
      p, state, _ = epoch(p, state, *train, jax.random.key(e), jnp.int32(0))
      for split in held_out:
        jax.block_until_ready(evaluate(p, *split, key, jnp.int32(0)))
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer rounds, no MNIST epochs")
  parser.add_argument(
    "--smoke", action="store_true", help="tiny shapes, one round, no MNIST: checks that it runs (CI)"
  )
  parser.add_argument("--out", type=Path, default=None, help="JSON output (default: experiments/results/)")
  parser.add_argument("--rounds", type=int, default=None)
  args = parser.parse_args(argv)
  rounds = args.rounds or (1 if args.smoke else 5 if args.quick else 15)
  min_seconds = 0.01 if args.smoke else 0.2 if args.quick else 0.5
  backend = jax.default_backend()
  dtypes = [jnp.float32] if args.smoke else [jnp.float32, jnp.bfloat16]
  report = {
    "backend": backend,
    "device": str(jax.devices()[0].device_kind),
    "jax": jax.__version__,
    "machine": platform.processor() or platform.machine(),
    "rounds": rounds,
    "shapes": [],
  }
  for name, shape in (SMOKE_SHAPES if args.smoke else SHAPES).items():
    for dtype in dtypes:
      print(f"timing {name} {jnp.dtype(dtype).name} ...", flush=True)
      report["shapes"].append(
        bench_shape(name, shape["layer_sizes"], shape["batch"], dtype, rounds=rounds, min_seconds=min_seconds)
      )
  for selection in (None, PANEL_SELECTION) if PANEL_SELECTION.exists() else (None,):
    print(f"timing the frozen transformer ({'random' if selection is None else 'learned'} selection) ...",
          flush=True)  # fmt: skip
    report["shapes"].append(
      bench_transformer(
        batch=4 if args.smoke else 32, rounds=rounds, min_seconds=min_seconds, selection=selection
      )  # fmt: skip
    )
  if not args.smoke:
    report["freeze_compile_seconds"] = bench_freeze_compile()
  if not (args.quick or args.smoke):
    print("timing MNIST epochs ...", flush=True)
    report["epochs"] = bench_epochs()
  print_table(report)
  if args.smoke and args.out is None:
    return report  # a smoke run's figures are not worth keeping
  out = args.out or Path(__file__).parent / "results" / f"benchmark_{backend}.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1))
  print(f"\nwrote {out}")
  return report


if __name__ == "__main__":
  main()
