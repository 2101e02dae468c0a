"""Top operations by self time in a Chrome/Perfetto trace: shared by both twins' ``profile.py``.

Each twin's profiler writes complete-duration events (``"ph": "X"``, microseconds); an event's *self*
time is its duration minus its direct children's on the same thread (events nest per thread).

    >>> spans = [{"ts": 0, "dur": 10, "name": "step"}, {"ts": 2, "dur": 6, "name": "matmul"}]
    >>> top_by_self_time(spans, lambda e: e["name"], steps=1, wall_seconds=1e-5)
    [{'name': 'matmul', 'ms_per_step': 0.006, 'share': 0.6}, {'name': 'step', 'ms_per_step': 0.004, 'share': 0.4}]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable


def top_by_self_time(
    spans: Iterable[dict], label: Callable[[dict], str], steps: int, wall_seconds: float, n: int = 15
) -> list[dict]:
    """The ``n`` labels with the most self time per step: ``[{name, ms_per_step, share}]``, where ``share``
    is the label's part of the traced steps' wall time (ops on parallel threads can add up past 1)."""
    by_thread: dict[tuple, list[dict]] = defaultdict(list)
    for e in spans:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals: dict[str, float] = defaultdict(float)
    for thread in by_thread.values():
        stack: list[list] = []  # [end, event, children's time]
        for e in sorted(thread, key=lambda e: (e["ts"], -e["dur"])):
            while stack and e["ts"] >= stack[-1][0]:
                _close(stack, totals, label)
            if stack:
                stack[-1][2] += e["dur"]
            stack.append([e["ts"] + e["dur"], e, 0.0])
        while stack:
            _close(stack, totals, label)
    wall_us = max(wall_seconds * 1e6, 1e-9)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [{"name": k, "ms_per_step": round(v / 1000 / steps, 4), "share": round(v / wall_us, 4)} for k, v in ranked]


def _close(stack: list, totals: dict, label: Callable[[dict], str]) -> None:
    _, e, child = stack.pop()
    totals[label(e)] += max(e["dur"] - child, 0.0)


def best_ms(run: Callable[[int], None], seconds: float = 0.3, group: int = 8, windows: int = 3) -> float:
    """Milliseconds per call of a kernel timed alone: ``run(n)`` makes ``n`` calls and waits for them to
    finish (a device sync). After a warm-up group, each of ``windows`` windows repeats groups for at least
    ``seconds / windows``; the best window wins, since noise only ever adds time."""
    import time

    run(group)  # warm-up: compile, allocate, wake threads
    best = float("inf")
    for _ in range(windows):
        calls, t0 = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - t0 < seconds / windows:
            run(group)
            calls += group
        best = min(best, 1000 * (time.perf_counter() - t0) / calls)
    return best
