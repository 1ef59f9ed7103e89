"""What the side-by-side benchmarks share: one ``grpolab train`` run in a fresh single-thread process, and a pool
that runs a list of them, appends each summary to a JSON-lines file as it finishes and reports failures at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_records(name: str, args: list[str], workdir: str) -> tuple[list[dict], float]:
    """``grpolab train <args>`` as run ``name`` under ``workdir`` (no intermediate evaluation or checkpoints, no
    progress bar, one thread); returns its metrics records and wall seconds (raises with its stderr on failure)."""
    cmd = [sys.executable, "-m", "grpolab.cli", "train", *args]
    cmd += ["--eval-every", "0", "--save-every", "0", "--progress", "false", "--output-dir", workdir, "--name", name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    lines = (Path(workdir) / name / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], wall


def load_results(out: Path) -> list[dict]:
    """The summaries already in ``out`` (none when it does not exist); creates its folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def run_all(
    todo: list[tuple[str, int]],
    run: Callable[[str, int, str], dict],
    out: Path,
    jobs: int,
    describe: Callable[[dict], str],
) -> tuple[list[dict], list[str]]:
    """``run(name, seed, workdir)`` for every ``(name, seed)`` of ``todo``, ``jobs`` at a time in a temporary folder;
    each summary is appended to ``out`` when it finishes (an interrupted benchmark keeps what it measured). Returns
    the new summaries and the failures' messages."""
    print(f"{len(todo)} runs to do, {jobs} at a time (results in {out})", flush=True)
    done, failures = [], []
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run, name, seed, work): (name, seed) for name, seed in todo}
        for i, future in enumerate(futures, 1):
            name, seed = futures[future]
            try:
                result = future.result()
            except RuntimeError as e:
                failures.append(str(e))
                print(f"[{i}/{len(todo)}] {name} seed {seed}: FAILED", flush=True)
                continue
            with open(out, "a") as f:
                f.write(json.dumps(result) + "\n")
            done.append(result)
            print(f"[{i}/{len(todo)}] {name} seed {seed}: {describe(result)}", flush=True)
    return done, failures


def finish(failures: list[str]) -> None:
    """Print the failures' messages to stderr and exit 1 when there were any."""
    for failure in failures:
        print("\n" + failure, file=sys.stderr)
    if failures:
        sys.exit(1)
