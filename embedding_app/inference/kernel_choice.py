"""Choose by measurement on this CPU, not by assumption: each matrix multiplication's kernel and QUANTIZE=true's mode.

Which kernel wins depends on the CPU. One core, all-MiniLM-L6-v2's shapes: on AMD Zen 5 the pre-packed oneDNN fp32
GEMM ran 2.3x F.linear (MKL), on Zen 3 0.9x; bf16 is 2x fp32 where the CPU has it and 5-10x slower where it is
emulated. So each worker times the candidates on the model's own shapes and a real-text probe at load.
"""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .prepacked_linear import PrepackedLinear

log = logging.getLogger(__name__)
PROBE_TEXTS = (Path(__file__).parent / "data" / "probe.txt").read_text(encoding="utf-8").splitlines()
# The mode probe embeds its texts one per call (queries: a new row count each) and then PROBE_COPIES copies of them
# as one batch (about 2300 tokens, like a request of 32 texts). Their one batch of ~290 tokens alone overstated int8
# against fp32 on every class measured (oneDNN's AVX-512 kernels without VNNI: 1.3x there, 0.88-0.92x over HTTP).
PROBE_COPIES = 8
ROUNDS = 4
# The modes' probes run in turn up to this many times (fewer once later rounds could not change the choice), and a
# mode's speed is the median of its rounds against the first mode's in the same round: noise that hits one call (a
# probe call takes 0.3 s on a Zen 5 core, 1.3 s on a Zen 3's) does not decide. On a real Zen 3, int8 against fp32
# per round swung 0.95-1.80x over 12 rounds, and the best of two calls each once timed int8 at 0.98x fp32 at a start
# (fp32 served); the median of any five rounds in a row stayed within 1.07-1.43x (BENCHMARKS.md, "The mode probe in
# paired rounds").
MODE_ROUNDS = 5
# A candidate whose first timed call takes this many times the fastest one's is not timed further.
CUTOFF = 3.0
# Faithful means every probe text's vector keeps at least this cosine to fp32's (the tests hold modes to it), or
# every reranker score stays within 1 - MIN_COSINE of fp32's.
MIN_COSINE = 0.999
# Faithful modes within 5 % of the fastest one's probe speed count as equally fast: the most faithful of them is
# served, e.g. fp32 over int8 where int8 probes 4 % faster. 3 % (the probe's own noise on a quiet machine) was too
# tight: on AVX-512 without VNNI the probe timed int8 3.6-5.3 % ahead of fp32, and fp32 served 0-11 % more texts/s
# over HTTP. 10 % was too loose on a real Zen 3: int8 ran 1.10-1.31x fp32 on traffic, its probe ratio swung 1.07-1.34
# and fp32 won two starts in five (BENCHMARKS.md, "AMD Zen 3, measured").
NEAR_TIE = 0.95
# Another kernel replaces fused oneDNN only if it is this much faster on the probe's rows. With AVX-512 the GELU apart
# tied fused oneDNN at 290 rows (1.414 against 1.410 ms) and lost at 2300 (11.9 against 11.2): a tie goes to fused.
# Clear wins still count: the GELU apart on AVX2 (0.86x fused's time), F.linear where oneDNN is slow (Zen 3: 0.9x).
KERNEL_TIE = 0.97


