"""A sandbox that runs untrusted Python (generated code) for code rewards, and the ``code_tests`` verifier.

``run_python(code, stdin=..., timeout_s=5.0, memory_mb=512)`` runs ``code`` in a separate process and returns a
``SandboxResult``; it never raises for anything the program does (a crash, a timeout, a blocked action, a flood of
output are all results with ``ok=False``), so the caller keeps running. Layers (``_sandbox_boot.py`` has the policy):

1. a fresh ``python -I -S -B`` process (isolated: no user site, no ``PYTHON*`` variables, no bytecode writes) in a
   fresh temporary directory (removed afterwards), in its own session / process group;
2. a minimal environment (``PATH``, ``HOME``/``TMPDIR`` = the directory, ``LANG``): the parent's secrets (API keys,
   tokens) are not inherited; no file descriptor but stdin/stdout/stderr is inherited;
3. resource limits set in the child before the program runs: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``,
   ``RLIMIT_FSIZE`` (largest file it may write), ``RLIMIT_NOFILE`` (64), ``RLIMIT_CORE`` (0);
4. an audit hook (PEP 578, cannot be removed) that denies processes (fork/exec/system/subprocess/kill), sockets,
   ctypes, reads outside the directory and the standard library (``/proc/self/environ``, ``/etc/passwd``, the
   repository, ``~/.ssh``), writes/deletes outside the directory, raising limits, and frame/gc introspection;
5. the parent enforces the wall-clock ``timeout_s`` and the output cap (reads in chunks, never holds more than
   ``max_output_bytes`` per stream), then SIGKILLs the whole process group.

As root, ``RLIMIT_NPROC`` is ignored, so fork bombs are stopped by layer 4 (fork is denied), and the group kill is
the backstop. Where they work, the program also starts in an empty network namespace (``unshare -n``) and without
capabilities (``setpriv``), kernel-level backstops to the socket and device bans.

Limitations (what is NOT guaranteed): the audit hook is a CPython-level guard, not a kernel boundary. Code that
reaches native code without an audited event (e.g. loading an extension module through
``importlib.machinery.ExtensionFileLoader``, or an interpreter memory-safety bug) could get around layer 4; layers
1-3 and 5 still hold (limits, timeout, kill, no inherited secrets), but such code would run as the same user as the
trainer. For hostile models at scale, run the sandbox inside a container / VM as well.

>>> r = run_python("import sys; print(sum(map(int, sys.stdin.read().split())))", stdin="1 2 3")
>>> r.ok, r.stdout
(True, '6\\n')
>>> run_python("import socket; socket.socket()").ok
False
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpolab.rewards.verifiers import VERIFIERS, VerifierReward

_BOOT = Path(__file__).with_name("_sandbox_boot.py")
_CHUNK = 65536


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did.

    Attributes:
        ok: True when the program exited with status 0, in time, without a kill and without output truncation.
        returncode: the exit status (negative: killed by that signal, e.g. -9), or None if it could not start.
        stdout, stderr: the program's output, decoded as UTF-8 (invalid bytes replaced), each at most
            ``max_output_bytes`` bytes.
        timed_out: the wall-clock limit ``timeout_s`` was reached (the group was killed).
        killed_reason: why the parent killed the group: "timeout", "output_limit", or None.
        truncated: an output stream reached ``max_output_bytes`` (the group was killed).
        wall_s: wall-clock seconds from start to the end of the process.
    """

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    truncated: bool
    wall_s: float


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # the child leads its own session: pgid == pid


_PROBES: dict[str, bool] = {}


def _works(name: str, argv: list[str]) -> bool:
    """Whether ``argv`` (a wrapper around ``true``) runs here; probed once per process."""
    if name not in _PROBES:
        try:
            ok = (
                shutil.which(argv[0]) is not None
                and subprocess.run(argv, capture_output=True, timeout=5).returncode == 0
            )
        except (OSError, subprocess.SubprocessError):
            ok = False
        _PROBES[name] = ok
    return _PROBES[name]


_UNSHARE = ["unshare", "-n"]
_SETPRIV = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]


