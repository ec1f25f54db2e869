"""A lazy process pool for the CNS oracle's RDKit work; deadlines find stuck workers but never decide a verdict.

Workers are started from a ``forkserver`` (never forked from a process that has torch loaded); each imports
RDKit and loads the SA fragment table once. Strings are scored in chunks; a chunk that misses its deadline gets
the pool killed, and its strings are re-scored one at a time with a per-molecule deadline. A molecule that misses
that too is scored alone in a process of its own, waited for as long as it takes (up to ``hang_timeout``): its
record is then what RDKit computed, or "RDKit crashed" if that process died, both deterministic. Wall-clock time
never turns a molecule invalid, so a loaded machine cannot change (or cache) a verdict; the task's input bounds
keep every molecule's work under a second. Only a molecule still running after ``hang_timeout`` (an RDKit
hang) raises :class:`~morbench.errors.OracleTimeoutError`, and nothing is recorded for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.pool import AsyncResult, Pool
from typing import Any, NoReturn

from morbench.envs.cns.featurize import FeatureSpec, MoleculeRecord, _load_sascorer, process_smiles
from morbench.errors import OracleTimeoutError

__all__ = ["MoleculeFunction", "PoolJob", "RDKitPool", "default_workers"]

MoleculeFunction = Callable[[str, FeatureSpec], MoleculeRecord]

# state of a worker process, set once by the initializer
_worker_function: MoleculeFunction | None = None
_worker_spec: FeatureSpec | None = None


def _init_worker(function: MoleculeFunction, spec: FeatureSpec) -> None:
    global _worker_function, _worker_spec
    _worker_function, _worker_spec = function, spec
    _load_sascorer()


def _ready() -> bool:
    return _worker_spec is not None


def _score_chunk(smiles: list[str]) -> list[MoleculeRecord]:
    assert _worker_function is not None and _worker_spec is not None, "worker was not initialized"
    return [_worker_function(s, _worker_spec) for s in smiles]


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-importing the caller's ``__main__`` script in each of them.

    ``spawn``/``forkserver`` children normally re-run the main script's imports (slow when it imports torch, and
    fatal for a script without an ``if __name__ == "__main__":`` guard). The workers need only this module.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def default_workers() -> int:
    """One worker per core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _score_alone(connection: Connection, function: MoleculeFunction, spec: FeatureSpec, smiles: str) -> None:
    """Target of the process that scores one molecule on its own: send its record back, then exit."""
    _init_worker(function, spec)
    try:
        record = function(smiles, spec)
    except Exception as exc:
        record = MoleculeRecord(None, f"oracle worker failed: {type(exc).__name__}: {exc}")
    connection.send(record)
    connection.close()


@dataclasses.dataclass
class PoolJob:
    """Strings submitted with :meth:`RDKitPool.submit`, scored in the background; ``records`` is set by
    :meth:`RDKitPool.collect` (None until then, and for good if the job missed its deadline or its pool was
    stopped: the caller then scores the strings with :meth:`RDKitPool.map`)."""

    smiles: list[str]
    handle: AsyncResult
    processes: Pool  # the pool that runs it: a job of a stopped pool never finishes
    records: list[MoleculeRecord] | None = None


