"""Human judgements of two outputs: the JSON-lines preference file the demo writes, and win rates with confidence.

Each line of the file is one judgement: `prompt`, `chosen` and `rejected` (the two texts), `chosen_by` and
`rejected_by` (what produced each: a strategy or a model), and `time` (UTC, ISO 8601). It loads with
`datasets.load_dataset("json", data_files=FILE)` and is the data of `lmforge dpo` (TRL's prompt / chosen / rejected
format). Each judgement is appended, flushed and fsynced before the page answers, so a crash loses none.

`win_rates` counts, for each pair of systems, how often each one was chosen, with a binomial confidence interval for
the win rate: the Wilson score interval of `scipy.stats.binomtest` (`pip install "lmforge[feedback]"`).
"""

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import LmforgeError

FIELDS = ("prompt", "chosen", "rejected", "chosen_by", "rejected_by")
_LOCK = threading.Lock()


def append_judgement(path: str | Path, judgement: Mapping[str, Any]) -> dict[str, Any]:
    """Append one judgement (the `FIELDS`, plus any extra keys) as a JSON line; flushed and fsynced. Returns it."""
    missing = [key for key in FIELDS if not isinstance(judgement.get(key), str)]
    if missing:
        raise LmforgeError(f"a judgement needs text for {', '.join(missing)}")
    record = {key: judgement[key] for key in FIELDS}
    record.update({key: value for key, value in judgement.items() if key not in record})
    record.setdefault("time", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record


def read_judgements(path: str | Path) -> list[dict[str, Any]]:
    """The judgements of a preference file; a missing file or a malformed line is one sentence naming it."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"preference file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise LmforgeError(f"{path} line {number} is not JSON; each line must be one judgement") from None
        if not isinstance(record, dict) or any(not isinstance(record.get(key), str) for key in FIELDS[:3]):
            raise LmforgeError(f"{path} line {number} needs prompt, chosen and rejected texts")
        records.append(record)
    if not records:
        raise LmforgeError(f"{path} holds no judgements yet")
    return records


@dataclass
class WinRate:
    """System `a` against system `b`: `wins` of `a` in `total` judgements, and the confidence interval of its win
    rate."""

    a: str
    b: str
    wins: int
    total: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.wins / self.total


def wilson_interval(wins: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (scipy's `binomtest(...).proportion_ci`)."""
    try:
        from scipy.stats import binomtest
    except ImportError:
        raise LmforgeError('win-rate intervals need scipy: pip install "lmforge[feedback]"') from None
    interval = binomtest(wins, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def win_rates(records: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[WinRate]:
    """One `WinRate` per pair of systems (ordered by name, `a` first), from the judgements' `chosen_by` /
    `rejected_by` (a judgement without them counts as "chosen" against "rejected")."""
    counts: dict[tuple[str, str], list[int]] = {}
    for record in records:
        winner, loser = str(record.get("chosen_by") or "chosen"), str(record.get("rejected_by") or "rejected")
        a, b = sorted((winner, loser))
        tally = counts.setdefault((a, b), [0, 0])
        tally[0] += winner == a and winner != loser
        tally[1] += 1
    rates = []
    for (a, b), (wins, total) in sorted(counts.items()):
        low, high = wilson_interval(wins, total, confidence)
        rates.append(WinRate(a, b, wins, total, low, high))
    return rates


def report(path: str | Path, confidence: float = 0.95) -> str:
    """The text `lmforge eval-report FILE` prints: one line per pair of systems."""
    records = read_judgements(path)
    lines = [f"{len(records)} judgements in {path}; win rate of A against B, {confidence:.0%} Wilson interval"]
    for rate in win_rates(records, confidence):
        lines.append(
            f"{rate.a} vs {rate.b}: {rate.a} wins {rate.wins}/{rate.total} = {rate.rate:.1%} "
            f"[{rate.low:.1%}, {rate.high:.1%}]"
        )
    return "\n".join(lines)


__all__ = ["FIELDS", "WinRate", "append_judgement", "read_judgements", "report", "wilson_interval", "win_rates"]
