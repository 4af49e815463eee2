"""Fail the install if it pulled a CUDA build of torch or any nvidia-*/triton wheel."""

import sys
from importlib import metadata

import torch

bad = sorted(
    d.metadata["Name"]
    for d in metadata.distributions()
    if d.metadata["Name"] and d.metadata["Name"].lower().startswith(("nvidia-", "triton"))
)
problems = []
if "+cpu" not in torch.__version__:
    problems.append(f"torch {torch.__version__} is not the CPU build (expected 2.13.0+cpu)")
if bad:
    problems.append("CUDA packages were installed: " + ", ".join(bad))
if problems:
    sys.exit("install check failed: " + "; ".join(problems))
print(f"install check: torch {torch.__version__}, no CUDA packages")
