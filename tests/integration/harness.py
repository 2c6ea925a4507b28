"""Start a Petrel binary on ephemeral ports and talk to it over real sockets.

The server is started with -p 0 / --admin-port 0 and prints the ports it got in its log
("listening on 127.0.0.1:PORT", "listening on 127.0.0.1:PORT (tls)" for a TLS listener,
"admin port on 127.0.0.1:PORT"); its stderr is drained by a thread so that the pipe never fills.
"""
import ctypes
import ctypes.util
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time

READY_TIMEOUT = 15.0


def raise_fd_limit(want=8192):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


class Server:
    def __init__(self, binary, *args, listen="127.0.0.1", wait_ready=True, env=None,
                 preexec=None):
        # listen=None: no -l (the addresses come from a config file, or are every interface).
        self.args = [binary, *(["-l", listen] if listen is not None else []), "-p", "0",
                     "--admin-port", "0", *args]
        self.lines = []
        self.port = None       # the first listener, plain or TLS
        self.tls_port = None   # the first TLS listener (-Z, --tls-port), if any
        self.admin_port = None
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=lambda: (raise_fd_limit(),
                                                         preexec() if preexec else None),
                                     env=dict(os.environ, **env) if env else None)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if wait_ready:
            self.wait_for(r" ready: ", READY_TIMEOUT)
            for line in self.lines:
                m = re.search(r"listening on [\[\]0-9a-f.:]*:(\d+)( \(tls\))?$", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                if m and m.group(2) and self.tls_port is None:
                    self.tls_port = int(m.group(1))
                m = re.search(r"admin port on [\[\]0-9a-f.:]*:(\d+)$", line)
                if m:
                    self.admin_port = int(m.group(1))

    def _drain(self):
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern, timeout=10.0):
        """Wait until a log line matches pattern; return it, or raise with the log so far."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self._cond:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("no log line matching %r; log:\n%s"
                                         % (pattern, "\n".join(self.lines)))
                self._cond.wait(min(left, 0.1))

    def connect(self, port=None, timeout=10.0):
        s = socket.create_connection(("127.0.0.1", port or self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def admin(self, command):
        """Send one admin command; return the reply text up to END/VERSION/ERROR."""
        with self.connect(self.admin_port) as s:
            s.sendall(command.encode() + b"\r\n")
            data = b""
            while not re.search(rb"(END|ERROR|VERSION [^\r]*)\r\n$", data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode()

    def stats(self):
        return parse_stats(self.admin("stats"))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the server and wait; return (exit status, seconds it took)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not exit within %.0f s after signal %d; log:\n%s"
                                 % (timeout, sig, "\n".join(self.lines)))
        self._reader.join(2)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, time.monotonic() - t0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(2)
        self.proc.stdout.close()
        self.proc.stderr.close()



def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (for options that take no 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_until(sock, end, timeout):
    """Read until the data ends with `end`; raise socket.timeout after `timeout` seconds, or
    AssertionError if the server closes first."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(end):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no %r within %.1f s; got %r" % (end, timeout, data[-200:]))
        sock.settimeout(left)
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError("connection closed; got %r" % data[-200:])
        data += chunk
    return data


def wait_closed(sock, t0, limit):
    """Read until the peer closes (EOF, reset, or a TLS error on a TLS socket), at most until
    t0 + limit.

    Return (bytes that came before the close, seconds from t0 to the close), the seconds being
    None if the connection was still open at the limit."""
    data = b""
    while True:
        left = t0 + limit - time.monotonic()
        if left <= 0:
            return data, None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, None
        except (ConnectionResetError, ssl.SSLError):
            return data, time.monotonic() - t0
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk

def parse_stats(text):
    """`STAT name value` lines (memcached's stats, from either port) as a dict of strings."""
    out = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def recv_exactly(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def recv_until_closed(sock, timeout=10.0):
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


def run(binary, *args):
    """Run a binary to completion (config checks); return (status, stdout, stderr)."""
    p = subprocess.run([binary, *args], capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def xxh3_64():
    """XXH3_64bits from libxxhash (a build dependency), for keys of a chosen shard; or None."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
    except OSError:
        return None
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
    return lambda key: lib.XXH3_64bits(key, len(key))


def keys_of_worker(worker, nworkers, count, make):
    """count keys make(i) whose shard is worker (mc_shard_of: the hash's high 32 bits)."""
    h = xxh3_64()
    keys, i = [], 0
    while len(keys) < count:
        key = make(i)
        if ((h(key) >> 32) * nworkers) >> 32 == worker:
            keys.append(key)
        i += 1
    return keys
