"""Has the selection happened? Per-layer diagnostics of Phase 1's logits, cheap enough for every epoch.

Each is computed from the logits alone (plus, optionally, the logits an epoch
earlier and the activations the training steps sampled), with no extra pass
over the data. Note that the temperature does not enter: the hard forward
pass draws ``argmax(logits + Gumbel noise)``, which picks activation ``i``
with probability ``softmax(logits)_i`` whatever the temperature (the
Gumbel-max trick); the temperature only scales the straight-through gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

DECIDED_ENTROPY = 0.5
"""A neuron counts as decided when its normalised entropy is below this."""

UNDECIDED_SHARE = 0.5
"""A selection is frozen undecided when fewer than this share of the hidden neurons are decided."""


class UndecidedSelectionWarning(UserWarning):
  """A run froze a selection that had not decided: its activations are close to a uniform random draw."""


def decided_share(decided: Sequence[float], widths: Sequence[int]) -> float:
  """The share of all hidden neurons decided, from each layer's ``decided`` share and width."""
  return sum(d * w for d, w in zip(decided, widths)) / sum(widths)


def undecided_message(decided: Sequence[float], widths: Sequence[int]) -> Optional[str]:
  """What to tell a user who froze ``decided`` (per layer), or None when the selection decided."""
  share = decided_share(decided, widths)
  if share >= UNDECIDED_SHARE:
    return None
  return (
    f"the selection had not decided when it was frozen: {100 * share:.0f}% of the hidden neurons have a clear"
    " choice (normalised entropy below 1/2), so most activations are close to a uniform random draw. Train"
    " Phase 1 longer, or let the logits learn faster (logits_lr_scale, --logits-lr-scale)."
  )


def selection_diagnostics(
  logits: Sequence[Any],
  *,
  previous: Optional[Sequence[Any]] = None,
  samples: Optional[Sequence[Any]] = None,
) -> list[dict[str, float]]:
  """Per hidden layer, how decided the activation choice is.

  Args:
    logits: per layer, ``[neurons, k]`` selection logits.
    previous: the same logits an epoch earlier, for ``argmax_changed``.
    samples: per layer, ``[neurons, k]`` how often each activation was
      sampled (e.g. over the last epoch's steps), for ``sample_agreement``.

  Returns:
    Per layer: ``entropy`` (mean of softmax(logits)'s entropy over log k, in
    [0, 1]; 1 is uniform), ``decided`` (share of neurons with normalised
    entropy below :data:`DECIDED_ENTROPY`), ``p_argmax`` (mean probability
    that a step samples the argmax activation), ``logit_gap`` (mean and
    ``logit_gap_max`` largest top-1 minus top-2 logit), and when given
    ``argmax_changed`` (share of neurons whose argmax differs from
    ``previous``) and ``sample_agreement`` (share whose argmax is their
    most-sampled activation; 1/k by chance).
  """
  out = []
  for i, layer in enumerate(logits):
    z = np.asarray(layer, np.float64)
    k = z.shape[-1]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if k == 1:  # a pool of one: nothing to choose, so decided
      entropy = gap = np.zeros(z.shape[:-1])
    else:
      entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(-1) / np.log(k)
      top2 = np.sort(z, -1)[:, -2:]
      gap = top2[:, 1] - top2[:, 0]
    row = {
      "entropy": float(entropy.mean()),
      "decided": float(np.mean(entropy < DECIDED_ENTROPY)),
      "p_argmax": float(p.max(-1).mean()),
      "logit_gap": float(gap.mean()),
      "logit_gap_max": float(gap.max()),
    }
    argmax = z.argmax(-1)
    if previous is not None:
      row["argmax_changed"] = float(np.mean(np.asarray(previous[i]).argmax(-1) != argmax))
    if samples is not None:
      row["sample_agreement"] = float(np.mean(np.asarray(samples[i]).argmax(-1) == argmax))
    out.append({key: round(value, 6) for key, value in row.items()})
  return out
