"""petrel's TLS over real sockets: Python's ssl (raw and under pymemcache) and openssl s_client.

The certificates are made by tls_certs.make() with the openssl CLI into a temporary directory
once per run: a CA, server certificates for 127.0.0.1 (ECDSA P-256 and RSA-2048), a client
certificate by the CA, one by an unknown CA and an expired one. Each class is one server
configuration (-p 0, --admin-port 0); the counters are read from the admin port's /metrics, which
makes no handshake of its own, and compared before and after. Every socket has a timeout, so a
server that hangs fails a test instead of hanging it.
"""
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from pymemcache.client.base import Client

import tls_certs
from harness import (Server, free_port, parse_stats, read_until, recv_exactly,
                     recv_until_closed, wait_closed)

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")
HOST = "127.0.0.1"
CERTS = None       # tls_certs.Certs, made by setUpModule
_CERT_DIR = None


def setUpModule():
    global CERTS, _CERT_DIR
    _CERT_DIR = tempfile.TemporaryDirectory(prefix="petrel-tls-")
    CERTS = tls_certs.make(_CERT_DIR.name)


def tearDownModule():
    _CERT_DIR.cleanup()


# --- servers --------------------------------------------------------------------------------

def server_key_pair(kind):
    return {"ec": (CERTS.server_ec, CERTS.server_ec_key),
            "rsa": (CERTS.server_rsa, CERTS.server_rsa_key)}[kind]


def tls_server(*args, kind="ec", **kw):
    """A server whose main port speaks TLS (-Z) with the P-256 (or RSA) server certificate."""
    cert, key = server_key_pair(kind)
    return Server(PETREL, "-t", "2", "-Z", "--tls-cert", cert, "--tls-key", key, *args, **kw)


def plain_port(server):
    """The first listener that is not TLS (harness.Server.port is the first of either kind)."""
    for line in server.lines:
        m = re.search(r"listening on [\[\]0-9a-f.:]*:(\d+)$", line)
        if m:
            return int(m.group(1))
    raise AssertionError("no plain listener in the log:\n" + "\n".join(server.lines))


