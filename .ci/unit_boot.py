#!/usr/bin/env python3
"""Boot a Debian root with systemd-nspawn and run the installed petrel units under systemd itself.

    unit_boot.py ROOT CONSOLE UNIT...
        e.g. unit_boot.py build/packages/root build/packages/log/boot-console.log petrel.service

CONSOLE: where the container's console goes (its boot messages).

Run by .ci/test-packages as root. unit_run.py starts a unit as systemd would but cannot apply
its sandboxing (SystemCallFilter=, PrivateUsers=, ProtectSystem=, ...): here systemd does. The
root boots in a container with a network of its own (only lo), and the systemd in it starts each
unit; for each it checks that the unit is active with its sandbox in effect (seccomp filter,
no_new_privs, a user namespace), a set and a get on its data port (its unix socket, reached
through the container's root, or its TCP port in the container's network) whose replies go
through io_uring (the filter lets its system calls through), that every thread
which lowers its own priority runs under SCHED_IDLE (populate; handshake when TLS is on), that
`systemctl reload` reloads it, that `systemctl restart` keeps an item when it has a memory-file,
that `systemctl stop` ends it with Result=success, and that it logged no warning or error (the
journal and its log-file): a call its sandbox refuses shows there.

Exit status 0 when every check passed, 1 when one failed, 77 when this host cannot boot the
container (no systemd-nspawn, or the container's systemd never comes up): the reason is then the
last line of the output.
"""

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import unit_run
from unit_run import say

# Unique on the host: nspawn keeps a directory per machine name under /run/systemd/nspawn.
MACHINE = f"petrel-pkg-{os.getpid()}"
BOOT_TIMEOUT = 90
SCHED_IDLE = 5
CLONE_NEWNET = 0x40000000


def skip(reason, output=""):
    if output:
        print(output.rstrip())
    print(f"skip: {reason}", flush=True)
    sys.exit(77)


def children(pid):
    """The processes whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def tail(path, n=15):
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-n:])


class Container:
    """A booted root: its nspawn process, its PID 1 seen from here, its files through /proc."""

    def __init__(self, root, console):
        self.root, self.console = root, console
        argv = ["systemd-nspawn", "--directory", root, "--boot", "--machine", MACHINE,
                "--register=no", "--private-network", "--console=read-only"]
        if not os.path.isdir("/run/systemd/system"):
            # The host's PID 1 is not systemd: there is no one to ask for a scope of its own, so
            # the container runs in the cgroup nspawn was started in.
            argv.append("--keep-unit")
        print("$ " + " ".join(argv), flush=True)
        with open(console, "wb") as out:
            self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT)
        self.leader = None

    def wait_booted(self):
        """The container's PID 1 once its systemd reports the boot done; None if it never does."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline and self.nspawn.poll() is None:
            if self.leader is None:
                pids = children(self.nspawn.pid)
                if pids and os.path.basename(os.readlink(f"/proc/{pids[0]}/exe")) == "systemd":
                    self.leader = pids[0]
            if self.leader is not None:
                try:
                    out = self.ctl("is-system-running", "--wait",
                                   timeout=deadline - time.monotonic())
                except subprocess.TimeoutExpired:
                    return None
                if out.stdout.strip() in ("running", "degraded"):
                    return out.stdout.strip()
            time.sleep(0.2)
        return None

    def run(self, argv, timeout=60):
        return subprocess.run(["nsenter", "--target", str(self.leader), "--all"] + argv,
                              capture_output=True, text=True, timeout=max(timeout, 1), check=False)

    def ctl(self, *args, timeout=60):
        return self.run(["systemctl"] + list(args), timeout)

    def show(self, unit):
        out = self.ctl("show", "-p", "ActiveState,SubState,Result,MainPID,ExecMainStatus", unit)
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def path(self, path):
        """A file in the container (its /run and /proc are its own) as seen from here."""
        return f"/proc/{self.leader}/root{path}"

    def enter_network(self):
        """This process into the container's network: its loopback ports are reachable."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{self.leader}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the container's network")
        finally:
            os.close(fd)

    def stop(self):
        """Shut it down as a host does (nspawn passes SIGTERM on as the halt signal)."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        return self.nspawn.returncode


def threads(c, pid):
    """name -> scheduling policy of each thread of the container's process pid."""
    out = {}
    task = c.path(f"/proc/{pid}/task")
    for tid in os.listdir(task):
        with open(f"{task}/{tid}/stat", encoding="utf-8") as f:
            head, _, rest = f.read().rpartition(")")
        out[head.split("(", 1)[1]] = int(rest.split()[38])  # field 41: policy
    return out


