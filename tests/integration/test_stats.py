"""petrel's stats views against Debian's memcached: the same requests to both, the same replies.

memcached is found through $MEMCACHED, then PATH, then /usr/bin/memcached; without it these
tests are skipped. Replies are compared byte for byte where Petrel promises memcached's; the
order of "stats detail dump" lines is memcached's hash table's, so with several prefixes the
lines are compared as a set.
"""
import ctypes
import ctypes.util
import os
import resource
import shutil
import socket
import subprocess
import time
import unittest

from harness import Server, free_port, parse_stats, read_until
from test_hostile import rss, sanitized

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")


def find_memcached():
    for candidate in (os.environ.get("MEMCACHED"), shutil.which("memcached"),
                      "/usr/bin/memcached"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


MEMCACHED = find_memcached()


class Memcached:
    """Debian's memcached on a free port, for the length of a test class."""

    def __init__(self, *args):
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen([MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port),
                                      "-U", "0", *user, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("memcached did not start")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def exchange(port, text):
    """Send text to port, then mn; return every reply before mn's MN (both servers answer mn,
    so the end of the replies is known without counting them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(text.encode() + b"mn\r\n")
        data = b""
        while not data.endswith(b"MN\r\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise AssertionError("connection closed after %r" % data)
            data += chunk
        return data[:-4].decode()


def detail_lines(text):
    lines = text.split("\r\n")
    return sorted(line for line in lines if line.startswith("PREFIX "))


@unittest.skipIf(MEMCACHED is None, "memcached is not installed")
class Detail(unittest.TestCase):
    """stats detail on|off|dump after the same requests to both servers."""

    def setUp(self):
        self.mc = Memcached("-t", "2")
        self.petrel = Server(PETREL, "-t", "2")
        self.ports = (self.mc.port, self.petrel.port)

    def tearDown(self):
        self.mc.stop()
        self.petrel.stop()

    def both(self, text):
        return [exchange(port, text) for port in self.ports]

    def test_usage_errors_and_switches_are_memcacheds(self):
        mc, petrel = self.both("stats detail\r\nstats detail bogus\r\nstats detail on\r\n"
                               "stats detail off\r\n")
        self.assertEqual(petrel, mc)

    def test_dump_before_any_request_is_end_alone(self):
        mc, petrel = self.both("stats detail dump\r\n")
        self.assertEqual(petrel, "END\r\n")
        self.assertEqual(petrel, mc)

    def test_dump_of_one_prefix_is_byte_for_byte(self):
        text = ("stats detail on\r\nset user:1 0 0 1\r\na\r\nset user:2 0 0 1\r\nb\r\n"
                "get user:1 user:2 user:3\r\ngets user:1\r\ndelete user:2\r\ndelete user:9\r\n"
                "add user:1 0 0 1\r\nc\r\nincr user:1 1\r\ntouch user:1 0\r\nget nodelim\r\n")
        for port in self.ports:
            exchange(port, text)
        mc, petrel = self.both("stats detail dump\r\n")
        self.assertEqual(petrel, "PREFIX user get 4 hit 3 set 3 del 2\r\nEND\r\n")
        self.assertEqual(petrel, mc)

    def test_gat_gats_cas_and_append_count_as_memcached_counts_them(self):
        text = ("stats detail on\r\nset g:1 0 0 1\r\n1\r\ngat 0 g:1 g:2\r\ngats 0 g:1\r\n"
                "cas g:1 0 0 1 999\r\n2\r\nappend g:5 0 0 1\r\n2\r\n")
        for port in self.ports:
            exchange(port, text)
        mc, petrel = self.both("stats detail dump\r\n")
        self.assertEqual(petrel, "PREFIX g get 3 hit 2 set 3 del 0\r\nEND\r\n")
        self.assertEqual(petrel, mc)

    def test_dump_of_many_prefixes_has_memcacheds_lines(self):
        text = "stats detail on\r\n"
        for i in range(40):
            text += "set p%d:k 0 0 1\r\nx\r\nget p%d:k p%d:none\r\n" % (i, i % 7, i % 5)
        for port in self.ports:
            exchange(port, text)
        mc, petrel = self.both("stats detail dump\r\n")
        self.assertEqual(len(detail_lines(petrel)), 40)
        self.assertEqual(detail_lines(petrel), detail_lines(mc))
        self.assertTrue(petrel.endswith("\r\nEND\r\n"))

    def test_off_keeps_the_counts_and_reset_forgets_them(self):
        text = ("stats detail on\r\nget a:1\r\nstats detail off\r\nget a:1\r\n"
                "stats detail dump\r\nstats reset\r\nstats detail dump\r\n")
        mc, petrel = self.both(text)
        self.assertIn("PREFIX a get 1 hit 0 set 0 del 0\r\nEND\r\nRESET\r\nEND\r\n", petrel)
        self.assertEqual(petrel, mc)


@unittest.skipIf(MEMCACHED is None, "memcached is not installed")
class Delimiter(unittest.TestCase):
    """-D sets the delimiter and turns collection on from the start, in both."""

    def test_dash_d_counts_from_the_start_with_its_delimiter(self):
        mc = Memcached("-D", "/")
        try:
            with Server(PETREL, "-t", "2", "-D", "/") as petrel:
                text = "set a/b 0 0 1\r\nx\r\nget a/b c:d\r\nstats detail dump\r\n"
                got = [exchange(port, text) for port in (mc.port, petrel.port)]
                self.assertIn("PREFIX a get 1 hit 1 set 1 del 0\r\nEND\r\n", got[1])
                self.assertEqual(got[1], got[0])
                settings = [parse_stats(exchange(port, "stats settings\r\n"))
                            for port in (mc.port, petrel.port)]
                for name in ("stat_key_prefix", "detail_enabled"):
                    self.assertEqual(settings[1][name], settings[0][name], name)
        finally:
            mc.stop()

    def test_delimiter_of_two_characters_is_refused(self):
        p = subprocess.run([PETREL, "-p", "0", "--admin-port", "0", "-D", "ab"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"prefix-delimiter", p.stderr)


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


@unittest.skipIf(xxh3_64() is None, "libxxhash not found")
class DetailDumpBackpressure(unittest.TestCase):
    """A client that pipelines "stats detail dump" and does not read: the workers' records come
    back whole, whatever the output limit, so the server asks for one dump at a time per
    connection instead of holding every one of them."""

    PREFIXES = 8192
    DUMPS = 30

    def test_pipelined_dumps_are_taken_one_at_a_time(self):
        # Every prefix on worker 1's shard, so that for a connection of worker 0 the whole
        # table comes from another worker, after the dump was asked for.
        keys = keys_of_worker(1, 2, self.PREFIXES, lambda i: b"p" * 200 + b"%07d:x" % i)
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            s.sendall(b"stats detail on\r\n")
            read_until(s, b"OK\r\n", 5)
            for i in range(0, len(keys), 8):
                s.sendall(b"get " + b" ".join(keys[i:i + 8]) + b"\r\n")
                read_until(s, b"END\r\n", 5)
            s.sendall(b"stats detail dump\r\n")
            one = read_until(s, b"\r\nEND\r\n", 30)
            self.assertEqual(one.count(b"PREFIX "), self.PREFIXES)
            time.sleep(0.3)
            base = rss(srv)
            readers = []
            for _ in range(2):  # one of them on worker 0
                r = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
                r.sendall(b"stats detail dump\r\n" * self.DUMPS)
                readers.append(r)
            time.sleep(3)
            grew = rss(srv) - base
            # One dump is about 2 MB: holding every one would be 60 MB per connection (the
            # sockets' buffers take a few of them).
            if not sanitized(srv):
                self.assertLess(grew, 25 << 20, "the server grew by %d bytes" % grew)
            for r in readers:
                data = bytearray()
                while data.count(b"END\r\n") < self.DUMPS:
                    chunk = r.recv(1 << 20)
                    self.assertTrue(chunk, "connection closed")
                    data += chunk
                r.close()
                self.assertEqual(data.count(b"PREFIX "), self.DUMPS * self.PREFIXES)


class ConnsBackpressure(unittest.TestCase):
    """A client that pipelines "stats conns" and does not read: as with stats detail dump, every
    worker's list comes back whole, so the server asks for one at a time per connection."""

    IDLE = 1500
    ASKS = 60

    def test_pipelined_stats_conns_are_taken_one_at_a_time(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
        with Server(PETREL, "-t", "2", "-c", "4096") as srv:
            idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                    for _ in range(self.IDLE)]
            with srv.connect() as s:
                s.sendall(b"stats conns\r\n")
                one = read_until(s, b"END\r\n", 30)
            self.assertGreater(len(one), self.IDLE * 100)
            time.sleep(0.3)
            base = rss(srv)
            readers = []
            for _ in range(2):
                r = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
                r.sendall(b"stats conns\r\n" * self.ASKS)
                readers.append(r)
            time.sleep(3)
            grew = rss(srv) - base
            # One list is about len(one) bytes (a few hundred KB): holding all of them would be
            # ASKS times that per connection, tens of MB.
            if not sanitized(srv):
                self.assertLess(grew, self.ASKS * len(one) // 2,
                                "the server grew by %d bytes" % grew)
            for r in readers:
                data = bytearray()
                while data.count(b"END\r\n") < self.ASKS:
                    chunk = r.recv(1 << 20)
                    self.assertTrue(chunk, "connection closed")
                    data += chunk
                r.close()
            for c in idle:
                c.close()


# "stats settings" fields whose values must agree when both servers run with the same options.
SAME_SETTINGS = (
    "maxbytes", "maxconns", "udpport", "inter", "verbosity", "evictions", "domain_socket",
    "umask", "shutdown_command", "num_threads", "stat_key_prefix", "detail_enabled",
    "cas_enabled", "tcp_backlog", "binding_protocol", "auth_enabled_sasl", "auth_enabled_ascii",
    "item_size_max", "maxconns_fast", "flush_enabled", "dump_enabled", "idle_timeout",
    "track_sizes", "ssl_enabled", "ssl_chain_cert", "ssl_key", "ssl_verify_mode",
    "ssl_keyformat", "ssl_ciphers", "ssl_ca_cert", "ssl_session_cache", "ssl_kernel_tls",
    "ssl_min_version",
)

# "stats" counters that must agree after the same requests. (total_connections differs by
# design: memcached also counts its listening sockets, Petrel only the clients it accepted.)
SAME_COUNTERS = (
    "cmd_get", "cmd_set", "cmd_flush", "cmd_touch", "cmd_meta", "get_hits", "get_misses",
    "delete_misses", "delete_hits", "incr_misses", "incr_hits", "decr_misses", "decr_hits",
    "cas_misses", "cas_hits", "cas_badval", "touch_hits", "touch_misses", "curr_items",
    "threads", "max_connections", "limit_maxbytes", "curr_connections",
)


@unittest.skipIf(MEMCACHED is None, "memcached is not installed")
class Settings(unittest.TestCase):
    """stats settings and stats: memcached's fields, memcached's values."""

    @classmethod
    def setUpClass(cls):
        opts = ("-t", "3", "-m", "32", "-c", "500", "-b", "512", "-I", "2m")
        cls.mc = Memcached(*opts, "-B", "ascii")
        cls.petrel = Server(PETREL, *opts, "--tls-session-lifetime", "0")

    @classmethod
    def tearDownClass(cls):
        cls.mc.stop()
        cls.petrel.stop()

    def test_settings_with_a_true_equivalent_agree(self):
        mc = parse_stats(exchange(self.mc.port, "stats settings\r\n"))
        petrel = parse_stats(exchange(self.petrel.port, "stats settings\r\n"))
        for name in SAME_SETTINGS:
            self.assertIn(name, petrel, name)
            if name.startswith("ssl_") and "ssl_enabled" not in mc:
                continue  # a memcached built without TLS shows no ssl_* field
            self.assertEqual(petrel[name], mc[name], name)

    def test_settings_come_in_memcacheds_order(self):
        mc = list(parse_stats(exchange(self.mc.port, "stats settings\r\n")))
        petrel = list(parse_stats(exchange(self.petrel.port, "stats settings\r\n")))
        shared = [name for name in petrel if name in mc]
        self.assertEqual(shared, [name for name in mc if name in shared])

    def test_counters_agree_after_the_same_requests(self):
        text = ("set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b c\r\ngets a\r\ntouch a 0\r\n"
                "touch z 0\r\ngat 0 b y\r\nincr a 1\r\nincr z 1\r\ndecr a 1\r\ndecr z 1\r\n"
                "cas a 0 0 1 1\r\n3\r\ncas z 0 0 1 1\r\n3\r\ndelete b\r\ndelete b\r\n"
                "me a\r\nme z\r\nflush_all 1000\r\n")
        # One connection each, closed before "stats" so that both count the same ones.
        for port in (self.mc.port, self.petrel.port):
            exchange(port, text)
        time.sleep(0.2)
        mc = parse_stats(exchange(self.mc.port, "stats\r\n"))
        petrel = parse_stats(exchange(self.petrel.port, "stats\r\n"))
        for name in SAME_COUNTERS:
            self.assertIn(name, petrel, name)
            self.assertEqual(petrel[name], mc[name], name)


if __name__ == "__main__":
    unittest.main()
