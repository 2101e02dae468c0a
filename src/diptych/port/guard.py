"""Your code, run by diptych (a model file, a factory, a model's forward pass): whatever it raises or
exits with becomes one line (:class:`~diptych.errors.DiptychError`, exit 2), never a traceback and never
diptych's own exit.

* ``sys.exit(N)`` in your file or factory is reported, with its code; diptych does not exit N.
* ``KeyboardInterrupt`` raised by your code itself is reported the same way. A real Ctrl-C is told apart
  by the SIGINT that delivers it (a handler that notes the signal is installed while your code runs, in
  the main thread) and still interrupts: exit 130.
* An exception from a model run on the inputs names the model's own message, the input shapes and
  dtypes, and the options that set them (``--input``/``--dtype``).

    >>> with user_code("the factory f"):
    ...     raise SystemExit(3)
    Traceback (most recent call last):
    ...
    diptych.errors.DiptychError: the factory f called sys.exit(3); code that diptych runs must not end the program
"""

from __future__ import annotations

import contextlib
import signal
import threading

from diptych.errors import DiptychError


def first_line(e: BaseException, limit: int = 300) -> str:
    """``Type: message``, the message's first line, at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    msg = lines[0].strip() if lines else ""
    msg = msg if len(msg) <= limit else msg[: limit - 3] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def describe(inputs) -> str:
    """``input 2,5,16 (float32)``: each input's shape and dtype, the way ``--input`` writes them."""
    parts = [f"{','.join(str(d) for d in a.shape)} ({a.dtype})" for a in inputs]
    return ("input " if len(parts) == 1 else "inputs ") + ", ".join(parts)


@contextlib.contextmanager
def _sigint_watch():
    """Yields a list that gets an entry when a real SIGINT (Ctrl-C) arrives, or None where that cannot be
    told (another Python handler is installed: its KeyboardInterrupt is taken for a real one)."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # signals are delivered to the main thread: a KeyboardInterrupt here is raised by code
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        # SIG_IGN / SIG_DFL: a Ctrl-C raises nothing, so any KeyboardInterrupt is raised by code
        yield [] if previous in (signal.SIG_IGN, signal.SIG_DFL) else None
        return
    seen: list[int] = []

    def note(signum, frame):
        seen.append(signum)
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as without us

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def user_code(what: str, inputs=None):
    """Run your code (``what`` names it, e.g. ``"the factory models.py:Net"``); with ``inputs`` (the
    arrays the model is run on), any exception it raises is reported as the model failing on them."""
    with _sigint_watch() as sigint:
        try:
            yield
        except DiptychError:
            raise
        except SystemExit as e:
            raise DiptychError(
                f"{what} called sys.exit({e.code!r}); code that diptych runs must not end the program"
            ) from None
        except KeyboardInterrupt:
            if sigint is None or sigint:  # a real Ctrl-C: interrupted (exit 130)
                raise
            raise DiptychError(
                f"{what} raised KeyboardInterrupt itself (no Ctrl-C was pressed); code that diptych runs must not"
            ) from None
        except Exception as e:
            if inputs is None:
                raise
            raise DiptychError(
                f"{what} fails on the {describe(inputs)}: {first_line(e)}; check --input/--dtype "
                f"(the shapes and dtype the model takes)"
            ) from None
