"""Which int8 weight range suits this CPU, chosen from its instruction set.

ONNX Runtime's int8 matrix products (MLAS) pick their kernel from CPUID when the library loads;
dynamic quantization feeds them uint8 activations and int8 weights:

- AVX-512 VNNI or AVX-VNNI (``vpdpbusd``): four u8 x s8 products summed straight into 32 bits,
  nothing clips: full 8-bit weights.
- AVX2, or AVX-512 without VNNI: ``vpmaddubsw`` adds two u8 x s8 products into a *saturating*
  16-bit lane (255 * 127 * 2 = 64,770 > 32,767), so a large activation meeting large weights
  clips. ONNX Runtime's quantization guide names two cures: ``reduce_range`` (7-bit weights:
  255 * 64 * 2 = 32,640 fits) or uint8 weights (a kernel that widens to 16 bits first, about
  half the speed). 7-bit weights keep the fast kernel, at a little precision.
- anything else (SSE-only x86, ARM's dot-product instructions): no saturating step; full range.

Measured on MiniLM (bench/onnx_int8_steps.py; AVX2 kernels through bench/avx2_only.py): mean
cosine to torch 0.9937 with 8-bit weights on VNNI, 0.9915 with 8-bit on AVX2 (saturated),
0.9915 with 7-bit on either: 7-bit weights give the same vectors on every x86 kernel.

The choice is part of the export cache key, so a cache shared between machines holds one
export per kind of CPU.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

FLAGS_VARIABLE = "LLMOPS_CPU_FLAGS"
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# numpy's names for the flags that matter here, where /proc/cpuinfo is missing (macOS, Windows)
_NUMPY_NAMES = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni"}


@dataclass(frozen=True)
class Int8Mode:
    """How weights are quantized for one kind of CPU."""

    name: str  # part of the export cache key
    reduce_range: bool  # 7-bit weights
    reason: str


VNNI = Int8Mode("s8", False, "VNNI sums u8 x s8 products in 32 bits: full 8-bit weights")
AVX2 = Int8Mode(
    "s8-7bit",
    True,
    "AVX2 without VNNI sums pairs of u8 x s8 products in saturating 16 bits: 7-bit weights "
    "cannot overflow (ONNX Runtime's advice for non-VNNI x86)",
)
PORTABLE = Int8Mode("s8", False, "no saturating 16-bit step on this CPU: full 8-bit weights")


def int8_mode(flags: Collection[str]) -> Int8Mode:
    """The weight range for a CPU with these flags (``/proc/cpuinfo`` names, lower case)."""
    if VNNI_FLAGS & set(flags):
        return VNNI
    if "avx2" in flags:  # AVX-512 without VNNI takes the same pairwise 16-bit kernel
        return AVX2
    return PORTABLE


def cpu_flags() -> frozenset[str]:
    """This CPU's flags: ``$LLMOPS_CPU_FLAGS`` (space-separated, to export for another kind of
    machine), else Linux's ``/proc/cpuinfo``, else numpy's run-time CPU detection."""
    override = os.environ.get(FLAGS_VARIABLE)
    if override is not None:
        return frozenset(override.lower().split())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return _numpy_flags()


def _numpy_flags() -> frozenset[str]:
    try:  # numpy's dispatcher reads CPUID at import; the table is not public API
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        return frozenset()
    return frozenset(name for key, name in _NUMPY_NAMES.items() if features.get(key))
