"""`serve top` on a GPU host while vLLM serves under load: the screen (80x24 and 160x48 renders of
`--once`) and a `--once --json` snapshot, for the docs.

Run on a GPU host with vLLM (dummy weights of the h100 profile's Llama-3.1-8B shape, nothing
downloaded):

    python benchmarks/top_gpu_capture.py --out DIR

It launches the shape with `serve launch`, starts `serve bench` (64 concurrent) against it, takes
the captures while the bench runs, then stops everything (the launcher checks its group is gone).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from fleet_swap import profile_text  # noqa: E402  (the same shape, written the same way)

PORT = 8200
SERVE = [sys.executable, "-m", "openai_server"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", default="h100")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = out / "profile.yaml"
    profile.write_text(profile_text(args.base) + "served_model_name: llama-8b-shape\n")
    ready = out / "ready"
    url = f"http://127.0.0.1:{PORT}"
    with (out / "launch.log").open("wb") as log:
        server = subprocess.Popen([*SERVE, "launch", "--profile", str(profile), "--set",
                                   f"port={PORT}", "--ready-file", str(ready), "--log-format",
                                   "plain"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True)  # fmt: skip
    bench = None
    try:
        while not ready.exists():
            if server.poll() is not None:
                raise SystemExit(f"launch exited {server.returncode}")
            time.sleep(1)
        with (out / "bench.log").open("wb") as log:
            bench = subprocess.Popen([*SERVE, "bench", "--url", url, "--endpoint", "completions",
                                      "--num-prompts", "2000", "--max-concurrency", "64",
                                      "--random-input-len", "512", "--random-output-len", "512"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
        time.sleep(15)  # the prompts are sized and the load is on
        for cols, lines in ((80, 24), (160, 48)):
            env = {**os.environ, "COLUMNS": str(cols), "LINES": str(lines), "TERM": "dumb"}
            screen = subprocess.run([*SERVE, "top", "--url", url, "--once"], env=env,
                                    capture_output=True, text=True, cwd=ROOT)  # fmt: skip
            (out / f"top-{cols}x{lines}.txt").write_text(screen.stdout + screen.stderr)
        snap = subprocess.run([*SERVE, "top", "--url", url, "--once", "--json"],
                              capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        (out / "top.json").write_text(snap.stdout + snap.stderr)
        subprocess.run(["nvidia-smi"], stdout=(out / "nvidia-smi.txt").open("w"), check=False)
    finally:
        if bench is not None and bench.poll() is None:
            bench.send_signal(signal.SIGINT)
            bench.wait(30)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
        print((out / "top-80x24.txt").read_text() if (out / "top-80x24.txt").exists() else "")


if __name__ == "__main__":
    main()
