"""petrel's stats views: against Debian's memcached, the same requests to both, the same replies;
and "stats items" / "stats slabs" (Petrel's classes are its TTL buckets) on their own.

memcached is found through $MEMCACHED, then PATH, then /usr/bin/memcached; without it the
comparisons are skipped. Replies are compared byte for byte where Petrel promises memcached's;
the order of "stats detail dump" lines is memcached's hash table's, so with several prefixes the
lines are compared as a set.
"""
import os
import resource
import shutil
import socket
import subprocess
import time
import unittest

from harness import Server, free_port, keys_of_worker, parse_stats, read_until, xxh3_64
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


# ---- stats items and stats slabs --------------------------------------------------------------

MEMCACHED_TOOL = os.environ.get("MEMCACHED_TOOL", "/usr/share/memcached/scripts/memcached-tool")
TICK = 0.35  # the shards publish their TTL buckets every 100 ms: a few ticks of margin


def ttl_class(ttl):
    """The class of items stored with a relative TTL of ttl seconds: their TTL bucket + 1 (one
    bucket per second below 32 s, then 16 per power of two; docs/storage.md)."""
    if ttl == 0:
        return 1
    if ttl < 32:
        return ttl + 1
    k = ttl.bit_length() - 1
    return 32 + (k - 5) * 16 + ((ttl >> (k - 4)) & 15) + 1


def view(sock, what):
    """One stats view as a dict of ints."""
    sock.sendall(b"stats %s\r\n" % what if what else b"stats\r\n")
    return {k: int(v) if v.lstrip("-").isdigit() else v
            for k, v in parse_stats(read_until(sock, b"END\r\n", 10).decode()).items()}


def classes(items):
    """{class id: {field: value}} of a "stats items" view."""
    out = {}
    for name, value in items.items():
        _, cls, field = name.split(":")
        out.setdefault(int(cls), {})[field] = value
    return out


def store(sock, keys, ttl, size=100):
    """Pipelined noreply sets, then an mn to know they all ran."""
    value = b"v" * size
    batch = []
    for key in keys:
        batch.append(b"set %s 0 %d %d noreply\r\n%s\r\n" % (key, ttl, size, value))
        if len(batch) == 1000:
            sock.sendall(b"".join(batch))
            batch = []
    sock.sendall(b"".join(batch) + b"mn\r\n")
    read_until(sock, b"MN\r\n", 60)


# memcached 1.6's "stats items" fields, in its order (without its segmented-LRU ones), and the
# ones Petrel gives: the others have no equivalent here (docs/protocol.md).
MEMCACHED_ITEMS_FIELDS = (
    "number", "age", "mem_requested", "evicted", "evicted_nonzero", "evicted_time",
    "outofmemory", "tailrepairs", "reclaimed", "expired_unfetched", "evicted_unfetched",
    "crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked",
)
PETREL_ITEMS_FIELDS = (
    "number", "age", "mem_requested", "evicted", "evicted_nonzero", "outofmemory", "reclaimed",
    "expired_unfetched", "evicted_unfetched", "ttl_min", "ttl_max",
)


