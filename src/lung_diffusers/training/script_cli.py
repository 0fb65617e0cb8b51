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
