"""Dynamic batching for `lmforge serve`: concurrent requests share one `generate()` call.

Why: generating one token for 16 rows costs little more than for one row on a small model (the weights are read once
per step either way), so requests that arrive together are run together. One worker thread takes the waiting
requests, groups those with the same generation settings (up to `max_batch_size` rows whose prompts and new tokens
fit the context together), and runs them through `TextGenerator.run_batch`, the one generation layer; each row stops
on its own (end of text, its `max_tokens`, a stop string, a client that went away) and streams its own text.

What cannot share a batch: requests with different sampling settings (temperature, top_p, penalties; `generate()`
takes one config), and any request with a `seed` (torch's random generator is shared by the rows of a batch, so a
seeded request runs alone, which makes the same seed give the same text). Requests wait for the running batch to
end (no joining mid-generation: that is continuous batching, see docs/scaling.md).

Bounds: at most `max_batch_size + max_queue` requests are admitted (running or waiting); `submit` refuses the next
one with `Busy`, which the server answers with 503 and Retry-After. Every admitted request ends with its completions
or an exception set on its future: nothing is dropped silently.
"""

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .inference import BatchRequest, Completion, GenerationSettings, TextGenerator

logger = logging.getLogger("lmforge.serve")


class Busy(Exception):
    """The queue is full (or the server is stopping): the request was not admitted."""


@dataclass(eq=False)  # a job is itself: compared by identity, never field by field (its rows hold tensors)
class Job:
    """One admitted request: its rows (its `n` choices, for one or more prompts), the settings they share, and the
    future that receives one `Completion` per row. `notify` is called (from the worker thread) once it is set."""

    rows: list[BatchRequest]
    settings: GenerationSettings
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancel: threading.Event = field(default_factory=threading.Event)
    notify: Callable[[], None] | None = None

    @property
    def key(self) -> Any:
        """Jobs with equal keys can share a batch: the same settings (new tokens aside), and no seed."""
        if self.settings.seed is not None:
            return ("seeded", id(self))
        return dataclasses.replace(self.settings, max_new_tokens=1)

    def finish(self, result: list[Completion] | None = None, error: BaseException | None = None) -> None:
        if self.future.set_running_or_notify_cancel():  # False: its request was cancelled while it waited
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        if self.notify is not None:
            self.notify()


@dataclass
class BatchStats:
    """What the batcher has done, for `GET /metrics`: requests and rows, and how many rows each batch had."""

    admitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    batches: int = 0
    rows: int = 0
    largest_batch: int = 0
    waiting: int = 0
    running: int = 0
    batch_sizes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["batch_sizes"] = {str(size): count for size, count in sorted(self.batch_sizes.items())}
        return data


class Batcher:
    """The worker thread and its queue (see the module docstring)."""

    def __init__(
        self, generator: TextGenerator, max_batch_size: int = 16, max_queue: int = 16, batch_wait: float = 0.005
    ) -> None:
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.capacity = max_batch_size + max_queue
        self.batch_wait = batch_wait
        self.stats = BatchStats()
        self._pending: list[Job] = []
        self._admitted = 0
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="lmforge-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise `Busy` when `max_batch_size + max_queue` requests are already admitted."""
        with self._condition:
            if self._closed:
                raise Busy("the server is stopping")
            if self._admitted >= self.capacity:
                raise Busy("the server is busy (queue full); retry shortly")
            self._admitted += 1
            self.stats.admitted += 1
            self._pending.append(job)
            self.stats.waiting = len(self._pending)
            self._condition.notify()

    def close(self) -> None:
        """Stop the worker after its running batch; waiting requests end with `Busy`."""
        with self._condition:
            self._closed = True
            pending, self._pending = self._pending, []
            self._condition.notify()
        for job in pending:
            self._release(job, error=Busy("the server is stopping"))
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                idle_start = sum(len(job.rows) for job in self._pending) < self.max_batch_size
            if idle_start and self.batch_wait:
                time.sleep(self.batch_wait)  # requests sent together arrive a few ms apart: let them share the batch
            with self._condition:
                jobs = self._take()
            if jobs:
                self._run(jobs)

    def _take(self) -> list[Job]:
        """The oldest waiting job and the compatible ones after it that fit the batch; cancelled ones are dropped."""
        for job in [job for job in self._pending if job.cancel.is_set()]:
            self._pending.remove(job)
            self.stats.cancelled += 1
            self._release(job, error=concurrent.futures.CancelledError())
        if not self._pending:
            return []
        chosen = [self._pending[0]]
        for job in self._pending[1:]:
            rows = [row for other in [*chosen, job] for row in other.rows]
            if job.key == chosen[0].key and len(rows) <= self.max_batch_size and self._fits(rows):
                chosen.append(job)
        for job in chosen:
            self._pending.remove(job)
        self.stats.waiting = len(self._pending)
        return chosen

    def _fits(self, rows: list[BatchRequest]) -> bool:
        """A decoder's left-padded rows share one length: the longest prompt plus the most new tokens asked."""
        context = self.generator.context
        if context is None:
            return True
        width = max(int(row.encoded.inputs["input_ids"].shape[1]) for row in rows)
        return width + max(row.encoded.max_new_tokens for row in rows) <= context

    def _run(self, jobs: list[Job]) -> None:
        rows = [row for job in jobs for row in job.rows]
        self.stats.batches += 1
        self.stats.rows += len(rows)
        self.stats.batch_sizes[len(rows)] += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
        self.stats.running = len(jobs)
        try:
            completions = self.generator.run_batch(rows, jobs[0].settings)
        except Exception as err:  # one failed batch fails its requests, with the error; the worker goes on
            logger.exception("generation failed")
            for job in jobs:
                self._release(job, error=err)
        else:
            start = 0
            for job in jobs:
                self._release(job, result=completions[start : start + len(job.rows)])
                start += len(job.rows)
        finally:
            self.stats.running = 0

    def _release(self, job: Job, result: list[Completion] | None = None, error: BaseException | None = None) -> None:
        with self._condition:
            self._admitted -= 1
            if error is None:
                self.stats.completed += 1
            elif not isinstance(error, concurrent.futures.CancelledError):
                self.stats.failed += 1
        job.finish(result, error)


__all__ = ["BatchStats", "Batcher", "Busy", "Job"]
