"""Shared palettes on a Dask cluster: a thin adapter that only schedules library functions.

The stages of :mod:`kmcodec.shared_batch` run as Dask tasks:

1. map: :func:`kmcodec.shared_batch.file_histogram` per input, at most one
   per worker thread in flight (a new one is submitted as one finishes);
2. reduce: finished histograms are merged on the workers
   (:meth:`kmcodec.ColourHistogram.merge`) in a tree of fan-in
   ``MERGE_FAN_IN`` that grows as results arrive: only histograms of the
   same level merge, so each colour is sorted about log_F(inputs) times
   rather than once per input; the client holds futures, never histograms;
3. fit: :func:`kmcodec.shared.fit_histogram` on a worker; only the palette
   comes back;
4. map: :func:`kmcodec.batch.encode_file` per job (via the batch's
   per-job wrapper), at most ``LABEL_TASKS_PER_SLOT`` per worker thread in
   flight (results are small summaries, so a queued task costs nothing and
   hides the round trip to the client).

Inputs and outputs are paths every worker must reach (a shared file system):
the client makes them absolute, so every worker must see them at the same
absolute path.
A task that raises is reported as its input's failure, as in the batch.
Importing this module needs ``dask.distributed`` (``pip install 'kmcodec[dask]'``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import dask
from distributed import Client, LocalCluster, as_completed

from . import batch
from .batch import EncodeOptions, Job, Outcome, error_text
from .choose_k import FitSettings
from .errors import KmqError, OutputError
from .shared import ColourHistogram, fit_histogram
from .shared_batch import SharedFit, file_histogram

# Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT = 30
LABEL_TASKS_PER_SLOT = 2
MERGE_FAN_IN = 8
# Settings of the cluster `--scheduler local` makes. distributed sets
# MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's dynamic mmap
# threshold: every large numpy temporary is then a fresh mmap and its page
# faults, about a quarter of the map and label time here. The statistical
# profiler samples every worker thread 100 times a second; nobody reads it.
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


def connect(scheduler: str, *, workers: int = 1) -> Client:
    """A client of the scheduler at `scheduler`, or of a new local cluster of `workers` processes for 'local'."""
    try:
        if scheduler == "local":
            with dask.config.set(LOCAL_CLUSTER_CONFIG):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            return Client(cluster)
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise OutputError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None


def close(client: Client) -> None:
    """Close the client, and the cluster too when it made one (`connect(..., 'local')`)."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def worker_count(client: Client) -> int:
    """Task slots on the cluster: its worker threads."""
    return max(1, sum(client.nthreads().values()))


def _failure(future) -> str:
    try:
        future.result()
    except Exception as exc:
        return error_text(exc)
    return "internal error: task failed"


def map_reduce(client: Client, paths: Sequence[Path], *, frames: bool = False):
    """Stages 1-2: (future of the merged histogram or None, failures per input, seconds per stage)."""
    slots = worker_count(client)
    queue = list(reversed(paths))
    errors: dict[Path, str] = {}
    source: dict = {}  # map future -> its input
    levels: dict[int, list] = {}  # level -> finished histogram futures waiting to merge
    level_of: dict = {}  # merge future -> its level (inputs are level 0)
    started = time.perf_counter()
    mapped = started
    pending = as_completed()

    def submit_map() -> None:
        path = queue.pop()
        future = client.submit(file_histogram, path.absolute(), frames, pure=False)
        source[future] = path
        pending.add(future)

    for _ in range(min(slots, len(queue))):
        submit_map()
    running_maps = len(source)
    for future in pending:
        path = source.pop(future, None)
        if path is not None:
            running_maps -= 1
            if queue:
                submit_map()
                running_maps += 1
            if running_maps == 0 and not queue:
                mapped = time.perf_counter()
        if future.status != "finished":
            if path is None:
                raise KmqError(f"merging histograms failed on the cluster: {_failure(future)}")
            errors[path] = _failure(future)
            continue
        level = level_of.pop(future, 0)
        group = levels.setdefault(level, [])
        group.append(future)
        if len(group) == MERGE_FAN_IN:
            merged = client.submit(ColourHistogram.merge, levels.pop(level))
            level_of[merged] = level + 1
            pending.add(merged)
    rest = [f for level in sorted(levels) for f in levels[level]]
    total = None
    if rest:
        total = rest[0] if len(rest) == 1 else client.submit(ColourHistogram.merge, rest)
        total.result()  # raises if the last merge failed
    finished = time.perf_counter()
    return total, errors, {"map": mapped - started, "reduce": finished - mapped}


def fit_files(client: Client, paths: Sequence[Path], k: int, settings: FitSettings, *, frames: bool = False) -> SharedFit:
    """Stages 1-3 on the cluster: one palette for every readable input."""
    total, errors, seconds = map_reduce(client, paths, frames=frames)
    started = time.perf_counter()
    fit = None
    if total is not None:
        fit = client.submit(
            fit_histogram, total, k, seed=settings.seed, n_init=settings.n_init, max_iter=settings.max_iter, tol=settings.tol
        ).result()
    return SharedFit(fit, errors, {**seconds, "fit": time.perf_counter() - started})


def runner(client: Client) -> Callable[..., list[Outcome]]:
    """Stage 4 on the cluster, with the signature of :func:`kmcodec.batch.run`."""

    def run(jobs: Sequence[Job], options: EncodeOptions, *, workers: int = 1, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        slots = worker_count(client) * LABEL_TASKS_PER_SLOT
        remote_options = client.scatter(options, broadcast=True)  # the palette travels once per worker
        outcomes: dict[int, Outcome] = {}
        index: dict = {}
        pending = as_completed()
        queue = list(reversed(range(len(jobs))))

        def submit() -> None:
            i = queue.pop()
            job = jobs[i]
            remote_job = Job(job.input.absolute(), job.output.absolute(), job.frame)
            future = client.submit(batch._run_one, remote_job, remote_options, pure=False)
            index[future] = i
            pending.add(future)

        for _ in range(min(slots, len(queue))):
            submit()
        for future in pending:
            i = index.pop(future)
            if queue:
                submit()
            if future.status == "finished":
                done = future.result()
                # Report the paths as the user gave them, not the absolute ones the workers used.
                summary = None if done.summary is None else {**done.summary, "input": str(jobs[i].input), "output": str(jobs[i].output)}
                outcome = Outcome(jobs[i], summary=summary, error=done.error)
            else:
                outcome = Outcome(jobs[i], error=_failure(future))
            outcomes[i] = outcome
            if on_done is not None:
                on_done(outcome)
        return [outcomes[i] for i in range(len(jobs))]

    return run
