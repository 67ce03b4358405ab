"""How much a fast `serve` command costs against the imports it cannot avoid, measured in one run.

    .venv/bin/python benchmarks/cli_start.py             # 9 runs of each, A and B alternated
    .venv/bin/python benchmarks/cli_start.py --runs 15

Each figure is a whole process (interpreter start included), as a health check or a shell runs it:
- `serve probe --url URL --model M` against a real endpoint on loopback (a small HTTP server in
  this process that answers /v1/models) vs `python -c "import httpx"`: goal <= 1.3x wall time, peak
  memory under 40 MB (a probe runs every 10-15 s in every container).
- `serve render -p phi3-t4`, `validate`, `schema`, `profiles`, `--help` vs `python -c "import typer,
  pydantic, yaml"` (what the CLI cannot do without): goal <= 1.15x. Both pydantic 2 and typer
  import lazily: `import pydantic` loads none of the machinery a model needs, and typer (0.29)
  builds a pydantic TypeAdapter for every option of the command it runs. So `render`, `validate`
  and `--help` are also put against the smallest CLI on the same libraries, as used: a typer app
  of two commands that validates one pydantic model of one YAML value (MIN_CLI), and MIN_CLI
  itself against the imports: the floor of any command typer runs that validates a profile; and
  the profile model's import alone (PyYAML, pydantic, the model built; no CLI): the floor of any
  command that validates a profile with it.
  `schema` and `profiles` without options run before typer is imported (main.py).
Ratios are per pair (A then B, alternated, so that a drift of the machine's speed hits both) and
quoted as the median pair and the ratio of the two best runs. Exit 1 when a goal is missed.
tests/test_cli_imports.py holds the module lists these times stand for.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
SERVE = (
    [str(BIN / "serve")] if (BIN / "serve").exists() else [sys.executable, "-m", "openai_server"]
)


MIN_CLI = """
import typer, yaml
from pydantic import BaseModel

class M(BaseModel):
    x: int

app = typer.Typer(add_completion=False, rich_markup_mode=None)

@app.command()
def render(profile: str = typer.Option(..., "-p")) -> None:
    print(M(x=len(yaml.safe_load("a: 1")) + len(profile)))

@app.command()
def other() -> None:
    pass

app()
"""


class Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "tiny-phi3"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def one(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one process; it must exit 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def pair(a: list[str], b: list[str], runs: int) -> dict[str, float]:
    one(a), one(b)  # warm-up: the page cache, the flag cache
    pairs = [(one(a), one(b)) for _ in range(runs)]
    walls = [x[0] / y[0] for x, y in pairs]
    return {
        "median_ratio": statistics.median(walls),
        "best_ratio": min(x[0] for x, _ in pairs) / min(y[0] for _, y in pairs),
        "a_best_s": min(x[0] for x, _ in pairs),
        "b_best_s": min(y[0] for _, y in pairs),
        "a_cpu_s": statistics.median(x[1] for x, _ in pairs),
        "a_peak_mb": max(x[2] for x, _ in pairs),
        "b_peak_mb": max(y[2] for _, y in pairs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    runs = ap.parse_args().runs
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    base_cli = [PY, "-c", "import typer, pydantic, yaml"]
    used = [PY, "-c", MIN_CLI, "render", "-p", "x"]
    cases = [
        ("serve probe --url --model", [*SERVE, "probe", "--url", url, "--model", "tiny-phi3"],
         [PY, "-c", "import httpx"], "import httpx", 1.3),
        ("serve render -p phi3-t4", [*SERVE, "render", "-p", "phi3-t4"],
         base_cli, "typer+pydantic+yaml", 1.15),
        ("serve validate profiles/phi3-t4.yaml", [*SERVE, "validate", "profiles/phi3-t4.yaml"],
         base_cli, "typer+pydantic+yaml", 1.15),
        ("serve schema", [*SERVE, "schema"], base_cli, "typer+pydantic+yaml", 1.15),
        ("serve profiles", [*SERVE, "profiles"], base_cli, "typer+pydantic+yaml", 1.15),
        ("serve --help", [*SERVE, "--help"], base_cli, "typer+pydantic+yaml", 1.15),
        ("serve render -p phi3-t4", [*SERVE, "render", "-p", "phi3-t4"],
         used, "a typer CLI, as used", 0.0),
        ("serve validate profiles/phi3-t4.yaml", [*SERVE, "validate", "profiles/phi3-t4.yaml"],
         used, "a typer CLI, as used", 0.0),
        ("serve --help", [*SERVE, "--help"], used, "a typer CLI, as used", 0.0),
        # the floors: any command typer runs that validates a pydantic model; the profile model
        # itself, imported with PyYAML and no CLI at all
        ("(a typer CLI, as used)", used, base_cli, "typer+pydantic+yaml", 0.0),
        ("(import yaml, openai_server.profile)", [PY, "-c", "import yaml, openai_server.profile"],
         base_cli, "typer+pydantic+yaml", 0.0),
    ]  # fmt: skip
    # an installed serve has its bytecode compiled (pip does it); with PYTHONDONTWRITEBYTECODE set
    # (this machine's shells set it) a module without a .pyc would be compiled at every start
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(ROOT / "openai_server")],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )
    print(f"{'command (A)':<38} {'against (B)':<20} {'A/B median':>10} {'A/B best':>9} "
          f"{'A best':>7} {'B best':>7} {'A CPU':>6} {'A peak':>7} {'goal':>6}")  # fmt: skip
    missed = []
    for name, a, b, b_name, goal in cases:
        r = pair(a, b, runs)
        print(f"{name:<38} {b_name:<20} {r['median_ratio']:>9.2f}x {r['best_ratio']:>8.2f}x "
              f"{r['a_best_s']:>6.3f}s {r['b_best_s']:>6.3f}s {r['a_cpu_s']:>5.3f}s "
              f"{r['a_peak_mb']:>5d}MB {f'{goal:.2f}x' if goal else '-':>6}")  # fmt: skip
        if goal and r["median_ratio"] > goal:
            missed.append(f"{name}: {r['median_ratio']:.2f}x > {goal}x")
        if name.startswith("serve probe") and r["a_peak_mb"] >= 40:
            missed.append(f"{name}: peak {r['a_peak_mb']} MB >= 40 MB")
    httpd.shutdown()
    for m in missed:
        print(f"missed: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
