"""Run ``conda-migrate`` and strike it at its Nth filesystem call.

Usage: ``python faultpoint.py ACTION N [FUNCTION] -- ARGS...``, where ACTION is
``count`` (report how many calls a full run makes), ``kill`` (SIGKILL, as a
node crash or Slurm's final kill), ``term`` (SIGTERM, Slurm's time limit),
``int`` (SIGINT, Ctrl-C), ``hup`` (SIGHUP, a closed terminal), ``stop`` (SIGSTOP, to hold a run still while another starts),
``spin`` (use the CPU there until a signal's handler raises in that thread,
as a run reaching a login node's CPU-time limit does), or
``fill:PATH`` / ``inodes:PATH`` (use up the space or the inodes of the
filesystem holding PATH). FUNCTION restricts the count to one call, such as
``replace``, so that every atomic commit point can be struck in turn, or to
one of the project's own functions by name, such as ``rename_noreplace``
(the C call it makes through ctypes is no event a profile hook sees).
An ACTION ending in ``-after`` (``stop-after``) strikes once that call has
returned instead of before it, to act on what it has just done. ARGS
starting with ``conda`` run conda's own entry point (``python -m conda
ARGS``) instead of the console script.

Nothing in the product knows about this: the calls are counted with a
profile hook on the interpreter, in every thread. The calls made while the
run reads ``/proc`` for processes using an environment are not counted:
there are as many as the machine has processes, which a count run and the
struck run after it would not agree on, and reading changes nothing that a
kill there could leave behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

WATCHED = {
    "open", "rename", "replace", "unlink", "rmdir", "mkdir", "symlink", "link",
    "copy_file_range", "sendfile", "write", "pwrite", "fsync", "utime", "chmod",
    "scandir", "read", "ftruncate", "fchmod",
}  # fmt: skip

#: The project's functions whose calls are not counted (see above).
UNCOUNTED = {"processes_using"}


def _fill(path: str, inodes: bool) -> None:
    index = 0
    try:
        while True:
            index += 1
            with open(os.path.join(path, f".filler-{index}"), "wb") as stream:
                if not inodes:
                    while True:
                        stream.write(b"\0" * 2**20)
                        stream.flush()
    except OSError:
        pass


def main() -> int:
    action, target = sys.argv[1], int(sys.argv[2])
    rest = sys.argv[3:]
    only = None if rest[0] == "--" else rest.pop(0)
    args = rest[1:]
    lock = threading.Lock()
    state = {"count": 0, "done": False}
    after = action.endswith("-after")
    action = action.removesuffix("-after")
    returning = threading.local()
    reading_proc = threading.local()

    def strike() -> None:
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        elif action == "int":
            os.kill(os.getpid(), signal.SIGINT)
        elif action == "hup":
            os.kill(os.getpid(), signal.SIGHUP)
        elif action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "spin":
            while True:
                pass
        elif action.startswith(("fill:", "inodes:")):
            kind, path = action.split(":", 1)
            _fill(path, inodes=kind == "inodes")

    filling = action.startswith(("fill:", "inodes:"))

    def hook(frame, event, arg) -> None:
        if (
            event in ("c_return", "c_exception") and arg is vars(returning).get("call")
        ) or (event == "return" and frame is vars(returning).get("call")):
            # That call's own return (the C calls made to convert its
            # arguments, such as a path's ``__fspath__``, return first).
            returning.call = None
            strike()
            return
        if event in ("call", "return") and frame.f_code.co_name in UNCOUNTED:
            depth = vars(reading_proc).get("depth", 0)
            reading_proc.depth = depth + (1 if event == "call" else -1)
            return
        if (state["done"] and not filling) or vars(reading_proc).get("depth"):
            return
        if event == "c_call":
            name = getattr(arg, "__name__", "")
            if name not in WATCHED:
                return
        elif event == "call" and only is not None and only not in WATCHED:
            name, arg = frame.f_code.co_name, frame
        else:
            return
        with lock:
            if state["done"] or (only and name != only):
                return
            state["count"] += 1
            hit = state["count"] == target
            if hit:
                state["done"] = True
                if filling:
                    # Filled holding the lock: the run's other threads wait
                    # at their next call, so the disk fills at one instant
                    # however fast they copy.
                    strike()
        if hit and after:
            returning.call = arg
        elif hit and not filling:
            strike()

    if action == "count":
        atexit.register(
            lambda: print(f"faultpoint-count {state['count']}", file=sys.stderr)
        )
    threading.setprofile(hook)
    sys.setprofile(hook)
    if args[:1] == ["conda"]:
        from conda.cli.main import main as conda

        code = conda(*args[1:])
    else:
        from conda_migrate_plugin.cli import main as migrate

        code = migrate(args)
    sys.setprofile(None)
    return code


if __name__ == "__main__":
    sys.exit(main())