class Classes(unittest.TestCase):
    """stats items and stats slabs: one class per TTL bucket, with what happened to its items."""

    def test_items_are_counted_in_the_class_of_their_ttl(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            sets = {0: 300, 101: 200, 5000: 100}  # none on a bucket's lower edge (see LONG)
            for ttl, n in sets.items():
                store(s, [b"t%d-%d" % (ttl, i) for i in range(n)], ttl)
            time.sleep(TICK)
            items = classes(view(s, b"items"))
            self.assertEqual(set(items), {ttl_class(t) for t in sets})
            for ttl, n in sets.items():
                c = items[ttl_class(ttl)]
                self.assertEqual(c["number"], n, ttl)
                self.assertLessEqual(c["ttl_min"], ttl)
                self.assertGreaterEqual(c["ttl_max"], ttl)
                self.assertGreater(c["mem_requested"], n * 100)
            slabs = view(s, b"slabs")
            for ttl, n in sets.items():
                self.assertEqual(slabs["%d:used_chunks" % ttl_class(ttl)], n)
            self.assertEqual(slabs["active_slabs"], len(sets))

    def test_fields_are_memcacheds_in_its_order_then_petrels(self):
        with Server(PETREL, "-t", "1") as srv, srv.connect() as s:
            store(s, [b"k"], 0)
            time.sleep(TICK)
            s.sendall(b"stats items\r\n")
            names = [line.split()[1].split(":")[2] for line in
                     read_until(s, b"END\r\n", 10).decode().splitlines()[:-1]]
            self.assertEqual(names, list(PETREL_ITEMS_FIELDS))
            shared = [n for n in names if n in MEMCACHED_ITEMS_FIELDS]
            self.assertEqual(shared, [n for n in MEMCACHED_ITEMS_FIELDS if n in shared])

    def test_evictions_are_counted_in_the_class_evicted_from(self):
        # 8 MB, one shard: 40 MB of two classes, keys never read and never overwritten, so
        # every item set in a class is either still there or was evicted from it.
        with Server(PETREL, "-t", "1", "-m", "8") as srv, srv.connect() as s:
            sent = {0: 0, 1000: 0}
            for round_ in range(20):
                for ttl in sent:
                    store(s, [b"e%d-%d-%d" % (ttl, round_, i) for i in range(1000)], ttl, 1000)
                    sent[ttl] += 1000
            time.sleep(TICK)
            items = classes(view(s, b"items"))
            total = view(s, b"")
            evicted = 0
            for ttl, n in sent.items():
                c = items[ttl_class(ttl)]
                self.assertGreater(c["evicted"], 0, ttl)
                self.assertEqual(c["number"] + c["evicted"], n, ttl)
                self.assertEqual(c["evicted_nonzero"], c["evicted"] if ttl else 0, ttl)
                self.assertEqual(c["evicted_unfetched"], c["evicted"], ttl)  # none was read
                self.assertEqual(c["outofmemory"], 0, ttl)
                evicted += c["evicted"]
            self.assertEqual(evicted, total["evictions"])

    def test_refused_stores_are_counted_in_their_class(self):
        with Server(PETREL, "-t", "1", "-m", "8", "--eviction", "none") as srv, \
                srv.connect() as s:
            value = b"v" * 1000
            refused = 0
            for i in range(20000):
                s.sendall(b"set o%d 0 300 1000\r\n%s\r\n" % (i, value))
                reply = read_until(s, b"\r\n", 10)
                if reply != b"STORED\r\n":
                    self.assertEqual(reply, b"SERVER_ERROR out of memory storing object\r\n")
                    refused += 1
                    if refused == 10:
                        break
            self.assertEqual(refused, 10)
            time.sleep(TICK)
            c = classes(view(s, b"items"))[ttl_class(300)]
            self.assertEqual(c["outofmemory"], 10)
            self.assertEqual(c["evicted"], 0)

    def expire_once(self, srv, s):
        """30 items with a TTL of 3 s (10 of them read) and, two seconds later, one more in the
        same class that outlives them by two seconds, so that the class is still listed once
        they expired. Returns the class's fields after the 30 were reclaimed, or None if the
        test machine was too slow to look in time (under a sanitizer, with other tests running,
        a reclaim can take most of a second)."""
        while time.time() % 1 > 0.1:  # start just after a second: expiries are whole seconds
            time.sleep(0.01)
        start = time.time()
        store(s, [b"x%d" % i for i in range(30)], 3)
        s.sendall(b"get " + b" ".join(b"x%d" % i for i in range(10)) + b"\r\n")
        self.assertEqual(read_until(s, b"END\r\n", 10).count(b"VALUE "), 10)
        time.sleep(max(0, start + 2.0 - time.time()))
        store(s, [b"keeper"], 3)  # expires two whole seconds after the others
        time.sleep(max(0, start + 3.0 - time.time()))
        while time.time() < start + 4.8:
            time.sleep(0.1)
            c = classes(view(s, b"items")).get(ttl_class(3))
            if c is not None and c["number"] == 1:
                return c
        return None

    def test_expired_items_are_counted_in_their_class(self):
        with Server(PETREL, "-t", "1") as srv, srv.connect() as s:
            for attempt in range(3):
                s.sendall(b"stats reset\r\n")
                read_until(s, b"RESET\r\n", 10)
                c = self.expire_once(srv, s)
                if c is not None:
                    break
            self.assertIsNotNone(c, "the expired items were never seen reclaimed in time")
            self.assertEqual(c["reclaimed"], 30)
            self.assertEqual(c["expired_unfetched"], 20)
            self.assertEqual(c["evicted"], 0)

    def test_age_is_the_oldest_items_and_grows(self):
        with Server(PETREL, "-t", "1") as srv, srv.connect() as s:
            store(s, [b"old"], 0)
            time.sleep(TICK)
            first = classes(view(s, b"items"))[1]["age"]
            self.assertLessEqual(first, 1)
            time.sleep(2.2)
            store(s, [b"new"], 0)  # a younger item does not make the class younger
            time.sleep(TICK)
            self.assertGreaterEqual(classes(view(s, b"items"))[1]["age"], first + 2)

    def test_reset_zeroes_the_class_counters_and_keeps_the_items(self):
        with Server(PETREL, "-t", "2", "-m", "8") as srv, srv.connect() as s:
            store(s, [b"r%d" % i for i in range(20000)], 0, 1000)
            time.sleep(TICK)
            before = classes(view(s, b"items"))[1]
            self.assertGreater(before["evicted"], 0)
            s.sendall(b"stats reset\r\n")
            self.assertEqual(read_until(s, b"RESET\r\n", 10), b"RESET\r\n")
            after = classes(view(s, b"items"))[1]  # republished by the reset itself
            for field in ("evicted", "evicted_nonzero", "evicted_unfetched", "outofmemory",
                          "reclaimed", "expired_unfetched"):
                self.assertEqual(after[field], 0, field)
            self.assertEqual(after["number"], before["number"])
            self.assertEqual(view(s, b"")["evictions"], 0)

    @unittest.skipUnless(os.path.exists(MEMCACHED_TOOL) and shutil.which("perl"),
                         "memcached-tool is not installed")
    def test_memcached_tool_display_shows_age_and_evictions(self):
        with Server(PETREL, "-t", "1", "-m", "8") as srv, srv.connect() as s:
            store(s, [b"d%d" % i for i in range(20000)], 0, 1000)
            time.sleep(TICK)
            evicted = classes(view(s, b"items"))[1]["evicted"]
            p = subprocess.run(["perl", MEMCACHED_TOOL, "127.0.0.1:%d" % srv.port, "display"],
                               capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        # "  #  Item_Size  Max_age   Pages   Count   Full?  Evicted Evict_Time OOM"
        rows = [line.split() for line in p.stdout.decode().splitlines()[1:]]
        row = [r for r in rows if r[0] == "1"][0]
        self.assertRegex(row[2], r"^\d+s$")
        self.assertEqual(int(row[-3]), evicted)
        self.assertEqual(int(row[-1]), 0)


# memcached 1.6's per-class command counters of "stats slabs", in its order.
CLASS_COMMANDS = ("get_hits", "cmd_set", "delete_hits", "incr_hits", "decr_hits", "cas_hits",
                  "cas_badval", "touch_hits")
# memcached 1.6's "stats slabs" fields, in its order, and the ones Petrel gives.
MEMCACHED_SLABS_FIELDS = ("chunk_size", "chunks_per_page", "total_pages", "total_chunks",
                          "used_chunks", "free_chunks", "free_chunks_end") + CLASS_COMMANDS
PETREL_SLABS_FIELDS = ("total_pages", "used_chunks") + CLASS_COMMANDS + ("ttl_min", "ttl_max")

# The two classes the tests below use. 101 s, not 100: the store sees the clock a moment after
# the request read it, and 100 s is the lower edge of its bucket (100-103 s)
NEVER, LONG = ttl_class(0), ttl_class(101)


def per_slab_class(slabs):
    """{class id: {field: value}} of a "stats slabs" view ("<id>:<field>" names)."""
    out = {}
    for name, value in slabs.items():
        if ":" in name:
            cls, field = name.split(":")
            out.setdefault(int(cls), {})[field] = value
    return out


def slab_classes(sock):
    """per_slab_class() of "stats slabs", once the shards have published."""
    time.sleep(TICK)
    return per_slab_class(view(sock, b"slabs"))


def run(sock, text):
    """Send requests, then an mn, and return the replies before its MN."""
    sock.sendall(text + b"mn\r\n")
    return read_until(sock, b"MN\r\n", 10)[:-4]


def cas_of(sock, key):
    sock.sendall(b"gets %s\r\n" % key)
    return int(read_until(sock, b"END\r\n", 10).split(b"\r\n")[0].split()[4])


class ClassCommands(unittest.TestCase):
    """stats slabs: memcached's per-class command counters, a class being a TTL bucket. Two
    workers, so that the keys (and the counts) are spread over two shards."""

    def setUp(self):
        self.srv = Server(PETREL, "-t", "2")
        self.srv.__enter__()
        self.s = self.srv.connect()

    def tearDown(self):
        self.s.close()
        self.srv.__exit__(None, None, None)

    def count(self, field):
        """{class id: field} of the classes where it is nonzero."""
        return {c: f[field] for c, f in slab_classes(self.s).items() if f[field]}

    def test_get_hits_count_in_the_class_of_the_item_found(self):
        run(self.s, b"set g0 0 0 1\r\na\r\nset g1 0 101 1\r\nb\r\n")
        self.assertEqual(run(self.s, b"get g0 g1 nope\r\ngets g1\r\nmg g1 v\r\nmg nope v\r\n")
                         .count(b"\r\nEND\r\n"), 2)
        self.assertEqual(self.count("get_hits"), {NEVER: 1, LONG: 3})

    def test_cmd_set_counts_every_store_in_the_class_of_its_ttl_stored_or_not(self):
        replies = run(self.s, b"set s 0 0 1\r\na\r\nadd s 0 101 1\r\nb\r\n"
                      b"replace nope 0 101 1\r\nc\r\nms m 1 T101\r\nd\r\n")
        self.assertEqual(replies, b"STORED\r\nNOT_STORED\r\nNOT_STORED\r\nHD\r\n")
        self.assertEqual(self.count("cmd_set"), {NEVER: 1, LONG: 3})

    def test_an_append_counts_in_the_class_of_the_item_it_extends(self):
        # The item keeps its own expiry (never); the exptime an append carries is ignored.
        replies = run(self.s, b"set p 0 0 1\r\na\r\nappend p 0 101 1\r\nb\r\n"
                      b"prepend p 0 101 1\r\nc\r\nappend nope 0 101 1\r\nd\r\n")
        self.assertEqual(replies, b"STORED\r\nSTORED\r\nSTORED\r\nNOT_STORED\r\n")
        self.assertEqual(self.count("cmd_set"), {NEVER: 3, LONG: 1})

    def test_a_class_that_only_counted_commands_is_listed(self):
        run(self.s, b"set s 0 0 1\r\na\r\nadd s 0 101 1\r\nb\r\n")  # NOT_STORED
        long = slab_classes(self.s)[LONG]
        self.assertEqual((long["total_pages"], long["used_chunks"], long["cmd_set"]), (0, 0, 1))
        self.assertEqual(view(self.s, b"slabs")["active_slabs"], 2)

    def test_delete_hits_count_in_the_class_of_the_item_deleted(self):
        run(self.s, b"set d0 0 0 1\r\na\r\nset d1 0 101 1\r\nb\r\nset d2 0 101 1\r\nc\r\n"
                    b"delete d0\r\ndelete d1\r\ndelete d1\r\nmd d2\r\nmd d2\r\n")
        self.assertEqual(self.count("delete_hits"), {NEVER: 1, LONG: 2})

    def test_incr_and_decr_hits_count_in_the_class_of_the_number(self):
        run(self.s, b"set n0 0 0 1\r\n5\r\nset n1 0 101 1\r\n5\r\nincr n0 1\r\n"
                    b"incr n1 1\r\ndecr n1 1\r\nma n1\r\nma n0 MD\r\nincr nope 1\r\n")
        self.assertEqual(self.count("incr_hits"), {NEVER: 1, LONG: 2})
        self.assertEqual(self.count("decr_hits"), {NEVER: 1, LONG: 1})

    def test_cas_counts_in_the_class_of_the_item_compared(self):
        run(self.s, b"set x 0 0 1\r\na\r\n")
        # The item is in NEVER; this cas moves it to LONG: the hit counts where it was.
        self.assertEqual(run(self.s, b"cas x 0 101 1 %d\r\nb\r\n" % cas_of(self.s, b"x")),
                         b"STORED\r\n")
        self.assertEqual(run(self.s, b"cas x 0 0 1 1\r\nc\r\n"), b"EXISTS\r\n")
        self.assertEqual(self.count("cas_hits"), {NEVER: 1})
        self.assertEqual(self.count("cas_badval"), {LONG: 1})
        self.assertEqual(self.count("cmd_set"), {NEVER: 2, LONG: 1})  # set, cas, cas

    def test_touch_hits_count_in_the_class_the_item_was_in(self):
        run(self.s, b"set t 0 0 1\r\na\r\n")
        self.assertEqual(run(self.s, b"touch t 101\r\n"), b"TOUCHED\r\n")  # NEVER -> LONG
        run(self.s, b"gat 101 t\r\nmg t T101 v\r\ntouch nope 1\r\n")
        self.assertEqual(self.count("touch_hits"), {NEVER: 1, LONG: 2})

    def test_cas_refused_by_disable_cas_counts_in_the_class_of_the_item(self):
        with Server(PETREL, "-t", "2", "-C") as srv, srv.connect() as s:
            run(s, b"set x 0 101 1\r\na\r\n")
            self.assertEqual(run(s, b"cas x 0 0 1 0\r\nb\r\n"), b"EXISTS\r\n")
            per_class = slab_classes(s)
        self.assertEqual(per_class[LONG]["cas_badval"], 1)
        self.assertEqual(per_class[NEVER]["cmd_set"], 1)  # the cas, by its TTL

    MIXED = (b"set a 0 0 1\r\n1\r\nset b 0 101 1\r\n2\r\nadd a 0 101 1\r\n3\r\n"
             b"get a b c\r\ngat 0 b\r\nincr a 1\r\ndecr b 1\r\ncas a 0 0 1 1\r\n4\r\n"
             b"cas z 0 0 1 1\r\n4\r\nms e 1 E77\r\n6\r\ncas e 0 0 1 77\r\n7\r\ntouch a 101\r\nms c 1 T101\r\n5\r\nmg c v\r\n"
             b"ma c\r\nmd b\r\ndelete a\r\n")

    def test_each_counter_summed_over_the_classes_is_the_servers(self):
        run(self.s, self.MIXED)
        per_class = slab_classes(self.s)
        total = view(self.s, b"")
        for field in CLASS_COMMANDS:
            self.assertGreater(total[field], 0, field)
            self.assertEqual(sum(c[field] for c in per_class.values()), total[field], field)

    def test_reset_zeroes_them(self):
        run(self.s, self.MIXED + b"set keep 0 0 1\r\nk\r\n")
        self.assertTrue(any(c["cmd_set"] for c in slab_classes(self.s).values()))
        self.s.sendall(b"stats reset\r\n")
        self.assertEqual(read_until(self.s, b"RESET\r\n", 10), b"RESET\r\n")
        after = per_slab_class(view(self.s, b"slabs"))
        self.assertIn(NEVER, after)  # it still holds "keep" and "c"
        for c in after.values():
            for field in CLASS_COMMANDS:
                self.assertEqual(c[field], 0, field)

    def test_every_class_has_what_memcached_exporter_parses(self):
        # Its per-class slab metrics (on by default) report the server down when a class lacks
        # cmd_set, cas_hits or cas_badval, or when a field it reads is not a number.
        run(self.s, self.MIXED + b"set e 0 5000 1\r\n1\r\n")
        slabs = slab_classes(self.s)
        self.assertGreaterEqual(len(slabs), 3)
        for cls, fields in slabs.items():
            for field in ("cmd_set", "cas_hits", "cas_badval") + CLASS_COMMANDS:
                self.assertIn(field, fields, (cls, field))
            for value in fields.values():
                float(value)

    def test_slabs_fields_are_memcacheds_in_its_order_then_petrels(self):
        run(self.s, b"set k 0 0 1\r\n1\r\n")
        time.sleep(TICK)
        self.s.sendall(b"stats slabs\r\n")
        names = [line.split()[1].split(":")[1] for line in
                 read_until(self.s, b"END\r\n", 10).decode().splitlines() if ":" in line]
        self.assertEqual(names, list(PETREL_SLABS_FIELDS))
        shared = [n for n in names if n in MEMCACHED_SLABS_FIELDS]
        self.assertEqual(shared, [n for n in MEMCACHED_SLABS_FIELDS if n in shared])


@unittest.skipIf(MEMCACHED is None, "memcached is not installed")
class ClassCommandsOfMemcached(unittest.TestCase):
    """What the tests above take from memcached, checked on Debian's: its per-class fields and
    their order, and an add refused counted in the class of the item it allocated."""

    def test_fields_and_a_refused_add(self):
        mc = Memcached()
        try:
            with socket.create_connection(("127.0.0.1", mc.port)) as s:
                run(s, b"set a 0 0 1\r\n1\r\nadd a 0 0 2000\r\n%s\r\n" % (b"x" * 2000))
                s.sendall(b"stats slabs\r\n")
                lines = read_until(s, b"END\r\n", 10).decode().splitlines()
        finally:
            mc.stop()
        first = lines[0].split()[1].split(":")[0]
        names = [line.split()[1].split(":")[1] for line in lines
                 if line.startswith("STAT %s:" % first)]
        self.assertEqual(names, list(MEMCACHED_SLABS_FIELDS))
        per_class = per_slab_class({k: int(v) for k, v in
                                    parse_stats("\r\n".join(lines)).items() if ":" in k})
        big = [c for c in per_class.values() if c["used_chunks"] == 0]
        self.assertEqual([c["cmd_set"] for c in big], [1])


class EmptiedSegments(unittest.TestCase):
    """segments_emptied: segments whose items were all overwritten are freed for reuse."""

    def test_overwrites_count_emptied_segments_and_reset_zeroes_them(self):
        with Server(PETREL, "-t", "1", "-m", "64", "-I", "64k", "--segment-size", "64k") as srv, \
                srv.connect() as s:
            value = b"v" * 1000
            for _ in range(20):  # 200 items of 1 KB: about 3 segments, rewritten 20 times
                s.sendall(b"".join(b"set e%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value), value)
                                   for i in range(200)) + b"mn\r\n")
                read_until(s, b"MN\r\n", 10)
            st = view(s, b"")
            self.assertGreater(st["segments_emptied"], 20)
            self.assertLessEqual(st["segments_used"], 8)  # of the 66 the writes took
            self.assertEqual(st["curr_items"], 200)
            s.sendall(b"stats reset\r\n")
            self.assertEqual(read_until(s, b"\r\n", 10), b"RESET\r\n")
            self.assertEqual(view(s, b"")["segments_emptied"], 0)


class ExporterSequence(unittest.TestCase):
    """Prometheus' memcached_exporter: stats, stats settings, stats slabs, stats items on one
    connection, each read up to END, on an idle server holding 500,000 items."""

    ITEMS = 500000

    def test_answered_in_full_within_100_ms(self):
        with Server(PETREL, "-t", "2", "-m", "256") as srv, srv.connect() as s:
            # Each TTL is at least a second inside its bucket (61 s: bucket 60-61 s): the load
            # takes seconds, and the clock may tick between reading it for the expiry and the
            # store choosing the bucket, which then sees one second less. 60 s sits on the
            # bucket's lower edge and such an item would be listed in the 58-59 s class.
            ttls = (0, 61, 3600, 86400)
            value = b"0123456789"
            batch = []
            for i in range(self.ITEMS):
                batch.append(b"ms k%07d 10 T%d q\r\n%s\r\n" % (i, ttls[i % 4], value))
                if len(batch) == 5000:
                    s.sendall(b"".join(batch))
                    batch = []
            s.sendall(b"".join(batch) + b"mn\r\n")
            read_until(s, b"MN\r\n", 120)
            time.sleep(TICK)
            best = None
            for _ in range(10):
                with srv.connect() as c:
                    t0 = time.monotonic()
                    replies = []
                    for what in (b"stats", b"stats settings", b"stats slabs", b"stats items"):
                        c.sendall(what + b"\r\n")
                        replies.append(read_until(c, b"END\r\n", 10))
                    took = time.monotonic() - t0
                best = took if best is None else min(best, took)
                if best < 0.1:
                    break
            self.assertLess(best, 0.1)
            self.assertEqual(parse_stats(replies[0].decode())["curr_items"], str(self.ITEMS))
            items = classes({k: int(v) for k, v in parse_stats(replies[3].decode()).items()})
            self.assertEqual(sum(c["number"] for c in items.values()), self.ITEMS)
            self.assertEqual(set(items), {ttl_class(t) for t in ttls})
            for reply in replies:
                self.assertNotIn(b"ERROR", reply)


if __name__ == "__main__":
    unittest.main()
