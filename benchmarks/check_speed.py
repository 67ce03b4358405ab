"""How fast `serve check` answers, and proof that it imports neither torch nor vLLM.

    .venv/bin/python benchmarks/check_speed.py            # 5 runs of each case
    .venv/bin/python benchmarks/check_speed.py --runs 10

Each case is a fresh `python -m openai_server check ...` process (interpreter start included), run
after one warm-up run that fills the flag cache, so the numbers are "from the cache". The budget
(issue 3) is < 1 s per check; exit 1 when a median is over it or torch/vllm got imported.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "phi3-t4 on T4 (ok)": ["--profile", "phi3-t4", "--gpu", "T4"],
    "phi3-t4 bf16 on T4 (refused)": [
        "--profile", "phi3-t4", "--gpu", "T4", "--set", "dtype=bfloat16",
    ],
    "phi3 128k on T4 (refused)": [
        "--profile", "phi3-t4", "--gpu", "T4", "--set",
        "model=microsoft/Phi-3-mini-128k-instruct", "--set", "max_model_len=131072",
    ],
    "tiny-cpu on this host (NVML)": ["--profile", "tiny-cpu", "--json"],
    "list profiles for H100:2": ["--list-profiles", "--gpu", "H100:2"],
}  # fmt: skip
BUDGET_S = 1.0
# Runs the CLI in-process, then reports whether torch or vLLM were imported on the way.
PROBE = (
    "import sys\n"
    "from typer.testing import CliRunner\n"
    "from openai_server.cli import app\n"
    "CliRunner().invoke(app, ['check', '--profile', 'phi3-t4', '--gpu', 'T4'])\n"
    "print(sorted(m for m in ('torch', 'vllm') if m in sys.modules))\n"
)


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one check process. CPU time is what the check costs; wall
    time adds the wait for a core, which on a shared 2-core machine can dominate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "openai_server", "check", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    timed(CASES["phi3-t4 on T4 (ok)"])  # warm-up: learns and caches the installed vLLM's flags
    worst = 0.0
    for name, args in CASES.items():
        samples = [timed(args) for _ in range(runs)]
        times = [w for w, _ in samples]
        median = statistics.median(times)
        cpu = statistics.median(c for _, c in samples)
        worst = max(worst, median)
        print(
            f"{name:<32} wall median {median:.3f} s  min {min(times):.3f}  max {max(times):.3f}"
            f"  | CPU median {cpu:.3f} s"
        )
    imported = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"heavy modules imported by a check: {imported}")
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    ok = worst < BUDGET_S and imported == "[]"
    print(f"{'ok' if ok else 'FAIL'}: slowest median {worst:.3f} s (budget {BUDGET_S} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
