"""Where does learning the activation pay? One protocol on a panel of tasks (``panel_tasks.py``).

    python experiments/panel.py                       # every task x seeds 0-2 (hours on 2 cores)
    python experiments/panel.py --tasks sine_fit poisson_pinn --seeds 0 1 2 3 4
    python experiments/panel.py --report              # rewrite REPORT.md from the records alone
    python experiments/panel.py --smoke --out /tmp/p  # a tiny version of every task (the tests run it)

Per task and seed, from the same initial weights and for the same number of
steps (one cosine schedule over all of them):

- every activation of the task's pool, fixed everywhere;
- SmartMixed with the library's defaults: Phase 1 (the logits learning 100x
  faster), freeze (``smartmixed_jax.nnx.freeze``), Phase 2 continuing the
  schedule and allowed to keep the model it starts from;
- three controls from scratch: SmartMixed's learned choices, the same
  shuffled within each layer, and uniformly random choices.

The answer per task: the best fixed activation; SmartMixed's regret to it;
SmartMixed against the median fixed activation; learned against shuffled and
random choices; each a paired difference over seeds with its 95% CI and a
verdict of ``verdicts.direction``. Every run is written as it finishes
(``OUT/runs/<task>/<model>/seed<N>.json``); a rerun trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import stats
import verdicts
from flax import nnx
from panel_tasks import TASKS, Task
from records import shown
from report import markdown_table, study_parser, write_markdown
from stats import Stat

import smartmixed_jax as sm
import smartmixed_jax.nnx as snx
from smartmixed_jax.artifacts import pyplot, save_figure, write_json

OUT = Path(__file__).parent / "results" / "panel"
SEEDS = (0, 1, 2)
SMARTMIXED = "smartmixed"
CONTROLS = ("learned", "shuffled", "random")
"""Mixed networks trained from scratch: SmartMixed's choices, shuffled within each layer, uniform ones."""


def models_of(task: Task) -> tuple[str, ...]:
  """In training order: SmartMixed (the controls need its choices), the fixed activations, the controls."""
  return (SMARTMIXED, *task.pool, *(f"{c}_choices" for c in CONTROLS))


def run_path(out: Path, task: str, model: str, seed: int) -> Path:
  return out / "runs" / task / model / f"seed{seed}.json"


# ----------------------------------------------------------------------------
# Training: an NNX model through the library's loop.


def fit(task: Task, model: nnx.Module, splits, *, epochs: int, before: int, key, keep_start: bool, name: str,
        progress: bool) -> sm.PhaseResult:  # fmt: skip
  """Trains ``model`` in place for ``epochs`` of the task's cosine schedule, which began ``before``
  epochs earlier and spans ``task.epochs``; keeps the lowest-validation-loss epoch."""
  steps = math.ceil(splits["train"][0].shape[0] / task.batch_size)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  model.eval()
  eval_graphdef = nnx.split(model, nnx.Param, ...)[0]
  train_forward = task.train_forward or (lambda m, x, key: m(x, key))

  def apply(graphdef, forward):
    return lambda params, x, key, step: forward(nnx.merge(graphdef, params, rest), x, key)

  optimizer = sm.make_optimizer(
    task.learning_rate, 1.0, decay_steps=task.epochs * steps, decay_offset=before * steps
  )
  result = sm.fit(
    params, apply=apply(graphdef, train_forward),
    eval_apply=apply(eval_graphdef, lambda m, x, key: m(x, key)), optimizer=optimizer, splits=splits,
    epochs=epochs, key=key, batch_size=task.batch_size, loss_fn=task.loss, select_start=keep_start, name=name,
    policies=[sm.raise_on_nonfinite(), *([sm.progress_bar()] if progress else [])],
  )  # fmt: skip
  nnx.update(model, result.best_params)
  return result


def frozen_acts(model: nnx.Module) -> dict[str, snx.FrozenActivation]:
  """The model's fixed activations by module path."""
  found = nnx.iter_modules(model)
  return {"/".join(map(str, path)): m for path, m in found if isinstance(m, snx.FrozenActivation)}


def build(task: Task, seed: int, fixed: Optional[int] = None) -> nnx.Module:
  """The task's model for ``seed``, its weights from ``seed`` alone: with mixed activations (their logits
  from a stream of their own), or with pool activation ``fixed`` everywhere."""
  act_rngs = nnx.Rngs(params=10_000 + seed)

  def act(features: int) -> nnx.Module:
    if fixed is None:
      return snx.MixedActivation(features, pool=task.pool, rngs=act_rngs)
    return snx.FrozenActivation([fixed] * features, pool=task.pool)

  return task.build(act, nnx.Rngs(params=seed))


