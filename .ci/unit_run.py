#!/usr/bin/env python3
"""Run an installed petrel unit in a Debian root the way systemd would, and check it serves.

    unit_run.py ROOT UNIT [INSTANCE]      e.g. unit_run.py build/packages/root petrel@.service test

Run by .ci/test-packages as root, inside a network namespace of its own (unshare --net), so the
unit's configured ports cannot collide with anything on the host. From ROOT/lib/systemd/system/
UNIT (with %i as INSTANCE) it takes what systemd would do before the start: the directories of
RuntimeDirectory=, StateDirectory=, LogsDirectory= and ConfigurationDirectory= with their modes
and owners, User= and Group=, UMask=, LimitNOFILE=, the environment systemd gives a service
(NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID, *_DIRECTORY, HOME, USER, ...), and ExecStart=. It
waits for READY=1 on the notify socket, as Type=notify makes systemd wait, then checks the
server through what its configuration says (petrel --print-config run as the unit's user): a
set and a get on its unix socket if it has one (it replaces the TCP port), else on the TCP port;
the log file if there is one; /health on the admin port. Then it reloads through ExecReload= and sees config_reloads move,
and stops the server as systemd does (SIGTERM, then TimeoutStopSec=) and wants exit status 0.
When the configuration has a memory-file and the unit keeps its runtime directory
(RuntimeDirectoryPreserve=yes), it starts the server once more and wants the item set before
the restart back (a warm restart).

The sandboxing options (ProtectSystem=, PrivateTmp=, SystemCallFilter=, ...) need systemd
itself and are not applied here; unit_boot.py runs the units under systemd, with them.
"""

import fcntl
import os
import re
import resource
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time

FAILURES = []


def say(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)
    return ok


def loopback_up():
    """A new network namespace has lo down: bring it up (SIOCSIFFLAGS, IFF_UP)."""
    s = socket.socket()
    ifreq = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, ifreq))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
    s.close()


