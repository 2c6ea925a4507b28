"""petrel's admin plane over real sockets: stats, Prometheus, JSON, health, reload, logging."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families
from pymemcache.client.base import Client

import tls_certs
from harness import Server, free_port, parse_stats

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")
TICK = 0.3  # a little more than the workers' 100 ms tick, after which the admin port is current


def admin_text(server, command, end=(b"END\r\n", b"ERROR\r\n", b"OK\r\n")):
    """Send one text command to the admin port; read until the reply ends with one of end."""
    with server.connect(server.admin_port) as s:
        s.sendall(command.encode() + b"\r\n")
        data = b""
        while not data.endswith(end):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode()


stat_lines = parse_stats


def http_get(server, path):
    """GET path from the admin port; return (status, headers dict, body)."""
    with server.connect(server.admin_port) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, body.decode()


def prometheus(server):
    status, headers, body = http_get(server, "/metrics")
    assert status == 200, status
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(body)}


def sample_sum(families, family, sample_name=None, **labels):
    f = families[family]
    total = 0
    for s in f.samples:
        if sample_name is not None and s.name != sample_name:
            continue
        if all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


class KnownTraffic(unittest.TestCase):
    """A fresh server with 2 workers gets a known set of requests; every export agrees."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(PETREL, "-t", "2", "-m", "64")
        mc = Client(("127.0.0.1", cls.server.port), timeout=10, default_noreply=False)
        for i in range(30):
            mc.set("key-%d" % i, b"v" * 10)
        for i in range(20):
            mc.get("key-%d" % i)       # hits
        for i in range(7):
            mc.get("missing-%d" % i)   # misses
        mc.delete("key-0")
        mc.delete("nope")
        mc.incr("nope", 1)
        mc.set("n", b"5")
        mc.incr("n", 2)
        mc.decr("n", 1)
        mc.touch("key-1", 100)
        mc.touch("nope", 100)
        _, cas = mc.gets("key-2")
        mc.cas("key-2", b"x", cas)
        mc.cas("key-2", b"y", cas)
        mc.close()
        time.sleep(TICK)

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    # What the traffic above did, in memcached's terms.
    expect = {
        "cmd_get": 28, "get_hits": 21, "get_misses": 7, "cmd_set": 33, "delete_hits": 1,
        "delete_misses": 1, "incr_misses": 1, "incr_hits": 1, "decr_hits": 1, "decr_misses": 0,
        "cmd_touch": 2, "touch_hits": 1, "touch_misses": 1, "cas_hits": 1, "cas_badval": 1,
        "cas_misses": 0, "curr_items": 30, "threads": 2,
        # Items never change in place: 32 stores, and incr and decr each stored a new version.
        "total_items": 34,
        "limit_maxbytes": 64 << 20, "rejected_connections": 0, "evictions": 0,
        "expired_unfetched": 0,
    }

    def test_admin_stats_counts_the_traffic_with_memcached_names(self):
        st = stat_lines(admin_text(self.server, "stats"))
        for name, value in self.expect.items():
            self.assertEqual(int(st[name]), value, name)
        for name in ("pid", "uptime", "time", "version", "curr_connections", "total_connections",
                     "bytes_read", "bytes_written", "bytes", "pointer_size", "rusage_user"):
            self.assertIn(name, st)
        self.assertEqual(int(st["pid"]), self.server.proc.pid)
        self.assertGreaterEqual(int(st["total_connections"]), 1)
        self.assertGreater(int(st["bytes_read"]), 30 * 10)
        self.assertGreater(int(st["bytes"]), 0)

    def test_data_port_stats_answers_from_the_same_registry(self):
        with self.server.connect() as s:
            s.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += s.recv(65536)
        data_port = stat_lines(data.decode())
        admin = stat_lines(admin_text(self.server, "stats"))
        for name in self.expect:
            self.assertEqual(data_port[name], admin[name], name)
        self.assertRegex(data_port["version"], r"^1\.6\.\d+-petrel-")

    def test_prometheus_values_match_the_traffic(self):
        fam = prometheus(self.server)
        for name in ("cmd_get", "get_hits", "get_misses", "cmd_set", "delete_hits", "cas_badval"):
            self.assertEqual(sample_sum(fam, "petrel_" + name), self.expect[name], name)
            self.assertEqual(fam["petrel_" + name].type, "counter")
            self.assertTrue(fam["petrel_" + name].documentation)
        self.assertEqual(sample_sum(fam, "petrel_curr_items"), 30)
        self.assertEqual(fam["petrel_curr_items"].type, "gauge")
        self.assertEqual(sample_sum(fam, "petrel_threads"), 2)
        workers = {s.labels["worker"] for s in fam["petrel_cmd_get"].samples}
        self.assertEqual(workers, {"0", "1"})

    def test_prometheus_names_follow_the_conventions(self):
        fams = prometheus(self.server)
        self.assertEqual(fams["petrel_uptime_seconds"].type, "gauge")
        # The allocator's figures exist only with jemalloc (not in the sanitizer builds).
        memory = [n for n in fams if n.startswith("petrel_mem")]
        self.assertTrue(all(n.startswith("petrel_memory_") and n.endswith("_bytes")
                            for n in memory), memory)
        # prometheus_client strips _total from a counter family's name.
        self.assertEqual(fams["petrel_connections"].type, "counter")
        self.assertEqual(fams["petrel_items"].type, "counter")
        doubled = [n for n in fams if n.startswith("petrel_total_")]
        self.assertEqual(doubled, [])

    def test_prometheus_has_build_info_and_process_metrics(self):
        fams = prometheus(self.server)
        info = fams["petrel_build_info"].samples[0]
        self.assertEqual(info.value, 1)
        self.assertEqual(info.labels["product"], "petrel")
        self.assertTrue(info.labels["version"])
        self.assertEqual(fams["process_cpu_seconds"].type, "counter")
        self.assertGreater(fams["process_resident_memory_bytes"].samples[0].value, 1 << 20)
        self.assertGreater(fams["process_open_fds"].samples[0].value, 3)
        self.assertGreaterEqual(fams["process_max_fds"].samples[0].value,
                                fams["process_open_fds"].samples[0].value)
        start = fams["process_start_time_seconds"].samples[0].value
        self.assertTrue(time.time() - 600 < start <= time.time() + 1, start)

    def test_prometheus_histograms_count_every_request_by_class(self):
        fam = prometheus(self.server)
        h = fam["petrel_get_latency_seconds"]
        self.assertEqual(h.type, "histogram")
        count = sample_sum(fam, "petrel_get_latency_seconds", "petrel_get_latency_seconds_count")
        inf = sample_sum(fam, "petrel_get_latency_seconds", "petrel_get_latency_seconds_bucket",
                         le="+Inf")
        self.assertEqual(count, 28)  # 27 get and 1 gets, one key each
        self.assertEqual(inf, count)
        buckets = [s for s in h.samples if s.name.endswith("_bucket")]
        values = [s.value for s in buckets]
        self.assertEqual(values, sorted(values), "buckets are cumulative")
        self.assertGreater(sample_sum(fam, "petrel_get_latency_seconds",
                                      "petrel_get_latency_seconds_sum"), 0)
        sets = sample_sum(fam, "petrel_set_latency_seconds", "petrel_set_latency_seconds_count")
        self.assertEqual(sets, 33)  # 31 set and 2 cas
        deletes = sample_sum(fam, "petrel_delete_latency_seconds",
                             "petrel_delete_latency_seconds_count")
        self.assertEqual(deletes, 2)

    def test_stats_latency_gives_percentiles(self):
        st = stat_lines(admin_text(self.server, "stats latency"))
        self.assertEqual(int(st["get_latency_count"]), 28)
        p50, p99 = float(st["get_latency_p50_us"]), float(st["get_latency_p99_us"])
        p999, p9999 = float(st["get_latency_p999_us"]), float(st["get_latency_p9999_us"])
        self.assertGreater(p50, 0)
        self.assertTrue(p50 <= p99 <= p999 <= p9999)

    def test_stats_workers_splits_the_totals(self):
        st = stat_lines(admin_text(self.server, "stats workers"))
        self.assertEqual(int(st["worker_0_cmd_get"]) + int(st["worker_1_cmd_get"]), 28)
        self.assertIn("worker_1_heartbeat_age_ms", st)
        self.assertGreater(int(st["worker_0_event_loops"]), 0)

    def test_stats_seg_shows_the_ttl_buckets(self):
        st = stat_lines(admin_text(self.server, "stats seg"))
        # Every item was stored without a TTL ("never expires": 0..0) but key-1, touched to 100 s.
        self.assertEqual(int(st["ttl_0_0:items"]), 29)
        self.assertGreaterEqual(int(st["ttl_0_0:segments"]), 1)
        items = {k: int(v) for k, v in st.items() if k.endswith(":items")}
        self.assertEqual(sum(items.values()), 30)
        touched = [k for k, v in items.items() if k != "ttl_0_0:items" and v == 1]
        self.assertEqual(len(touched), 1)
        lo, hi = map(int, touched[0][4:-6].split("_"))
        self.assertTrue(lo <= 100 <= hi, touched[0])

    def test_vars_is_json_with_the_same_figures(self):
        status, headers, body = http_get(self.server, "/vars")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        v = json.loads(body)
        self.assertEqual(v["total"]["cmd_get"], 28)
        self.assertEqual(v["global"]["threads"], 2)
        self.assertEqual(sum(w["get_hits"] for w in v["workers"]), 21)
        self.assertEqual(v["latency"]["get_latency"]["count"], 28)

    def test_health_is_ok_and_unknown_paths_are_404(self):
        self.assertEqual(http_get(self.server, "/health")[0], 200)
        self.assertEqual(http_get(self.server, "/nope")[0], 404)

    def test_debug_commands_are_refused_without_the_flag(self):
        self.assertEqual(admin_text(self.server, "debug stall 0 10"), "ERROR\r\n")

    def test_log_level_changes_at_run_time(self):
        self.assertEqual(admin_text(self.server, "log level debug"), "OK\r\n")
        self.assertIn("STAT log_level debug", admin_text(self.server, "log level"))
        self.assertEqual(admin_text(self.server, "log level info"), "OK\r\n")
        self.assertEqual(admin_text(self.server, "log level loud", end=(b"\r\n",)),
                         "CLIENT_ERROR unknown log level\r\n")


