"""Reports as JSON: the evaluations write their figures with :func:`json_ready` applied."""

from __future__ import annotations

import numpy as np


def json_ready(value):
    """A report made JSON-ready: numpy scalars to Python, keys to strings, NaN or infinity (a figure undefined,
    e.g. the AUROC of a slice without a lesion) to null; dicts, lists and tuples converted all the way down."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