def tls_version(port):
    """A TLS connection (any certificate) to the container's port, and a version command."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(b"version\r\n")
            got = s.recv(256)
    return got.startswith(b"VERSION ") and got.endswith(b"\r\n"), got


def sandboxed(c, pid):
    """Whether the kernel shows the sandbox on the process: a seccomp filter, no_new_privs and
    a user namespace of its own (PrivateUsers=); and what it shows."""
    with open(c.path(f"/proc/{pid}/status"), encoding="utf-8") as f:
        status = {k: v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
    with open(c.path(f"/proc/{pid}/uid_map"), encoding="utf-8") as f:
        uid_map = f.read().split()
    ok = (status.get("Seccomp") == "2" and status.get("NoNewPrivs") == "1"
          and uid_map[:3] != ["0", "0", "4294967295"])
    return ok, (f"Seccomp {status.get('Seccomp')}, NoNewPrivs {status.get('NoNewPrivs')}, "
                f"uid_map {' '.join(uid_map)}")


def check_unit(c, unit):
    template = re.sub(r"@[^.]+\.", "@.", unit)
    instance = unit.split("@", 1)[1].rsplit(".", 1)[0] if "@" in unit else None
    settings = unit_run.parse_unit(os.path.join(c.root, "lib/systemd/system", template), instance)
    user, group = unit_run.one(settings, "User", "root"), unit_run.one(settings, "Group", "root")
    cfg = unit_run.effective_config(c.root, user, group,
                                    shlex.split(unit_run.one(settings, "ExecStart")))
    croot = c.path("")
    log_file = cfg.get("log.log-file")  # what it logs from here on (unit_run.py's runs before)
    log_from = 0
    if log_file and os.path.exists(c.path(log_file)):
        log_from = os.path.getsize(c.path(log_file))

    out = c.ctl("start", unit)
    state = c.show(unit)
    if not say(out.returncode == 0 and state.get("ActiveState") == "active"
               and state.get("SubState") == "running",
               f"{unit}: systemctl start: {state} {out.stderr.strip()}"):
        return
    pid = state["MainPID"]
    ok, shown = sandboxed(c, pid)
    say(ok, f"{unit}: its sandbox is in effect ({shown})")
    family, address, where = unit_run.data_port(croot, cfg)
    ok, got = unit_run.set_get(family, address, b"pkg:boot")
    say(ok, f"{unit}: set and get on {where} ({got!r})")
    # The unit's system call filter lets io_uring through (io-uring = auto would fall back
    # quietly, at info level, if it did not).
    m = re.search(r"STAT io_uring_calls (\d+)", unit_run.admin(cfg, b"stats\r\nquit\r\n"))
    say(m is not None and int(m.group(1)) > 0,
        f"{unit}: its replies went through io_uring (io_uring_calls "
        f"{m.group(1) if m else None})")
    tls_port = int(cfg.get("tls.tls-port") or 0)
    if tls_port:
        ok, got = tls_version(tls_port)
        say(ok, f"{unit}: a TLS handshake on 127.0.0.1:{tls_port}, then version ({got!r})")
    policies = threads(c, pid)
    idle = ["populate", "handshake"] if tls_port else ["populate"]
    say(all(policies.get(name) == SCHED_IDLE for name in idle),
        f"{unit}: {' and '.join(idle)} under SCHED_IDLE (policy {SCHED_IDLE}); every thread: "
        f"{policies}")

    before = unit_run.reloads(cfg)
    out = c.ctl("reload", unit)
    deadline = time.monotonic() + 5
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.1)
        after = unit_run.reloads(cfg)
    state = c.show(unit)
    say(out.returncode == 0 and before is not None and after == before + 1
        and state.get("ActiveState") == "active" and state.get("MainPID") == pid,
        f"{unit}: systemctl reload (config_reloads {before} -> {after}; {state}) "
        f"{out.stderr.strip()}")

    preserve = unit_run.one(settings, "RuntimeDirectoryPreserve", "no") in ("yes", "true", "1")
    if cfg.get("storage.memory-file") and preserve:
        ok, _ = unit_run.set_get(family, address, b"pkg:before-restart")
        out = c.ctl("restart", unit)
        state = c.show(unit)
        ok, got = unit_run.get(family, address, b"pkg:before-restart") if ok else (False, b"")
        say(out.returncode == 0 and state.get("ActiveState") == "active"
            and state.get("MainPID") != pid and ok,
            f"{unit}: systemctl restart keeps the item, recovered from memory-file "
            f"{cfg['storage.memory-file']} ({got!r}; {state}) {out.stderr.strip()}")

    out = c.ctl("stop", unit)
    state = c.show(unit)
    say(out.returncode == 0 and state.get("ActiveState") == "inactive"
        and state.get("Result") == "success" and state.get("ExecMainStatus") == "0",
        f"{unit}: systemctl stop: {state} {out.stderr.strip()}")

    journal = c.run(["journalctl", "--boot", "--unit", unit, "--output", "cat",
                     "--no-pager"]).stdout
    text = journal
    if log_file and os.path.exists(c.path(log_file)):
        with open(c.path(log_file), encoding="utf-8", errors="replace") as f:
            f.seek(log_from)
            text += f.read()
    bad = [line for line in text.splitlines() if re.search(r" (warn|error): ", line)]
    say(not bad, f"{unit}: no warning or error in its journal or log-file {bad}")
    print(f"--- {unit}: its journal ---\n{journal.rstrip()}")


def main(argv):
    root, console, units = os.path.abspath(argv[1]), argv[2], argv[3:]
    if shutil.which("systemd-nspawn") is None:
        skip("systemd-nspawn is not installed (Debian: systemd-container)")
    c = Container(root, console)
    try:
        state = c.wait_booted()
        if state is None:
            said = [line for line in tail(console).splitlines() if line.strip()]
            skip(f"the container did not boot: {said[-1] if said else 'nothing said'} "
                 f"(systemd-nspawn exit status {c.nspawn.poll()}, its console in {console})",
                 "\n".join(said))
        say(True, f"the root boots under systemd-nspawn, system state {state} "
            f"{c.ctl('list-units', '--failed', '--plain', '--no-legend').stdout.strip()}")
        c.enter_network()
        for unit in units:
            try:
                check_unit(c, unit)
            except (OSError, ValueError, KeyError, ssl.SSLError, subprocess.TimeoutExpired) as e:
                say(False, f"{unit}: {type(e).__name__}: {e}")
    finally:
        status = c.stop()
    say(status == 0, f"the container shuts down (systemd-nspawn exit status {status})")
    return 1 if unit_run.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