def train_run(
  task: Task, model_name: str, seed: int, splits, learned=None, progress: bool = True, probe: bool = True
) -> dict:
  """One run's record: the metric on the test split, and what it trained. ``probe``: freeze checks itself
  on validation inputs and sorts the features of Sequentials (a smoke run skips the eager check)."""
  start = time.perf_counter()
  key = jax.random.key(seed)
  record: dict[str, Any] = {
    "task": task.name, "model": model_name, "seed": seed, "epochs": task.epochs,
    "phase1_epochs": task.phase1_epochs, "train_examples": int(splits["train"][0].shape[0]),
  }  # fmt: skip
  if model_name == SMARTMIXED:
    model = build(task, seed)
    phase1 = fit(task, model, splits, epochs=task.phase1_epochs, before=0, key=key, keep_start=False,
                 name="phase1", progress=progress)  # fmt: skip
    logits = [m.logits[...] for _, m in nnx.iter_modules(model) if isinstance(m, snx.MixedActivation)]
    model.eval()
    frozen = snx.freeze(model, probe=splits["val"][0][:16] if probe else None)
    phase2 = fit(
      task, frozen, splits, epochs=task.epochs - task.phase1_epochs, before=task.phase1_epochs,
      key=jax.random.fold_in(key, 1), keep_start=True, name="phase2", progress=progress,
    )  # fmt: skip
    result = phase2
    choices = {path: np.asarray(m.choices[...]) for path, m in frozen_acts(frozen).items()}
    record |= {
      "phase1": {"test_loss": phase1.test[0]["test_loss"], "best_epoch": phase1.best_epochs[0]},
      "choices": {path: c.tolist() for path, c in choices.items()},
      "decided": [layer["decided"] for layer in sm.selection_diagnostics(logits)],
      "counts": {path: {n: int((c == i).sum()) for i, n in enumerate(task.pool) if (c == i).any()}
                 for path, c in choices.items()},
    }  # fmt: skip
  else:
    model = build(task, seed, fixed=task.pool.index(model_name) if model_name in task.pool else 0)
    if model_name not in task.pool:  # a control: SmartMixed's layers, their choices changed or not
      given = control_choices(model_name, learned, seed, len(task.pool))
      for path, act in frozen_acts(model).items():
        act.choices[...] = jnp.asarray(given[path], jnp.int32)
    result = fit(
      task, model, splits, epochs=task.epochs, before=0, key=key, keep_start=False, name=model_name,
      progress=progress,
    )  # fmt: skip
  test = result.test[0]
  record |= {
    "metric": task.value(test["test_loss"], test["test_accuracy"]),
    "test_loss": test["test_loss"],
    "test_accuracy": test["test_accuracy"],
    "best_epoch": result.best_epochs[0],
    "val_loss": [e["val_loss"] for e in result.histories[0]],
    "seconds": time.perf_counter() - start,
  }
  return record


def control_choices(name: str, learned: dict[str, list[int]], seed: int, k: int) -> dict[str, np.ndarray]:
  """Per activation (by module path): SmartMixed's learned choices, shuffled within the layer, or random."""
  rng = np.random.default_rng([seed, CONTROLS.index(name.removesuffix("_choices"))])
  out = {}
  for path, layer in learned.items():
    layer = np.asarray(layer)
    if name == "shuffled_choices":
      layer = rng.permutation(layer)
    elif name == "random_choices":
      layer = rng.integers(0, k, layer.shape)
    out[path] = layer
  return out


def run_all(
  out: Path,
  tasks: Sequence[str],
  seeds: Sequence[int],
  *,
  smoke: bool = False,
  models: Optional[Sequence[str]] = None,
  data_dir: Optional[Path] = None,
  progress: bool = True,
) -> int:
  """Trains what is missing, task by task and seed by seed; returns how many runs it wrote.

  ``smoke`` trains 1 + 1 epochs on each task's small subset; ``models`` (names of
  :func:`models_of`) restricts the runs.
  """
  written = 0
  for name in tasks:
    task = TASKS[name]
    if smoke:
      task = dataclasses.replace(task, epochs=2, phase1_epochs=1)
    names = [m for m in models_of(task) if models is None or m in models]
    todo = [(m, s) for s in seeds for m in names if not run_path(out, name, m, s).exists()]
    if not todo:
      continue
    splits = task.data(smoke, data_dir)
    for model_name, seed in todo:
      learned = None
      if model_name.endswith("_choices"):
        learned = json.loads(run_path(out, name, SMARTMIXED, seed).read_text())["choices"]
      print(f"{name}: {model_name}, seed {seed}", flush=True)
      record = train_run(task, model_name, seed, splits, learned, progress, probe=not smoke)
      path = run_path(out, name, model_name, seed)
      path.parent.mkdir(parents=True, exist_ok=True)
      write_json(path, record)
      written += 1
  return written