def _isolation_prefix(network_namespace: bool | None, drop_capabilities: bool | None) -> list[str]:
    """The wrapper commands (exec-ing, so the pid and process group stay the program's) for the kernel-level extras."""
    prefix: list[str] = []
    if network_namespace is not False:
        if _works("unshare", [*_UNSHARE, "true"]):
            prefix += _UNSHARE
        elif network_namespace:
            raise ValueError(
                "run_python: network_namespace=True but `unshare -n` does not work here (needs root / "
                "CAP_SYS_ADMIN and util-linux); pass network_namespace=None to use it only when it works"
            )
    if drop_capabilities is not False:
        if os.geteuid() == 0 and _works("setpriv", [*_SETPRIV, "true"]):
            prefix += _SETPRIV
        elif drop_capabilities:
            raise ValueError(
                "run_python: drop_capabilities=True but `setpriv` (util-linux) does not work here or "
                "this process is not root; pass drop_capabilities=None to use it only when it works"
            )
    return prefix


def _check_options(*, timeout_s: Any, memory_mb: Any, cpu_s: Any, max_output_bytes: Any) -> None:
    if not (isinstance(timeout_s, int | float) and timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"run_python: timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(
            f"run_python: memory_mb must be an int >= 64 (the interpreter needs ~30 MiB), got {memory_mb!r}"
        )
    if cpu_s is not None and not (isinstance(cpu_s, int | float) and cpu_s > 0 and math.isfinite(cpu_s)):
        raise ValueError(f"run_python: cpu_s must be None or a positive number of seconds, got {cpu_s!r}")
    if not (isinstance(max_output_bytes, int) and max_output_bytes > 0):
        raise ValueError(f"run_python: max_output_bytes must be a positive int, got {max_output_bytes!r}")