class RDKitPool:
    """Score strings with ``function(smiles, spec)`` in ``workers`` processes (``workers=0``: in this process).

    The pool starts on first use and is reused; :meth:`close` stops it (it is also stopped when the object is
    garbage collected). ``startup_timeout`` bounds the seconds a new pool may take to start, ``chunk_timeout``
    the seconds one chunk may take, ``molecule_timeout`` the seconds one molecule may take when a late chunk is
    re-scored one molecule at a time. These deadlines only find stuck work: a molecule that misses them is scored
    alone in a new process, for up to ``hang_timeout`` seconds, and gets the record that process computes (or a
    "crashed" record if it dies); past ``hang_timeout`` :class:`OracleTimeoutError` is raised. In-process
    scoring (``workers=0``) has no deadline.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        workers: int | None = None,
        *,
        function: MoleculeFunction = process_smiles,
        chunk_size: int = 64,
        chunk_timeout: float = 60.0,
        molecule_timeout: float = 10.0,
        startup_timeout: float = 60.0,
        hang_timeout: float = 300.0,
        start_method: str = "forkserver",
    ) -> None:
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be >= 0 (0 scores in this process), got {workers}")
        if chunk_size < 1 or min(chunk_timeout, molecule_timeout, hang_timeout) <= 0 or startup_timeout < 0:
            raise ValueError(
                "chunk_size must be >= 1 and the timeouts > 0; got "
                f"chunk_size={chunk_size}, chunk_timeout={chunk_timeout}, molecule_timeout={molecule_timeout}, "
                f"hang_timeout={hang_timeout}"
            )
        self.spec = spec
        self.workers = default_workers() if workers is None else int(workers)
        self.function = function
        self.chunk_size = int(chunk_size)
        self.chunk_timeout = float(chunk_timeout)
        self.molecule_timeout = float(molecule_timeout)
        self.startup_timeout = float(startup_timeout)
        self.hang_timeout = float(hang_timeout)
        self.start_method = start_method
        self.restarts = 0  # pools killed because something timed out
        self._processes: Pool | None = None  # started lazily
        self._finalizer: weakref.finalize | None = None  # terminates _processes when the pool is garbage collected
        self._grace = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._processes is not None

    def _start(self) -> Pool:
        """Start the worker processes if needed; wait until one is ready (its start-up time is the grace)."""
        if self._processes is None:
            context = multiprocessing.get_context(self.start_method)
            started = time.monotonic()
            with _main_module_hidden():
                self._processes = context.Pool(
                    self.workers, initializer=_init_worker, initargs=(self.function, self.spec)
                )
            self._finalizer = weakref.finalize(self, self._processes.terminate)
            try:
                self._processes.apply_async(_ready).get(timeout=self.startup_timeout)
            except multiprocessing.TimeoutError:
                self._kill()
                raise OracleTimeoutError(
                    f"the oracle's worker processes did not start within {self.startup_timeout:g} s; "
                    "raise startup_timeout or use workers=0"
                ) from None
            # the other workers started at the same time; give them as long again before deadlines bite
            self._grace = time.monotonic() - started
        return self._processes

    def _kill(self) -> None:
        if self._processes is not None:
            self._stop(self._processes)
            self.restarts += 1

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones). No work is outstanding between calls."""
        if self._processes is not None:
            self._stop(self._processes)

    def _stop(self, processes: Pool) -> None:
        if self._finalizer is not None:  # set together with _processes
            self._finalizer.detach()
        processes.terminate()
        processes.join()
        self._processes = None

    def __getstate__(self) -> NoReturn:
        raise TypeError("RDKitPool holds processes and cannot be pickled; the oracle recreates it after unpickling")

    # -- scoring ------------------------------------------------------------------------------------------
    def map(self, smiles: Sequence[str]) -> list[MoleculeRecord]:
        """One record per string, in order; never raises for a bad molecule."""
        smiles = list(smiles)
        if not smiles:
            return []
        if self.workers == 0:
            _load_sascorer()
            return [self.function(s, self.spec) for s in smiles]
        size = max(1, min(self.chunk_size, math.ceil(len(smiles) / (4 * self.workers))))
        queue = [list(range(i, min(i + size, len(smiles)))) for i in range(0, len(smiles), size)]
        records: list[MoleculeRecord | None] = [None] * len(smiles)
        while queue:
            late = self._run(smiles, queue, records, self.chunk_timeout)
            if not late:
                break
            # the first late chunk holds the suspect; the ones after it were merely unfinished when the pool died
            self._isolate(smiles, late[0], records)
            queue = late[1:]
        return records  # type: ignore[return-value]

    def _isolate(self, smiles: list[str], indices: list[int], records: list[MoleculeRecord | None]) -> None:
        """Re-score ``indices`` one molecule at a time; a molecule that misses its deadline is scored alone."""
        queue = [[i] for i in indices]
        while queue:
            late = self._run(smiles, queue, records, self.molecule_timeout)
            if not late:
                break
            culprit = late[0][0]
            records[culprit] = self.score_alone(smiles[culprit])
            queue = late[1:]

    def score_alone(self, smiles: str) -> MoleculeRecord:
        """Score one string in a process of its own and wait for it (up to ``hang_timeout`` seconds).

        The record is what the function computed, or an RDKit-crash record if the process died: both depend on
        the string only. A process still running after ``hang_timeout`` is killed and
        :class:`OracleTimeoutError` raised, so no verdict is recorded for the string.
        """
        context = multiprocessing.get_context(self.start_method)
        receiver, sender = context.Pipe(duplex=False)
        # get_context(str) is typed as BaseContext, which lacks Process; every concrete context has it
        process = context.Process(  # type: ignore[attr-defined]
            target=_score_alone, args=(sender, self.function, self.spec, smiles), daemon=True
        )
        with _main_module_hidden():
            process.start()
        sender.close()
        try:
            if not receiver.poll(self.hang_timeout):
                process.kill()
                raise OracleTimeoutError(
                    f"scoring SMILES {smiles[:200]!r} did not finish within {self.hang_timeout:g} s even alone in its "
                    "own process (the task's input bounds keep a molecule under a second: this is an RDKit hang); "
                    "no verdict was recorded. Report the SMILES, or raise hang_timeout"
                )
            try:
                return receiver.recv()
            except EOFError:  # the process died without answering
                process.join()
                return MoleculeRecord(
                    None, f"RDKit crashed on SMILES {smiles[:200]!r} (its process exited with code {process.exitcode})"
                )
        finally:
            receiver.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()

    def _run(
        self, smiles: list[str], chunks: list[list[int]], records: list[MoleculeRecord | None], timeout: float
    ) -> list[list[int]]:
        """Score ``chunks`` (index lists) into ``records``; return the chunks that missed their deadline (see
        :meth:`_gather`)."""
        pool = self._start()
        handles = [pool.apply_async(_score_chunk, ([smiles[i] for i in chunk],)) for chunk in chunks]
        late: list[list[int]] = []
        for chunk, results in zip(chunks, self._gather(handles, [len(c) for c in chunks], timeout), strict=True):
            if results is None:
                late.append(chunk)
                continue
            for i, record in zip(chunk, results, strict=True):
                records[i] = record
        if late:
            self._kill()
        return late

    def _gather(
        self, handles: list[AsyncResult], sizes: list[int], timeout: float
    ) -> list[list[MoleculeRecord] | None]:
        """The records of each task (None for one that missed its deadline, counted from now, or came after one
        that did).

        Tasks are taken in order by ``workers`` processes, so if each takes at most ``timeout`` seconds the
        i-th finishes by ``start + timeout * (i // workers + 1)``; missing that deadline means a hang.
        """
        start = time.monotonic() + self._grace
        self._grace = 0.0
        out: list[list[MoleculeRecord] | None] = []
        late = False
        for number, (handle, size) in enumerate(zip(handles, sizes, strict=True)):
            if not late:
                handle.wait(max(0.0, start + timeout * (number // self.workers + 1) - time.monotonic()))
            if not handle.ready():
                late = True
                out.append(None)
                continue
            try:
                out.append(handle.get())
            except Exception as exc:  # the worker raised (e.g. an injected function failed): mark the task
                out.append([MoleculeRecord(None, f"oracle worker failed: {type(exc).__name__}: {exc}")] * size)
        return out

    # -- background work ------------------------------------------------------------------------------------
    def submit(self, smiles: Sequence[str]) -> PoolJob:
        """Start scoring ``smiles`` (one task) in the background and return at once; :meth:`collect` gathers it.
        Needs ``workers >= 1``."""
        if self.workers == 0:
            raise ValueError("submit needs worker processes (workers >= 1); workers=0 scores in this process")
        processes = self._start()
        smiles = list(smiles)
        return PoolJob(smiles, processes.apply_async(_score_chunk, (smiles,)), processes)

    def collect(self, jobs: Sequence[PoolJob]) -> None:
        """Wait for submitted jobs under :meth:`map`'s chunk deadlines, counted from now, and set their records.

        A job whose pool has been stopped since, or that misses its deadline (the pool is then killed), keeps
        ``records = None``: its strings must be scored with :meth:`map`, which isolates a hang. So a job never
        decides a verdict that :meth:`map` would not."""
        waiting = [job for job in jobs if job.records is None and job.processes is self._processes]
        if not waiting:
            return
        results = self._gather(
            [job.handle for job in waiting], [len(job.smiles) for job in waiting], self.chunk_timeout
        )
        for job, records in zip(waiting, results, strict=True):
            job.records = records
        if any(records is None for records in results):
            self._kill()
