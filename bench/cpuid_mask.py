"""Run a command with ONNX Runtime dispatching as on an AVX2-only CPU (AMD Zen 2/3), on a newer one.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cpuid_mask -- .venv/bin/python -m bench.vs_onnx

torch has environment caps for this (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY), ONNX Runtime has none: its kernels
follow CPUID. This copies the onnxruntime package, replaces each CPUID instruction in its libraries (found with
objdump) by UD0, and preloads bench/cpuid_mask.c (built with the C compiler), whose SIGILL handler answers with the
real CPUID minus AVX-512, VNNI, bf16 and AMX. The command runs with the copy first on PYTHONPATH, that helper in
LD_PRELOAD and torch's AVX2 caps, so every engine in one run dispatches as on an AVX2-only CPU, on this core's
microarchitecture. Needs gcc and binutils; x86-64 Linux only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
UD0 = b"\x0f\xff"  # an undefined opcode no compiler emits: the helper knows its own patches by it
CPUID = b"\x0f\xa2"
# Every torch library's own cap: oneDNN, ATen (sleef), fbgemm (torch's dynamic int8) and MKL (already AVX2 on AMD).
TORCH_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
              "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def cpuid_offsets(library: Path) -> list[int]:
    """File offsets of every CPUID instruction in the library's executable sections."""
    sections = subprocess.run(["objdump", "-h", str(library)], capture_output=True, text=True, check=True).stdout
    # "idx name size vma lma file-offset align", e.g. " 11 .text 01bc8a24 00000000000eb5c0 ... 000eb5c0 2**6"
    row = r"^\s*\d+\s+(\S+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)"
    places = {name: (int(vma, 16), int(offset, 16)) for name, vma, offset in re.findall(row, sections, re.MULTILINE)}
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True,
                             check=True).stdout
    offsets, section = [], None
    for line in listing.splitlines():
        if line.startswith("Disassembly of section "):
            section = places[line.rsplit(" ", 1)[1].rstrip(":")]
        elif line.rstrip().endswith("\tcpuid"):
            address = int(line.split(":", 1)[0], 16)
            offsets.append(address - section[0] + section[1])
    return offsets


def patch(library: Path) -> int:
    """Replace the library's CPUID instructions by UD0 in place; how many."""
    data = bytearray(library.read_bytes())
    offsets = cpuid_offsets(library)
    for offset in offsets:
        if data[offset:offset + 2] != CPUID:
            raise RuntimeError(f"{library.name}: no CPUID at {offset:#x}")
        data[offset:offset + 2] = UD0
    library.write_bytes(bytes(data))
    return len(offsets)


def prepare(root: Path) -> dict[str, str]:
    """The environment that runs a command with a CPUID-masked onnxruntime copy under root, built once."""
    import onnxruntime

    package, helper = root / "site" / "onnxruntime", root / "cpuid_mask.so"
    if not helper.exists():
        shutil.copytree(Path(onnxruntime.__file__).parent, package, dirs_exist_ok=True)
        patched = sum(patch(library) for library in package.rglob("*.so*") if library.is_file())
        print(f"cpuid_mask: {patched} CPUID instructions patched in {package}", file=sys.stderr)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(helper), str(HERE / "cpuid_mask.c")], check=True)
    path = os.pathsep.join(filter(None, [str(root / "site"), os.environ.get("PYTHONPATH", "")]))
    preload = " ".join(filter(None, [str(helper), os.environ.get("LD_PRELOAD", "")]))
    return {**TORCH_CAPS, "PYTHONPATH": path, "LD_PRELOAD": preload, "CPUID_MASK": "avx2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-cpuid-mask-avx2",
                        help="where the patched copy and the helper are kept")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    env = {**os.environ, **prepare(args.dir)}
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