def load(server, tls_ca):
    """Plain and TLS clients storing and reading across workers, a failed handshake, and a
    request of every latency class: every family of /metrics has samples."""
    def plain(n):
        mc = Client(("127.0.0.1", server.port), timeout=10)
        for i in range(200):
            mc.set("p%d:%d" % (n, i), b"v" * (i % 50 + 1))
            mc.get("p%d:%d" % (n, i))
            mc.get("missing:%d" % i)
        mc.delete("p%d:0" % n)
        mc.set("n:%d" % n, b"1")
        mc.incr("n:%d" % n, 1)
        mc.close()

    def tls():
        ctx = ssl.create_default_context(cafile=tls_ca)
        for i in range(20):
            with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"set t%d 0 0 1\r\nx\r\nget t%d\r\n" % (i, i))
                    data = b""
                    while not data.endswith(b"END\r\n"):
                        data += s.recv(4096)
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw:
            raw.sendall(b"get plain-text-on-a-tls-port\r\n")
            try:
                raw.recv(100)
            except ConnectionResetError:
                pass

    threads = [threading.Thread(target=plain, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=tls))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class PipelinedLatency(unittest.TestCase):
    """Requests forwarded in one pipelined write travel together (one message per worker) and
    complete together: each still counts once in its own latency class."""

    def test_every_request_of_a_pipeline_counts_in_its_class(self):
        with Server(PETREL, "-t", "2") as server, server.connect() as s:
            # 12 gets, 3 sets, 1 delete: one batch, keys on both workers.
            burst = b"".join(b"set p%d 0 0 1\r\nx\r\n" % i for i in range(3))
            burst += b"".join(b"get p%d\r\n" % (i % 5) for i in range(12)) + b"delete p0\r\n"
            s.sendall(burst)
            want = 3 * len(b"STORED\r\n") + len(b"DELETED\r\n")
            got = b""
            while got.count(b"END\r\n") < 12 or not got.endswith(b"DELETED\r\n"):
                chunk = s.recv(65536)
                self.assertTrue(chunk)
                got += chunk
            self.assertGreater(len(got), want)
            time.sleep(TICK)
            st = stat_lines(admin_text(server, "stats latency"))
            self.assertEqual(int(st["get_latency_count"]), 12)
            self.assertEqual(int(st["set_latency_count"]), 3)
            self.assertEqual(int(st["delete_latency_count"]), 1)


