"""The image's estimators in this Python process, no job and no endpoint: ``FactorizationMachines`` and
``WALS`` of ``algorithm/``, with scikit-learn's conventions, so ``clone``, ``cross_val_score``,
``GridSearchCV`` and pipelines work with them::

    from fmwals.inprocess import FactorizationMachines
    fm = FactorizationMachines(feature_dim=64, num_factors=8, predictor_type="binary_classifier")
    cross_val_score(fm, X, y, cv=5)                 # accuracy (R² for a regressor), or any scoring=

They run the numba kernels here, so they need the container's dependencies (``pip install
'fm-wals-image[container]'``); ``import fmwals`` alone does not load them.
"""

from __future__ import annotations

try:
    from algorithm.fm import FactorizationMachines
    from algorithm.wals import WALS
except ModuleNotFoundError as err:
    raise ModuleNotFoundError(
        f"fmwals.inprocess runs the numba kernels in this process and needs {err.name}: install the "
        "container's dependencies too (pip install 'fm-wals-image[container]')", name=err.name
    ) from err

__all__ = ["WALS", "FactorizationMachines"]
