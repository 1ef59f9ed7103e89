"""Child-side bootstrap of ``grpolab.rewards.sandbox`` (run as a script by a fresh ``python -I -S -B``; never imported).

Usage: ``python -I -S -B _sandbox_boot.py <memory_bytes> <cpu_seconds> <file_bytes>`` with the working directory set
to the sandbox's fresh temporary directory holding ``_solution.py`` (the untrusted program).

It sets the resource limits, installs an audit hook (``sys.addaudithook``, PEP 578: a hook cannot be removed) and then
runs the program in a fresh namespace as ``__main__``. The hook is self-contained: every builtin and C function it uses
is bound as a positional default (an immutable tuple; re-assigning ``__defaults__`` is itself audited and denied), so
monkey-patching ``os``/``builtins`` from the program cannot change its decisions, and it reaches no Python-level library
code. Policy (a denied event raises ``PermissionError``):

- no processes: fork, exec, spawn, system, posix_spawn, ``subprocess.Popen``, kill; ``_posixsubprocess`` not importable;
- no network: every ``socket.*`` event (creation, connect, bind, getaddrinfo ...);
- no native escape: ``ctypes``/``_ctypes`` not importable, every ``ctypes.*`` event, ``code.__new__``, native
  extension modules only from the standard library;
- no tampering with the hook: ``gc.get_objects``/``get_referrers``/``get_referents``, ``sys.settrace``/``setprofile``
  (a trace function could rewrite the hook's locals), re-assigning function attributes (``object.__setattr__`` on a
  function: ``__code__`` of any function, ``__defaults__`` etc. of this file's functions); the hook reads no
  globals or builtins by name and keeps no mutable state,
  so frames (``sys._getframe``, tracebacks, allowed because ``namedtuple``/``traceback`` need them) reach nothing
  that changes its decisions;
- no raising limits: ``resource.setrlimit``/``prlimit`` (root could raise hard limits);
- files: writes (open for writing, remove, rename, mkdir, rmdir, chmod, chown, utime, truncate) only inside the working
  directory; reads (open, listdir, scandir, chdir) only inside it, the Python standard library and /dev/null,
  /dev/urandom; symlinks and hard links are refused (so nothing inside the directory points out of it); paths must be
  plain ``str``/``bytes`` (a ``pathlib`` object or ``str`` subclass could answer differently on a second look);
  ``os.open`` needs an absolute path (its ``dir_fd`` is invisible to the hook); device nodes, fifos and sockets
  inside the directory cannot be opened (``os.mknod`` has no audit event; ``run_python`` also drops capabilities,
  so ``mknod`` fails in the kernel where ``setpriv`` exists).
"""

import os
import resource
import sys


