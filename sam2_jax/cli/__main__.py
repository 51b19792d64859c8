"""``python -m sam2_jax.cli``: the ``sam2-jax`` command."""

import sys

from sam2_jax.cli import main

sys.exit(main())