@dataclass
class Choice:
    """What the worker runs and why: the mode, each matrix multiplication's kernel, the probe's figures."""

    mode: str
    kernels: dict[str, str] = field(default_factory=dict)  # layer shape -> a PrepackedLinear kernel name, or int8's
    tokens_per_second: dict[str, float] = field(default_factory=dict)  # mode -> probe tokens/s (measured)
    min_cosine: dict[str, float] = field(default_factory=dict)  # mode -> probe's agreement with fp32 (agreement())
    threads: int = 0  # the torch threads the probe ran at (0: not recorded)
    # int8: each Linear's input columns kept fp32 (by module name), calibrated once: later starts skip calibrating.
    outliers: dict[str, list[int]] = field(default_factory=dict)
    cached: bool = False

    def summary(self) -> str:
        """One line for the log: the probe's figures and the kernels."""
        speeds = ", ".join(f"{mode} {speed:.0f} tok/s (min cos {self.min_cosine.get(mode, 1.0):.5f})"
                           for mode, speed in self.tokens_per_second.items())
        kernels = ", ".join(f"{shape} {kernel}" for shape, kernel in self.kernels.items())
        where = ("cached probe" if self.cached else "probe") + (
            f" at {self.threads} thread{'s' if self.threads > 1 else ''}" if self.threads else "")
        return f"{where}: {speeds or 'one mode, not timed'}; kernels: {kernels or 'module defaults'}"


def best_times(calls: dict[str, Callable[[], object]], rounds: int = ROUNDS, warm_up: bool = True) -> dict[str, float]:
    """Best seconds of each call, alternating between them so that machine noise hits all alike (warm_up: after one
    untimed call each; the first timed call only decides which calls are timed further)."""
    for call in calls.values() if warm_up else ():  # one-off set-up (oneDNN primitives, MKL buffers) is not speed
        call()
    return {name: min(times) for name, times in _rounds(calls, rounds + 1).items()}


def paired_times(calls: dict[str, Callable[[], object]], rounds: int = MODE_ROUNDS,
                 margin: float = NEAR_TIE) -> dict[str, float]:
    """Typical seconds of each call: the first call's median round times the median of its ratio to it per round."""
    # Calls run in turn for up to rounds, fewer once no later round could change which run within margin of which
    # one's speed; a call > CUTOFF x the fastest runs once.
    times = _rounds(calls, rounds, lambda times: _settled(_ratios(times), rounds, margin))
    ratios = _ratios(times)
    typical = statistics.median(times[next(iter(ratios))])  # the first call timed in every round
    return {name: typical * statistics.median(ratios[name]) if name in ratios else seconds[0]
            for name, seconds in times.items()}


