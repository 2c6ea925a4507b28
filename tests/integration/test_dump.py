"""lru_crawler metadump / mgdump against the real server, and the tools that use them.

Each class starts its own server (-p 0, --admin-port 0). Every socket has a timeout, so a server
that hangs fails a test instead of hanging it. memcached-tool is Debian's script (package
`memcached`), found through MEMCACHED_TOOL or its Debian path; its tests skip without it.
"""
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

from harness import Server, parse_stats, read_until
from test_hostile import rss, sanitized

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")
MIB = 1 << 20
LINE = re.compile(rb"^key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) "
                  rb"size=(\d+) flags=(\d+) $")


def memcached_tool():
    path = os.environ.get("MEMCACHED_TOOL", "/usr/share/memcached/scripts/memcached-tool")
    if os.access(path, os.X_OK) and shutil.which("perl"):
        return path
    return None


def read_big(sock, end, timeout):
    """read_until for replies of many megabytes (a bytearray: no quadratic copying)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while not data.endswith(end):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no %r within %.1f s; got %r" % (end, timeout, data[-200:]))
        sock.settimeout(left)
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError("connection closed; got %r" % data[-200:])
        data += chunk
    return bytes(data)


def uri_decode(b):
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), b)


def store_many(sock, items, timeout=60):
    """Pipeline sets of (key, flags, exptime, value) and check every one was stored."""
    for i in range(0, len(items), 500):
        chunk = items[i:i + 500]
        sock.sendall(b"".join(b"set %s %d %d %d\r\n%s\r\n" % (k, f, e, len(v), v)
                              for k, f, e, v in chunk))
        reply = b""
        while reply.count(b"\r\n") < len(chunk):
            reply += read_until(sock, b"\r\n", timeout)
        assert reply == b"STORED\r\n" * len(chunk), reply[:200]


def dump(sock, what=b"all", timeout=60):
    """Run a metadump; return its lines (without the OK and END lines)."""
    sock.sendall(b"lru_crawler metadump " + what + b"\r\n")
    data = read_big(sock, b"END\r\n", timeout)
    assert data.startswith(b"OK\r\n"), data[:200]
    assert data.endswith(b"END\r\n"), data[-200:]
    body = data[len(b"OK\r\n"):-len(b"END\r\n")]
    return body.split(b"\n")[:-1] if body else []


def parse_lines(lines):
    """{key: fields} from metadump lines; fails on a malformed line or a key seen twice."""
    out = {}
    for line in lines:
        m = LINE.match(line)
        assert m, "malformed metadump line %r" % line
        key = uri_decode(m.group(1))
        assert key not in out, "key %r listed twice" % key
        out[key] = {"exp": int(m.group(2)), "la": int(m.group(3)), "cas": int(m.group(4)),
                    "fetch": m.group(5), "cls": int(m.group(6)), "size": int(m.group(7)),
                    "flags": int(m.group(8))}
    return out


def gets_cas(sock, keys, timeout=30):
    """{key: cas} through gets, 100 keys per line."""
    out = {}
    for i in range(0, len(keys), 100):
        sock.sendall(b"gets " + b" ".join(keys[i:i + 100]) + b"\r\n")
        data = read_until(sock, b"END\r\n", timeout)
        for m in re.finditer(rb"VALUE (\S+) \d+ \d+ (\d+)\r\n", data):
            out[m.group(1)] = int(m.group(2))
    return out


class MetadumpAcrossWorkers(unittest.TestCase):
    """Items spread over 2, 3 and 4 workers' shards are each listed once, with their fields."""

    N = 3000

    def check_workers(self, threads):
        with Server(PETREL, "-t", str(threads)) as srv, srv.connect() as s:
            now = int(time.time())
            items = []
            for i in range(self.N):
                ttl = (0, 100, 5000)[i % 3]
                items.append((b"key:%d" % i, i % 7, ttl, b"v" * (i % 50)))
            store_many(s, items)
            listed = parse_lines(dump(s))
            self.assertEqual(len(listed), self.N)
            cas = gets_cas(s, [k for k, _, _, _ in items])
            for key, flags, ttl, value in items:
                f = listed[key]
                self.assertEqual(f["flags"], flags, key)
                self.assertEqual(f["cas"], cas[key], key)
                self.assertEqual(f["fetch"], b"no", key)  # listed before the gets
                if ttl == 0:
                    self.assertEqual(f["exp"], -1, key)
                else:
                    # A segment's shared expiry: never late, at most ttl/16 early.
                    self.assertLessEqual(f["exp"], int(time.time()) + ttl, key)
                    self.assertGreaterEqual(f["exp"], now + ttl - ttl // 16 - 1, key)
                # Header (5 bytes, 4 more for non-zero flags), key and value; 4 more for an
                # item stored late into its segment, which keeps its own expiry.
                base = 5 + (4 if flags else 0) + len(key) + len(value)
                self.assertIn(f["size"] - base, (0, 4) if ttl else (0,), key)
                self.assertLessEqual(f["la"], int(time.time()))
                self.assertGreaterEqual(f["la"], now - 1)

    def test_two_workers(self):
        self.check_workers(2)

    def test_three_workers(self):
        self.check_workers(3)

    def test_four_workers(self):
        self.check_workers(4)

    def test_classes_are_the_ttl_buckets_of_stats_items(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            store_many(s, [(b"forever%d" % i, 0, 0, b"x") for i in range(50)] +
                          [(b"soon%d" % i, 0, 100, b"x") for i in range(50)])
            time.sleep(0.3)  # stats items shows what the shards published at their last tick
            s.sendall(b"stats items\r\n")
            classes = set(int(c) for c in re.findall(
                rb"STAT items:(\d+):number ", read_until(s, b"END\r\n", 10)))
            listed = parse_lines(dump(s))
            self.assertEqual(set(f["cls"] for f in listed.values()), classes)
            only_one = parse_lines(dump(s, b"1"))
            self.assertEqual(set(only_one), set(b"forever%d" % i for i in range(50)))

    def test_fetched_items_say_so(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            store_many(s, [(b"a", 0, 0, b"x"), (b"b", 0, 0, b"y")])
            s.sendall(b"get a\r\n")
            read_until(s, b"END\r\n", 5)
            listed = parse_lines(dump(s))
            self.assertEqual(listed[b"a"]["fetch"], b"yes")
            self.assertEqual(listed[b"b"]["fetch"], b"no")

    def test_mgdump_lists_mg_lines_then_en(self):
        with Server(PETREL, "-t", "3") as srv, srv.connect() as s:
            keys = [b"k%d" % i for i in range(200)]
            store_many(s, [(k, 0, 0, b"x") for k in keys])
            s.sendall(b"lru_crawler mgdump all\r\n")
            data = read_until(s, b"EN\r\n", 10)
            lines = data.split(b"\r\n")
            self.assertEqual(lines[0], b"OK")
            self.assertEqual(lines[-2:], [b"EN", b""])
            self.assertEqual(sorted(lines[1:-2]), sorted(b"mg " + k for k in keys))

    def test_requests_after_a_dump_are_answered_after_it(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            store_many(s, [(b"k%d" % i, 0, 0, b"x") for i in range(500)])
            s.sendall(b"lru_crawler metadump all\r\nget k1\r\n")
            data = read_until(s, b"VALUE k1 0 1\r\nx\r\nEND\r\n", 10)
            self.assertEqual(data.count(b"\nkey="), 500)
            self.assertLess(data.index(b"END\r\n"), data.index(b"VALUE k1"))

    def test_dump_behind_an_unsent_reply_is_refused_as_memcached_does(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            s.sendall(b"get nothing\r\nlru_crawler metadump all\r\n")
            self.assertEqual(read_until(s, b"metadump\r\n", 5),
                             b"END\r\nERROR cannot pipeline other commands before metadump\r\n")


class DumpBehindHeldReplies(unittest.TestCase):
    """Replies held behind a dump (requests pipelined after it) never stop it: with a single
    worker each step runs on the connection's own worker, so a request read between two steps
    may hold almost the whole output limit; the dump must still go on once the client reads."""

    def test_dump_goes_on_when_a_held_value_takes_the_room(self):
        with Server(PETREL, "-t", "1", "--output-limit", "64k") as srv, srv.connect() as s:
            value = b"b" * 62000  # held behind the dump, it leaves less than a step's room
            store_many(s, [(b"big", 0, 0, value)])
            s.sendall(b"lru_crawler metadump all\r\nget big\r\n")
            data = read_big(s, b"\r\nEND\r\n", 10)
            self.assertTrue(data.startswith(b"OK\r\nkey=big "), data[:100])
            self.assertTrue(data.endswith(b"END\r\nVALUE big 0 62000\r\n" + value +
                                          b"\r\nEND\r\n"), data[-100:])


class DumpWhileWriting(unittest.TestCase):
    """A dump runs while another client writes, deletes and makes the shards evict: every line
    is whole and the item's own, no key twice, and the server lives on."""

    def test_dump_during_writes_and_evictions(self):
        with Server(PETREL, "-t", "3", "-m", "6") as srv, srv.connect() as s, \
                srv.connect() as w:
            stable = [b"stable%d" % i for i in range(300)]
            store_many(s, [(k, 1, 0, b"s") for k in stable])
            stop = threading.Event()
            errors = []

            def writer():
                i = 0
                try:
                    while not stop.is_set():
                        batch = b"".join(b"set churn%d 0 100 1000\r\n%s\r\ndelete churn%d\r\n"
                                         % (i + j, b"c" * 1000, i + j - 50 + j % 2)
                                         for j in range(100))
                        w.sendall(batch)
                        read_until(w, b"\r\n", 10)
                        i += 100
                        # Keep reading the replies so that the writer is never held.
                        w.settimeout(0.01)
                        try:
                            while w.recv(1 << 16):
                                pass
                        except socket.timeout:
                            pass
                        w.settimeout(10)
                except Exception as e:  # reported by the test below
                    errors.append(e)

            t = threading.Thread(target=writer, daemon=True)
            t.start()
            try:
                deadline = time.monotonic() + 20
                while int(parse_stats(srv.admin("stats")).get("evictions", "0")) == 0:
                    self.assertLess(time.monotonic(), deadline, "no eviction happened")
                    time.sleep(0.1)
                for _ in range(3):
                    listed = parse_lines(dump(s))  # whole lines, no key twice
                    self.assertGreater(len(listed), 0)
                    # No torn item: every field is the item's own (evicted ones are just absent).
                    for key, f in listed.items():
                        if key.startswith(b"stable"):
                            self.assertEqual((f["flags"], f["exp"]), (1, -1), key)
                            # 8 more once a merge moved it (it keeps its CAS).
                            self.assertIn(f["size"] - (5 + 4 + len(key) + 1), (0, 8), key)
                        else:
                            self.assertTrue(key.startswith(b"churn"), key)
                            self.assertEqual(f["flags"], 0, key)
                            # 4 more for an expiry of its own, 8 for a CAS kept by a merge.
                            self.assertIn(f["size"] - (5 + len(key) + 1000), (0, 4, 8, 12), key)
            finally:
                stop.set()
                t.join(10)
            self.assertEqual(errors, [])
            s.sendall(b"version\r\n")
            self.assertTrue(read_until(s, b"\r\n", 5).startswith(b"VERSION "))


class DumpToAClientThatDoesNotRead(unittest.TestCase):
    """A client asks for a dump far larger than the output limit and reads nothing: the server
    holds no more than its limit for it, other clients are served meanwhile, and the dump is
    all there once the client reads."""

    N = 200000  # ~20 MB of metadump lines

    def test_unread_dump_is_held_not_buffered(self):
        with Server(PETREL, "-t", "2", "-m", "256", "--output-limit", "256k") as srv, \
                srv.connect() as s, srv.connect() as other:
            items = [(b"a-rather-long-key-to-make-long-lines:%d" % i, 0, 0, b"v")
                     for i in range(self.N)]
            store_many(s, items, timeout=120)
            time.sleep(0.3)
            base = rss(srv)
            # Two readers, so that one is on each worker: for one of them the first shard
            # walked is another worker's.
            readers = []
            for _ in range(2):
                reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                reader.settimeout(120)
                reader.connect(("127.0.0.1", srv.port))
                reader.sendall(b"lru_crawler metadump all\r\n")
                readers.append(reader)
            peak = 0
            for _ in range(20):
                time.sleep(0.05)
                t0 = time.monotonic()
                # A key the dump lists anyway: its count stays N.
                other.sendall(b"set %s 0 0 1\r\nv\r\nget %s\r\n" % (items[7][0], items[7][0]))
                self.assertEqual(read_until(other, b"END\r\n", 5),
                                 b"STORED\r\nVALUE %s 0 1\r\nv\r\nEND\r\n" % items[7][0])
                self.assertLess(time.monotonic() - t0, 1.0)
                peak = max(peak, rss(srv) - base)
            # The limit, and one step's lines past it (a hash bucket's few lines), and what
            # the other client's requests take: far from the 20 MB the whole dump takes.
            if not sanitized(srv):
                self.assertLess(peak, 4 * MIB, "the server grew by %d bytes" % peak)
            print("server grew by %d bytes at most" % peak)
            for reader in readers:
                data = read_big(reader, b"END\r\n", 120)
                reader.close()
                self.assertEqual(data.count(b"\nkey="), self.N)
                self.assertGreater(len(data), 50 * self.N)


class DisableCas(unittest.TestCase):
    """--disable-cas, memcached's -C: CAS values are 0 on every worker, and compared as 0."""

    def test_cas_values_are_zero_everywhere(self):
        with Server(PETREL, "-t", "3", "--disable-cas") as srv, srv.connect() as s:
            keys = [b"c%d" % i for i in range(30)]  # on every shard
            store_many(s, [(k, 0, 0, b"x") for k in keys])
            self.assertEqual(set(gets_cas(s, keys).values()), {0})
            self.assertEqual(set(f["cas"] for f in parse_lines(dump(s)).values()), {0})
            for k in keys[:5]:
                s.sendall(b"cas %s 0 0 1 0\r\ny\r\nmg %s c\r\n" % (k, k))
                self.assertEqual(read_until(s, b"HD c0\r\n", 5), b"EXISTS\r\nHD c0\r\n")
            s.sendall(b"stats settings\r\n")
            self.assertIn(b"STAT cas_enabled no\r\n", read_until(s, b"END\r\n", 5))

    def test_mg_c0_names_the_current_version(self):
        # memcached -C: every item's CAS is 0, so "mg v C0" holds the current version and gets
        # no value back.
        with Server(PETREL, "-t", "1", "--disable-cas") as srv, srv.connect() as s:
            store_many(s, [(b"k", 0, 0, b"x")])
            s.sendall(b"mg k v C0\r\nmg k v C1\r\n")
            self.assertEqual(read_until(s, b"VA 1\r\nx\r\n", 5), b"HD\r\nVA 1\r\nx\r\n")

    def test_cas_is_enabled_by_default(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            store_many(s, [(b"k", 0, 0, b"x")])
            self.assertNotEqual(gets_cas(s, [b"k"])[b"k"], 0)
            s.sendall(b"stats settings\r\n")
            self.assertIn(b"STAT cas_enabled yes\r\n", read_until(s, b"END\r\n", 5))


@unittest.skipIf(memcached_tool() is None, "memcached-tool (Debian package memcached) not found")
class MemcachedTool(unittest.TestCase):
    """Debian's memcached-tool: dump reads metadump and gets every key; display and stats."""

    def run_tool(self, srv, *args):
        return subprocess.run([memcached_tool(), "127.0.0.1:%d" % srv.port, *args],
                              capture_output=True, timeout=60)

    def test_dump_gives_every_item_as_an_add(self):
        with Server(PETREL, "-t", "3") as srv, srv.connect() as s:
            items = [(b"tool%d" % i, i % 3, (0, 1000)[i % 2], b"value%d" % i) for i in range(300)]
            items.append((b"odd%20key", 9, 0, b"spaces in the value"))
            store_many(s, items)
            out = self.run_tool(srv, "dump")
            self.assertEqual(out.returncode, 0, out.stderr)
            got = {}
            for m in re.finditer(rb"add (\S+) (\d+) (\d+) (\d+)\r\n", out.stdout):
                n = int(m.group(4))
                got[m.group(1)] = (int(m.group(2)), int(m.group(3)),
                                   out.stdout[m.end():m.end() + n])
            self.assertEqual(len(got), len(items))
            for key, flags, ttl, value in items:
                self.assertEqual(got[key][0], flags, key)
                self.assertEqual(got[key][2], value, key)
                if ttl == 0:
                    self.assertEqual(got[key][1], 0, key)
                else:
                    self.assertGreater(got[key][1], time.time(), key)

    def test_display_and_stats_work(self):
        with Server(PETREL, "-t", "2") as srv, srv.connect() as s:
            store_many(s, [(b"d%d" % i, 0, 0, b"x") for i in range(10)])
            time.sleep(0.3)  # published at the shards' next tick
            out = self.run_tool(srv, "display")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, rb"\n\s+1\s")
            out = self.run_tool(srv, "stats")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, rb"curr_items\s+10\r?\n")


if __name__ == "__main__":
    unittest.main()