# ----------------------------------------------------------------------------
# The report.


def read_runs(out: Path) -> dict[str, dict[str, dict[int, dict]]]:
  """``{task: {model: {seed: record}}}``."""
  runs: dict[str, dict[str, dict[int, dict]]] = {}
  for path in sorted(out.glob("runs/*/*/seed*.json")):
    r = json.loads(path.read_text())
    runs.setdefault(r["task"], {}).setdefault(r["model"], {})[r["seed"]] = r
  return runs


COMPARISONS = {
  "regret": (-1, "below the best fixed"),
  "versus_median": (1, "above the median fixed"),
  "learned_shuffled": (1, "learned > shuffled"),
  "learned_random": (1, "learned > random"),
}
"""Each comparison of a task's answer: the side of 0 its claim names, and the claim in words. Regret:
SmartMixed − the best fixed activation; versus_median: SmartMixed − the median fixed activation;
learned_*: the learned choices from scratch − the shuffled / random ones."""


@dataclasses.dataclass(frozen=True)
class Answer:
  """One task's answer: per comparison of :data:`COMPARISONS`, its paired differences, one per seed,
  signed so that positive means the first is better."""

  task: Task
  seeds: list[int]
  means: dict[str, Stat]
  best: str
  worst: str
  diffs: dict[str, list[float]]
  hours: float
  epochs: int
  phase1_epochs: int


def answer(task: Task, models: dict[str, dict[int, dict]]) -> Optional[Answer]:
  """The comparisons on the seeds every model of the task has finished."""
  names = models_of(task)
  seeds = sorted(set.intersection(*(set(models.get(m, {})) for m in names)))
  if not seeds:
    return None
  sign = 1 if task.higher_is_better else -1
  value = lambda m, s: models[m][s]["metric"]  # noqa: E731
  means = {m: Stat(value(m, s) for s in seeds) for m in names}
  fixed = list(task.pool)
  best = max(fixed, key=lambda m: sign * means[m].mean)
  worst = min(fixed, key=lambda m: sign * means[m].mean)
  smart = lambda s: value(SMARTMIXED, s)  # noqa: E731
  learned = lambda s: value("learned_choices", s)  # noqa: E731
  pairs = {
    "regret": (smart, lambda s: value(best, s)),
    "versus_median": (smart, lambda s: statistics.median(value(m, s) for m in fixed)),
    "learned_shuffled": (learned, lambda s: value("shuffled_choices", s)),
    "learned_random": (learned, lambda s: value("random_choices", s)),
  }
  diffs = {name: [sign * (a(s) - b(s)) for s in seeds] for name, (a, b) in pairs.items()}
  hours = sum(r["seconds"] for m in names for r in models.get(m, {}).values()) / 3600
  return Answer(
    task, seeds, means, best, worst, diffs, hours,
    models[SMARTMIXED][seeds[0]]["epochs"], models[SMARTMIXED][seeds[0]]["phase1_epochs"],
  )  # fmt: skip


def families(answers: Sequence[Answer]) -> dict[str, stats.Across]:
  """Per comparison, every task's paired differences together: one family of tests, Holm-corrected."""
  return {name: stats.across({a.task.name: a.diffs[name] for a in answers}) for name in COMPARISONS}


def plot(path: Path, answers: Sequence[Answer]) -> str:
  """Per task, every model's metric (mean ± std over seeds), SmartMixed and the controls marked."""
  plt = pyplot()
  fig, axes = plt.subplots(1, len(answers), figsize=(3.2 * len(answers), 3.6), squeeze=False)
  for ax, a in zip(axes[0], answers):
    names = models_of(a.task)
    colours = [
      "tab:red" if n == SMARTMIXED else "tab:grey" if n.endswith("_choices") else "tab:blue" for n in names
    ]
    ax.bar(range(len(names)), [a.means[n].mean for n in names], yerr=[a.means[n].std for n in names],
           color=colours, capsize=2)  # fmt: skip
    values = [a.means[n].mean for n in names]
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - 0.15 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
    ax.set_xticks(range(len(names)), [n.removesuffix("_choices") for n in names], rotation=70, fontsize=7)
    ax.set_title(f"{a.task.name}\n{a.task.metric}", fontsize=8)
  fig.tight_layout()
  return save_figure(fig, path, dpi=110)


