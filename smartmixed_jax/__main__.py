"""``python -m smartmixed_jax ...`` runs the ``smartmixed`` command."""

import sys

from smartmixed_jax._src.cli import main

sys.exit(main())
