"""A hook for the kill tests: Python imports this ``sitecustomize`` at start-up in every process that has
``tests/hold`` on its PYTHONPATH (a test's ``diptych`` command and the workers it launches, which inherit
the environment). It does nothing unless ``DIPTYCH_TEST_HOLD=MARKER:WHERE`` is set; then the process writes
MARKER at that point of the run and waits there until it is killed:

* ``WHERE`` a number N: the process that writes checkpoints (the lead), about to write its first mid-epoch
  checkpoint at a global step >= N, holds instead; MARKER holds the step of the checkpoint already on disk.
* ``WHERE`` ``pack``: ``diptych data pack``, its temporary folder complete (shards and manifest), holds
  before renaming it onto ``--out``.

A test waits for MARKER, not for a clock: the run is then certainly at that point (past a checkpoint, with
steps trained since it that a kill loses; or a pack not yet renamed), and cannot move on before the test acts.
"""

import os

_HOLD = os.environ.get("DIPTYCH_TEST_HOLD")

if _HOLD:
    import time
    from pathlib import Path

    _marker, _where = _HOLD.rsplit(":", 1)

    def _hold(note: str):
        tmp = Path(f"{_marker}.tmp")
        tmp.write_text(note)
        tmp.replace(_marker)  # appears whole
        while True:  # held: the test kills this process (or its launcher stops it)
            time.sleep(1)

    if _where == "pack":
        import importlib

        # the module whose PackWriter writes packs (diptych.data.packing; diptych.data.packed before it)
        for _name in ("diptych.data.packing", "diptych.data.packed"):
            try:
                _writer = importlib.import_module(_name)
            except ImportError:
                continue
            if hasattr(_writer, "PackWriter"):
                break
        _atomic_write = _writer.atomic_write

        def _write_then_hold(path, data):
            written = _atomic_write(path, data)
            if Path(path).name == _writer.MANIFEST:  # the last file: the rename onto --out comes next
                _hold(str(Path(path).parent))
            return written

        _writer.atomic_write = _write_then_hold
    else:
        from diptych import checkpoint

        _save = checkpoint.save
        _written = [0]  # the global step of the newest checkpoint on disk

        def _save_or_hold(path, params, opt_state, carry=None, **meta):
            if meta.get("global_step", 0) >= int(_where) and meta.get("step", 0) > 0:
                _hold(str(_written[0]))
            _save(path, params, opt_state, carry, **meta)
            _written[0] = meta.get("global_step", 0)

        checkpoint.save = _save_or_hold
