"""Warm restarts with --memory-file (-e): what a restart keeps, after a graceful stop, after
kill -9 under write load, with damaged bytes in the file, and with another thread count or
memory size.

The memory file goes in a fresh directory on /dev/shm (tmpfs) when there is one. Each test
starts its own servers (-p 0, --admin-port 0); every socket has a timeout.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

from harness import Server, free_port, read_until

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")


def value_of(key, ver):
    """The exact bytes a version of a key holds: its length varies with the version."""
    head = ("%s:%d:" % (key, ver)).encode()
    return head + bytes([97 + (ver + i) % 26 for i in range(ver * 7 % 300 + 10)])


def flags_of(key, ver):
    return zlib.crc32(("%s/%d" % (key, ver)).encode())


def exptime_of(key):
    """Half the keys never expire, the others live 1000 s."""
    return 0 if zlib.crc32(key.encode()) % 2 == 0 else 1000


def set_cmd(key, ver):
    v = value_of(key, ver)
    return b"set %s %d %d %d\r\n%s\r\n" % (key.encode(), flags_of(key, ver), exptime_of(key),
                                           len(v), v)


def mg(sock, key):
    """(value, flags, ttl) of a key, or None when it is missing."""
    sock.sendall(b"mg %s v f t\r\n" % key.encode())
    line, data = read_until(sock, b"\r\n", 10).split(b"\r\n", 1)
    if line == b"EN":
        return None
    m = re.match(rb"VA (\d+) f(\d+) t(-?\d+)$", line)
    if not m:
        raise AssertionError("unexpected reply %r" % line)
    n = int(m.group(1))
    while len(data) < n + 2:
        chunk = sock.recv(n + 2 - len(data))
        if not chunk:
            raise AssertionError("connection closed")
        data += chunk
    return data[:n], int(m.group(2)), int(m.group(3))


def mg_many(sock, keys, batch=200):
    """mg of each key, pipelined in batches: a list of (value, flags, ttl) or None."""
    out = []
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        sock.sendall(b"".join(b"mg %s v f t\r\n" % k.encode() for k in part))
        data = b""
        pos = 0
        for _ in part:
            while b"\r\n" not in data[pos:]:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError("connection closed")
                data += chunk
            end = data.index(b"\r\n", pos)
            line = data[pos:end]
            pos = end + 2
            if line == b"EN":
                out.append(None)
                continue
            m = re.match(rb"VA (\d+) f(\d+) t(-?\d+)$", line)
            if not m:
                raise AssertionError("unexpected reply %r" % line)
            n = int(m.group(1))
            while len(data) < pos + n + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError("connection closed")
                data += chunk
            out.append((data[pos:pos + n], int(m.group(2)), int(m.group(3))))
            pos += n + 2
    return out


class RestartCase(unittest.TestCase):
    def setUp(self):
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.dir = tempfile.mkdtemp(prefix="petrel-restart-", dir=base)
        self.path = os.path.join(self.dir, "cache.mem")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *args):
        return Server(PETREL, "-e", self.path, *args)

    def assert_items(self, sock, keys, ver):
        for k, got in zip(keys, mg_many(sock, keys)):
            self.assert_got(k, ver, got)

    def assert_item(self, sock, key, ver):
        self.assert_got(key, ver, mg(sock, key))

    def assert_got(self, key, ver, got):
        self.assertIsNotNone(got, "%s (version %d) is missing" % (key, ver))
        value, flags, ttl = got
        self.assertEqual(value, value_of(key, ver), key)
        self.assertEqual(flags, flags_of(key, ver), key)
        if exptime_of(key) == 0:
            self.assertEqual(ttl, -1, key)
        else:
            self.assertTrue(0 < ttl <= 1000, (key, ttl))

    def fill(self, srv, keys, ver=1):
        with srv.connect() as s:
            for i in range(0, len(keys), 100):
                batch = keys[i:i + 100]
                s.sendall(b"".join(set_cmd(k, ver) for k in batch))
                data = b""
                while data.count(b"\r\n") < len(batch):
                    data += s.recv(65536)
                self.assertEqual(data, b"STORED\r\n" * len(batch))


class Graceful(RestartCase):
    def test_a_stopped_server_comes_back_with_every_item(self):
        keys = ["g%d" % i for i in range(3000)]
        with self.start("-t", "2") as srv:
            self.fill(srv, keys)
            with srv.connect() as s:
                s.sendall(b"delete g7\r\n")
                self.assertEqual(read_until(s, b"\r\n", 10), b"DELETED\r\n")
            self.assertEqual(srv.stop()[0], 0)
        with self.start("-t", "2") as srv:
            srv.wait_for(r"recovering 2 shards")
            with srv.connect() as s:
                self.assert_items(s, [k for k in keys if k != "g7"], 1)
                self.assertIsNone(mg(s, "g7"), "a deleted item came back")
            self.assertEqual(int(srv.stats()["curr_items"]), len(keys) - 1)

    def test_flush_all_is_kept_across_a_restart(self):
        with self.start("-t", "2") as srv:
            self.fill(srv, ["f%d" % i for i in range(100)])
            with srv.connect() as s:
                s.sendall(b"flush_all\r\n")
                self.assertEqual(read_until(s, b"\r\n", 10), b"OK\r\n")
            srv.stop()
        with self.start("-t", "2") as srv, srv.connect() as s:
            self.assertIsNone(mg(s, "f1"))
            self.assertEqual(int(srv.stats()["curr_items"]), 0)

    def test_a_file_in_use_is_refused(self):
        with self.start("-t", "1") as srv:
            other = Server(PETREL, "-e", self.path, "-t", "1", wait_ready=False)
            with other:
                other.wait_for(r"in use by another process")
                self.assertNotEqual(other.proc.wait(10), 0)
            self.assertIsNone(srv.proc.poll())


class Writer(threading.Thread):
    """Pipelines sets of its own keys (versions 1, 2, ...) and records what was acknowledged."""

    def __init__(self, port, wid, nkeys, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.keys = ["w%d-%d" % (wid, i) for i in range(nkeys)]
        self.sent = {}   # key -> highest version sent
        self.acked = {}  # key -> highest version acknowledged
        self.rng = random.Random(wid)

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                self.send_until_stopped(s)
        except OSError:
            return  # the server was killed

    def send_until_stopped(self, s):
        while not self.stop.is_set():
            batch = []
            for _ in range(32):
                k = self.rng.choice(self.keys)
                ver = self.sent.get(k, 0) + 1
                self.sent[k] = ver
                batch.append((k, ver))
            s.sendall(b"".join(set_cmd(k, v) for k, v in batch))
            data = b""
            for k, ver in batch:
                while b"\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                line, data = data.split(b"\r\n", 1)
                if line != b"STORED":
                    raise AssertionError("%s: %r" % (k, line))
                self.acked[k] = ver


class KillUnderLoad(RestartCase):
    def test_every_acknowledged_write_survives_kill_9(self):
        stop = threading.Event()
        with self.start("-t", "4", "-m", "64") as srv:
            writers = [Writer(srv.port, w, 2000, stop) for w in range(4)]
            for w in writers:
                w.start()
            deadline = time.monotonic() + 10
            while sum(len(w.acked) for w in writers) < 4000 and time.monotonic() < deadline:
                time.sleep(0.05)
            srv.proc.send_signal(signal.SIGKILL)  # while the writers keep sending
            srv.proc.wait(10)
            for w in writers:
                w.join(10)
        acked = sum(len(w.acked) for w in writers)
        self.assertGreater(acked, 1000, "the load did not get going")
        with self.start("-t", "4", "-m", "64") as srv, srv.connect() as s:
            for w in writers:
                for k, got in zip(w.keys, mg_many(s, w.keys)):
                    lo, hi = w.acked.get(k, 0), w.sent.get(k, 0)
                    if got is None:
                        self.assertEqual(lo, 0, "%s: acknowledged version %d lost" % (k, lo))
                        continue
                    value, flags, ttl = got
                    m = re.match(rb"([^:]+):(\d+):", value)
                    self.assertTrue(m and m.group(1) == k.encode(), (k, value[:40]))
                    ver = int(m.group(2))
                    self.assertTrue(lo <= ver <= hi, "%s: version %d, acknowledged %d, sent %d"
                                    % (k, ver, lo, hi))
                    self.assertEqual(value, value_of(k, ver), "%s: corrupt value" % k)
                    self.assertEqual(flags, flags_of(k, ver), k)
                    if exptime_of(k) == 0:
                        self.assertEqual(ttl, -1, k)
                    else:
                        self.assertTrue(0 < ttl <= 1000, (k, ttl))


class Corruption(RestartCase):
    def test_flipped_bytes_are_dropped_and_counted_never_served(self):
        keys = ["c%d" % i for i in range(5000)]
        with self.start("-t", "2", "-m", "16") as srv:
            self.fill(srv, keys)
            srv.stop()
        size = os.path.getsize(self.path)
        with open(self.path, "r+b") as f:
            data = bytearray(f.read())
            # Items start right after each region's meta page and segment headers: damage the
            # bytes where the items are (found by their keys), and some anywhere else.
            rng = random.Random(16)
            spots = [m.start() for m in re.finditer(rb"c\d+:1:", data)]
            for pos in rng.sample(spots, 50):
                data[pos + rng.randrange(0, 20)] ^= 1 << rng.randrange(8)
            for _ in range(50):
                pos = rng.randrange(4096, size)
                data[pos] ^= 0xff
            f.seek(0)
            f.write(data)
        with self.start("-t", "2", "-m", "16") as srv:
            line = srv.wait_for(r"worker 0: recovered")
            dropped = 0
            for w in range(2):
                m = re.search(r"dropped (\d+) damaged", srv.wait_for(r"worker %d: recovered" % w))
                dropped += int(m.group(1))
            self.assertGreater(dropped, 0, line)
            self.assertEqual(int(srv.stats()["recovery_damaged_items"]), dropped)
            found = 0
            with srv.connect() as s:
                for k, got in zip(keys, mg_many(s, keys)):
                    if got is not None:
                        found += 1
                        self.assertEqual(got[0], value_of(k, 1), "%s: damaged value served" % k)
                        self.assertEqual(got[1], flags_of(k, 1), k)
                s.sendall(b"set after 0 0 2\r\nok\r\n")
                self.assertEqual(read_until(s, b"\r\n", 10), b"STORED\r\n")
            self.assertGreater(found, len(keys) // 2)
            self.assertIsNone(srv.proc.poll())

    def test_a_file_that_is_not_a_memory_file_starts_empty_saying_so(self):
        with open(self.path, "wb") as f:
            f.write(b"not a memory file\n" * 1000)
        with self.start("-t", "2") as srv:
            srv.wait_for(r"not a Petrel memory file: starting empty")
            self.fill(srv, ["n1"])
            srv.stop()
        with self.start("-t", "2") as srv, srv.connect() as s:
            self.assert_item(s, "n1", 1)


class Reshard(RestartCase):
    def test_thread_count_changes_keep_every_item(self):
        keys = ["r%d" % i for i in range(5000)]
        with self.start("-t", "1", "-m", "16") as srv:
            self.fill(srv, keys)
            srv.stop()
        for threads in ("4", "2"):
            with self.start("-t", threads, "-m", "16") as srv:
                srv.wait_for(r"re-sharded from \d+ shards .* 5000 items moved, 0 did not fit")
                with srv.connect() as s:
                    self.assert_items(s, keys, 1)
                self.assertEqual(int(srv.stats()["curr_items"]), len(keys))
                s.close()
                srv.stop()

    def test_no_room_to_re_shard_starts_empty_saying_why(self):
        with self.start("-t", "1") as srv:
            self.fill(srv, ["e%d" % i for i in range(100)])
            srv.stop()
        os.mkdir(self.path + ".new")  # where the new layout would be built: it cannot be
        with self.start("-t", "2") as srv:
            srv.wait_for(r"cannot re-shard it from 1 shards .*: starting empty")
            with srv.connect() as s:
                self.assertIsNone(mg(s, "e1"))
            self.fill(srv, ["after"])
            srv.stop()
        with self.start("-t", "2") as srv, srv.connect() as s:
            self.assert_item(s, "after", 1)



# Re-sharding into less memory: 2 shards of 4 MiB become 2 of 512 KiB, in segments of 8 KiB so
# that what is kept is decided at a fine grain. Items are about 216 bytes (200-byte values), so
# the new shards hold about CAP of them.
SHRINK_FROM = ("-t", "2", "-m", "8", "--segment-size", "8k", "--max-item-size", "8k")
SHRINK_TO = ("-t", "2", "-m", "1", "--segment-size", "8k", "--max-item-size", "8k")
CAP = 4500


def pipelined(sock, cmds, reply_end, batch=200):
    """Send cmds in batches; return the replies, one per command (each ends with reply_end)."""
    out = []
    for i in range(0, len(cmds), batch):
        part = cmds[i:i + batch]
        sock.sendall(b"".join(part))
        data = b""
        while data.count(reply_end) < len(part):
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed")
            data += chunk
        out += [r + reply_end for r in data.split(reply_end)[:-1]]
    return out


class ReshardPolicy(RestartCase):
    """Restarting into less memory keeps what the eviction policy would keep."""

    def put(self, srv, keys, exptime=0):
        with srv.connect() as s:
            cmds = [b"set %s 0 %d 200\r\n%s\r\n" % (k.encode(), exptime, b"v" * 200)
                    for k in keys]
            self.assertEqual(set(pipelined(s, cmds, b"\r\n")), {b"STORED\r\n"})

    def delete(self, srv, keys):
        with srv.connect() as s:
            cmds = [b"delete %s\r\n" % k.encode() for k in keys]
            self.assertEqual(set(pipelined(s, cmds, b"\r\n")), {b"DELETED\r\n"})

    def read(self, srv, keys):
        with srv.connect() as s:
            replies = pipelined(s, [b"get %s\r\n" % k.encode() for k in keys], b"END\r\n")
            self.assertTrue(all(r.startswith(b"VALUE ") for r in replies))

    def shrink(self, policy, write):
        """Write into the large layout, restart into the small one; return the kept keys
        (a set) and the re-sharding log line."""
        with self.start(*SHRINK_FROM, "--eviction", policy) as srv:
            keys = write(srv)
            srv.stop()
        with self.start(*SHRINK_TO, "--eviction", policy) as srv:
            line = srv.wait_for(r"re-sharded from 2 shards .* did not fit")
            self.assertIn("policy %s" % policy, line)
            with srv.connect() as s:
                replies = pipelined(s, [b"mg %s\r\n" % k.encode() for k in keys], b"\r\n")
            kept = {k for k, r in zip(keys, replies) if r == b"HD\r\n"}
            self.assertEqual(len(kept) + replies.count(b"EN\r\n"), len(keys), "unexpected reply")
            stats = srv.stats()
            self.assertEqual(int(stats["curr_items"]), len(kept))
            # What is kept fills most of the new limit (segments are freed whole).
            self.assertGreater(int(stats["bytes"]), (1 << 20) * 6 // 10, stats["bytes"])
            moved, dropped = map(int, re.search(r"(\d+) items moved, (\d+) did not fit",
                                                line).groups())
            self.assertEqual(moved, len(kept), line)
            self.assertEqual(dropped, len(keys) - len(kept), line)
            srv.stop()
        return kept, line

    @staticmethod
    def share(kept, keys):
        return sum(k in kept for k in keys) / len(keys)

    def test_fifo_keeps_the_newest(self):
        keys = ["f%d" % i for i in range(3 * CAP)]
        kept, _ = self.shrink("fifo", lambda srv: self.put(srv, keys) or keys)
        self.assertEqual(self.share(kept, keys[:len(keys) // 2]), 0.0)
        self.assertEqual(self.share(kept, keys[-len(keys) // 5:]), 1.0)

    def test_none_keeps_the_oldest_and_logs_what_it_dropped(self):
        keys = ["n%d" % i for i in range(3 * CAP)]
        kept, line = self.shrink("none", lambda srv: self.put(srv, keys) or keys)
        self.assertEqual(self.share(kept, keys[:len(keys) // 5]), 1.0)
        self.assertEqual(self.share(kept, keys[len(keys) // 2:]), 0.0)
        self.assertIn("did not fit", line)

    def test_random_keeps_items_of_every_age(self):
        keys = ["r%d" % i for i in range(3 * CAP)]
        kept, _ = self.shrink("random", lambda srv: self.put(srv, keys) or keys)
        for third in (keys[:CAP], keys[CAP:2 * CAP], keys[2 * CAP:]):
            self.assertTrue(0.1 < self.share(kept, third) < 0.6, self.share(kept, third))

    def test_cte_keeps_the_items_furthest_from_expiry(self):
        never = ["l%d" % i for i in range(CAP // 2)]
        soon = ["s%d" % i for i in range(CAP)]    # expire in 2000 s
        later = ["t%d" % i for i in range(CAP)]   # expire in 5000 s, written with them

        def write(srv):
            self.put(srv, never)
            for i in range(0, CAP, 250):
                self.put(srv, soon[i:i + 250], 2000)
                self.put(srv, later[i:i + 250], 5000)
            return never + soon + later

        kept, _ = self.shrink("cte", write)
        self.assertEqual(self.share(kept, never), 1.0)  # the oldest, which fifo would drop
        self.assertEqual(self.share(kept, soon), 0.0)
        self.assertGreater(self.share(kept, later), 0.2)

    def test_util_keeps_the_items_of_the_best_used_segments(self):
        full = ["a%d" % i for i in range(CAP * 85 // 100)]
        sparse = ["b%d" % i for i in range(3 * CAP)]

        def write(srv):
            self.put(srv, full)
            self.put(srv, sparse)
            self.delete(srv, [k for i, k in enumerate(sparse) if i % 10])
            return full + sparse[::10]

        kept, _ = self.shrink("util", write)
        self.assertGreater(self.share(kept, full), 0.95)  # the oldest, which fifo would drop
        self.assertLess(self.share(kept, sparse[::10]), 0.6)

    def test_merge_keeps_items_read_before_over_those_never_read(self):
        keys = ["m%d" % i for i in range(3 * CAP)]
        old = keys[:CAP]
        hot = old[::4]

        def write(srv):
            self.put(srv, keys)
            self.read(srv, hot)
            return keys

        kept, _ = self.shrink("merge", write)
        cold = [k for k in old if k not in set(hot)]
        self.assertGreater(self.share(kept, hot), 0.5)
        self.assertLess(self.share(kept, cold), 0.1)
        self.assertIn(keys[-1], kept)


def nutcracker():
    path = os.environ.get("NUTCRACKER") or shutil.which("nutcracker") or "/usr/sbin/nutcracker"
    return path if os.access(path, os.X_OK) else None


class ProxyLoad(threading.Thread):
    """Through the proxy: sets new keys and reads back older ones, in pipelined batches;
    records what was acknowledged and counts the error replies (a node being restarted)."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.acked, self.errors, self.requests, self.bad = [], 0, 0, []

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        n = 0
        buf = b""
        while not self.stop.is_set():
            keys = ["p%d" % (n + i) for i in range(16)]
            n += 16
            s.sendall(b"".join(set_cmd(k, 1) for k in keys))
            for k in keys:
                while b"\r\n" not in buf:
                    buf += s.recv(65536)
                line, buf = buf.split(b"\r\n", 1)
                self.requests += 1
                if line == b"STORED":
                    self.acked.append(k)
                else:
                    self.errors += 1
            if self.acked:
                k = self.acked[len(self.acked) // 2]
                s.sendall(b"get %s\r\n" % k.encode())
                self.requests += 1
                while True:  # the only request in flight: what comes is its reply
                    if buf.startswith(b"SERVER_ERROR") and buf.endswith(b"\r\n"):
                        self.errors += 1
                        break
                    if buf.endswith(b"END\r\n"):
                        if buf != b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (
                                k.encode(), flags_of(k, 1), len(value_of(k, 1)), value_of(k, 1)):
                            self.bad.append((k, buf[:60]))
                        break
                    buf += s.recv(65536)
                buf = b""
        s.close()


@unittest.skipUnless(nutcracker(), "nutcracker (twemproxy) not installed")
class RollingRestartBehindProxy(RestartCase):
    def test_restarting_each_of_three_nodes_under_load_loses_no_item(self):
        ports = [free_port() for _ in range(3)]
        paths = [os.path.join(self.dir, "node%d.mem" % i) for i in range(3)]
        proxy_port = free_port()
        conf = os.path.join(self.dir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write("pool:\n  listen: 127.0.0.1:%d\n  hash: fnv1a_64\n  distribution: ketama\n"
                    "  timeout: 2000\n  auto_eject_hosts: false\n"
                    "  server_retry_timeout: 100\n  server_failure_limit: 1\n  servers:\n"
                    % proxy_port)
            for i, p in enumerate(ports):
                f.write("   - 127.0.0.1:%d:1 node%d\n" % (p, i))

        def node(i):
            return Server(PETREL, "-e", paths[i], "-t", "2", "-p", str(ports[i]))

        nodes = [node(i) for i in range(3)]
        proxy = subprocess.Popen([nutcracker(), "-c", conf, "-s", str(free_port())],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()
                    break
                except OSError:
                    self.assertLess(time.monotonic(), deadline, "nutcracker did not start")
                    time.sleep(0.1)
            stop = threading.Event()
            load = ProxyLoad(proxy_port, stop)
            load.start()
            time.sleep(1.0)
            for i in range(3):
                before = load.requests
                nodes[i].stop()
                nodes[i].__exit__()
                nodes[i] = node(i)
                time.sleep(1.0)
                self.assertGreater(load.requests, before, "no progress around node %d" % i)
            stop.set()
            load.join(30)
            self.assertFalse(load.is_alive())
            self.assertEqual(load.bad, [], "wrong values read through the proxy")
            self.assertGreater(len(load.acked), 1000)
            # Errors only while a node was down: a small part of the requests.
            self.assertLess(load.errors, load.requests // 4, (load.errors, load.requests))
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
                replies = pipelined(s, [b"get %s\r\n" % k.encode() for k in load.acked],
                                    b"END\r\n", batch=100)
                for k, reply in zip(load.acked, replies):
                    v = value_of(k, 1)
                    self.assertEqual(reply, b"VALUE %s %d %d\r\n%s\r\nEND\r\n"
                                     % (k.encode(), flags_of(k, 1), len(v), v),
                                     "%s lost or wrong after the restarts" % k)
            print("\nrolling restart: %d requests, %d errors, %d items all kept"
                  % (load.requests, load.errors, len(load.acked)))
        finally:
            proxy.kill()
            proxy.wait()
            for n in nodes:
                n.__exit__()


if __name__ == "__main__":
    unittest.main()
