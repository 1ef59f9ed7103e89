"""Tests of grpolab.rewards.sandbox: benign programs run; hostile programs are contained, scored as failures, and the
test process (the "trainer") keeps running. ``HOSTILE`` lists every hostile case (``len(HOSTILE)`` is the count)."""

from __future__ import annotations

import os
import resource
import socket
import time
import uuid
from pathlib import Path

import pytest

from grpolab.rewards import VERIFIERS, sandbox
from grpolab.rewards.sandbox import SandboxResult, extract_code, run_python

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = "GRPOLAB_SANDBOX_TEST_SECRET"
SECRET_VALUE = "s3cr3t-" + uuid.uuid4().hex
TAG = uuid.uuid4().hex[:12]
OUTSIDE_TMP = f"/tmp/grpolab-outside-{TAG}"
OUTSIDE_REPO = str(REPO / f"sandbox-escape-{TAG}.txt")
VICTIM = f"/tmp/grpolab-victim-{TAG}"  # a file the test creates; hostile code tries to delete / rename it


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    return s


# (name, program, timeout_s); PORT is replaced by a port the test listens on. Every case must come back as a failure
# (ok False) for the reason in EXPECT, with no effect outside the sandbox (checked in _contained).
HOSTILE: list[tuple[str, str, float]] = [
    ("infinite_loop", "while True:\n    pass", 1.0),
    ("sleep_past_timeout", "import time\ntime.sleep(60)", 1.0),
    ("fork_bomb", "import os\nwhile True:\n    os.fork()", 2.0),
    ("grandchild", "import os\nif os.fork() == 0:\n    os.fork()\nimport time\ntime.sleep(60)", 1.0),
    ("multiprocessing", "import multiprocessing as mp\np = mp.Process(target=print)\np.start()\np.join()", 2.0),
    ("subprocess_run", "import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned'])", 2.0),
    ("os_system", f"import os\nos.system('touch {OUTSIDE_TMP}')\nassert os.path.exists('{OUTSIDE_TMP}')", 2.0),
    ("os_popen", "import os\nprint(os.popen('id').read())", 2.0),
    ("posix_spawn", "import os\nos.posix_spawn('/bin/echo', ['echo', 'pwned'], {})", 2.0),
    ("execv", "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo pwned'])", 2.0),
    ("kill_parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", 2.0),
    ("memory_bomb_bytearray", "x = bytearray(10**10)", 5.0),
    ("memory_bomb_list", "x = []\nwhile True:\n    x.append(bytearray(10**7))", 5.0),
    (
        "thread_bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        1.0,
    ),
    ("raise_memory_limit", "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", 2.0),
    ("write_outside_tmp", f"open('{OUTSIDE_TMP}', 'w').write('pwned')", 2.0),
    ("write_into_repo", f"open({OUTSIDE_REPO!r}, 'w').write('pwned')", 2.0),
    ("write_relative_escape", f"open('../grpolab-outside-{TAG}', 'w').write('pwned')", 2.0),
    ("os_open_write_outside", f"import os\nos.open('{OUTSIDE_TMP}', os.O_CREAT | os.O_WRONLY)", 2.0),
    ("symlink_escape", f"import os\nos.symlink('{OUTSIDE_TMP}', 'link')\nopen('link', 'w').write('pwned')", 2.0),
    ("str_subclass_path", f"class S(str):\n    pass\nopen(S('{OUTSIDE_TMP}'), 'w').write('pwned')", 2.0),
    ("pathlib_write", f"import pathlib\npathlib.Path('{OUTSIDE_TMP}').write_text('pwned')", 2.0),
    ("delete_outside", f"import os\nos.remove('{VICTIM}')", 2.0),
    ("rename_outside", f"import os\nos.rename('{VICTIM}', 'stolen')", 2.0),
    ("chmod_outside", f"import os\nos.chmod('{VICTIM}', 0o777)", 2.0),
    ("socket_connect", "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', PORT))", 2.0),
    ("dns_lookup", "import socket\nsocket.getaddrinfo('localhost', 80)", 2.0),
    ("urllib", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/')", 2.0),
    ("print_gigabytes", "while True:\n    print('x' * 10**6)", 5.0),
    ("stderr_gigabytes", "import sys\nwhile True:\n    sys.stderr.write('e' * 10**6)", 5.0),
    ("huge_file", "with open('big', 'wb') as f:\n    while True:\n        f.write(b'0' * 10**6)", 5.0),
    ("env_secret", f"import os\nprint(os.environ[{SECRET_NAME!r}])", 2.0),
    ("proc_self_environ", "print(open('/proc/self/environ', 'rb').read())", 2.0),
    ("proc_parent_environ", "import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())", 2.0),
    ("etc_passwd", "print(open('/etc/passwd').read())", 2.0),
    ("read_repo", f"print(open({str(REPO / 'pyproject.toml')!r}).read())", 2.0),
    ("list_root", "import os\nprint(os.listdir('/'))", 2.0),
    ("ctypes", "import ctypes\nctypes.CDLL(None).system(b'echo pwned')", 2.0),
    (
        "native_module_copy",
        "import importlib.machinery, importlib.util, os, shutil\n"
        "d = os.path.dirname(os.__file__) + '/lib-dynload'\n"
        "n = [f for f in os.listdir(d) if f.startswith('_ctypes.')][0]\n"
        "shutil.copy(d + '/' + n, 'mymod.so')\n"
        "p = os.path.join(os.getcwd(), 'mymod.so')\n"
        "loader = importlib.machinery.ExtensionFileLoader('mymod', p)\n"
        "importlib.util.module_from_spec(importlib.util.spec_from_file_location('mymod', p, loader=loader))",
        2.0,
    ),
    (
        "monkeypatch_guards",
        "import os, posixpath, builtins\n"
        "os.getcwd = lambda: '/tmp'\nposixpath.normpath = lambda p: '/tmp/sandbox'\n"
        "builtins.isinstance = lambda *a: True\n"
        f"open('{OUTSIDE_TMP}', 'w').write('pwned')",
        2.0,
    ),
    (
        "mknod_block_device",
        "import os, stat\nos.mknod('dev', stat.S_IFBLK | 0o600, os.makedev(7, 0))\nprint(open('dev', 'rb').read(1))",
        2.0,
    ),
    ("gc_find_hook", "import gc\nprint(len(gc.get_objects()))", 2.0),
    ("settrace", "import sys\nsys.settrace(lambda *a: None)", 2.0),
]


# why each case must fail (a substring of stderr, or the kill reason): guards against passing for a wrong reason
EXPECT = {
    "infinite_loop": "timeout",
    "sleep_past_timeout": "timeout",
    "fork_bomb": "os.fork denied",
    "grandchild": "os.fork denied",
    "multiprocessing": "denied",
    "subprocess_run": "module _posixsubprocess",
    "os_system": "os.system denied",
    "os_popen": "module _posixsubprocess",
    "posix_spawn": "os.posix_spawn denied",
    "execv": "os.exec denied",
    "kill_parent": "os.kill denied",
    "memory_bomb_bytearray": "MemoryError",
    "memory_bomb_list": "MemoryError",
    "thread_bomb": "timeout",
    "raise_memory_limit": "resource.setrlimit denied",
    "write_outside_tmp": "writing /tmp/grpolab-outside",
    "write_into_repo": "writing /",
    "write_relative_escape": "writing /tmp/grpolab-outside",
    "os_open_write_outside": "writing /tmp/grpolab-outside",
    "symlink_escape": "os.symlink denied",
    "str_subclass_path": "not a plain str",
    "pathlib_write": "writing /tmp/grpolab-outside",
    "delete_outside": "os.remove denied",
    "rename_outside": "os.rename denied",
    "chmod_outside": "os.chmod denied",
    "socket_connect": "socket.__new__ denied",
    "dns_lookup": "socket.getaddrinfo denied",
    "urllib": "urllib.Request denied",
    "print_gigabytes": "output_limit",
    "stderr_gigabytes": "output_limit",
    "huge_file": "File too large",
    "env_secret": "KeyError",
    "proc_self_environ": "reading /proc/self/environ",
    "proc_parent_environ": "reading /proc/",
    "etc_passwd": "reading /etc/passwd",
    "read_repo": "reading /",
    "list_root": "os.listdir denied",
    "ctypes": "module ctypes",
    "native_module_copy": "loading native module",
    "monkeypatch_guards": "writing /tmp/grpolab-outside",
    "mknod_block_device": "PermissionError",  # EPERM (no CAP_MKNOD) or the hook's device check
    "gc_find_hook": "gc.get_objects denied",
    "settrace": "sys.settrace denied",
}


@pytest.fixture(scope="module")
def environment():
    """The parent's secret in its own environment and a victim file outside the sandbox."""
    os.environ[SECRET_NAME] = SECRET_VALUE
    Path(VICTIM).write_text("keep me")
    os.chmod(VICTIM, 0o600)
    yield
    os.environ.pop(SECRET_NAME, None)
    for p in (VICTIM, OUTSIDE_TMP, OUTSIDE_REPO, f"/tmp/grpolab-outside-{TAG}"):
        Path(p).unlink(missing_ok=True)


def _contained(name: str, r: SandboxResult, started: float, port: int, listener: socket.socket) -> None:
    assert not r.ok, f"{name}: hostile program scored as success: {r}"
    assert EXPECT[name] in r.stderr or EXPECT[name] == r.killed_reason, f"{name}: failed for another reason: {r}"
    assert r.wall_s < 6.0, f"{name}: took {r.wall_s:.1f}s"
    assert time.monotonic() - started < 7.0
    for text in (r.stdout, r.stderr):
        assert SECRET_VALUE not in text
        assert "pwned" not in r.stdout
        assert "root:x:0:0" not in text  # /etc/passwd
    assert len(r.stdout.encode()) <= 65536 and len(r.stderr.encode()) <= 65536
    assert not os.path.exists(OUTSIDE_TMP), f"{name}: wrote {OUTSIDE_TMP}"
    assert not os.path.exists(OUTSIDE_REPO), f"{name}: wrote into the repository"
    assert Path(VICTIM).read_text() == "keep me", f"{name}: the victim file changed"
    assert os.stat(VICTIM).st_mode & 0o777 == 0o600, f"{name}: chmod outside"
    with pytest.raises(BlockingIOError):  # nobody connected to the parent's listener
        listener.accept()


@pytest.mark.parametrize("name,program,timeout_s", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_program_is_contained(environment, name, program, timeout_s):
    listener = _listener()
    port = listener.getsockname()[1]
    started = time.monotonic()
    try:
        r = run_python(program.replace("PORT", str(port)), timeout_s=timeout_s, memory_mb=256)
        _contained(name, r, started, port, listener)
    finally:
        listener.close()
    # the parent (the "trainer") survives and its own memory was not flooded
    assert os.getpid() > 0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 1024 * 1024  # KiB: under 4 GiB


def test_hostile_case_count():
    assert len(HOSTILE) == 43
    assert len({h[0] for h in HOSTILE}) == len(HOSTILE) and set(EXPECT) == {h[0] for h in HOSTILE}


def test_specific_failure_reasons(environment):
    r = run_python("while True:\n    pass", timeout_s=0.5)
    assert r.timed_out and r.killed_reason == "timeout" and r.returncode == -9 and 0.5 <= r.wall_s < 2.0
    r = run_python("import time\ntime.sleep(30)", timeout_s=0.5)
    assert r.timed_out and r.wall_s < 2.0
    r = run_python("while True:\n    print('x' * 10**6)", max_output_bytes=1000)
    assert r.truncated and r.killed_reason == "output_limit" and len(r.stdout) == 1000 and r.wall_s < 2.0
    r = run_python("x = bytearray(10**10)")
    assert r.returncode == 1 and "MemoryError" in r.stderr
    r = run_python("import os\nos.fork()")
    assert "PermissionError" in r.stderr and "os.fork denied" in r.stderr
    r = run_python("import socket\nsocket.socket()")
    assert "socket.__new__ denied" in r.stderr
    r = run_python("open('/etc/passwd')")
    assert "reading /etc/passwd" in r.stderr
    r = run_python(f"import os\nprint(sorted(os.environ), {SECRET_NAME!r} in os.environ)")
    assert r.ok and "False" in r.stdout and SECRET_VALUE not in r.stdout
    assert "PATH" in r.stdout and "AWS" not in r.stdout


def test_benign_programs_succeed():
    program = (
        "import sys, math, itertools, collections, json, re, functools, heapq, bisect, random, fractions, decimal\n"
        "import traceback, dataclasses, typing, enum, statistics, string, copy, time, datetime\n"
        "P = collections.namedtuple('P', 'x y')\n"
        "nums = list(map(int, sys.stdin.read().split()))\n"
        "print(sum(nums), math.factorial(5), len(list(itertools.permutations(nums))), P(1, 2).x)\n"
        "with open('scratch.txt', 'w') as f:\n"
        "    f.write('hello')\n"
        "print(open('scratch.txt').read(), json.dumps({'a': [1]}))\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    traceback.print_exc()\n"
        "print('tail', file=sys.stderr)\n"
    )
    r = run_python(program, stdin="1 2 3")
    assert r.ok, r.stderr
    assert r.stdout == '6 120 6 1\nhello {"a": [1]}\n'
    assert "ZeroDivisionError" in r.stderr and r.stderr.endswith("tail\n")
    assert not r.timed_out and not r.truncated and r.killed_reason is None and r.returncode == 0
    # a failing but harmless program is a plain failure
    r = run_python("raise SystemExit(3)")
    assert not r.ok and r.returncode == 3 and not r.timed_out


def test_runs_concurrently_from_threads():
    # no preexec_fn: safe to call from a thread pool (reward functions are often scored in threads)
    from concurrent.futures import ThreadPoolExecutor

    programs = [f"print({i} * {i})" for i in range(6)] + ["while True:\n    pass"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: run_python(p, timeout_s=1.0), programs))
    assert [r.stdout for r in results[:6]] == [f"{i * i}\n" for i in range(6)]
    assert all(r.ok for r in results[:6]) and results[6].timed_out


def test_layers_separately(monkeypatch):
    # the audit hook alone refuses device nodes (as root, mknod itself succeeds when capabilities are kept)
    dev = "import os, stat\nos.mknod('dev', stat.S_IFBLK | 0o600, os.makedev(7, 0))\nopen('dev', 'rb')"
    r = run_python(dev, drop_capabilities=False)
    assert not r.ok and ("is a device" in r.stderr or "Operation not permitted" in r.stderr)
    # kernel extras, where this machine has them: an empty network namespace
    if sandbox._works("unshare", ["unshare", "-n", "true"]):
        r = run_python("import socket\nprint(socket.if_nameindex())")
        assert r.ok and r.stdout == "[(1, 'lo')]\n"
    # asking for an extra that does not work is a clear error
    monkeypatch.setitem(sandbox._PROBES, "setpriv", False)
    monkeypatch.setitem(sandbox._PROBES, "unshare", False)
    with pytest.raises(ValueError, match="drop_capabilities=True"):
        run_python("", drop_capabilities=True)
    with pytest.raises(ValueError, match="network_namespace=True"):
        run_python("", network_namespace=True)
    assert run_python("print(1)").ok  # None: falls back to the hook and limits


def test_temp_directory_is_removed():
    r = run_python("import os\nprint(os.getcwd())")
    assert r.ok and r.stdout.startswith("/")
    assert not os.path.exists(r.stdout.strip())
    r = run_python("while True:\n    pass", timeout_s=0.3)
    assert r.timed_out


def test_bad_options_raise():
    with pytest.raises(ValueError, match="timeout_s"):
        run_python("", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        run_python("", memory_mb=1)
    with pytest.raises(ValueError, match="max_output_bytes"):
        run_python("", max_output_bytes=0)
    with pytest.raises(ValueError, match="code must be a str"):
        run_python(b"print(1)")
    with pytest.raises(ValueError, match="timeout_s"):
        VERIFIERS["code_tests"](timeout_s=-1)


def test_code_tests_reward():
    fn = VERIFIERS["code_tests"](timeout_s=2.0)
    completions = [
        "Sure:\n```python\ndef add(a, b):\n    return a + b\n```",  # correct
        "```python\ndef add(a, b):\n    return a - b\n```",  # wrong answer
        "```python\ndef add(a, b):\n    while True:\n        pass\n```",  # hangs
        [
            {
                "role": "assistant",
                "content": "```python\nimport os\nos.system('id')\ndef add(a, b):\n    return a + b\n```",
            }
        ],
        "def add(a, b): return a + b",  # no fence: the whole text
    ]
    tests = ["assert add(1, 2) == 3\nassert add(-1, 1) == 0"] * len(completions)
    started = time.monotonic()
    assert fn(prompts=["q"] * 5, completions=completions, tests=tests) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert time.monotonic() - started < 5.0
    assert fn.__name__ == "code_tests"
    assert VERIFIERS["code_tests"](answer_column="test").__name__ == "code_tests_test"
    with pytest.raises(ValueError, match="test code must be a str"):
        fn(prompts=["q"], completions=["x"], tests=[None])


def test_extract_code():
    assert extract_code("a\n```py\nx = 1\n```\nb\n```python\ny = 2\n```") == "y = 2\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("plain") == "plain"
