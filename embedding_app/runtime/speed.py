"""Each served model's measured speed in this worker: what admission estimates a request's time from."""

from __future__ import annotations

# Smaller requests are mostly fixed costs (parsing, tokenizing, rendering): they would overstate the time per token.
MEASURED_TOKENS_MIN = 1024
_seconds_per_token: dict[str, float] = {}  # per served model, measured in this worker


def record_speed(model: str, tokens: int, seconds: float) -> None:
    """Fold a request's (or a warm-up's) measured speed into this worker's estimate for the model."""
    if tokens >= MEASURED_TOKENS_MIN and seconds > 0:
        previous = _seconds_per_token.get(model)
        current = seconds / tokens
        _seconds_per_token[model] = current if previous is None else 0.7 * previous + 0.3 * current


def seconds_per_token(model: str) -> float | None:
    """The model's estimated seconds per token here, or None before anything was measured."""
    return _seconds_per_token.get(model)
