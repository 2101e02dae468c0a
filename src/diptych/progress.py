"""A rich progress bar for training (on stderr, so ``--json`` output on stdout stays clean)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def table_console() -> Console:
    """A console for tables on stdout: the terminal's width, or 200 columns when piped, so a table
    written to a file or read by a test is not squeezed into 80 columns."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


class TrainProgress:
    def __init__(self, enabled: bool, total: int, completed: int, label: str, epochs: int):
        self.enabled, self.label, self.epochs = enabled, label, epochs
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:,.0f} samples/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self._task = self._progress.add_task(
            label, total=total, completed=completed, loss=float("nan"), rate=0.0, epoch="-"
        )

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def update(self, completed: int, loss: float, rate: float, epoch: int) -> None:
        self._progress.update(self._task, completed=completed, loss=loss, rate=rate, epoch=f"{epoch}/{self.epochs}")

    def log(self, line: str) -> None:
        if self.enabled:
            self._progress.console.print(f"{self.label}  {line}")
