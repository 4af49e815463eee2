"""Run a benchmark as if on an x86 CPU with AVX2 but no AVX-512 and no VNNI.

    python bench/avx2_only.py bench/ingest.py --runs onnx_int8 reference --no-scifact

ONNX Runtime offers no setting to avoid its AVX-512 or VNNI kernels: MLAS picks them from
CPUID when the library loads. So this compiles ``bench/cpuid_avx2.c`` (gcc) and preloads it:
with Linux's CPUID faulting, every CPUID the process runs is answered without the AVX-512,
VNNI and AMX bits, and ONNX Runtime, torch (oneDNN) and numpy all choose their AVX2 kernels,
which then run natively. What it does not change: the cores themselves (an AVX2-only CPU such
as an EPYC Rome runs those kernels at its own pace), and glibc's choice of string functions,
made before the library loads (``GLIBC_TUNABLES`` below turns those off too).
``LLMOPS_CPU_FLAGS`` carries the masked flags, so llmops picks such a CPU's int8 weights and
the benchmark's ``machine()`` reports them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MASKED = ("avx512", "vnni", "amx")
GLIBC_OFF = "glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL"


def masked_flags() -> str:
    """This CPU's /proc/cpuinfo flags without those the shim hides."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            if "cpuid_fault" not in flags:
                sys.exit("this CPU (or its hypervisor) offers no CPUID faulting: cannot mask")
            return " ".join(f for f in flags if not any(m in f for m in MASKED))
    sys.exit("no /proc/cpuinfo: the shim needs Linux on x86-64")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    flags = masked_flags()
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "cpuid_avx2.so"
        subprocess.run(
            ["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(HERE / "cpuid_avx2.c")],
            check=True,
        )
        env = {
            **os.environ,
            "LD_PRELOAD": str(library),
            "GLIBC_TUNABLES": GLIBC_OFF,
            "LLMOPS_CPU_FLAGS": flags,
        }
        code = subprocess.run([sys.executable, *sys.argv[1:]], env=env).returncode
    sys.exit(code)


if __name__ == "__main__":
    main()