def _install(memory_bytes: int, cpu_s: int, file_bytes: int) -> None:
    for limit, value in (
        (resource.RLIMIT_AS, memory_bytes),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, file_bytes),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))

    root = os.path.realpath(os.getcwd())
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    write_roots = (root,)
    read_roots = (root, stdlib)
    read_files = ("/dev/null", "/dev/urandom")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    deny_prefixes = (
        "socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
        "os.system", "os.kill", "os.killpg", "os.startfile", "os.symlink", "os.link", "os.setxattr",
        "os.removexattr", "os.chflags", "os.lchflags", "sys.settrace", "sys.setprofile", "sys.addaudithook", "gc.get_",
        "resource.setrlimit", "resource.prlimit", "code.__new__", "fcntl.ioctl", "sqlite3.", "dbm.", "syslog.",
        "webbrowser.", "urllib.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.",
        "http.client.", "pty.", "winreg.", "msvcrt.", "_winapi.", "cpython.remote_debugger",
    )  # fmt: skip
    deny_imports = ("ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_testcapi", "_testinternalcapi")
    # event -> (positions of path arguments, positions of dir_fd arguments) for file-system mutations
    write_events = {
        "os.chmod": ((0,), (2,)),
        "os.chown": ((0,), (3,)),
        "os.mkdir": ((0,), (2,)),
        "os.remove": ((0,), (1,)),
        "os.rmdir": ((0,), (1,)),
        "os.rename": ((0, 1), (2, 3)),
        "os.utime": ((0,), (3,)),
        "os.truncate": ((0,), ()),
    }
    read_events = ("os.listdir", "os.scandir", "os.chdir")
    func_type = type(_install)
    boot_file = _install.__code__.co_filename

    def hook(
        event,
        args,
        _str=str,
        _bytes=bytes,
        _int=int,
        _type=type,
        _len=len,
        _PermissionError=PermissionError,
        _sjoin="".join,
        _bjoin=b"".join,
        _decode=bytes.decode,
        _split=str.split,
        _startswith=str.startswith,
        _getcwd=os.getcwd,
        _write_roots=write_roots,
        _read_roots=read_roots,
        _read_files=read_files,
        _write_flags=write_flags,
        _deny_prefixes=deny_prefixes,
        _deny_imports=deny_imports,
        _write_events=write_events,
        _read_events=read_events,
        _func_type=func_type,
        _boot_file=boot_file,
        _endswith=str.endswith,
        _stdlib_roots=(stdlib,),
        _lstat=os.lstat,
        _OSError=OSError,
    ):
        def deny(why):
            raise _PermissionError(f"sandbox: {event} denied ({why})")

        def normalize(path):
            # -> an absolute, '..'-free exact str, or None for an fd (an int); denies any other type
            kind = _type(path)
            if kind is _int:
                return None
            if kind is _bytes:
                path = _decode(_bjoin((path,)), "utf-8", "surrogateescape")
            elif kind is not _str:
                deny("a path that is not a plain str/bytes/int (pathlib object or subclass): pass str(path)")
            path = _sjoin((path,))
            if not _startswith(path, "/"):
                path = _getcwd() + "/" + path
            parts = []
            for part in _split(path, "/"):
                if part == "" or part == ".":
                    continue
                if part == "..":
                    if parts:
                        parts.pop()
                    continue
                parts.append(part)
            return "/" + "/".join(parts)

        def inside(path, roots):  # a loop, not any(): builtins could be patched by the program
            for r in roots:  # noqa: SIM110
                if path == r or _startswith(path, r + "/"):
                    return True
            return False

        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if mode is None and _type(path) is not _int:  # os.open: its dir_fd is not shown to the hook
                raw = path
                if _type(raw) is _bytes:
                    raw = _decode(_bjoin((raw,)), "utf-8", "surrogateescape")
                if _type(raw) is not _str or not _startswith(raw, "/"):
                    deny("os.open needs an absolute str path")
            full = normalize(path)
            if full is None:
                return
            writing = (flags is not None and (flags & _write_flags)) or (
                _type(mode) is _str and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)
            )
            if writing:
                if not (inside(full, _write_roots) or full == "/dev/null"):
                    deny(f"writing {full} outside the sandbox directory")
            elif not (inside(full, _read_roots) or full in _read_files):
                deny(f"reading {full} outside the sandbox directory and the standard library")
            if inside(full, _write_roots):  # no device nodes / fifos (root can mknod, which has no audit event)
                try:
                    kind = _lstat(full).st_mode & 0o170000
                except _OSError:
                    kind = 0
                if kind in (0o020000, 0o060000, 0o010000, 0o140000):
                    deny(f"{full} is a device, fifo or socket")
            return
        if event == "import":
            name = args[0]
            if _type(name) is _str and _split(name, ".")[0] in _deny_imports:
                deny(f"module {name}")
            # native extension modules load only from the standard library (a crafted .so written into the sandbox
            # directory and loaded with ExtensionFileLoader would run arbitrary native code)
            filename = args[1] if _len(args) > 1 else None
            if filename is not None:
                full = normalize(filename)
                if full is not None and not _endswith(full, ".py") and not inside(full, _stdlib_roots):
                    deny(f"loading native module {full} from outside the standard library")
            return
        if event in _write_events:
            paths, dir_fds = _write_events[event]
            for i in dir_fds:
                if i < _len(args) and args[i] is not None and args[i] != -1:
                    deny("dir_fd")
            for i in paths:
                if i < _len(args):
                    full = normalize(args[i])
                    if full is None:
                        if event != "os.truncate":
                            deny("by file descriptor")
                    elif not inside(full, _write_roots):
                        deny(f"{full} is outside the sandbox directory")
            return
        if event in _read_events:
            path = args[0] if _len(args) else None
            if path is None:
                return
            full = normalize(path)
            if full is not None and not inside(full, _read_roots):
                deny(f"{full} is outside the sandbox directory and the standard library")
            return
        if event == "object.__setattr__":
            # namedtuple sets __defaults__ on its own functions: only the hook's (this file's) functions are protected
            if _type(args[0]) is _func_type and (args[1] == "__code__" or args[0].__code__.co_filename == _boot_file):
                deny(f"setting function attribute {args[1]!r}")
            return
        for prefix in _deny_prefixes:
            if _startswith(event, prefix):
                deny("not allowed in the sandbox")

    sys.addaudithook(hook)


def _main() -> None:
    memory_bytes, cpu_s, file_bytes = (int(a) for a in sys.argv[1:4])
    with open("_solution.py", encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "solution.py", "exec")
    _install(memory_bytes, cpu_s, file_bytes)
    sys.argv = ["solution.py"]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(code, namespace)  # the untrusted program; the hook and limits are in place


if __name__ == "__main__":
    _main()