def metrics(server):
    """The admin port's /metrics as {name without petrel_ and _total: sum over its labels}."""
    with server.connect(server.admin_port, timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = recv_until_closed(s, 5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"petrel_([a-z0-9_]+?)(?:_total)?(?:\{[^}]*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def metric(server, name):
    m = metrics(server)
    if name not in m:
        raise AssertionError("no petrel_%s in /metrics; TLS metrics there: %s"
                             % (name, sorted(k for k in m if k.startswith("tls"))))
    return m[name]


def wait_metric(server, name, done, timeout=3.0):
    """Poll /metrics until done(value) (the workers publish on a 100 ms tick); return the last
    value, which the caller asserts on."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric(server, name)
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


# --- clients --------------------------------------------------------------------------------

def client_context(cert=None, key=None, tickets=True, ca=None):
    """A client context that trusts the test CA and checks the name 127.0.0.1."""
    ctx = ssl.create_default_context(cafile=ca or CERTS.ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def tls_connect(port, ctx=None, session=None, timeout=5.0, host=HOST):
    """A TCP connection with a completed TLS handshake (raises if the handshake fails)."""
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return (ctx or client_context()).wrap_socket(raw, server_hostname=host, session=session)
    except BaseException:
        raw.close()
        raise


def memcache(port, ctx=None, timeout=10):
    return Client((HOST, port), timeout=timeout, connect_timeout=timeout, default_noreply=False,
                  tls_context=ctx or client_context())


def round_trip(sock, data, end=b"\r\n", timeout=5.0):
    sock.settimeout(timeout)
    sock.sendall(data)
    return read_until(sock, end, timeout)


def refusal(port, ctx, timeout=5.0):
    """None if the server refused this client (the handshake, or the first request after it,
    failed or was closed); otherwise what the server answered to `version`."""
    try:
        with tls_connect(port, ctx, timeout=timeout) as s:
            s.sendall(b"version\r\n")
            data = s.recv(100)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None
    return data or None


def client_hello():
    """The bytes of a real ClientHello (TLS 1.2 capable, from Python's OpenSSL)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing, server_hostname=HOST)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:20]
    return hello


def stall_mid_handshake(port, timeout=10.0):
    """A connection that has sent half a ClientHello and sends nothing more."""
    hello = client_hello()
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.sendall(hello[:len(hello) // 2])
    return s


def request_with_last_flight(port, ctx, session, request, timeout=3.0):
    """Handshake through memory BIOs and send the client's last flight and `request` (one
    application record) in one write, so that both reach the server in one read. Return
    (session reused, the reply line or what came of it, "ok" | "closed" | "timeout")."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    with sock:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST, session=session)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = outgoing.read()
                if out:
                    sock.sendall(out)
                data = sock.recv(65536)
                if not data:
                    raise AssertionError("closed during the handshake")
                incoming.write(data)
        obj.write(request)
        sock.sendall(outgoing.read())
        got = b""
        while not got.endswith(b"\r\n"):
            try:
                got += obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return obj.session_reused, got, "timeout"
            if not data:
                return obj.session_reused, got, "closed"
            incoming.write(data)
        return obj.session_reused, got, "ok"


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(pem_path):
    with open(pem_path) as f:
        return fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))


def served_fingerprint(port, ctx=None):
    with tls_connect(port, ctx) as s:
        return fingerprint(s.getpeercert(binary_form=True))


class SClient:
    """openssl s_client over a pipe; its stdout and stderr are collected by a thread."""

    def __init__(self, port, *args):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", "%s:%d" % (HOST, port), "-tls1_2",
             "-CAfile", CERTS.ca, "-verify_return_error", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = b""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            with self._cond:
                self.out += chunk
                self._cond.notify_all()

    def wait_output(self, pattern, timeout):
        """Wait until the output matches pattern (bytes regex); return whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not re.search(pattern, self.out):
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    return re.search(pattern, self.out) is not None
                self._cond.wait(min(left, 0.1))
            return True

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(2)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def run_petrel(*args, timeout=10):
    """Run petrel to completion (start-up errors); return (status, stderr). A server that
    starts instead of exiting is killed and reported."""
    argv = [PETREL, "-l", HOST, "-p", "0", "--admin-port", "0", *args]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("petrel %s did not exit within %d s; stderr:\n%s"
                             % (" ".join(args), timeout,
                                (e.stderr or b"").decode(errors="replace")))
    return p.returncode, p.stderr.decode(errors="replace")


# --- the data path over TLS -----------------------------------------------------------------

class DataOverTlsP256(unittest.TestCase):
    """-Z with the ECDSA P-256 certificate: memcached's commands over TLS."""

    KIND = "ec"

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server(kind=cls.KIND)
        cls.addClassCleanup(cls.server.__exit__)

    def test_the_main_port_is_logged_as_tls(self):
        self.assertIsNotNone(self.server.tls_port)
        self.assertEqual(self.server.port, self.server.tls_port)

    def test_set_get_delete_through_pymemcache(self):
        mc = memcache(self.server.port)
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("k-%s" % self.KIND, b"hello"))
        self.assertEqual(mc.get("k-%s" % self.KIND), b"hello")
        self.assertTrue(mc.delete("k-%s" % self.KIND))
        self.assertIsNone(mc.get("k-%s" % self.KIND))

    def test_a_500_kb_value_round_trips(self):
        value = os.urandom(500 * 1024)
        mc = memcache(self.server.port)
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("big-%s" % self.KIND, value))
        self.assertEqual(mc.get("big-%s" % self.KIND), value)

    def test_the_session_is_tls_1_2_with_an_ecdhe_suite_for_the_key(self):
        with tls_connect(self.server.port) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            want = "ECDHE-ECDSA-" if self.KIND == "ec" else "ECDHE-RSA-"
            self.assertTrue(s.cipher()[0].startswith(want), s.cipher())


class DataOverTlsRsa(DataOverTlsP256):
    """The same with the RSA-2048 certificate."""

    KIND = "rsa"


class OneServerOverTls(unittest.TestCase):
    """-Z -v: protocol version, pipelining, s_client, the connection counters."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server("-v")
        cls.addClassCleanup(cls.server.__exit__)

    def test_a_client_that_requires_tls_1_3_is_refused(self):
        ctx = client_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.assertIsNone(refusal(self.server.port, ctx))

    def test_many_pipelined_requests_in_one_write_are_answered_in_order(self):
        n = 300
        req, want = b"", b""
        for i in range(n):
            value = b"v%d" % i * (1 + i % 7)
            req += b"set p%d 0 0 %d\r\n%s\r\nget p%d\r\n" % (i, len(value), value, i)
            want += b"STORED\r\nVALUE p%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(value), value)
        with tls_connect(self.server.port) as s:
            s.sendall(req)  # one write: the ssl layer makes records of up to 16 KiB of it
            got = recv_exactly(s, len(want), 10)
        self.assertEqual(len(got), len(want), "the connection closed early")
        self.assertEqual(got, want)

    def test_openssl_s_client_gets_stat_lines_with_the_tls_counters(self):
        c = SClient(self.server.port, "-quiet")
        self.addCleanup(c.close)
        c.send(b"stats\r\n")
        self.assertTrue(c.wait_output(rb"\r\nEND\r\n", 5), c.out[-500:])
        st = parse_stats(c.out.decode(errors="replace"))
        self.assertIn("pid", st)
        for name in ("tls_handshakes", "tls_resumptions", "tls_connections", "tls_errors",
                     "tls_failures_not_tls", "tls_failures_timeout", "tls_failures_protocol",
                     "tls_failures_certificate", "tls_failures_closed", "tls_handshakes_active",
                     "tls_reload_errors"):
            self.assertIn(name, st)

    def test_a_full_handshake_is_counted(self):
        before = metric(self.server, "tls_handshakes")
        with tls_connect(self.server.port) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
        self.assertEqual(wait_metric(self.server, "tls_handshakes", lambda v: v >= before + 1),
                         before + 1)

    def test_a_full_handshake_is_logged_at_v(self):
        with tls_connect(self.server.port) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
            port = s.getsockname()[1]
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: .*full handshake" % port, 5)


class Backpressure(unittest.TestCase):
    def test_replies_held_back_by_a_client_that_does_not_read_arrive_intact(self):
        # 20 gets of a 500 KB value, 10 MB of replies, while the client does not read for a
        # second: the server's writes meet a full socket mid-record and must resume exactly.
        with tls_server("-t", "1") as server:
            value = os.urandom(500 * 1024)
            mc = memcache(server.port)
            self.addCleanup(mc.close)
            self.assertTrue(mc.set("big", value))
            want = (b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)) * 20
            with tls_connect(server.port, timeout=10) as s:
                s.sendall(b"get big\r\n" * 20)
                time.sleep(1.0)
                got = recv_exactly(s, len(want), 10)
            self.assertEqual(len(got), len(want), "the connection closed early")
            if got != want:
                self.fail("the replies differ from byte %d"
                          % next(i for i, (a, b) in enumerate(zip(got, want)) if a != b))


    def test_one_record_replies_held_back_by_a_client_that_does_not_read_arrive_intact(self):
        # Gets of a 12 KB value, each in a write of its own and so each turn's reply one record,
        # which the worker seals and sends in its batch of sends; the client does not read, so
        # the socket fills and a batched send stops mid-record: the rest must follow, once.
        with tls_server("-t", "1") as server:
            value = os.urandom(12000)
            mc = memcache(server.port)
            self.addCleanup(mc.close)
            self.assertTrue(mc.set("one", value))
            n = 600  # 7.2 MB of replies: more than the sockets' buffers hold
            want = (b"VALUE one 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)) * n
            sends = int(server.stats()["io_uring_sends"])
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills sooner
            raw.settimeout(10)
            raw.connect((HOST, server.port))
            with client_context().wrap_socket(raw, server_hostname=HOST) as s:
                for _ in range(n):
                    s.sendall(b"get one\r\n")
                    time.sleep(0.001)
                got = recv_exactly(s, len(want), 10)
            if int(server.stats()["io_uring_sends"]) == sends:
                self.skipTest("io_uring is not usable here: the replies went one send() each")
            self.assertEqual(len(got), len(want), "the connection closed early")
            if got != want:
                self.fail("the replies differ from byte %d"
                          % next(i for i, (a, b) in enumerate(zip(got, want)) if a != b))


class ConcurrentClients(unittest.TestCase):
    def test_8_tls_clients_at_once_over_2_workers_each_see_their_own_values(self):
        with tls_server("-t", "2") as server:
            errors = []

            def work(n):
                try:
                    with tls_connect(server.port, timeout=10) as s:
                        for i in range(100):
                            value = b"%d-%d" % (n, i) * 10
                            req = b"set c%d.%d 0 0 %d\r\n%s\r\nget c%d.%d\r\n" % (
                                n, i, len(value), value, n, i)
                            want = b"STORED\r\nVALUE c%d.%d 0 %d\r\n%s\r\nEND\r\n" % (
                                n, i, len(value), value)
                            got = round_trip(s, req, want[-30:], 10)
                            if got != want:
                                errors.append("client %d, request %d: %r" % (n, i, got[:100]))
                                return
                except (OSError, AssertionError) as e:
                    errors.append("client %d: %s: %s" % (n, type(e).__name__, e))

            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            self.assertEqual(errors, [])
            self.assertEqual(wait_metric(server, "tls_handshakes", lambda v: v >= 8), 8)


class ConnectionGauge(unittest.TestCase):
    def test_tls_connections_counts_open_connections_and_goes_back_down(self):
        with tls_server() as server:
            self.assertEqual(wait_metric(server, "tls_connections", lambda v: v == 0), 0)
            conns = [tls_connect(server.port) for _ in range(3)]
            try:
                for s in conns:
                    self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
                self.assertEqual(wait_metric(server, "tls_connections", lambda v: v == 3), 3)
            finally:
                for s in conns:
                    s.close()
            self.assertEqual(wait_metric(server, "tls_connections", lambda v: v == 0), 0)


class PlainAndTlsSideBySide(unittest.TestCase):
    """-p 0 (plain) and --tls-port N on the same address, one store."""

    @classmethod
    def setUpClass(cls):
        cls.tls = free_port()
        cls.server = Server(PETREL, "-t", "2", "--tls-port", str(cls.tls),
                            "--tls-cert", CERTS.server_ec, "--tls-key", CERTS.server_ec_key)
        cls.addClassCleanup(cls.server.__exit__)
        cls.plain = plain_port(cls.server)

    def test_the_tls_port_is_logged_as_tls(self):
        self.assertEqual(self.server.tls_port, self.tls)
        self.assertNotEqual(self.plain, self.tls)

    def test_a_value_set_over_plain_is_read_over_tls(self):
        plain = Client((HOST, self.plain), timeout=10, default_noreply=False)
        self.addCleanup(plain.close)
        self.assertTrue(plain.set("shared", b"from plain"))
        mc = memcache(self.tls)
        self.addCleanup(mc.close)
        self.assertEqual(mc.get("shared"), b"from plain")

    def test_a_value_set_over_tls_is_read_over_plain(self):
        mc = memcache(self.tls)
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("shared2", b"from tls"))
        plain = Client((HOST, self.plain), timeout=10, default_noreply=False)
        self.addCleanup(plain.close)
        self.assertEqual(plain.get("shared2"), b"from tls")

    def test_the_plain_port_still_speaks_plain_text(self):
        with self.server.connect(self.plain, timeout=5) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")


class TlsOnEveryAddress(unittest.TestCase):
    def test_the_main_port_speaks_tls_on_every_listen_address(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback here")
        with tls_server(listen="127.0.0.1,::1") as server:
            ports = {}  # each address has its own ephemeral port
            for line in server.lines:
                m = re.search(r"listening on \[?([0-9a-f.:]+?)\]?:(\d+) \(tls\)$", line)
                if m:
                    ports.setdefault(m.group(1), int(m.group(2)))
            self.assertEqual(set(ports), {HOST, "::1"}, "\n".join(server.lines))
            for host, port in ports.items():
                with self.subTest(host=host), tls_connect(port, host=host) as s:
                    self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")


class UnixSocketStaysPlain(unittest.TestCase):
    def test_the_unix_socket_speaks_plain_text_under_Z(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "petrel.sock")
            with tls_server("-s", path) as server:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(path)
                    self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
                self.assertIsNone(server.port, "-s opens no TCP port, as memcached's")


class Ciphers(unittest.TestCase):
    def test_the_one_configured_suite_is_negotiated(self):
        with tls_server("--tls-ciphers", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256") as server, \
                tls_connect(server.port) as s:
            self.assertEqual(s.cipher()[0], "ECDHE-ECDSA-AES128-GCM-SHA256")

    def test_a_client_without_a_configured_suite_is_refused_as_a_protocol_failure(self):
        with tls_server("--tls-ciphers", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256") as server:
            before = metric(server, "tls_failures_protocol")
            ctx = client_context()
            ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
            self.assertIsNone(refusal(server.port, ctx))
            self.assertGreaterEqual(
                wait_metric(server, "tls_failures_protocol", lambda v: v >= before + 1),
                before + 1)

    def test_a_list_separated_by_commas_or_colons_allows_each_suite(self):
        suites = ("TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
                  "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256")
        for sep in (",", ":"):
            with self.subTest(separator=sep), \
                    tls_server("--tls-ciphers", sep.join(suites)) as server:
                for client_suite in ("ECDHE-ECDSA-AES256-GCM-SHA384",
                                     "ECDHE-ECDSA-CHACHA20-POLY1305"):
                    ctx = client_context()
                    ctx.set_ciphers(client_suite)
                    with tls_connect(server.port, ctx) as s:
                        self.assertEqual(s.cipher()[0], client_suite)


# --- resumption -----------------------------------------------------------------------------

class Resumption(unittest.TestCase):
    """A second connection that offers the first one's session resumes it. The first stays open
    meanwhile: a session whose connection ended without a close_notify may be forgotten (OpenSSL
    does so), which would be no fault of the server's."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server("-v")
        cls.addClassCleanup(cls.server.__exit__)

    def resume(self, ctx):
        """(first connection's session, second connection's local port, whether it resumed)"""
        with tls_connect(self.server.port, ctx) as first:
            self.assertEqual(round_trip(first, b"version\r\n")[:8], b"VERSION ")
            session = first.session
            with tls_connect(self.server.port, ctx, session=session) as second:
                self.assertEqual(round_trip(second, b"version\r\n")[:8], b"VERSION ")
                return session, second.getsockname()[1], second.session_reused

    def test_a_session_ticket_resumes_and_is_counted(self):
        resumed_before = metric(self.server, "tls_resumptions")
        full_before = metric(self.server, "tls_handshakes")
        session, _, reused = self.resume(client_context())
        self.assertTrue(session.has_ticket, "the server issued no session ticket")
        self.assertTrue(reused)
        self.assertEqual(wait_metric(self.server, "tls_resumptions",
                                     lambda v: v >= resumed_before + 1), resumed_before + 1)
        self.assertEqual(wait_metric(self.server, "tls_handshakes",
                                     lambda v: v >= full_before + 1), full_before + 1)

    def test_a_session_id_resumes_without_tickets_and_is_counted(self):
        resumed_before = metric(self.server, "tls_resumptions")
        session, _, reused = self.resume(client_context(tickets=False))
        self.assertFalse(session.has_ticket)
        self.assertNotEqual(session.id, b"")
        self.assertTrue(reused)
        self.assertEqual(wait_metric(self.server, "tls_resumptions",
                                     lambda v: v >= resumed_before + 1), resumed_before + 1)

    def test_a_request_in_the_same_write_as_the_resumed_handshakes_end_is_answered(self):
        # In a resumed handshake the client speaks last: its Finished and its first request
        # can arrive in one read, by the thread that does handshakes; the request must follow
        # the connection to the worker.
        ctx = client_context()
        with tls_connect(self.server.port, ctx) as first:
            self.assertEqual(round_trip(first, b"version\r\n")[:8], b"VERSION ")
            reused, got, how = request_with_last_flight(self.server.port, ctx, first.session,
                                                        b"set flight 0 0 2\r\nok\r\n")
        self.assertTrue(reused)
        self.assertEqual((got, how), (b"STORED\r\n", "ok"))

    def test_a_resumed_handshake_is_logged_as_resumed(self):
        _, port, reused = self.resume(client_context())
        self.assertTrue(reused)
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: .*resumed" % port, 5)


class NoResumption(unittest.TestCase):
    def test_session_lifetime_0_resumes_neither_ticket_nor_session_id(self):
        with tls_server("--tls-session-lifetime", "0") as server:
            for tickets in (True, False):
                with self.subTest(tickets=tickets):
                    ctx = client_context(tickets=tickets)
                    with tls_connect(server.port, ctx) as first:
                        self.assertEqual(round_trip(first, b"version\r\n")[:8], b"VERSION ")
                        with tls_connect(server.port, ctx, session=first.session) as second:
                            self.assertEqual(round_trip(second, b"version\r\n")[:8], b"VERSION ")
                            self.assertFalse(second.session_reused)
            self.assertEqual(wait_metric(server, "tls_resumptions", lambda v: v > 0, 0.5), 0)


# --- client certificates --------------------------------------------------------------------

class SessionLifetime(unittest.TestCase):
    def test_a_session_older_than_the_lifetime_is_not_resumed(self):
        with tls_server("--tls-session-lifetime", "1") as server:
            firsts = {}
            try:
                for tickets in (True, False):
                    ctx = client_context(tickets=tickets)
                    firsts[tickets] = (ctx, tls_connect(server.port, ctx))
                    self.assertEqual(round_trip(firsts[tickets][1], b"version\r\n")[:8],
                                     b"VERSION ")
                time.sleep(2.5)  # the lifetime is checked in whole seconds
                for tickets, (ctx, first) in firsts.items():
                    with self.subTest(tickets=tickets), \
                            tls_connect(server.port, ctx, session=first.session) as second:
                        self.assertEqual(round_trip(second, b"version\r\n")[:8], b"VERSION ")
                        self.assertFalse(second.session_reused)
            finally:
                for _, first in firsts.values():
                    first.close()


class MutualTlsRequired(unittest.TestCase):
    """--tls-verify required --tls-ca CA: only clients with a valid certificate by the CA."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server("-v", "--tls-verify", "required", "--tls-ca", CERTS.ca)
        cls.addClassCleanup(cls.server.__exit__)

    def assertRefusedAndCounted(self, ctx):
        before = metric(self.server, "tls_failures_certificate")
        self.assertIsNone(refusal(self.server.port, ctx), "the server served this client")
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_certificate", lambda v: v >= before + 1),
            before + 1)

    def test_a_client_certificate_by_the_ca_is_served(self):
        mc = memcache(self.server.port, client_context(CERTS.client, CERTS.client_key))
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("mtls", b"yes"))
        self.assertEqual(mc.get("mtls"), b"yes")

    def test_the_client_certificates_subject_is_logged(self):
        with tls_connect(self.server.port, client_context(CERTS.client, CERTS.client_key)) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
        self.server.wait_for(r"tls: .*client 'CN=client1'", 5)

    def test_stats_conns_shows_the_client_certificates_subject(self):
        with tls_connect(self.server.port, client_context(CERTS.client, CERTS.client_key)) as s:
            port = s.getsockname()[1]
            text = round_trip(s, b"stats conns\r\n", b"END\r\n").decode()
        fd = next(l[5:].split(":")[0] for l in text.split("\r\n")
                  if ":addr " in l and l.endswith(":%d" % port))
        self.assertIn("STAT %s:transport tls\r\n" % fd, text)
        self.assertIn("STAT %s:tls_client CN=client1\r\n" % fd, text)

    def test_a_client_without_a_certificate_is_refused_and_counted(self):
        self.assertRefusedAndCounted(client_context())

    def test_a_refused_certificate_is_logged_with_its_reason(self):
        ctx = client_context(CERTS.unknown_client, CERTS.unknown_client_key)
        with socket.create_connection((HOST, self.server.port), timeout=5) as raw:
            port = raw.getsockname()[1]
            try:
                with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                    s.sendall(b"version\r\n")
                    s.recv(100)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                pass
        self.server.wait_for(
            r"tls: [\[\]0-9a-f.:]*:%d: handshake failed \(certificate\)" % port, 5)

    def test_a_certificate_by_an_unknown_ca_is_refused_and_counted(self):
        self.assertRefusedAndCounted(client_context(CERTS.unknown_client,
                                                    CERTS.unknown_client_key))

    def test_an_expired_certificate_is_refused_and_counted(self):
        self.assertRefusedAndCounted(client_context(CERTS.expired_client,
                                                    CERTS.expired_client_key))

    def test_a_refused_client_leaves_others_served(self):
        self.assertIsNone(refusal(self.server.port, client_context()))
        mc = memcache(self.server.port, client_context(CERTS.client, CERTS.client_key))
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("after-refusal", b"ok"))


class MutualTlsOptional(unittest.TestCase):
    """--tls-verify optional: no certificate is fine, a bad one is not."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server("-v", "--tls-verify", "optional", "--tls-ca", CERTS.ca)
        cls.addClassCleanup(cls.server.__exit__)

    def test_a_client_without_a_certificate_is_served(self):
        mc = memcache(self.server.port)
        self.addCleanup(mc.close)
        self.assertTrue(mc.set("opt", b"anon"))
        self.assertEqual(mc.get("opt"), b"anon")

    def test_a_client_certificate_by_the_ca_is_served_and_logged(self):
        with tls_connect(self.server.port, client_context(CERTS.client, CERTS.client_key)) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
        self.server.wait_for(r"tls: .*client 'CN=client1'", 5)

    def test_a_certificate_by_an_unknown_ca_is_refused_and_counted(self):
        before = metric(self.server, "tls_failures_certificate")
        self.assertIsNone(refusal(self.server.port,
                                  client_context(CERTS.unknown_client, CERTS.unknown_client_key)))
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_certificate", lambda v: v >= before + 1),
            before + 1)

    def test_an_expired_certificate_is_refused(self):
        self.assertIsNone(refusal(self.server.port,
                                  client_context(CERTS.expired_client, CERTS.expired_client_key)))


# --- what is not a proper TLS client --------------------------------------------------------

class BadHandshakes(unittest.TestCase):
    """-Z -v --tls-handshake-timeout 1: what fails the handshake is closed, counted, logged."""

    PROMPT = 0.5   # seconds from the bad bytes to the close
    GRACE = 3.0    # how long to wait to tell "late" from "never"

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server("-v", "--tls-handshake-timeout", "1")
        cls.addClassCleanup(cls.server.__exit__)

    def send_and_wait_close(self, data):
        with socket.create_connection((HOST, self.server.port), timeout=5) as s:
            t0 = time.monotonic()
            s.sendall(data)
            got, took = wait_closed(s, t0, self.GRACE)
            port = s.getsockname()[1]
        self.assertIsNotNone(took, "not closed within %.0f s" % self.GRACE)
        self.assertLessEqual(took, self.PROMPT, "closed only after %.0f ms" % (took * 1e3))
        return got, port

    def failures(self, *names):
        m = metrics(self.server)
        for name in names:
            self.assertIn(name, m)
        return sum(m[name] for name in names)

    def wait_failures(self, names, at_least):
        deadline = time.monotonic() + 3
        while self.failures(*names) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.failures(*names)

    def test_garbage_instead_of_a_client_hello_is_closed_at_once_and_counted(self):
        names = ("tls_failures_not_tls", "tls_failures_protocol")
        before = self.failures(*names)
        self.send_and_wait_close(bytes(range(1, 200)))
        self.assertGreaterEqual(self.wait_failures(names, before + 1), before + 1)

    def test_a_plaintext_memcached_command_is_closed_at_once_and_counted_as_not_tls(self):
        before = metric(self.server, "tls_failures_not_tls")
        got, _ = self.send_and_wait_close(b"get foo\r\n")
        self.assertNotIn(b"END", got)
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_not_tls", lambda v: v >= before + 1),
            before + 1)

    def test_a_not_tls_failure_is_logged_with_its_reason(self):
        _, port = self.send_and_wait_close(b"version\r\n")
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: handshake failed \(not_tls\)" % port, 5)

    def test_a_protocol_failure_is_logged_with_its_reason(self):
        ctx = client_context()
        ctx.set_ciphers("AES256-SHA")  # no ECDHE suite: none in common with the server's
        with socket.create_connection((HOST, self.server.port), timeout=5) as raw:
            port = raw.getsockname()[1]
            with self.assertRaises(ssl.SSLError):
                ctx.wrap_socket(raw, server_hostname=HOST)
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: handshake failed \(protocol\)" % port, 5)

    def test_a_malformed_client_hello_in_a_handshake_record_is_a_protocol_failure(self):
        before = metric(self.server, "tls_failures_protocol")
        body = b"\x01\x00\x00\x40" + bytes(range(0x40))  # ClientHello, 64 bytes of nonsense
        self.send_and_wait_close(b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body)
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_protocol", lambda v: v >= before + 1),
            before + 1)

    def test_half_a_client_hello_is_closed_at_the_handshake_timeout_and_counted(self):
        before = metric(self.server, "tls_failures_timeout")
        t0 = time.monotonic()
        with stall_mid_handshake(self.server.port) as s:
            got, took = wait_closed(s, t0, 4.0)
        self.assertIsNotNone(took, "still open 4 s after half a ClientHello")
        self.assertGreaterEqual(took, 0.8, "closed after %.2f s, before the 1 s timeout" % took)
        self.assertLessEqual(took, 2.5, "closed only after %.2f s" % took)
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_timeout", lambda v: v >= before + 1),
            before + 1)

    def test_a_client_that_sends_nothing_is_closed_at_the_handshake_timeout(self):
        t0 = time.monotonic()
        with socket.create_connection((HOST, self.server.port), timeout=5) as s:
            got, took = wait_closed(s, t0, 4.0)
        self.assertIsNotNone(took, "still open 4 s after connecting")
        self.assertGreaterEqual(took, 0.8, "closed after %.2f s, before the 1 s timeout" % took)
        self.assertLessEqual(took, 2.5, "closed only after %.2f s" % took)
        self.assertEqual(got, b"")

    def test_a_timeout_is_logged_with_its_reason(self):
        with socket.create_connection((HOST, self.server.port), timeout=5) as s:
            port = s.getsockname()[1]
            wait_closed(s, time.monotonic(), 4.0)
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: handshake failed \(timeout\)" % port, 5)

    def test_a_close_mid_handshake_is_logged_with_its_reason(self):
        with socket.create_connection((HOST, self.server.port), timeout=5) as s:
            port = s.getsockname()[1]
            s.sendall(client_hello()[:50])
            s.shutdown(socket.SHUT_WR)
            wait_closed(s, time.monotonic(), 2.0)
        self.server.wait_for(r"tls: [\[\]0-9a-f.:]*:%d: handshake failed \(closed\)" % port, 5)

    def test_a_client_that_closes_mid_handshake_is_counted_as_closed(self):
        before = metric(self.server, "tls_failures_closed")
        with socket.create_connection((HOST, self.server.port), timeout=5) as s:
            s.sendall(client_hello())
            self.assertEqual(s.recv(1)[:1], b"\x16")  # the server's flight has begun
            s.shutdown(socket.SHUT_WR)
            wait_closed(s, time.monotonic(), 2.0)
        self.assertGreaterEqual(
            wait_metric(self.server, "tls_failures_closed", lambda v: v >= before + 1),
            before + 1)