class ExpositionIsValid(unittest.TestCase):
    """A real scrape of a TLS-enabled server under load passes promtool's checks and parses
    with prometheus_client."""

    @classmethod
    def setUpClass(cls):
        cls.certs_dir = tempfile.TemporaryDirectory(prefix="petrel-admin-tls-")
        certs = tls_certs.make(cls.certs_dir.name)
        cls.server = Server(PETREL, "-t", "3", "--tls-port", str(free_port()),
                            "--tls-cert", certs.server_ec, "--tls-key", certs.server_ec_key)
        load(cls.server, certs.ca)
        time.sleep(TICK)
        status, _, cls.body = http_get(cls.server, "/metrics")
        assert status == 200, status

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.certs_dir.cleanup()

    @unittest.skipIf(shutil.which("promtool") is None, "promtool (Debian's prometheus) not on PATH")
    def test_promtool_check_metrics_finds_nothing(self):
        p = subprocess.run(["promtool", "check", "metrics"], input=self.body.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        self.assertEqual(p.stdout.decode() + p.stderr.decode(), "")

    def test_prometheus_client_parses_every_family_once(self):
        families = list(text_string_to_metric_families(self.body))
        names = [f.name for f in families]
        self.assertEqual(len(names), len(set(names)), "a family appears twice")
        self.assertGreater(sum(1 for f in families if f.type == "histogram"), 0)
        for f in families:
            self.assertTrue(f.samples, "%s has no sample" % f.name)

    def test_the_load_shows_in_the_scrape(self):
        families = {f.name: f for f in text_string_to_metric_families(self.body)}
        self.assertGreaterEqual(sample_sum(families, "petrel_tls_handshakes"), 20)
        self.assertGreaterEqual(sample_sum(families, "petrel_tls_failures_not_tls"), 1)
        self.assertGreaterEqual(sample_sum(families, "petrel_cmd_set"), 824)


class ConcurrentLoad(unittest.TestCase):
    """Counters stay exact while several clients hit several workers at once (also under TSan)."""

    def test_counters_are_exact_after_concurrent_clients(self):
        clients, per = 4, 300
        with Server(PETREL, "-t", "3") as server:
            def work(n):
                mc = Client(("127.0.0.1", server.port), timeout=20, default_noreply=False)
                for i in range(per):
                    mc.set("c%d-%d" % (n, i), b"x")
                    mc.get("c%d-%d" % (n, i))
                mc.close()

            scrapes = []
            stop = threading.Event()

            def scrape():
                while not stop.is_set():
                    scrapes.append(sample_sum(prometheus(server), "petrel_cmd_set"))

            threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
            scraper = threading.Thread(target=scrape)
            scraper.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.set()
            scraper.join()
            time.sleep(TICK)
            st = stat_lines(admin_text(server, "stats"))
            self.assertEqual(int(st["cmd_set"]), clients * per)
            self.assertEqual(int(st["get_hits"]), clients * per)
            self.assertEqual(int(st["curr_items"]), clients * per)
            self.assertEqual(sample_sum(prometheus(server), "petrel_cmd_get"), clients * per)
            self.assertEqual(scrapes, sorted(scrapes), "a counter went backwards between scrapes")


class Health(unittest.TestCase):
    def test_a_stalled_worker_makes_health_503_until_it_recovers(self):
        with Server(PETREL, "-t", "2", "--debug-commands", "--health-timeout", "1") as server:
            self.assertEqual(http_get(server, "/health")[0], 200)
            self.assertEqual(admin_text(server, "debug stall 1 3000"), "OK\r\n")
            deadline = time.monotonic() + 2.8
            status, body = 200, ""
            while time.monotonic() < deadline and status == 200:
                time.sleep(0.1)
                status, _, body = http_get(server, "/health")
            self.assertEqual(status, 503)
            self.assertIn("worker 1", body)
            self.assertEqual(int(stat_lines(admin_text(server, "stats"))["workers_stuck"]), 1)
            server.wait_for(r"worker 1: event loop stuck", 5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and status != 200:
                time.sleep(0.1)
                status, _, body = http_get(server, "/health")
            self.assertEqual(status, 200, body)
            server.wait_for(r"worker 1: event loop turning again", 5)


class Watchdog(unittest.TestCase):
    """systemd's watchdog over a stand-in for its notification socket: WATCHDOG=1 every half
    period while every worker turns, none while one is stuck."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def tearDown(self):
        self.sock.close()
        self.dir.cleanup()

    def pings(self, seconds):
        """The WATCHDOG=1 datagrams that arrive within the next `seconds`."""
        n, deadline = 0, time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return n
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096)
            except socket.timeout:
                return n
            n += msg.split(b"\n").count(b"WATCHDOG=1")

    def server(self, *args, **env):
        return Server(PETREL, "-t", "2", *args, env=dict({"NOTIFY_SOCKET": self.path}, **env))

    def test_pings_every_half_period(self):
        with self.server(WATCHDOG_USEC="400000"):
            self.pings(0.3)  # start-up
            self.assertGreaterEqual(self.pings(2.0), 6)  # one per 200 ms: 10, less the noise

    def test_no_pings_while_a_worker_is_stuck(self):
        with self.server("--debug-commands", "--health-timeout", "1",
                         WATCHDOG_USEC="400000") as server:
            self.assertGreater(self.pings(0.5), 0)
            self.assertEqual(admin_text(server, "debug stall 1 4000"), "OK\r\n")
            server.wait_for(r"watchdog: not pinging systemd while 1 worker is stuck", 5)
            self.sock.settimeout(0)
            try:  # what was sent before the stall was noticed
                while True:
                    self.sock.recv(4096)
            except BlockingIOError:
                pass
            self.assertEqual(self.pings(1.0), 0)
            server.wait_for(r"watchdog: pinging systemd again", 6)
            self.assertGreater(self.pings(1.0), 0)

    def test_a_watchdog_meant_for_another_process_is_left_alone(self):
        with self.server(WATCHDOG_USEC="400000", WATCHDOG_PID="1") as server:
            self.assertEqual(self.pings(1.0), 0)
            self.assertFalse(any("watchdog" in line for line in server.lines))


class Reload(unittest.TestCase):
    """SIGHUP re-reads the config file: a good change, a fixed setting, a broken file."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.conf = os.path.join(self.dir.name, "petrel.conf")
        self.write("[server]\nthreads = 2\nmax-conns = 1000\n[log]\nlog-level = info\n")
        self.server = Server(PETREL, "--config", self.conf)

    def tearDown(self):
        self.server.__exit__()
        self.dir.cleanup()

    def write(self, text):
        with open(self.conf + ".tmp", "w") as f:
            f.write(text)
        os.rename(self.conf + ".tmp", self.conf)

    def reload(self, expect_log):
        self.server.proc.send_signal(signal.SIGHUP)
        return self.server.wait_for(expect_log, 5)

    def stats(self):
        return stat_lines(admin_text(self.server, "stats"))

    def test_a_good_change_takes_effect(self):
        self.write("[server]\nthreads = 2\nmax-conns = 2\nidle-timeout = 7\n"
                   "[log]\nlog-level = debug\n")
        self.reload(r"reload: max-conns: '1000' -> '2'")
        st = self.stats()
        self.assertEqual(st["max_connections"], "2")
        self.assertEqual(st["config_reloads"], "1")
        self.assertIn("STAT log_level debug", admin_text(self.server, "log level"))
        mc = Client(("127.0.0.1", self.server.port), timeout=10)
        settings = mc.stats("settings")
        self.assertEqual(settings[b"maxconns"], 2)
        self.assertEqual(settings[b"idle_timeout"], 7)
        mc.close()
        deadline = time.monotonic() + 5  # until the worker has seen the close
        while time.monotonic() < deadline and self.stats()["curr_connections"] != "0":
            time.sleep(0.05)
        # The new limit holds: two connections are served, the third is refused.
        with self.server.connect() as a, self.server.connect() as b:
            for s in (a, b):
                s.sendall(b"version\r\n")
                self.assertTrue(s.recv(100).startswith(b"VERSION"))
            with self.server.connect() as c:
                self.assertEqual(c.recv(100), b"ERROR Too many open connections\r\n")
        self.assertEqual(self.stats()["rejected_connections"], "1")

    def test_a_fixed_setting_is_named_and_kept(self):
        self.write("[server]\nthreads = 3\nmax-conns = 900\n[log]\nlog-level = info\n")
        line = self.reload(r"reload: threads changed")
        self.assertIn("restart", line)
        self.server.wait_for(r"reload: max-conns: '1000' -> '900'", 5)
        st = self.stats()
        self.assertEqual(st["threads"], "2")
        self.assertEqual(st["max_connections"], "900")

    def test_a_broken_file_changes_nothing_and_is_counted(self):
        self.write("[server]\nthreads = 2\nmax-conns = 5\nthis line is not an option\n")
        line = self.reload(r"reload: .*petrel\.conf:4")
        self.assertIn("unchanged", line)
        st = self.stats()
        self.assertEqual(st["max_connections"], "1000")
        self.assertEqual(st["config_reload_errors"], "1")
        self.assertEqual(st["config_reloads"], "0")
        fam = prometheus(self.server)
        self.assertEqual(sample_sum(fam, "petrel_config_reload_errors"), 1)

    def test_the_admin_reload_command_reloads_like_sighup(self):
        self.write("[server]\nthreads = 2\nmax-conns = 800\n")
        self.assertEqual(admin_text(self.server, "reload"), "OK\r\n")
        self.server.wait_for(r"reload: max-conns: '1000' -> '800'", 5)


class CommandLog(unittest.TestCase):
    def test_sampled_requests_are_logged_and_sighup_reopens_the_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "klog")
            with Server(PETREL, "-t", "1", "--klog-file", path, "--klog-sample", "2") as server:
                mc = Client(("127.0.0.1", server.port), timeout=10, default_noreply=False)
                for i in range(10):
                    mc.get("k%d" % i)
                time.sleep(TICK)
                with open(path) as f:
                    lines = f.read().splitlines()
                self.assertEqual(len(lines), 5)  # 1 in 2
                self.assertRegex(lines[0], r'^\d{4}-\d\d-\d\dT[0-9:.]+Z worker-0 "get k\d" 5$')
                os.rename(path, path + ".1")
                server.proc.send_signal(signal.SIGHUP)
                server.wait_for(r"SIGHUP", 5)
                time.sleep(TICK)
                for i in range(4):
                    mc.get("again%d" % i)
                mc.close()
                time.sleep(TICK)
                with open(path) as f:
                    self.assertEqual(len(f.read().splitlines()), 2)


if __name__ == "__main__":
    unittest.main()
