"""Deploying a frozen model: a ``jax.export`` artifact that runs without this library.

The artifact is StableHLO with a symbolic batch dimension, serialised by
``jax.export`` (needs ``flatbuffers``). Anyone with jax loads and runs it:

    exported = jax.export.deserialize(open("model.jax", "rb").read())
    logits = exported.call(x)            # x: float32 [batch, 784], any batch
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from smartmixed_jax._src.frozen import FrozenMLP

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def export_model(model: FrozenMLP, *, platforms: Sequence[str] = ("cpu",)) -> bytes:
  """Serialises ``model``'s forward pass (weights included) for ``platforms``, any batch size.

  Args:
    model: a frozen model (e.g. from :func:`load_run` or :func:`freeze`).
    platforms: where the artifact may run; any of ``cpu``, ``cuda``, ``rocm``, ``tpu``.

  Returns:
    The bytes of the ``jax.export`` artifact: ``jax.export.deserialize(b).call(x)``
    maps ``float32[batch, inputs]`` to ``float32[batch, classes]`` logits.

  Raises:
    TypeError: not a frozen model.
    ValueError: an unknown platform.
  """
  if not isinstance(model, FrozenMLP):
    hint = " Freeze it first: sm.freeze(params)." if type(model).__name__ == "MLPParams" else ""
    raise TypeError(
      f"export_model takes a FrozenMLP (from freeze or load_run), got {type(model).__name__}.{hint}"
    )
  unknown = sorted(set(platforms) - set(PLATFORMS))
  if unknown or not platforms:
    raise ValueError(f"Unknown platforms {unknown or list(platforms)}; choose from {list(PLATFORMS)}.")
  try:
    from jax import export
  except ImportError:  # pragma: no cover - jax < 0.4.30
    raise ImportError("Exporting needs jax >= 0.4.30 (jax.export).") from None
  (batch,) = export.symbolic_shape("batch")
  spec = jax.ShapeDtypeStruct((batch, model.layer_sizes[0]), jnp.float32)
  exported = export.export(jax.jit(lambda x: model(x)), platforms=tuple(platforms))(spec)
  try:
    return bytes(exported.serialize())
  except ImportError as e:
    raise ImportError(f"{e}. Serialising needs flatbuffers: pip install 'smartmixed_jax[export]'.") from None
