"""Where a build's units run: in this process, in a local process pool (one process per GPU on
CUDA) or on a Dask cluster; each yields ``run_unit`` results as they finish."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from datasets.build_units import WORKER_DEVICE, WorkUnit, run_unit


def exit_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """End this process when ``parent_pid`` dies (SIGKILL of a build must not leave orphans).

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); a
    daemon thread that watches the parent id covers other systems and the race at start-up.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_seconds)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(device_queue, cpu_threads: int, parent_pid: int) -> None:
    """Pool initialiser: the worker's share of the CPU cores, and one GPU per worker on CUDA.

    Workers ignore Ctrl-C (the parent stops them and keeps what was written) and exit when the
    parent dies."""
    from datasets.kernel.drivers import set_cpu_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)
    torch.set_num_threads(1)
    set_cpu_threads(cpu_threads)
    if device_queue is not None:
        WORKER_DEVICE["device"] = device_queue.get()


def _local_results(units: list[WorkUnit], workers: int, device: str):
    """Yield ``run_unit`` results as they finish, in this process or in a spawn process pool."""
    if workers == 1:
        for unit in units:
            yield run_unit(unit)
        return
    context = multiprocessing.get_context("spawn")
    device_queue = None
    if torch.device(device).type == "cuda" and torch.device(device).index is None:
        device_queue = context.Queue()
        for gpu in range(workers):
            device_queue.put(f"cuda:{gpu % max(torch.cuda.device_count(), 1)}")
    cpu_threads = max(1, (os.cpu_count() or 1) // workers)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(device_queue, cpu_threads, os.getpid()))
    stopped = False
    try:
        pending = {executor.submit(run_unit, unit) for unit in units}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:  # Ctrl-C or an error: stop the workers now, keep what was written
        stopped = True
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        raise
    finally:
        executor.shutdown(wait=not stopped, cancel_futures=True)


def _dask_results(units: list[WorkUnit], scheduler: str):
    """Yield ``run_unit`` results computed on an existing Dask distributed cluster."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = [client.submit(run_unit, unit, pure=False) for unit in units]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)
