"""Makes a Python process look like Windows to the pack: put this folder first on PYTHONPATH.

The POSIX-only modules cannot be imported by the pack's own code (trainer, nodes, scripts).
Other libraries keep their own platform choices (torch, for one, reads signal.SIGKILL off
Windows), so only the pack's imports are refused; the pack's use of POSIX-only calls is
checked in its source (tests/unit/jobs/test_portable_processes.py).
"""

import builtins

POSIX_ONLY = {"resource", "fcntl", "termios", "pwd", "grp", "posix"}
PACK = {"trainer", "nodes", "scripts", "shielddiff"}
_real_import = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = ((globals or {}).get("__name__") or "").split(".")[0]
    if level == 0 and name.split(".")[0] in POSIX_ONLY and importer in PACK:
        raise ImportError(f"No module named {name!r} (POSIX-only, unavailable on Windows)")
    return _real_import(name, globals, locals, fromlist, level)


builtins.__import__ = _import
