"""A hook for the kill tests: Python imports this ``sitecustomize`` at start-up in every process that has
``tests/hold`` on its PYTHONPATH (a test's ``diptych train`` and the workers it launches, which inherit
the environment). It does nothing unless ``DIPTYCH_TEST_HOLD=MARKER:STEP`` is set.

Then the process that writes checkpoints (the lead), about to write the first mid-epoch checkpoint at a
global step >= STEP, writes MARKER instead (the step of the checkpoint already on disk) and waits there
until it is killed. A test waits for MARKER, not for a clock: the run is then certainly past a
checkpoint, with steps trained since it (lost to the kill), and cannot finish before the test acts.
"""

import os

_HOLD = os.environ.get("DIPTYCH_TEST_HOLD")

if _HOLD:
    import time
    from pathlib import Path

    from diptych import checkpoint

    _marker, _step = _HOLD.rsplit(":", 1)
    _save = checkpoint.save
    _written = [0]  # the global step of the newest checkpoint on disk

    def _save_or_hold(path, params, opt_state, carry=None, **meta):
        if meta.get("global_step", 0) >= int(_step) and meta.get("step", 0) > 0:
            tmp = Path(f"{_marker}.tmp")
            tmp.write_text(str(_written[0]))
            tmp.replace(_marker)  # appears whole
            while True:  # held: the test kills this process (or its launcher stops it)
                time.sleep(1)
        _save(path, params, opt_state, carry, **meta)
        _written[0] = meta.get("global_step", 0)

    checkpoint.save = _save_or_hold
