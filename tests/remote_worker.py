"""One shared interpreter without lmforge, for every check of a saved folder loaded as remote code.

A folder must load and generate with `trust_remote_code=True` where lmforge is not installed. Starting a fresh
interpreter for each such check costs an import of torch and transformers every time, so the test session starts
one worker (on first use) in which `import lmforge` fails, and sends it jobs over a pipe, one JSON line each:

- `run_checks(folder, kind, target)`: the model-contract checks named by `target` ("module:attribute", e.g.
  "tests.models.contract:CAUSAL_CHECKS") on the folder loaded as remote code; "ok" or the traceback per check;
- `run_script(code, cwd)`: a Python script, run as `python -c code` would run it (its own globals, `cwd` as the
  working directory), with its stdout, stderr and exit code (0, 1 on an exception, or its `SystemExit` code).

This module imports only the standard library at the top and never lmforge: the worker imports it too. Nothing a
job prints to the real stdout can corrupt the protocol, which runs on its own duplicate of the original stdout.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = (
    "import sys; sys.modules['lmforge'] = None; "
    f"sys.path.insert(0, {str(REPO_ROOT)!r}); "
    "from tests.remote_worker import serve; serve()"
)


# --------------------------------------------------------------------------------------------------------------------
# The worker side


def _run_checks(job: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from tests.models.contract import Case, run_all

    module_name, attribute = job["target"].split(":")
    checks = getattr(importlib.import_module(module_name), attribute)
    case = Case(Path(job["folder"]), job["case_kind"], trust_remote_code=True)
    probe = case.load()
    if not type(probe).__module__.startswith("transformers_modules"):
        raise AssertionError(f"not loaded as remote code: {type(probe).__module__}")
    return {"results": run_all(case, checks)}


def _run_script(job: dict[str, Any]) -> dict[str, Any]:
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    previous = os.getcwd()
    os.chdir(job["cwd"])
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                exec(compile(job["code"], "<script>", "exec"), {"__name__": "__main__"})
            except SystemExit as stop:
                code = stop.code
                returncode = code if isinstance(code, int) else (0 if code is None else 1)
                if not isinstance(code, int | None):
                    print(code, file=sys.stderr)
            except BaseException:
                returncode = 1
                traceback.print_exc()
    finally:
        os.chdir(previous)
    return {"returncode": returncode, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def serve() -> None:
    """The worker's loop: one JSON job per line on stdin, one JSON answer per line on the protocol channel."""
    try:
        import lmforge  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("lmforge must not be importable in the remote-code worker")
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what libraries print goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(1)
    from tests.break_cache import plant_if_asked

    plant_if_asked()
    for line in sys.stdin:
        job = json.loads(line)
        try:
            answer = _run_checks(job) if job["type"] == "checks" else _run_script(job)
        except BaseException:
            answer = {"error": traceback.format_exc()}
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


# --------------------------------------------------------------------------------------------------------------------
# The test-process side


class RemoteCodeWorker:
    """The client: starts the worker on first use, restarts it after a crash or a timeout."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115  (closed in close())
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        if self.process is None or self.process.poll() is not None:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
            env["TOKENIZERS_PARALLELISM"] = "false"
            self.process = subprocess.Popen(
                [sys.executable, "-c", BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                text=True,
                env=env,
                cwd=REPO_ROOT,
            )
        return self.process

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def request(self, job: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        with self.lock:
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            answer: list[str] = []
            reader = threading.Thread(target=lambda: answer.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
            reader.start()
            reader.join(timeout)
            if not answer or not answer[0]:
                process.kill()
                process.wait()
                why = f"timed out after {timeout} s" if not answer else f"exited with {process.returncode}"
                raise RuntimeError(f"the remote-code worker {why}:\n{self._log_tail()}")
        result = dict(json.loads(answer[0]))
        if "error" in result:
            raise RuntimeError(f"the remote-code worker could not run the job:\n{result['error']}")
        return result

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


_WORKER: RemoteCodeWorker | None = None


def worker() -> RemoteCodeWorker:
    global _WORKER
    if _WORKER is None:
        _WORKER = RemoteCodeWorker()
        atexit.register(_WORKER.close)
    return _WORKER


def run_checks(folder: Path, kind: str, target: str, timeout: float = 600) -> dict[str, str]:
    """The contract checks `target` on `folder` as remote code, in the shared worker: "ok" or a traceback each."""
    job = {"type": "checks", "folder": str(folder), "case_kind": kind, "target": target}
    return dict(worker().request(job, timeout)["results"])


def run_script(code: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`code` run in the shared worker (no lmforge), as `subprocess.run([python, "-c", code], cwd=cwd)` would."""
    answer = worker().request({"type": "script", "code": code, "cwd": str(cwd)}, timeout)
    return subprocess.CompletedProcess(
        ["<remote-code worker>"], answer["returncode"], answer["stdout"], answer["stderr"]
    )
