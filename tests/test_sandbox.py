"""The code sandbox (lmbuild.eval.sandbox): what a model's program can do ends as a failed sample,
never as a hung eval, a damaged repository or a process left behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from lmbuild.eval.sandbox import Limits, SandboxError, run_python

FAST = Limits(wall_s=4.0, cpu_s=3)


def _sandbox_processes() -> list[str]:
    """Processes still running the sandbox's boot or runner (none may outlive a run)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "sandbox_boot.py" in line or "the code sandbox does not" in line]


def test_a_correct_program_passes_and_its_output_comes_back():
    r = run_python("import math\nassert math.gcd(12, 18) == 6\nprint('fine')")
    assert r.passed and r.status == "passed" and r.stdout == "fine\n"
    r = run_python("assert 1 + 1 == 3")
    assert not r.passed and r.status == "failed" and "AssertionError" in r.stderr


def test_an_infinite_loop_is_stopped_at_the_wall_clock_limit():
    t0 = time.perf_counter()
    r = run_python("while True:\n    pass", FAST)
    assert not r.passed and r.status in ("timeout", "killed")
    assert time.perf_counter() - t0 < FAST.wall_s + 3
    assert not _sandbox_processes()


def test_a_fork_bomb_ends_and_leaves_no_process_behind():
    # through ctypes, past the guard on os.fork: the process limit and the PID namespace hold it
    bomb = "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()"
    t0 = time.perf_counter()
    r = run_python(bomb, FAST)
    assert not r.passed and time.perf_counter() - t0 < FAST.wall_s + 3
    time.sleep(0.5)
    assert not _sandbox_processes()
    assert run_python("print('still works')").passed  # the machine is not exhausted


def test_a_memory_bomb_fails_without_taking_the_machine():
    r = run_python("block = bytearray(8 * 1024 ** 3)", Limits(memory_mb=512))
    assert not r.passed and "MemoryError" in r.stderr


def test_nothing_outside_the_working_directory_is_writable():
    # a directory anyone may write to: only the read-only mounts stand in the way
    open_dir = Path(tempfile.mkdtemp(prefix="lmbuild-open-", dir="/tmp"))
    try:
        open_dir.chmod(0o777)
        for target in (open_dir / "written.txt", REPO / "sandbox_escape.txt"):
            r = run_python(f"open({str(target)!r}, 'w').write('x')")
            assert not r.passed and "Read-only file system" in r.stderr, r.stderr
            assert not target.exists()
    finally:
        shutil.rmtree(open_dir)
    # its own working directory is writable, and thrown away
    r = run_python("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())")
    assert r.passed and r.stdout == "x\n"


def test_no_connection_leaves_the_sandbox_not_even_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from outside
        r = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
        assert not r.passed and ("unreachable" in r.stderr or "refused" in r.stderr), r.stderr
    finally:
        server.close()


def test_shelling_out_fails_and_cannot_write_even_past_the_guard(tmp_path):
    marker = tmp_path / "shell.txt"
    for program in (f"import os\nos.system('touch {marker}')",
                    f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}])"):
        r = run_python(program)
        assert not r.passed and "does not start or signal processes" in r.stderr
    # libc's system() is not guarded: the shell runs, but inside the same walls
    r = run_python(f"import ctypes\nassert ctypes.CDLL(None).system(b'touch {marker}') == 0")
    assert not r.passed
    assert not marker.exists()
    assert not (REPO / "shell.txt").exists()


def test_a_sandbox_that_cannot_start_is_an_error_not_a_failed_sample(tmp_path):
    with pytest.raises(SandboxError, match="code sandbox"):
        run_python("print(1)", python=str(tmp_path / "no-such-python"))


def test_the_caller_environment_is_not_passed_in(monkeypatch):
    monkeypatch.setenv("LMBUILD_SECRET_TOKEN", "s3cret")
    r = run_python("import os\nprint(os.environ.get('LMBUILD_SECRET_TOKEN'), os.getcwd() != %r)" % os.getcwd())
    assert r.passed and r.stdout == "None True\n"