def parse_unit(path, instance):
    """The [Service] settings of a unit file: name -> list of values, %i and %% resolved."""
    settings, section = {}, None
    with open(path, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or "=" not in line:
            continue
        key, value = (x.strip() for x in line.split("=", 1))
        value = value.replace("%i", instance or "").replace("%%", "%")
        settings.setdefault(key, []).append(value)
    return settings


def one(settings, key, default=None):
    values = settings.get(key)
    return values[-1] if values else default


def passwd_entry(root, user):
    with open(os.path.join(root, "etc/passwd"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == user:
                return fields
    raise SystemExit(f"user {user} is not in {root}/etc/passwd")


def group_id(root, group):
    with open(os.path.join(root, "etc/group"), encoding="utf-8") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == group:
                return int(fields[2])
    raise SystemExit(f"group {group} is not in {root}/etc/group")


DIRECTORIES = [  # setting, base, owned by the service's user (systemd.exec(5))
    ("RuntimeDirectory", "/run", True),
    ("StateDirectory", "/var/lib", True),
    ("LogsDirectory", "/var/log", True),
    ("ConfigurationDirectory", "/etc", False),
]


def make_directories(root, settings, uid, gid):
    """As systemd does at every start; returns the environment variables that name them."""
    env = {}
    for key, base, owned in DIRECTORIES:
        names = " ".join(settings.get(key, [])).split()
        mode = int(one(settings, key + "Mode", "0755"), 8)
        paths = []
        for name in names:
            path = os.path.join(base, name)
            host = root + path
            os.makedirs(host, exist_ok=True)
            os.chmod(host, mode)
            if owned:
                os.chown(host, uid, gid)
            paths.append(path)
        if paths:
            env[key.replace("Directory", "").upper() + "_DIRECTORY"] = ":".join(paths)
    return env


def as_user(root, user, group, argv, **kw):
    return subprocess.run(["/usr/sbin/chroot", f"--userspec={user}:{group}", root] + argv,
                          capture_output=True, text=True, check=False, **kw)


def effective_config(root, user, group, argv):
    """ExecStart's command line with --print-config: the configuration the server runs with."""
    out = as_user(root, user, group, argv + ["--print-config"])
    if out.returncode != 0:
        raise SystemExit(f"--print-config failed: {out.stderr}")
    cfg, section = {}, ""
    for line in out.stdout.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = (x.strip() for x in line.split("=", 1))
            cfg[f"{section}.{key}"] = value
    return cfg


def set_get(family, address, key):
    value = b"packaged"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        s.sendall(b"set %s 0 0 %d\r\n%s\r\nget %s\r\n" % (key, len(value), value, key))
        want = b"STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
        got = b""
        while len(got) < len(want):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return got == want, got


def get(family, address, key):
    value = b"packaged"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        s.sendall(b"get %s\r\n" % key)
        want = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
        got = b""
        while not got.endswith(b"END\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return got == want, got


def admin(cfg, request):
    address = (cfg.get("admin.admin-address") or "127.0.0.1", int(cfg["admin.admin-port"]))
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(request)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got.decode(errors="replace")
            got += chunk


def wait_ready(notify, proc, timeout):
    """Type=notify: the start is done when the service sends READY=1."""
    deadline = time.monotonic() + timeout
    notify.settimeout(0.2)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            msg = notify.recv(4096).decode()
        except socket.timeout:
            continue
        if "READY=1" in msg.split("\n"):
            return True
    return False


def main(argv):
    root, unit = argv[1], argv[2]
    instance = argv[3] if len(argv) > 3 else None
    name = unit.replace("@.", f"@{instance}.") if instance else unit
    settings = parse_unit(os.path.join(root, "lib/systemd/system", unit), instance)
    loopback_up()

    user, group = one(settings, "User", "root"), one(settings, "Group", "root")
    pw = passwd_entry(root, user)
    uid, gid = int(pw[2]), group_id(root, group)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "HOME": pw[5], "USER": user, "LOGNAME": user, "SHELL": pw[6],
        "INVOCATION_ID": os.urandom(16).hex(),
        "NOTIFY_SOCKET": "/run/systemd/notify-test",
    }
    env.update(make_directories(root, settings, uid, gid))
    watchdog = one(settings, "WatchdogSec")
    if watchdog:
        env["WATCHDOG_USEC"] = str(int(float(watchdog.rstrip("s")) * 1_000_000))

    notify_path = root + env["NOTIFY_SOCKET"]
    os.makedirs(os.path.dirname(notify_path), exist_ok=True)
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.chmod(notify_path, 0o777)

    exec_start = shlex.split(one(settings, "ExecStart"))
    umask = int(one(settings, "UMask", "0022"), 8)
    nofile = int(one(settings, "LimitNOFILE", "1024"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile > hard:  # this host's ceiling (a container without CAP_SYS_RESOURCE)
        print(f"LimitNOFILE={nofile}: this host allows {hard} at most, {hard} instead")
        nofile = hard

    def in_service():  # in the child, before exec: what systemd sets on the process
        os.setsid()
        os.umask(umask)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    cfg = effective_config(root, user, group, exec_start)
    preserve = one(settings, "RuntimeDirectoryPreserve", "no") in ("yes", "true", "1")

    def life(checks):
        """Start the service, run checks(pid) once it is ready, stop it; its stderr."""
        # WATCHDOG_PID is the main process's pid: the shell's, kept by exec through chroot.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh",
             "/usr/sbin/chroot", f"--userspec={user}:{group}", root] + exec_start,
            env=env, preexec_fn=in_service, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            ready = say(wait_ready(notify, proc, 60), f"{name}: READY=1 on NOTIFY_SOCKET")
            if ready:
                try:
                    checks(proc.pid)
                except (OSError, ValueError, KeyError) as e:
                    say(False, f"{name}: {type(e).__name__}: {e}")
            proc.send_signal(signal.SIGTERM)
            timeout = float(one(settings, "TimeoutStopSec", "90").rstrip("s"))
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
            say(status == 0, f"{name}: SIGTERM stops it with status 0 (got {status})")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.stdout.read().decode(errors="replace")

    def first(pid):
        check_serving(root, name, cfg, uid)
        check_reload(root, name, settings, cfg, user, group, pid)

    def after_restart(pid):
        family, address, shown = data_port(root, cfg)
        ok, got = get(family, address, b"pkg:after-reload")
        say(ok, f"{name}: a restart keeps the cache: the item set before it is there, "
            f"recovered from memory-file {cfg['storage.memory-file']} ({got!r})")

    try:
        journal = life(first)
        if cfg.get("storage.memory-file") and preserve:
            # RuntimeDirectoryPreserve=yes: the memory file in it outlives the stop.
            make_directories(root, settings, uid, gid)
            journal += life(after_restart)
    finally:
        notify.close()
        os.unlink(notify_path)
        for path in env.get("RUNTIME_DIRECTORY", "").split(":"):
            if path and not preserve:  # systemd removes it when the unit stops, unless kept
                subprocess.run(["rm", "-rf", root + path], check=False)
    print(f"--- {name}: what the server wrote to stderr (the journal) ---")
    print(journal.rstrip())
    log_file = cfg.get("log.log-file")
    if log_file and os.path.exists(root + log_file):
        print(f"--- {name}: the end of its log-file {log_file} ---")
        with open(root + log_file, encoding="utf-8", errors="replace") as f:
            print("".join(f.readlines()[-20:]).rstrip())
    return 1 if FAILURES else 0


def data_port(root, cfg):
    """Where clients reach the server: its unix socket if it has one (which replaces the TCP
    port, as memcached's -s does), else the first --listen address and --port."""
    path = cfg.get("server.unix-socket")
    if path:
        return socket.AF_UNIX, root + path, path
    host = (cfg.get("server.listen") or "127.0.0.1").split(",")[0].strip()
    port = int(cfg["server.port"])
    return socket.AF_INET, (host, port), f"{host}:{port}"


def check_serving(root, name, cfg, uid):
    family, address, shown = data_port(root, cfg)
    if family == socket.AF_UNIX:
        st = os.stat(address)
        say(st.st_uid == uid, f"{name}: unix socket {shown} belongs to the service's user")
    ok, got = set_get(family, address, b"pkg:first")
    say(ok, f"{name}: set and get on {shown} ({got!r})")
    log_file = cfg.get("log.log-file")
    if log_file:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (
                os.path.exists(root + log_file) and os.path.getsize(root + log_file) > 0):
            time.sleep(0.1)
        say(os.path.exists(root + log_file) and os.path.getsize(root + log_file) > 0
            and os.stat(root + log_file).st_uid == uid,
            f"{name}: log file {log_file} written, by the service's user")
    health = admin(cfg, b"GET /health HTTP/1.0\r\n\r\n")
    say(health.startswith("HTTP/1.") and " 200 " in health.split("\r\n")[0],
        f"{name}: /health answers 200 ({health.splitlines()[0] if health else 'nothing'})")


def reloads(cfg):
    m = re.search(r"STAT config_reloads (\d+)", admin(cfg, b"stats\r\nquit\r\n"))
    return int(m.group(1)) if m else None


def check_reload(root, name, settings, cfg, user, group, mainpid):
    """ExecReload= as systemd runs it: $MAINPID substituted, as the unit's user."""
    before = reloads(cfg)
    line = one(settings, "ExecReload")
    argv = shlex.split(line.replace("${MAINPID}", str(mainpid)).replace("$MAINPID", str(mainpid)))
    out = as_user(root, user, group, argv, env={"MAINPID": str(mainpid), "PATH": "/usr/bin:/bin"})
    say(out.returncode == 0, f"{name}: ExecReload={line} exits 0 {out.stderr.strip()}")
    deadline = time.monotonic() + 5
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.1)
        after = reloads(cfg)
    say(before is not None and after == before + 1,
        f"{name}: the reload is done (config_reloads {before} -> {after})")
    family, address, _ = data_port(root, cfg)
    ok, _ = set_get(family, address, b"pkg:after-reload")
    say(ok, f"{name}: serves after the reload")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