def run_python(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    cpu_s: float | None = None,
    max_output_bytes: int = 65536,
    max_file_mb: int = 16,
    network_namespace: bool | None = None,
    drop_capabilities: bool | None = None,
) -> SandboxResult:
    """Run the Python program ``code`` in the sandbox (module docstring) and report what it did; never raises for
    anything the program does.

    Args:
        code: the program's source (run as ``__main__``; ``sys.argv == ["solution.py"]``).
        stdin: text fed to the program's standard input (default "").
        timeout_s: wall-clock limit in seconds, interpreter start-up (~20-50 ms) included (default 5.0; usually
            1 to 10 for competitive-programming tests).
        memory_mb: address-space limit (``RLIMIT_AS``) in MiB (default 512; usually 256 to 2048). The interpreter
            itself needs ~30 MiB; a program over the limit gets ``MemoryError``.
        cpu_s: CPU-time limit (``RLIMIT_CPU``) in seconds; None (default) uses ``ceil(timeout_s) + 1`` (the wall
            clock limit is the binding one).
        max_output_bytes: cap per stream (stdout, stderr); reaching it kills the program and sets ``truncated``
            (default 65536).
        max_file_mb: largest file the program may write in its directory (``RLIMIT_FSIZE``, MiB; default 16).
        network_namespace: start the program in an empty network namespace (``unshare -n``: no interface but a
            down loopback), a kernel-level backstop to the socket ban. None (default) = when ``unshare -n`` works
            here (it needs root / CAP_SYS_ADMIN); True = required (``ValueError`` when it does not work); False = off.
        drop_capabilities: run under ``setpriv --bounding-set=-all --inh-caps=-all --no-new-privs`` so a root
            program holds no capabilities (no ``mknod`` of device nodes, no raising hard limits, no raw sockets,
            no overriding file permissions). None (default) = when running as root and ``setpriv`` works; True =
            required (``ValueError`` otherwise); False = off.

    >>> run_python("while True: pass", timeout_s=0.5).killed_reason
    'timeout'
    """
    if not isinstance(code, str):
        raise ValueError(f"run_python: code must be a str, got {type(code).__name__}")
    if not isinstance(stdin, str):
        raise ValueError(f"run_python: stdin must be a str, got {type(stdin).__name__}")
    _check_options(timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s, max_output_bytes=max_output_bytes)
    if not (isinstance(max_file_mb, int) and max_file_mb > 0):
        raise ValueError(f"run_python: max_file_mb must be a positive int, got {max_file_mb!r}")
    cpu_limit = math.ceil(cpu_s) if cpu_s is not None else math.ceil(timeout_s) + 1

    workdir = tempfile.mkdtemp(prefix="grpolab-sandbox-")
    start = time.monotonic()
    try:
        Path(workdir, "_solution.py").write_text(code, encoding="utf-8")
        stdin_path = Path(workdir, "_stdin.txt")
        stdin_path.write_text(stdin, encoding="utf-8")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        argv = _isolation_prefix(network_namespace, drop_capabilities)
        argv += [sys.executable, "-I", "-S", "-B", str(_BOOT), str(memory_mb << 20), str(cpu_limit)]
        argv.append(str(max_file_mb << 20))
        with open(stdin_path, "rb") as stdin_file:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=stdin_file,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,  # own process group: the whole group is killed at the end
                    close_fds=True,
                )
            except OSError as e:
                return SandboxResult(False, None, "", f"sandbox: could not start: {e}", False, None, False, 0.0)
        try:
            out, err, reason = _collect(proc, start + timeout_s, max_output_bytes)
        finally:
            _kill_group(proc.pid)  # leftovers too (also when the program exited normally)
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        returncode = proc.wait()
        wall = time.monotonic() - start
        truncated = reason == "output_limit"
        timed_out = reason == "timeout"
        ok = returncode == 0 and reason is None
        decode = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        return SandboxResult(ok, returncode, decode(out), decode(err), timed_out, reason, truncated, wall)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until they close, the deadline passes ("timeout") or a stream reaches ``cap``
    ("output_limit"); never holds more than ``cap`` bytes per stream."""
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    reason = None
    with selectors.DefaultSelector() as sel:
        for fd in buffers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            for key, _ in sel.select(timeout=left):
                try:
                    chunk = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = buffers[key.fd]
                buf += chunk[: cap - len(buf)]
                if len(buf) >= cap:
                    reason = "output_limit"
            if reason == "output_limit":
                break
    if reason is None:  # the pipes closed: wait for the exit within what is left of the time
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            reason = "timeout"
    if reason is not None:
        _kill_group(proc.pid)
    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), reason


# ---------------------------------------------------------------- code_tests verifier

_FENCE_RE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str:
    """The program in a completion: the LAST fenced code block (```python ... ``` or ``` ... ```), else the whole text.

    >>> extract_code("Here:\\n```python\\nprint(1)\\n```\\ndone")
    'print(1)\\n'
    >>> extract_code("print(2)")
    'print(2)'
    """
    blocks = _FENCE_RE.findall(text)
    return blocks[-1] if blocks else text


def _score_code_tests(
    text: str,
    tests: Any,
    *,
    extract: bool,
    timeout_s: float,
    memory_mb: int,
    max_output_bytes: int,
) -> float:
    if not isinstance(tests, str):
        raise ValueError(f"code_tests verifier: the test code must be a str, got {type(tests).__name__}")
    program = (extract_code(text) if extract else text) + "\n\n" + tests + "\n"
    result = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes)
    return 1.0 if result.ok else 0.0


@VERIFIERS.register("code_tests")
def code_tests(
    *,
    answer_column: str = "tests",
    extract: bool = True,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_output_bytes: int = 65536,
) -> VerifierReward:
    """1.0 when the completion's program followed by the row's test code runs to exit status 0 in the sandbox
    (``run_python``), else 0.0 (a failed assert, an exception, a timeout, a blocked action, output over the cap).

    The test code is plain Python appended after the program (``assert add(1, 2) == 3``), as in MBPP / HumanEval
    style datasets. Each completion runs in its own sandbox process, one after another.

    Args:
        answer_column: the column holding each row's test code (default "tests").
        extract: run the last fenced code block of the completion (``extract_code``) rather than the whole text
            (default True).
        timeout_s: wall-clock limit per completion in seconds (default 5.0; usually 1 to 10).
        memory_mb: memory limit per completion in MiB (default 512; usually 256 to 2048).
        max_output_bytes: output cap per stream (default 65536).

    >>> fn = code_tests()
    >>> fn(prompts=["q", "q"], completions=["```python\\ndef f(x):\\n    return 2 * x\\n```", "def f(x): return x"],
    ...    tests=["assert f(2) == 4", "assert f(2) == 4"])
    [1.0, 0.0]
    >>> fn.__name__
    'code_tests'
    """
    # validate now, so a bad option fails when the task is built rather than at the first reward call
    _check_options(timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=None, max_output_bytes=max_output_bytes)
    options = {
        "extract": bool(extract),
        "timeout_s": float(timeout_s),
        "memory_mb": memory_mb,
        "max_output_bytes": max_output_bytes,
    }
    fn = VerifierReward("code_tests", _score_code_tests, answer_column, options)
    if answer_column == "tests":  # the default column: log as reward/code_tests
        fn.__name__ = fn.__qualname__ = "code_tests"
    return fn


__all__: Sequence[str] = ["SandboxResult", "code_tests", "extract_code", "run_python"]
