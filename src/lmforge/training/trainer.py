"""The HF Trainer with perplexity in its logs, and a callback that writes a log a person can read."""

import math
import time
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def add_perplexity(logs: dict[str, float]) -> dict[str, float]:
    """`loss` -> `perplexity` and `eval_loss` -> `eval_perplexity` (exp of the mean token NLL), in place."""
    for loss_key, ppl_key in (("loss", "perplexity"), ("eval_loss", "eval_perplexity")):
        if loss_key in logs and ppl_key not in logs:
            logs[ppl_key] = math.exp(min(logs[loss_key], 50.0))
    return logs


class LmforgeTrainer(Trainer):
    """`Trainer` whose logged and returned metrics carry perplexity next to every loss."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(add_perplexity(logs), start_time)


class LogFileCallback(TrainerCallback):
    """Appends one readable line per log event to `<output_dir>/train.log` (main process only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.start = time.monotonic()

    def _write(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self._write(f"start: {state.max_steps} steps, output in {args.output_dir}")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()]
        elapsed = time.monotonic() - self.start
        self._write(f"step {state.global_step}/{state.max_steps} [{elapsed:.0f}s] " + " ".join(parts))


__all__ = ["LmforgeTrainer", "LogFileCallback", "add_perplexity"]
