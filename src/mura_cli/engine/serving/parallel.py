"""An ordered parallel map with bounded read-ahead, in worker processes, without torch.

Predict and localize decode and preprocess files here while the model works on the previous batch: results come
back in input order, and at most ``ahead`` of them wait at any time, so memory does not grow with the number of
inputs. The workers ignore Ctrl-C (the main process stops them), and a worker that dies (a decoder crash) ends
the pass with one line naming the files it may have been reading.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from mura_cli.errors import DataError

_TASK: Callable[[int], Any] | None = None


def _init(task: Callable[[int], Any]) -> None:
    global _TASK
    _TASK = task
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(i: int) -> Any:
    assert _TASK is not None
    return _TASK(i)


def ordered_map(
    task: Callable[[int], Any], n: int, workers: int, ahead: int | None = None, name: Callable[[int], str] = str
) -> Iterator[Any]:
    """``task(i)`` for ``i`` in ``range(n)``, in order: in this process when ``workers`` is 0, else in that many
    processes with at most ``ahead`` (default four per worker) results pending.

    ``task`` travels to the workers once (forked where the platform allows, else pickled). ``name(i)`` says what
    item ``i`` is, for the message when a worker dies.

    Raises:
        DataError: a worker process died (a crash in a decoder); the message names the items in flight.
    """
    if workers <= 0 or n <= 1:
        yield from (task(i) for i in range(n))
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(min(workers, n), mp_context=ctx, initializer=_init, initargs=(task,))
    pending: deque[tuple[int, Future]] = deque()
    todo = iter(range(n))
    current = 0
    try:
        for i in todo:
            pending.append((i, pool.submit(_run, i)))
            if len(pending) >= (ahead or 4 * workers):
                break
        while pending:
            current, fut = pending.popleft()
            out = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_run, nxt)))
            yield out
    except BrokenProcessPool:
        names = ", ".join(name(k) for k in [current, *(k for k, _ in pending)][:4])
        raise DataError(
            f"a decoding worker died while reading one of: {names}; find the file with --workers 0 and move it aside"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