def _ratios(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per call timed in every round so far, its seconds over the first such call's, round by round."""
    done = max(map(len, times.values()))
    paired = {name: seconds for name, seconds in times.items() if len(seconds) == done}
    base = next(iter(paired.values()))
    return {name: [t / b for t, b in zip(seconds, base)] for name, seconds in paired.items()}


def _settled(ratios: dict[str, list[float]], rounds: int, margin: float) -> bool:
    """Whether every pair of calls is ordered beyond margin whatever the rounds left bring (bounds of the medians)."""
    # With done of rounds known, the final median lies between the known ratios of ranks done - (rounds - low) and
    # high, whatever the others turn out to be (low, high: the median's ranks, equal when rounds is odd).
    done, low, high = len(next(iter(ratios.values()))), (rounds + 1) // 2, rounds // 2 + 1
    if done - (rounds - low) < 1 or done < high:
        return False
    ordered = {name: sorted(values) for name, values in ratios.items()}
    bounds = {name: (values[done - (rounds - low) - 1], values[high - 1]) for name, values in ordered.items()}
    # a runs within margin of b's speed when its ratio <= b's / margin: settled when no bound straddles that.
    return all(bounds[a][1] <= bounds[b][0] / margin or bounds[a][0] > bounds[b][1] / margin
               for a in bounds for b in bounds if a != b)


def _rounds(calls: dict[str, Callable[[], object]], rounds: int,
            settled: Callable[[dict[str, list[float]]], bool] = lambda times: False) -> dict[str, list[float]]:
    """Seconds of each call per round, calls in turn, until rounds or settled; one > CUTOFF x the fastest runs once."""
    first = {name: _seconds(call) for name, call in calls.items()}
    fastest = min(first.values())
    times = {name: [seconds] for name, seconds in first.items()}
    timed = {name: call for name, call in calls.items() if first[name] <= CUTOFF * fastest}
    for _ in range(rounds - 1):
        if settled(times):
            break
        for name, call in timed.items():
            times[name].append(_seconds(call))
    return times


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def choose_kernels(layers: list, rows: int) -> dict[str, str]:
    """Per distinct shape, the fastest of its layers' kernels on rows x in_features inputs (near ties: fused oneDNN)."""
    groups: dict[str, list] = {}
    kernels = {layer.shape: layer.kernel for layer in layers if layer.kernel}  # fixed ones (int8), for the record
    for layer in layers:
        if isinstance(layer, PrepackedLinear) and layer.prepacked:  # only a layer that can run both ways has a choice
            groups.setdefault(layer.shape, []).append(layer)
    for shape, same in groups.items():
        times = _kernel_times(same[0], rows)
        fastest, first = min(times, key=times.get), next(iter(times))
        kernels[shape] = fastest if times[fastest] < KERNEL_TIE * times[first] else first
        use_kernels(same, kernels)
    return kernels


def _kernel_times(layer, rows: int) -> dict[str, float]:
    """Best seconds of each of the layer's kernels on about rows x in_features inputs, a new row count every call."""
    states = torch.randn(rows, layer.weight.shape[1], generator=torch.Generator().manual_seed(0))
    states = states.to(layer.weight.dtype)
    with torch.inference_mode():
        return best_times({name: _new_rows(kernel, states) for name, kernel in layer.candidates().items()})


def _new_rows(kernel: Callable[[torch.Tensor], object], states: torch.Tensor) -> Callable[[], object]:
    """A call running kernel on one row fewer of states each time, as requests come with new row counts."""
    # oneDNN builds a kernel per new row count (on a Zen 3 0.4-6 ms at 90-2300 rows, up to 3x the GEMM of one text);
    # F.linear does not. Timing one row count again and again hid that cost and kept oneDNN where F.linear was faster.
    fewer = itertools.count()
    return lambda: kernel(states[:max(1, len(states) - next(fewer))])


def use_kernels(layers: list, kernels: dict[str, str]) -> None:
    """Make every pre-packed layer run the kernel chosen for its shape."""
    for layer in layers:
        if isinstance(layer, PrepackedLinear) and layer.prepacked and layer.shape in kernels:
            layer.use(kernels[layer.shape])


def agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """How close outputs are to fp32's: the lowest row cosine of vectors, or 1 - the largest difference of scores."""
    if outputs.ndim == 1:  # reranker scores (a sigmoid's 0..1 by default)
        return 1.0 - float(np.abs(outputs - reference).max())
    dots = np.sum(outputs * reference, axis=1)
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
    return float((dots / norms.clip(min=1e-12)).min())


def measure_modes(runs: dict[str, Callable[[], object]], tokens: int,
                  checks: dict[str, Callable[[], np.ndarray]]) -> tuple[dict[str, float], dict[str, float]]:
    """Probe tokens/s of each mode's run, and the agreement of its check's outputs with fp32's (1.0 for fp32)."""
    for check in checks.values():  # one-off set-up (the int8 loop's compiled code, MKL buffers) is no mode's speed
        check()
    times = paired_times(runs)
    speeds = {mode: tokens / seconds for mode, seconds in times.items()}
    reference = checks["fp32"]() if "fp32" in checks else None
    fidelity = {mode: 1.0 if reference is None or mode == "fp32" else agreement(check(), reference)
                for mode, check in checks.items()}
    return speeds, fidelity


def pick(speeds: dict[str, float], fidelity: dict[str, float], forced: str | None) -> str:
    """The forced mode, else the fastest mode whose vectors stay faithful to fp32 (of near ties, the most faithful)."""
    if forced:
        return forced
    faithful = [mode for mode in speeds if fidelity[mode] >= MIN_COSINE]
    fastest = max(speeds[mode] for mode in faithful)
    return max((mode for mode in faithful if speeds[mode] >= NEAR_TIE * fastest), key=lambda mode: fidelity[mode])