def write_report(out: Path) -> Path:
  runs = read_runs(out)
  answers = [a for name in TASKS if name in runs and (a := answer(TASKS[name], runs[name]))]
  tested = families(answers)
  verdict = {name: verdicts.in_each(tested[name], sign) for name, (sign, _) in COMPARISONS.items()}
  rows, verdict_rows = [], []
  for a in answers:
    t = a.task
    gap = abs(a.means[a.best].mean - a.means[a.worst].mean)
    rows.append([
      f"`{t.name}`", t.metric, f"{a.epochs} ({a.phase1_epochs} + {a.epochs - a.phase1_epochs})",
      str(len(a.seeds)),
      f"{a.best} {a.means[a.best].fmt(1.0, 3)}", f"{a.worst} {a.means[a.worst].fmt(1.0, 3)} (gap {gap:.3g})",
      a.means[SMARTMIXED].fmt(1.0, 3),
      *(tested[name].per_arch[t.name].fmt_ci(1.0, 3) for name in COMPARISONS), f"{a.hours:.2f}",
    ])  # fmt: skip
    # The words only: the rules' reasons speak in accuracy points, the table above in the metric's units.
    verdict_rows.append([f"`{t.name}`", *(verdict[name][t.name].word for name in COMPARISONS)])
  figure = plot(out / "panel.png", answers) if answers else None
  lines = [
    "# Where does learning the activation pay?",
    "",
    "One protocol on every task (`experiments/panel.py`; the tasks in `experiments/panel_tasks.py`):"
    " per seed, from the same initial weights and for the same steps on one cosine schedule, every"
    " activation of the task's pool fixed everywhere; SmartMixed with the library's defaults (Phase 1"
    " with the logits learning 100x faster, freeze, Phase 2 continuing the schedule and allowed to"
    " keep its start); and three mixed networks trained from scratch: SmartMixed's learned choices,"
    " the same shuffled within each layer, and uniformly random ones. Written by `python"
    " experiments/panel.py` from the records in"
    f" `{shown(out)}/runs/` (`--report` rewrites it alone).",
    "",
    "Differences are paired by seed with their 95% CI over seeds (each alone, uncorrected), signed so"
    " that positive means better (for an error or bits per character, lower is better). Regret:"
    " SmartMixed − the best fixed activation, picked after the fact by its mean test metric. Compute: the"
    " wall time of all the task's runs on 2 CPU cores, which other work shared at times.",
    "",
    *markdown_table(
      [
        "task",
        "metric",
        "epochs (P1 + P2)",
        "seeds",
        "best fixed",
        "worst fixed",
        "SmartMixed",
        "regret to best",
        "vs median fixed",
        "learned − shuffled",
        "learned − random",
        "compute (h)",
      ],
      rows,
    ),  # fmt: skip
    "",
    "Verdicts (rule `in_each` of `experiments/verdicts.py`): each task's claim is tested by a paired t-test"
    " over its seeds, Holm-corrected over the tasks of the column (one family per column, so a 95% CI"
    " above that excludes 0 may still read *not resolved*). A claim holds when its test is significant on"
    " its side (SmartMixed below the best fixed activation; above the median fixed activation; the"
    " learned choices above the shuffled or the random ones), does not hold when it is significant the"
    " other way, and is not resolved otherwise:",
    "",
    *markdown_table(["task", *(words for _, words in COMPARISONS.values())], verdict_rows),
    "",
    *([f"![every model's metric per task]({figure})", ""] if figure else []),
  ]
  path = out / "REPORT.md"
  out.mkdir(parents=True, exist_ok=True)
  return write_markdown(path, lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = study_parser(__doc__, OUT, SEEDS, "2 epochs of a small subset of every task")
  parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
  args = parser.parse_args(argv)
  if not args.report:
    written = run_all(args.out, args.tasks, args.seeds, smoke=args.smoke, data_dir=args.data_dir,
                      progress=args.progress)  # fmt: skip
    print(f"wrote {written} runs under {args.out / 'runs'}")
  print(write_report(args.out))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
