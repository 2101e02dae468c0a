"""Shared pieces of the fuzz suite: the hypothesis settings, byte-level mutations of real files, random
JSON, and the one property every reader must have.

The property: any input either loads (and the result passes the reader's own invariants) or raises
:class:`DiptychError` with a one-line message; never another exception, and never more than
``MEMORY_BOUND`` bytes allocated while reading (measured with ``tracemalloc``, which sees Python
objects and numpy arrays; for readers that decode in C, such as Pillow's, also as the rise of the
process's peak resident memory). Example counts are fixed and the search is derandomized, so a run is
reproducible; ``DIPTYCH_FUZZ_EXAMPLES=N`` runs N examples per test instead (a longer profile).

The property alone would pass a reader that refuses everything, so each fuzz test must also see both
outcomes (:func:`check_outcomes`): some inputs loaded and some refused, each at least
:data:`MIN_SHARE` of the test's cases (the ``outcome_counts`` fixture checks it after every test).
"""

from __future__ import annotations

import contextlib
import os
import tracemalloc
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from diptych.errors import DiptychError

MEMORY_BOUND = 256 * 2**20
OUTCOMES: Counter = Counter()  # (reader, "loaded" | "refused") -> count, checked and reported below
# The outcomes every run of a reader must see, and the least share of its cases each must be. A reader
# that refuses every input (or loads every corrupt one) fails. Measured at the default example counts:
# 3-54% of the mutated files load; of the generated WAV headers 0.2-1% (nearly every combination is
# invalid, and the long profile's 1000 cases explore more of the invalid ones: 2 of them loaded).
REQUIRED_OUTCOMES = {"cli": ("reached the work", "refused")}  # the others: ("loaded", "refused")
MIN_SHARE = 0.02
MIN_SHARES = {"wav-generated": 0.001}


def check_outcomes(counts: Counter) -> None:
    """Raise AssertionError unless every reader in ``counts`` saw each of its required outcomes in at
    least its minimum share of cases (and at least once)."""
    problems = []
    for reader in sorted({r for r, _ in counts}):
        total = sum(n for (r, _), n in counts.items() if r == reader)
        need = max(1, int(MIN_SHARES.get(reader, MIN_SHARE) * total))
        for outcome in REQUIRED_OUTCOMES.get(reader, ("loaded", "refused")):
            if counts[reader, outcome] < need:
                problems.append(f"{reader}: {outcome} {counts[reader, outcome]} of {total} cases, expected >= {need}")
    assert not problems, "; ".join(problems)


@pytest.fixture(autouse=True)
def outcome_counts():
    """After each fuzz test: the outcomes it produced pass :func:`check_outcomes`."""
    before = OUTCOMES.copy()
    yield
    check_outcomes(OUTCOMES - before)


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    """Append this module's counts to $DIPTYCH_FUZZ_REPORT (if set): reader, outcome, cases."""
    OUTCOMES.clear()
    yield
    if os.environ.get("DIPTYCH_FUZZ_REPORT"):
        with open(os.environ["DIPTYCH_FUZZ_REPORT"], "a") as f:
            for (reader, outcome), n in sorted(OUTCOMES.items()):
                f.write(f"{reader}\t{outcome}\t{n}\n")


def fuzz_settings(examples: int):
    """Settings for one fuzz test: ``examples`` cases (or $DIPTYCH_FUZZ_EXAMPLES: the full tier's long profile,
    tests/fuzz/test_fuzz_long.py, runs 1000), a fixed seed."""
    n = int(os.environ.get("DIPTYCH_FUZZ_EXAMPLES") or examples)
    return settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
    )


def loads_or_refuses(reader: str, call, bound: int = MEMORY_BOUND, outcomes: Counter = OUTCOMES, rss: bool = False):
    """Run ``call()``; return its result, or ``None`` if it raised a one-line :class:`DiptychError`
    (counted in ``outcomes``). Any other exception propagates (hypothesis then shrinks and reports it).
    ``rss``: also bound the rise of the process's peak resident memory (:class:`memory_helpers.PeakRSS`),
    which sees what C libraries allocate (Pillow's pixel buffers) and ``tracemalloc`` does not."""
    if rss:
        from memory_helpers import PeakRSS  # tests/ (its conftest puts it on the path)
    with PeakRSS() if rss else contextlib.nullcontext() as watch:
        tracemalloc.start()
        try:
            result = call()
            outcomes[reader, "loaded"] += 1
        except DiptychError as e:
            msg = str(e)
            assert msg and "\n" not in msg and "Traceback" not in msg, msg
            outcomes[reader, "refused"] += 1
            result = None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < bound, f"{reader}: {peak / 2**20:.0f} MiB allocated while reading, above {bound / 2**20:.0f} MiB"
    grew = getattr(watch, "grew", None)
    assert grew is None or grew < bound, f"{reader}: resident memory rose {grew / 2**20:.0f} MiB while reading"
    return result


INTERESTING = [
    0,
    1,
    2,
    3,
    7,
    8,
    15,
    16,
    255,
    256,
    1000,
    8000,
    2**15 - 1,
    2**15,
    2**16 - 1,
    2**16,
    2**24,
    2**31 - 1,
    2**31,
    2**32 - 1,
]


@st.composite
def mutated(draw, seeds: list[bytes], byteorder: str = "little", hot: int = 64):
    """One of ``seeds`` with 1-4 mutations: a bit flip, an interesting integer written over a 1/2/4-byte
    field (most often in the first ``hot`` bytes, where headers live), a truncation, an insertion,
    a deletion, or a duplicated block."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "field", "field", "truncate", "insert", "delete", "repeat"]))
        n = len(data)
        if op == "truncate":
            data = data[: draw(st.integers(0, n))]
        elif n == 0:
            data += draw(st.binary(max_size=16))
        elif op == "flip":
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "field":
            width = draw(st.sampled_from([1, 2, 4]))
            limit = max(0, min(n, hot) - width) if draw(st.booleans()) else max(0, n - width)
            i = draw(st.integers(0, limit))
            v = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**32 - 1)) % (1 << (8 * width))
            data[i : i + width] = v.to_bytes(width, byteorder)
        elif op == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 32))]
        else:  # repeat a block, e.g. a second data chunk
            i = draw(st.integers(0, n - 1))
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated_json(draw, value):
    """``value`` (JSON-like) with one node replaced by random JSON, deleted, or given an extra key."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value, key=str)))
        op = draw(st.sampled_from(["recurse", "recurse", "replace", "delete", "add"]))
        out = dict(value)
        if op == "recurse":
            out[key] = draw(mutated_json(value[key]))
        elif op == "replace":
            out[key] = draw(json_values)
        elif op == "delete":
            del out[key]
        else:
            out[draw(st.text(max_size=6))] = draw(json_values)
        return out
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(value) - 1))
        out = list(value)
        op = draw(st.sampled_from(["recurse", "replace", "delete", "append"]))
        if op == "recurse":
            out[i] = draw(mutated_json(value[i]))
        elif op == "replace":
            out[i] = draw(json_values)
        elif op == "delete":
            del out[i]
        else:
            out.append(draw(json_values))
        return out
    return draw(json_values)
