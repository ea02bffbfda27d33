"""Running untrusted Python (a model's completion and a benchmark's tests) where it cannot harm
the machine or the repository.

`run_python(program, limits)` runs the program in a fresh process tree and reports whether it
exited 0 within its limits. The tree lives in its own Linux namespaces, set up by
lmbuild/eval/sandbox_boot.py before the program starts:

- user namespace: the program runs as root inside it but, when the caller is root, as the
  unprivileged uid 65534 outside it, so it can signal nothing of the caller's and the process
  limit below applies (the kernel exempts real root from RLIMIT_NPROC);
- network namespace: no interface but a loopback that is down, so nothing connects anywhere,
  127.0.0.1 included;
- mount namespace: every mount read-only except a throwaway working directory (the program's
  cwd, removed afterwards), so neither the repository nor anything else on the machine can be
  written;
- PID namespace: the program is its namespace's init, so killing it (at the wall-clock limit)
  kills every process it started, however it detached them;
- resource limits: CPU seconds, address space (memory), number of processes (a fork bomb stops
  at the limit), size of files written, open files, no core dumps.

Before the program runs, the functions that start or signal processes (os.system, os.fork,
subprocess.Popen, ...) are replaced by ones that raise, as HumanEval's harness does (Chen et al.
2021, execution.py's reliability guard): a completion that shells out fails as a sample. That
guard is a courtesy, not the boundary: the namespaces and limits hold for code that undoes it
(through ctypes, say).

Where the kernel refuses user namespaces, `check_available()` says so in one line (the code
benchmarks then cannot run; nothing else needs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BOOT = Path(__file__).with_name("sandbox_boot.py")
# what the program may print back (the tail is kept for the error report)
KEEP_OUTPUT = 2000


class SandboxError(Exception):
    """The sandbox cannot be set up on this machine: one line naming why and what to change."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. The defaults fit HumanEval-size programs: their tests run in well
    under a second, and a completion that needs more than 10 s or 1 GiB is wrong for the task."""
    wall_s: float = 10.0        # killed (with every process it started) after this long
    cpu_s: int = 10             # RLIMIT_CPU
    memory_mb: int = 1024       # RLIMIT_AS: the interpreter itself needs ~30 MB
    processes: int = 16         # RLIMIT_NPROC, counted over the sandbox's uid
    file_mb: int = 16           # RLIMIT_FSIZE: the largest file it may write (in its working directory)
    open_files: int = 64        # RLIMIT_NOFILE


@dataclass(frozen=True)
class Result:
    passed: bool     # exited 0 within every limit
    status: str      # passed | failed (non-zero exit or exception) | timeout | killed (a limit's signal)
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str


def run_python(program: str, limits: Limits = Limits(), python: str | None = None) -> Result:
    """Run `program` (Python source) in the sandbox under `python` (default: `interpreter()`);
    never raises for what the program does, raises SandboxError when the sandbox cannot be built."""
    work = Path(tempfile.mkdtemp(prefix="lmbuild-sandbox-"))
    try:
        os.chmod(work, 0o777)  # the sandbox's uid (65534 when the caller is root) writes here
        (work / "program.py").write_text(program, encoding="utf-8")
        os.chmod(work / "program.py", 0o644)
        built_r, built_w = os.pipe()  # the boot writes one byte here once the sandbox is built
        cmd = [sys.executable, "-I", str(BOOT), str(work), json.dumps(asdict(limits)), str(built_w),
               python or interpreter()]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=work, pass_fds=(built_w,))
        os.close(built_w)
        try:
            out, err = proc.communicate(timeout=limits.wall_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, err = proc.communicate()
            timed_out = True
        seconds = time.perf_counter() - t0
        built = os.read(built_r, 1) == b"1"
        os.close(built_r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stdout = out.decode("utf-8", "replace")[-KEEP_OUTPUT:]
    stderr = err.decode("utf-8", "replace")[-KEEP_OUTPUT:]
    rc = proc.returncode
    if not built:
        why = stderr.strip().splitlines()[-1] if stderr.strip() else f"setup exited {rc}"
        raise SandboxError(f"code sandbox: {why}")
    if timed_out:
        status = "timeout"
    elif rc == 0:
        status = "passed"
    elif rc is not None and (rc >= 128 or rc < 0):  # a limit's signal (SIGXCPU, SIGKILL, SIGSEGV ...)
        status = "killed"
    else:
        status = "failed"
    return Result(passed=status == "passed", status=status, returncode=rc, seconds=seconds, stdout=stdout,
                  stderr=stderr)


def _reachable(path: str) -> bool:
    """Whether any user can run `path`: it and every directory above it are executable by others."""
    p = Path(path)
    return all(q.exists() and q.stat().st_mode & stat.S_IXOTH for q in (p, *p.parents))


def interpreter() -> str:
    """The Python the sandboxed program runs under. Only the standard library is needed (a
    benchmark's tests import nothing else). When the caller is root the program runs as uid 65534,
    which may not reach this environment's interpreter (a pyenv under /root, say): then the
    system's Python."""
    here = os.path.realpath(sys.executable)
    if os.geteuid() != 0 or _reachable(here):
        return here
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if _reachable(os.path.realpath(cand)):
            return os.path.realpath(cand)
    raise SandboxError(f"code sandbox: no Python the sandbox's uid 65534 can run ({here} is inside a directory "
                       "others cannot enter); install a system python3 or run the eval as a non-root user")


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's process group: its namespace init dies, and with it the namespace."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check_available() -> None:
    """Raise SandboxError (one line) when this machine cannot build the sandbox."""
    r = run_python("print('ok')", Limits(wall_s=30))
    if not r.passed or r.stdout.strip() != "ok":
        raise SandboxError(f"code sandbox: a trivial program did not run ({r.status}: {r.stderr.strip()[-300:]})")
