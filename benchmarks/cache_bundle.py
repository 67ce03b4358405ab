"""A cold start against a start from a restored cache bundle (issue 25), on this host.

    .venv/bin/python benchmarks/cache_bundle.py                  # tiny-cpu, 2 rounds
    .venv/bin/python benchmarks/cache_bundle.py --rounds 3 --profile tiny-cpu

Every command runs in a fresh home of its own (HOME, XDG_CACHE_HOME, VLLM_CACHE_ROOT,
TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR all inside it), as a new pod or host would:
- pack: `serve cache pack -p P -o F` once, in its own home;
- A (cold): `serve rehearse -p P --json` in a fresh home;
- B (bundle): `serve cache unpack F` in a fresh home, then the same rehearsal there;
- C (bundle, same model path): as B, with SERVE_CACHE_DIR pointing at the packing home's, so the
  rehearsal loads its model from the very path the packed start did. vLLM hashes the model path
  into its compile cache key (vllm/config/model.py `compute_hash`), so only C can find the
  packed hash directory; B shows what a different path gets.
A, B and C alternate within each round, so a drift of the (shared, noisy) machine's speed hits all;
ratios are per round. The goal of issue 25: B's compile phase at most 0.4x A's, B ready sooner,
and B reporting `compiled: false`. Exit 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVE = [str(BIN / "serve")]
GOAL = 0.4


def home_env(home: Path, serve_cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               VLLM_CACHE_ROOT=str(home / ".cache" / "vllm"),
               TORCHINDUCTOR_CACHE_DIR=str(home / "torchinductor"),
               TRITON_CACHE_DIR=str(home / ".triton" / "cache"))  # fmt: skip
    env.pop("SERVE_CACHE_DIR", None)
    if serve_cache is not None:
        env["SERVE_CACHE_DIR"] = str(serve_cache)
    return env


def serve(args: list[str], env: dict[str, str], timeout: float = 900) -> tuple[str, float]:
    began = time.monotonic()
    out = subprocess.run([*SERVE, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)  # fmt: skip
    took = time.monotonic() - began
    if out.returncode != 0:
        sys.exit(f"serve {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()[-500:]}")
    return out.stdout, took


def rehearse(profile: str, env: dict[str, str]) -> dict[str, Any]:
    text, _ = serve(["rehearse", "-p", profile, "--json", "--no-bench", "--no-calibrate"], env)
    start = json.loads(text)["starts"][0]
    return {"compiled": start["compiled"], "ready_s": start["seconds_to_ready"],
            "compile_s": start["phases"].get("compile"), "phases": start["phases"]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny-cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="serve-cache-bench-"))
    try:
        pack_home = base / "pack"
        bundle = base / "bundle.tar.gz"
        line, pack_s = serve(["cache", "pack", "-p", args.profile, "-o", str(bundle)],
                             home_env(pack_home))  # fmt: skip
        print(f"pack ({pack_s:.1f} s): {line.strip()}", flush=True)
        rounds = []
        for i in range(args.rounds):
            row: dict[str, Any] = {}
            for kind in ("A", "B", "C"):
                home = base / f"{kind}{i}"
                serve_cache = pack_home / ".cache" / "serve" if kind == "C" else None
                env = home_env(home, serve_cache)
                if kind != "A":
                    line, row[f"unpack_{kind}_s"] = serve(["cache", "unpack", str(bundle)], env)
                row[kind] = rehearse(args.profile, env)
                shutil.rmtree(home, ignore_errors=True)
            a, b, c = row["A"], row["B"], row["C"]
            row["compile_ratio_B"] = round(b["compile_s"] / a["compile_s"], 3)
            row["ready_ratio_B"] = round(b["ready_s"] / a["ready_s"], 3)
            row["compile_ratio_C"] = round(c["compile_s"] / a["compile_s"], 3)
            row["ready_ratio_C"] = round(c["ready_s"] / a["ready_s"], 3)
            rounds.append(row)
            print(f"round {i + 1}: cold compile {a['compile_s']:.2f} s ready {a['ready_s']:.1f} s"
                  f" compiled={a['compiled']} | bundle compile {b['compile_s']:.2f} s ready "
                  f"{b['ready_s']:.1f} s compiled={b['compiled']} "
                  f"(compile {row['compile_ratio_B']}x, ready {row['ready_ratio_B']}x) | "
                  f"bundle+same path compile "
                  f"{c['compile_s']:.2f} s ready {c['ready_s']:.1f} s compiled={c['compiled']} "
                  f"(compile {row['compile_ratio_C']}x, ready {row['ready_ratio_C']}x)",
                  flush=True)  # fmt: skip
        result: dict[str, Any] = {
            "profile": args.profile,
            "pack_s": round(pack_s, 1),
            "bundle_bytes": bundle.stat().st_size,
            "rounds": rounds,
        }
        for key in ("compile_ratio_B", "ready_ratio_B", "compile_ratio_C", "ready_ratio_C"):
            result[f"median_{key}"] = statistics.median(r[key] for r in rounds)
        print(json.dumps({k: v for k, v in result.items() if k != "rounds"}), flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        met = (result["median_compile_ratio_B"] <= GOAL and result["median_ready_ratio_B"] < 1
               and all(r["B"]["compiled"] is False for r in rounds))  # fmt: skip
        print(f"goal (compiled: false, compile <= {GOAL}x, ready sooner): "
              f"{'met' if met else 'MISSED'}")  # fmt: skip
        return 0 if met else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
