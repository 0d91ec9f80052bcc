"""int8 weights for the faithful int8 layer: symmetric per output channel, at full 8 bits or limited in pairs.

Without VNNI, x86 int8 kernels (oneDNN's AVX2 one among them) multiply u8 activations by s8 weights with
vpmaddubsw, which adds the products of adjacent input columns (2k, 2k + 1) in int16 and saturates. 8-bit activations
stay exact if, in every output row, the positive (and the negative) weights of each adjacent pair sum to at most 128
in magnitude: 255 * 128 < 2**15. "Paired" weights scale each row to that bound (about 7.7 bits on all-MiniLM-L6-v2)
and move the input columns where the bound binds most to the fp32 side GEMM, one in EXTRA_SHARE. Measured on
all-MiniLM-L6-v2 (BENCHMARKS.md, "Without VNNI: paired weights"): min cosine 0.9994 to fp32, where 7-bit activations
reach 0.9984 and 7-bit weights 0.9982.
"""

from __future__ import annotations

import torch

FULL, PAIRED = "full", "paired"
LEVELS = 127  # weights in -127..127 (symmetric, so -128 never occurs)
PAIR_LIMIT = 127  # same-sign pair sums before rounding; rounding adds at most 1, which keeps them <= 128
EXTRA_SHARE = 16  # paired: K // 16 more fp32 columns (24 of 384, 96 of 1536; fewer gave mean cosine < 0.9997)


def quantize_weight(main: torch.Tensor, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weights and their fp32 scale per output row, for scheme FULL or PAIRED."""
    scale = main.abs().amax(dim=1) / LEVELS
    if scheme == PAIRED:
        scale = torch.maximum(scale, pair_sums(main).amax(dim=1) / PAIR_LIMIT)
    scale = scale.clamp_(min=1e-30)
    return torch.round(main / scale[:, None]).clamp_(-LEVELS, LEVELS).to(torch.int8), scale


def pair_sums(main: torch.Tensor) -> torch.Tensor:
    """Per row and adjacent column pair (2k, 2k + 1), the larger of its positive and its negative magnitude sums."""
    even = main.shape[1] - main.shape[1] % 2
    first, second = main[:, 0:even:2], main[:, 1:even:2]
    positive = first.clamp(min=0) + second.clamp(min=0)
    return torch.maximum(positive, (first.abs() + second.abs()) - positive)


def binding_columns(main: torch.Tensor, count: int) -> list[int]:
    """Greedily, the count input columns whose removal most loosens the pair bound (main's copy is zeroed in)."""
    main, chosen = main.clone(), []
    sums = pair_sums(main)
    (worst, pair), peak = sums.max(dim=1), main.abs().amax(dim=1)
    for _ in range(count):
        rows = torch.nonzero(worst > peak).flatten()  # rows whose scale the pair bound sets
        if len(rows) == 0:
            break
        left, right = main[rows, 2 * pair[rows]].abs(), main[rows, 2 * pair[rows] + 1].abs()
        columns = torch.where(left >= right, 2 * pair[rows], 2 * pair[rows] + 1)
        column = int(torch.bincount(columns, minlength=main.shape[1]).argmax())  # the larger half most often
        chosen.append(column)
        # Zeroing one column changes one pair's sums and the peaks it held: update only those rows (load time).
        held = main[:, column].abs() == peak
        main[:, column] = 0.0
        peak[held] = main[held].abs().amax(dim=1)
        if column // 2 < sums.shape[1]:
            first = column - column % 2
            sums[:, column // 2] = pair_sums(main[:, first:first + 2])[:, 0]
            moved = pair == column // 2
            worst[moved], pair[moved] = sums[moved].max(dim=1)
    return chosen
