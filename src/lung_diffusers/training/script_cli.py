"""The command-line wrapper the scripts in ``training/`` share: one-line errors, a quiet Ctrl-C."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_script(run: Callable[[], object], interrupted: str = "interrupted") -> int:
    """Call ``run`` (parse the arguments, then do the work) and return the exit status: 0 on success; 2 with an
    ``error: ...`` line for bad input (``ValueError`` / ``FileNotFoundError``); 130 on Ctrl-C, printing
    ``interrupted`` (e.g. how to resume) instead of a traceback."""
    try:
        run()
    except (ValueError, FileNotFoundError) as error:
        print("error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0


def json_ready(value):
    """A report made JSON-ready: numpy scalars to Python, keys to strings, NaN or infinity (a figure undefined,
    e.g. the AUROC of a slice without a lesion) to null; dicts, lists and tuples converted all the way down."""
    import numpy as np

    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
