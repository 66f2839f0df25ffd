"""Parameter search for arbframe on Optuna (distribution ``arbframe-optimize``).

Entry points: ``arbframe.commands: optimize`` (``arbframe optimize``, :mod:`arbframe_optimize.command`) and
``arbframe.plugins: optimize`` (:mod:`arbframe_optimize.schema`: the ``optimize`` config section, so
``arbframe config validate`` checks it). Optuna and matplotlib are imported only when the command runs.
"""

from __future__ import annotations

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"
