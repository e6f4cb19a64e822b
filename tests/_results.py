"""Comparing results across runs: everything but the wall-clock timings."""

TIMING = {
  "train_seconds",
  "eval_seconds",
  "seconds",
  "median_epoch_train_seconds",
  "median_epoch_eval_seconds",
}


def without_timings(tree, drop=()):
  """``tree`` (results JSON) without timing keys, nor the keys in ``drop``."""
  if isinstance(tree, dict):
    return {k: without_timings(v, drop) for k, v in tree.items() if k not in TIMING and k not in drop}
  if isinstance(tree, list):
    return [without_timings(v, drop) for v in tree]
  return tree
