"""How a worker process ends (``launch.exit_process``): past the interpreter's teardown once a torch worker
has left its process group (``launch.skip_teardown``), where gloo's threads could abort a finished run.

The abort itself is a race (about 1 exit in 12 of a 2-worker FSDP2 run on 2 busy cores, before the fix);
``test_fsdp.py`` and ``test_cli.py`` run real workers through this exit. Here: that the quick exit keeps
what a normal exit gives a caller (the exit code, the exit handlers, the output written so far), and that it
skips the teardown.
"""

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys
from diptych import launch
atexit.register(lambda: print("handler ran", flush=True))
class Finalized:
    def __del__(self):
        print("torn down", flush=True)  # the interpreter's teardown, where gloo's threads abort
kept = Finalized()
print("result line", end="")  # no newline, no flush: it sits in the buffer
sys.stderr.write("an unflushed warning")
if sys.argv[1] == "skip":
    launch.skip_teardown()
launch.exit_process(int(sys.argv[2]))
print("never here")
"""


@pytest.mark.parametrize("mode", ["skip", "normal"])
@pytest.mark.parametrize("code", [0, 3])
def test_exit_process_keeps_the_code_handlers_and_output_and_skips_the_teardown_when_asked(mode, code):
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(code)], capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    assert r.stdout == "result linehandler ran\n" + ("" if mode == "skip" else "torn down\n")
    assert r.stderr == "an unflushed warning"