class ConnectionLimit(unittest.TestCase):
    """--max-conns counts TLS connections too, those still in their handshake included."""

    def test_past_the_limit_a_tls_client_sees_a_close_not_plaintext(self):
        with tls_server("-c", "2") as server:
            held = [tls_connect(server.port) for _ in range(2)]
            try:
                for s in held:
                    self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
                raw = socket.create_connection((HOST, server.port), timeout=5)
                with raw:
                    # The refusal on a TLS port is a close: no plaintext ERROR line for a TLS
                    # client to take for a broken record.
                    data, took = wait_closed(raw, time.monotonic(), 5)
                self.assertEqual(data, b"")
                self.assertIsNotNone(took, "the refused connection was left open")
                self.assertEqual(metric(server, "rejected_connections"), 1)
            finally:
                for s in held:
                    s.close()

    def test_handshakes_in_progress_count_against_the_limit(self):
        with tls_server("-c", "2") as server:
            stalled = [stall_mid_handshake(server.port) for _ in range(2)]
            try:
                time.sleep(0.3)
                with socket.create_connection((HOST, server.port), timeout=5) as raw:
                    data, took = wait_closed(raw, time.monotonic(), 5)
                self.assertIsNotNone(took)
                self.assertEqual(metric(server, "rejected_connections"), 1)
            finally:
                for s in stalled:
                    s.close()


