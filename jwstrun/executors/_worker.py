"""The worker side of the local pool: what runs inside each spawned process.

A worker ignores Ctrl-C (the parent owns it), leaves through Python on SIGTERM
(so multiprocessing's finalizers run), dies with its parent, imports the
modules it is told to warm once, then handles tasks sent over its pipe until it
is told to stop or has handled ``max_tasks`` of them.  Messages to the parent
are tuples: ``("ready", worker, pid)``, ``("step", worker, task_id, step)`` and
``("result", worker, task_id, result, retiring)``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading

from .protocol import _UnhandledError

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies (kill -9), instead of running on orphaned.

    An orphaned worker would finish its task and race a re-run for the same
    temporary directory; dying with the parent leaves only a temporary
    directory that the next run removes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before prctl took effect


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler (not by a task's own sys.exit, which is reported)."""


#: Set by the SIGTERM handler: the worker is being stopped, whatever became of the
#: _Terminated it raised (Python wraps an exception raised in a class body's
#: ``__set_name__`` into a RuntimeError, "Error calling __set_name__ ...").
_stopping = False


def _exit_on_sigterm(signum, _frame):
    global _stopping
    _stopping = True
    raise _Terminated(128 + signum)


def _terminate_again(unraisable) -> None:
    """``sys.unraisablehook`` of a worker: a _Terminated raised where Python ignores
    exceptions (a weakref callback during an import, a ``__del__``) would print
    "Exception ignored" and leave the worker running until it is killed; it is
    raised again a moment later instead, where it ends the worker."""
    if not isinstance(unraisable.exc_value, _Terminated):
        sys.__unraisablehook__(unraisable)
        return
    signal.signal(signal.SIGALRM, lambda *_: _exit_on_sigterm(signal.SIGTERM, None))
    signal.setitimer(signal.ITIMER_REAL, 0.01)


def _leave_quickly() -> None:
    """End an idle worker without the interpreter's teardown of every jwst module
    (which the parent would wait for at the end of each run).

    multiprocessing's finalizers run first (they unregister the semaphore crds
    creates at import, or the resource tracker warns of a leak); nothing else is
    pending: every result was sent and each task closed its own log file.
    """
    from multiprocessing import util

    util._exit_function()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


def _worker_main(conn, worker_id, env, warm, task_function, max_tasks):
    """Entry point of a spawned worker process."""
    # The parent owns Ctrl-C: it stops the workers itself, so a KeyboardInterrupt
    # never surfaces half-way through a pipeline step as a task "failure".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # shutdown(cancel=True) terminates workers: leave through Python so that
    # multiprocessing's finalizers unregister the semaphore crds creates at
    # import; a bare SIGTERM death makes the resource tracker print a "leaked
    # semaphore objects" warning after every Ctrl-C or failed run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.unraisablehook = _terminate_again
    _die_with_parent()
    os.environ.update(env or {})
    for module in warm or ():
        try:
            if callable(module):
                module()
            else:
                importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - the task will report it properly
            if _stopping:  # stopped during its imports: the error is the stop, not news
                raise _Terminated(128 + signal.SIGTERM) from None
            log.warning("worker could not import %s: %s", module, exc)
    send_lock = threading.Lock()

    def send(message):
        with send_lock:
            conn.send(message)

    send(("ready", worker_id, os.getpid()))
    done = 0
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if task is None:
            _leave_quickly()
        task_id = getattr(task, "task_id", None)

        def progress(tid, step, _send=send):
            _send(("step", worker_id, tid, step))

        try:
            result = task_function(task, progress)
        except _Terminated:
            raise  # terminated by the parent: nothing to report
        except BaseException as exc:  # noqa: BLE001 - report, keep the worker honest
            result = _UnhandledError(task_id, f"{type(exc).__name__}: {exc}")
        done += 1
        retiring = bool(max_tasks and done >= max_tasks)
        # The retire flag travels with the result so the parent can never
        # hand this worker another task in between.
        send(("result", worker_id, task_id, result, retiring))
        if retiring:
            return


@contextlib.contextmanager
def _main_module_importable():
    """Let spawn work when __main__ is not a file (``python -`` or ``python -c``).

    A spawned child re-imports the parent's main script by path; when that path
    does not exist (stdin) the child would die at start-up, so hide it for the
    duration of ``Process.start``.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or os.path.exists(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
