"""The live progress display of the pipeline commands (image2, image3, demo).

:class:`RunProgress` receives the runner's events (``plan``, ``prefetch``, ``start``,
``step``, ``retire``/``lost``, ``done``) through the ``on_event`` callback and shows them
as a live rich display on a terminal, or as plain lines on stderr otherwise.
"""

from __future__ import annotations

import time

import click

__all__ = ["RunProgress", "cli_verbosity", "live_wanted", "progress_display"]


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunProgress:
    """Turns runner events into a live rich display (terminal) or plain lines."""

    def __init__(self, label: str, live: bool, verbosity: int = 0):
        self.label = label
        self.live_enabled = live
        self.verbosity = verbosity
        self.total = 0
        self.to_run = 0
        self.done = 0
        self.ran = 0
        self.failed = 0
        self.skipped = 0
        self.jobs = 0
        self.planned = False  # a second plan event is the next stage's
        self.started = time.monotonic()
        self.first_start: float | None = None
        self.workers: dict[int, dict] = {}
        self.phase = "checking inputs, starting workers"
        self._live = None

    # rich calls this on every refresh
    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        head = Text.assemble(
            (f"{self.label} ", "bold"),
            f"{self.done}/{self.total} tasks",
            (f"  {self.failed} failed" if self.failed else "", "red"),
            (f"  {self.skipped} up to date" if self.skipped else "", "dim"),
            f"  elapsed {_fmt_time(elapsed)}  ETA {_fmt_time(self.eta())}",
        )
        if self.phase:
            head.append(f"  ({self.phase})", style="dim")
        bar = ProgressBar(total=max(self.total, 1), completed=self.done, width=40)
        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for wid in sorted(self.workers):
            info = self.workers[wid]
            if info.get("task"):
                table.add_row(
                    Text(f"worker {wid}", style="dim"),
                    info["task"],
                    Text(info.get("step") or "starting", style="cyan"),
                    _fmt_time(now - info["since"]),
                )
        return Group(head, bar, table)

    def eta(self) -> float | None:
        if not self.ran or self.first_start is None:
            return None
        remaining = self.to_run - self.ran
        per_task = (time.monotonic() - self.first_start) / self.ran
        return max(0.0, remaining * per_task)

    def __enter__(self):
        if self.live_enabled:
            from rich.live import Live

            from ..console import get_err_console

            self._live = Live(self, console=get_err_console(), refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def _line(self, text: str) -> None:
        click.echo(text, err=True)

    def __call__(self, kind: str, **info) -> None:
        if kind == "plan":
            if self.planned and info.get("stage"):  # image2 --from uncal: the next stage
                self.label, self.done, self.ran = info["stage"], 0, 0
                self.failed = self.skipped = 0
                self.first_start = None
            self.planned = True
            self.total, self.to_run, self.jobs = info["total"], info["to_run"], info["jobs"]
            self.phase = "resolving CRDS references" if info["to_run"] else None
            if not self.live_enabled and self.verbosity >= 0:
                self._line(
                    f"{self.label}: {self.total} task(s), {info['to_run']} to run, "
                    f"{info['skipped']} up to date; {info['jobs']} job(s) ({info['jobs_reason']}); "
                    f"CRDS context {info.get('context')}"
                )
        elif kind == "prefetch":
            self.phase = None
            if not self.live_enabled and self.verbosity > 0:
                self._line(f"references ready in {info['seconds']:.1f} s")
        elif kind == "start":
            if self.first_start is None:
                self.first_start = time.monotonic()
            self.workers[info["worker"]] = {
                "task": info["task_id"], "step": None, "since": time.monotonic()
            }
        elif kind == "step":
            worker = self.workers.setdefault(info["worker"], {"since": time.monotonic()})
            worker["task"], worker["step"] = info["task_id"], info["step"]
            if not self.live_enabled and self.verbosity > 0:
                self._line(f"  {info['task_id']}: {info['step']}")
        elif kind in ("retire", "lost"):
            self.workers.pop(info["worker"], None)
        elif kind == "done":
            result = info["result"]
            self.done += 1
            if result.status == "skipped":
                self.skipped += 1
            else:
                self.ran += 1
                for wid, worker in list(self.workers.items()):
                    if worker.get("task") == result.task_id:
                        worker["task"] = None
                if result.status == "failed":
                    self.failed += 1
            if not self.live_enabled and self.verbosity >= 0:
                self._line(_result_line(self.done, self.total, result))
        if self._live is not None:
            self._live.refresh()


def _result_line(done: int, total: int, result) -> str:
    width = len(str(total))
    head = f"[{done:>{width}}/{total}] {result.status:<7} {result.task_id}"
    if result.status == "ok":
        return f"{head}  {result.wall_s:.1f} s, {result.peak_rss_mb:.0f} MB"
    if result.status == "failed":
        return f"{head}  {result.error}"
    return head + "  (up to date)"


def cli_verbosity(ctx: click.Context) -> int:
    """-1 with -q, 0 by default, the number of -v otherwise (recorded by cli.options)."""
    root = ctx.find_root()
    return int((root.obj or {}).get("verbosity", 0))


def live_wanted(ctx: click.Context, no_progress: bool) -> bool:
    """The live display: on a terminal, unless --no-progress or -q."""
    from ..console import is_terminal

    return is_terminal() and not no_progress and cli_verbosity(ctx) >= 0


def progress_display(ctx: click.Context, label: str, no_progress: bool, as_json: bool):
    """The :class:`RunProgress` for one pipeline run (no plain lines with --json)."""
    live = live_wanted(ctx, no_progress)
    return RunProgress(
        label, live=live, verbosity=-1 if (as_json and not live) else cli_verbosity(ctx)
    )