class StalledHandshakes(unittest.TestCase):
    """Clients stalled mid-handshake (the default 5 s timeout) take no one else's turn."""

    def test_50_stalled_handshakes_do_not_delay_another_client(self):
        with tls_server() as server:
            stalled = []
            try:
                for _ in range(50):
                    stalled.append(stall_mid_handshake(server.port))
                time.sleep(0.2)  # the server has read them all
                t0 = time.monotonic()
                try:
                    with tls_connect(server.port, timeout=1.0) as s:
                        self.assertEqual(round_trip(s, b"set x 0 0 2\r\nok\r\n", b"\r\n", 1.0),
                                         b"STORED\r\n")
                        self.assertEqual(round_trip(s, b"get x\r\n", b"END\r\n", 1.0),
                                         b"VALUE x 0 2\r\nok\r\nEND\r\n")
                except (OSError, AssertionError) as e:
                    self.fail("with 50 stalled handshakes: %s: %s" % (type(e).__name__, e))
                self.assertLess(time.monotonic() - t0, 1.0)
            finally:
                for s in stalled:
                    s.close()

    def test_1000_stalled_handshakes_within_max_conns_do_not_delay_another_client(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < 1200:
            if hard != resource.RLIM_INFINITY and hard < 1200:
                self.skipTest("descriptor limit %d is below 1200" % hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        with tls_server("-c", "2000") as server:
            stalled = []
            try:
                for _ in range(1000):
                    stalled.append(stall_mid_handshake(server.port))
                time.sleep(0.5)  # the server has taken them all
                t0 = time.monotonic()
                try:
                    with tls_connect(server.port, timeout=1.0) as s:
                        self.assertEqual(round_trip(s, b"version\r\n", b"\r\n", 1.0)[:8],
                                         b"VERSION ")
                except (OSError, AssertionError) as e:
                    self.fail("with 1000 stalled handshakes, after %.2f s: %s: %s"
                              % (time.monotonic() - t0, type(e).__name__, e))
                self.assertLess(time.monotonic() - t0, 1.0)
            finally:
                for s in stalled:
                    s.close()

    def test_sigterm_with_handshakes_in_progress_stops_at_once(self):
        with tls_server() as server:
            stalled = [stall_mid_handshake(server.port) for _ in range(20)]
            try:
                time.sleep(0.3)
                rc, took = server.stop()
            finally:
                for s in stalled:
                    s.close()
            self.assertEqual(rc, 0)
            self.assertLess(took, 2.0)

    def test_tls_handshakes_active_counts_the_handshakes_in_progress(self):
        with tls_server() as server:
            stalled = [stall_mid_handshake(server.port) for _ in range(5)]
            try:
                self.assertEqual(wait_metric(server, "tls_handshakes_active", lambda v: v == 5),
                                 5)
            finally:
                for s in stalled:
                    s.close()
            self.assertEqual(wait_metric(server, "tls_handshakes_active", lambda v: v == 0), 0)


# --- TLS errors after the handshake ---------------------------------------------------------

class ErrorsAfterTheHandshake(unittest.TestCase):
    """Raw bytes written under the ssl layer of an established connection."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server()
        cls.addClassCleanup(cls.server.__exit__)

    def write_raw_and_wait_close(self, data):
        with tls_connect(self.server.port) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
            with socket.socket(fileno=os.dup(s.fileno())) as raw:
                t0 = time.monotonic()
                raw.sendall(data)
                got, took = wait_closed(raw, t0, 3.0)
        self.assertIsNotNone(took, "not closed within 3 s")
        self.assertLessEqual(took, 0.5, "closed only after %.0f ms" % (took * 1e3))

    def test_an_application_record_with_a_bad_body_is_closed_and_counted(self):
        before = metric(self.server, "tls_errors")
        self.write_raw_and_wait_close(b"\x17\x03\x03\x00\x40" + os.urandom(0x40))
        self.assertGreaterEqual(wait_metric(self.server, "tls_errors", lambda v: v >= before + 1),
                                before + 1)

    def test_a_record_longer_than_tls_allows_is_closed_and_counted(self):
        before = metric(self.server, "tls_errors")
        self.write_raw_and_wait_close(b"\x17\x03\x03\xff\xff" + os.urandom(0x100))
        self.assertGreaterEqual(wait_metric(self.server, "tls_errors", lambda v: v >= before + 1),
                                before + 1)

    def test_a_close_notify_or_a_bare_close_is_no_tls_error(self):
        before = metric(self.server, "tls_errors")
        with tls_connect(self.server.port) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
            raw = s.unwrap()  # sends close_notify; the server answers and closes
            got, took = wait_closed(raw, time.monotonic(), 2.0)
            raw.close()
        self.assertIsNotNone(took, "still open 2 s after close_notify")
        with tls_connect(self.server.port) as s:
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")
        # and the next error is the first one counted
        self.write_raw_and_wait_close(b"\x17\x03\x03\x00\x40" + os.urandom(0x40))
        self.assertEqual(wait_metric(self.server, "tls_errors", lambda v: v >= before + 1),
                         before + 1)

    def test_other_connections_are_served_after_a_tls_error(self):
        with tls_connect(self.server.port) as other:
            self.write_raw_and_wait_close(b"\x17\x03\x03\x00\x40" + os.urandom(0x40))
            self.assertEqual(round_trip(other, b"version\r\n")[:8], b"VERSION ")


class Renegotiation(unittest.TestCase):
    """openssl s_client's `R` asks for a renegotiation (TLS 1.2): the server refuses it or ends
    the connection, and never hangs."""

    @classmethod
    def setUpClass(cls):
        cls.server = tls_server()
        cls.addClassCleanup(cls.server.__exit__)

    def renegotiate(self):
        """Ask for a renegotiation; return (seconds until s_client ended or None, its output)."""
        c = SClient(self.server.port)
        self.addCleanup(c.close)
        self.assertTrue(c.wait_output(rb"Verify return code: 0 \(ok\)[\s\S]*\n---\n", 5),
                        c.out[-800:])
        t0 = time.monotonic()
        c.send(b"R\n")  # stdin stays open: s_client ends only if the connection does
        try:
            c.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None, c.out
        return time.monotonic() - t0, c.out

    def test_a_renegotiation_attempt_ends_the_connection_and_others_are_served(self):
        took, out = self.renegotiate()
        self.assertIn(b"RENEGOTIATING", out)
        self.assertIsNotNone(took, "the connection still stands 5 s after a renegotiation "
                              "request:\n%s" % out[-800:].decode(errors="replace"))
        with tls_connect(self.server.port, timeout=1.0) as s:
            self.assertEqual(round_trip(s, b"set r 0 0 1\r\nx\r\n", b"\r\n", 1.0), b"STORED\r\n")

    def test_a_renegotiation_attempt_is_counted_in_tls_errors(self):
        before = metric(self.server, "tls_errors")
        took, _ = self.renegotiate()
        self.assertIsNotNone(took)
        self.assertGreaterEqual(wait_metric(self.server, "tls_errors", lambda v: v >= before + 1),
                                before + 1)


# --- reload ---------------------------------------------------------------------------------

class Reload(unittest.TestCase):
    """SIGHUP re-reads the certificate, key and CA files at the same paths."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="petrel-tls-reload-")
        self.addCleanup(self.dir.cleanup)
        self.cert = os.path.join(self.dir.name, "cert.pem")
        self.key = os.path.join(self.dir.name, "key.pem")
        self.ca = os.path.join(self.dir.name, "ca.pem")
        self.install(CERTS.server_ec, CERTS.server_ec_key)
        shutil.copy(CERTS.ca, self.ca)

    def start(self, *args):
        server = Server(PETREL, "-t", "2", "-v", "-Z", "--tls-cert", self.cert,
                        "--tls-key", self.key, *args)
        self.addCleanup(server.__exit__)
        return server

    def replace(self, src, dst):
        shutil.copy(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)

    def install(self, cert, key):
        self.replace(cert, self.cert)
        self.replace(key, self.key)

    def wait_served(self, server, want, ctx=None, timeout=5.0):
        """Connect until the server presents the certificate with fingerprint want; return the
        last fingerprint seen."""
        deadline = time.monotonic() + timeout
        while True:
            got = served_fingerprint(server.port, ctx)
            if got == want or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)

    def test_new_handshakes_present_the_new_certificate(self):
        server = self.start()
        old, new = file_fingerprint(CERTS.server_ec), file_fingerprint(CERTS.server2_ec)
        self.assertEqual(served_fingerprint(server.port), old)
        self.install(CERTS.server2_ec, CERTS.server2_ec_key)
        server.proc.send_signal(signal.SIGHUP)
        self.assertEqual(self.wait_served(server, new), new)

    def test_a_connection_opened_before_the_reload_keeps_working(self):
        server = self.start()
        with tls_connect(server.port) as before:
            self.assertEqual(round_trip(before, b"set old 0 0 3\r\nabc\r\n"), b"STORED\r\n")
            self.install(CERTS.server2_ec, CERTS.server2_ec_key)
            server.proc.send_signal(signal.SIGHUP)
            new = file_fingerprint(CERTS.server2_ec)
            self.assertEqual(self.wait_served(server, new), new)
            self.assertEqual(round_trip(before, b"get old\r\n", b"END\r\n"),
                             b"VALUE old 0 3\r\nabc\r\nEND\r\n")
        self.assertEqual(metric(server, "tls_reload_errors"), 0)

    def test_a_garbage_certificate_keeps_the_old_one_and_is_logged_and_counted(self):
        server = self.start()
        old = file_fingerprint(CERTS.server_ec)
        self.replace(CERTS.garbage, self.cert)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"tls: reload:.*tls-cert", 5)
        self.assertEqual(wait_metric(server, "tls_reload_errors", lambda v: v >= 1), 1)
        self.assertEqual(served_fingerprint(server.port), old)

    def test_a_key_that_does_not_match_keeps_the_old_pair_and_is_logged(self):
        server = self.start()
        old = file_fingerprint(CERTS.server_ec)
        self.replace(CERTS.server2_ec_key, self.key)  # the certificate stays the first one
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"tls: reload:.*tls-key", 5)
        self.assertEqual(wait_metric(server, "tls_reload_errors", lambda v: v >= 1), 1)
        with tls_connect(server.port) as s:
            self.assertEqual(fingerprint(s.getpeercert(binary_form=True)), old)
            self.assertEqual(round_trip(s, b"version\r\n")[:8], b"VERSION ")

    def test_a_new_certificate_path_in_the_config_file_is_taken(self):
        conf = os.path.join(self.dir.name, "petrel.conf")

        def write(cert, key):
            with open(conf + ".tmp", "w") as f:
                f.write("[tls]\ntls-cert = %s\ntls-key = %s\n" % (cert, key))
            os.replace(conf + ".tmp", conf)

        write(CERTS.server_ec, CERTS.server_ec_key)
        server = Server(PETREL, "-t", "2", "-Z", "--config", conf)
        self.addCleanup(server.__exit__)
        self.assertEqual(served_fingerprint(server.port), file_fingerprint(CERTS.server_ec))
        write(CERTS.server_rsa, CERTS.server_rsa_key)
        server.proc.send_signal(signal.SIGHUP)
        want = file_fingerprint(CERTS.server_rsa)
        self.assertEqual(self.wait_served(server, want), want)

    def test_repeated_sighups_while_clients_connect_fail_no_handshake(self):
        server = self.start()
        done = threading.Event()

        def hup():
            for _ in range(30):
                server.proc.send_signal(signal.SIGHUP)
                time.sleep(0.02)
            done.set()

        th = threading.Thread(target=hup)
        th.start()
        served, failures = 0, []
        while not done.is_set() or served < 10:
            try:
                with tls_connect(server.port) as s:
                    if round_trip(s, b"version\r\n")[:8] == b"VERSION ":
                        served += 1
            except (OSError, AssertionError) as e:
                failures.append("%s: %s" % (type(e).__name__, e))
            if len(failures) > 5:
                break
        th.join()
        self.assertEqual(failures, [])
        self.assertIsNone(server.proc.poll(), "the server died")
        self.assertEqual(metric(server, "tls_reload_errors"), 0)

    def test_the_ca_file_is_reread(self):
        server = self.start("--tls-verify", "required", "--tls-ca", self.ca)
        stranger = client_context(CERTS.unknown_client, CERTS.unknown_client_key)
        self.assertIsNone(refusal(server.port, stranger))
        self.replace(CERTS.other_ca, self.ca)
        server.proc.send_signal(signal.SIGHUP)
        deadline, answer = time.monotonic() + 5, None
        while answer is None and time.monotonic() < deadline:
            answer = refusal(server.port, stranger)
            if answer is None:
                time.sleep(0.05)
        self.assertIsNotNone(answer, "a client of the new CA is still refused after SIGHUP")
        self.assertTrue(answer.startswith(b"VERSION "), answer)


