"""Builds the code sandbox and runs one program in it:
`python -I sandbox_boot.py <workdir> <limits json> <fd> <interpreter>`, where fd is a pipe on which
the sandbox's interpreter writes one byte when it starts (so the caller tells a setup failure from
a program's exit code) and interpreter is the Python the program runs under.

Started by lmbuild.eval.sandbox.run_python (the module docstring there says what the sandbox
holds). Standard library only, and run with -I, so nothing of the repository is imported into
the sandbox. Three processes:

    boot (the caller's namespaces) -- forks -->  A: unshares user, mount, network and PID
         writes A's uid/gid maps                    namespaces, becomes root of its user
         (only a process outside may map             namespace, forks -->  B: PID 1 of the new
         another uid), relays A's exit code                                  namespace: read-only
                                                                             mounts, limits, then
                                                                             exec the program

A and B die with their parent (PR_SET_PDEATHSIG), and every process B starts dies with B (it is
its PID namespace's init), so killing boot's process group ends the whole tree.
"""

import ctypes
import json
import os
import re
import resource
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 18, 1 << 21, 1 << 24
# per-mount flags a remount inside a user namespace must keep (the kernel locks them)
KEEP = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
        "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
PR_SET_PDEATHSIG = 1
NOBODY = 65534
BOOT_FAILED = 86  # exit code when the sandbox could not be built (said on stderr)

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]

# Run inside B before the program: what starts or signals processes raises (a completion that
# shells out fails as a sample; the namespaces and limits, not this, are the boundary).
RUNNER = r'''
import os, subprocess, sys
os.write(int(sys.argv[1]), b"1")  # the sandbox is built and the interpreter runs: tell the caller
os.close(int(sys.argv[1]))
def _refused(*args, **kwargs):
    raise PermissionError("the code sandbox does not start or signal processes")
for _name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "execv", "execve", "execl", "execle",
              "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
              "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "setsid", "setuid", "setgid"):
    if hasattr(os, _name):
        setattr(os, _name, _refused)
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = _refused
subprocess.getoutput = subprocess.getstatusoutput = _refused
del _name
sys.argv = ["program.py"]
with open("program.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "program.py", "exec")
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    os._exit(BOOT_FAILED)


def check(ret: int, what: str) -> None:
    if ret != 0:
        fail(f"{what} failed: {os.strerror(ctypes.get_errno())} (the code sandbox needs Linux user namespaces: "
             "sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)")


def exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def mounts() -> list[tuple[str, str]]:
    """(mount point, per-mount options) of this mount namespace, from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[4])  # \040 is a space
            out.append((point, f[5]))
    return out


def read_only_except(work: str) -> None:
    """Every mount read-only but `work` (bound onto itself first, so it is a mount of its own)."""
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    check(libc.mount(work.encode(), work.encode(), None, MS_BIND, None), f"binding {work}")
    for point, opts in mounts():
        if point == work:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in opts.split(","):
            flags |= KEEP.get(opt, 0)
        if libc.mount(None, point.encode(), None, flags, None) != 0 and not point.startswith(("/proc", "/sys")):
            check(-1, f"making {point} read-only")  # /proc and /sys stay: the sandbox's uid owns nothing there


def count_processes(uid: int) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
                    if any(line.startswith("Uid:") and int(line.split()[1]) == uid for line in fh):
                        n += 1
            except OSError:
                pass
    return n


def limit(limits: dict, outer_uid: int) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # counted over every process of the sandbox's uid outside: the ones running now plus the budget
    nproc = count_processes(outer_uid) + limits["processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def main() -> None:
    work, limits, built_fd, python = os.path.realpath(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    root = os.geteuid() == 0
    outer_uid, outer_gid = (NOBODY, NOBODY) if root else (os.geteuid(), os.getegid())
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    a = os.fork()
    if a == 0:  # A
        os.close(ready_r)
        os.close(go_w)
        libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
        os.write(ready_w, b"1")
        if os.read(go_r, 1) != b"1":
            fail("the uid map was not written")
        os.setgid(0)
        os.setuid(0)  # root of the user namespace: outer_uid outside it
        b = os.fork()
        if b == 0:  # B: PID 1 of the new PID namespace
            libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
            read_only_except(work)
            limit(limits, outer_uid)
            os.chdir(work)
            env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
            os.execve(python, [python, "-I", "-c", RUNNER, str(built_fd)], env)
        _, status = os.waitpid(b, 0)
        os._exit(exit_code(status))
    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) != b"1":  # A failed to unshare (and said why on stderr)
        _, status = os.waitpid(a, 0)
        os._exit(exit_code(status))
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {outer_uid} 1"), ("gid_map", f"0 {outer_gid} 1")):
        try:
            with open(f"/proc/{a}/{name}", "w", encoding="ascii") as fh:
                fh.write(text)
        except OSError as exc:
            os.kill(a, 9)
            fail(f"writing {name} of the sandbox: {exc}")
    os.write(go_w, b"1")
    _, status = os.waitpid(a, 0)
    os._exit(exit_code(status))


if __name__ == "__main__":
    main()