# --- start-up errors ------------------------------------------------------------------------

class StartupErrors(unittest.TestCase):
    """Exit status 64 (usage) for TLS without a certificate or key, 78 (configuration) for files
    that cannot be used; stderr names the option (and the path)."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="petrel-tls-bad-")
        self.addCleanup(self.dir.cleanup)
        self.missing = os.path.join(self.dir.name, "no-such-cert.pem")

    def cases(self):
        """(name, arguments, status, words stderr must have)"""
        ec, ec_key = CERTS.server_ec, CERTS.server_ec_key
        return [
            ("-Z without certificate or key", ["-Z"], 64, [r"--tls-(cert|key)"]),
            ("--tls-port without certificate or key", ["--tls-port", str(free_port())], 64,
             [r"--tls-(cert|key)"]),
            ("-Z without a certificate", ["-Z", "--tls-key", ec_key], 64, ["--tls-cert"]),
            ("-Z without a key", ["-Z", "--tls-cert", ec], 64, ["--tls-key"]),
            ("a missing certificate file", ["-Z", "--tls-cert", self.missing, "--tls-key", ec_key],
             78, ["--tls-cert", re.escape(self.missing)]),
            ("a garbage certificate", ["-Z", "--tls-cert", CERTS.garbage, "--tls-key", ec_key],
             78, ["--tls-cert", re.escape(CERTS.garbage)]),
            ("a garbage key", ["-Z", "--tls-cert", ec, "--tls-key", CERTS.garbage],
             78, ["--tls-key", re.escape(CERTS.garbage)]),
            ("a key that does not match", ["-Z", "--tls-cert", ec, "--tls-key",
                                           CERTS.server2_ec_key], 78, ["--tls-key"]),
            ("an RSA key for an EC certificate", ["-Z", "--tls-cert", ec, "--tls-key",
                                                  CERTS.server_rsa_key], 78, ["--tls-key"]),
        ]

    def check(self, extra):
        for name, args, status, words in self.cases():
            with self.subTest(name):
                rc, err = run_petrel(*extra, *args)
                self.assertEqual(rc, status, err)
                self.assertNotIn("unknown option", err)
                for w in words:
                    self.assertRegex(err, w)

    def test_the_server_exits_with_the_status_and_names_the_option(self):
        self.check([])

    def test_check_config_gives_the_same_errors(self):
        self.check(["--check-config"])

    def test_a_missing_ca_file_exits_78_naming_tls_ca_and_the_path(self):
        # Not in the list of start-up errors, but the same kind of file as the certificate's.
        rc, err = run_petrel("-Z", "--tls-cert", CERTS.server_ec, "--tls-key",
                             CERTS.server_ec_key, "--tls-verify", "required",
                             "--tls-ca", self.missing)
        self.assertEqual(rc, 78, err)
        self.assertIn("--tls-ca", err)
        self.assertIn(self.missing, err)

    def test_check_config_accepts_a_good_tls_configuration(self):
        rc, err = run_petrel("--check-config", "-Z", "--tls-cert", CERTS.server_ec,
                             "--tls-key", CERTS.server_ec_key, "--tls-verify", "required",
                             "--tls-ca", CERTS.ca)
        self.assertEqual(rc, 0, err)


class ConfigFile(unittest.TestCase):
    def test_the_tls_section_configures_certificate_and_verification(self):
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "petrel.conf")
            with open(conf, "w") as f:
                f.write("[tls]\ntls-cert = %s\ntls-key = %s\ntls-ca = %s\ntls-verify = required\n"
                        % (CERTS.server_ec, CERTS.server_ec_key, CERTS.ca))
            with Server(PETREL, "-t", "1", "--config", conf, "-Z") as server:
                self.assertIsNone(refusal(server.port, client_context()))
                answer = refusal(server.port, client_context(CERTS.client, CERTS.client_key))
                self.assertIsNotNone(answer)
                self.assertTrue(answer.startswith(b"VERSION "), answer)


if __name__ == "__main__":
    unittest.main(verbosity=2)
