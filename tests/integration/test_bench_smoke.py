"""petrel-bench smoke runs: about a second each against petrel-ping and petrel (memcache and
RESP).

They check that the report makes sense (requests counted, no errors, gets hit after a preload,
percentiles positive and in order), not how fast anything is.
"""
import json
import os
import socket
import subprocess
import unittest

from harness import Server

BENCH = os.environ.get("PETREL_BENCH", "build/perf/bench/petrel-bench")
PING = os.environ.get("PETREL_PING", "build/src/bin/petrel-ping")
PETREL = os.environ.get("PETREL", "build/src/bin/petrel")

PERCENTILES = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]


def bench(port, *args):
    """Run petrel-bench with --json against 127.0.0.1:port; return its exit status and output."""
    p = subprocess.run([BENCH, "-s", "127.0.0.1:%d" % port, "--json", *args],
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class BenchChecks:
    """Checks shared by the runs; each test class runs petrel-bench once, in setUpClass."""

    def test_exits_zero_with_one_json_object(self):
        self.assertEqual(self.rc, 0, self.err)
        self.assertIsInstance(self.out, dict)

    def test_counts_requests_in_the_window(self):
        self.assertGreater(self.out["requests"], 0)
        self.assertGreater(self.out["throughput"], 0)
        self.assertEqual(sum(self.out["ops"].values()), self.out["requests"])

    def test_reports_no_errors(self):
        self.assertEqual(self.out["errors"], 0)
        self.assertEqual(self.out["conn_errors"], 0)
        self.assertEqual(self.out["unfinished"], 0)

    def test_percentiles_are_positive_and_ordered(self):
        lat = self.out["latency_us"]
        values = [lat[p] for p in PERCENTILES]
        self.assertGreater(lat["min"], 0)
        self.assertLessEqual(lat["min"], values[0])
        self.assertEqual(values, sorted(values), values)
        self.assertLessEqual(lat["min"], lat["mean"])
        self.assertLessEqual(lat["mean"], lat["max"])

    def test_echoes_the_configuration(self):
        self.assertEqual(self.out["port"], self.server.port)
        self.assertEqual(self.out["connections"], 4)


class PingClosedLoop(BenchChecks, unittest.TestCase):
    """Closed loop, ping protocol, pipelines 4 deep, against 2 workers of petrel-ping."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(PING, "-t", "2")
        cls.rc, out, cls.err = bench(cls.server.port, "-P", "ping", "-c", "4", "-d", "4",
                                     "-w", "0.2", "-D", "1")
        cls.out = json.loads(out) if cls.rc == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def test_says_ping(self):
        self.assertEqual(self.out["protocol"], "ping")
        self.assertEqual(self.out["mode"], "closed")


class PetrelPreloaded(BenchChecks, unittest.TestCase):
    """Closed loop, memcache protocol, after --preload: every get must hit."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(PETREL, "-t", "2", "-m", "64")
        cls.rc, out, cls.err = bench(cls.server.port, "-c", "4", "-d", "2", "--keys", "2000",
                                     "-v", "32", "--ratio", "9:1", "--preload", "-w", "0.2",
                                     "-D", "1")
        cls.out = json.loads(out) if cls.rc == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def test_preload_wrote_every_key(self):
        self.assertEqual(self.out["preload_sets"], 2000)
        self.assertEqual(self.out["preload_errors"], 0)

    def test_every_get_hits_after_preload(self):
        self.assertGreater(self.out["get_keys"], 0)
        self.assertEqual(self.out["get_hits"], self.out["get_keys"])
        self.assertEqual(self.out["hit_ratio"], 1.0)

    def test_mix_has_gets_and_sets(self):
        self.assertGreater(self.out["ops"]["get"], self.out["ops"]["set"])
        self.assertGreater(self.out["ops"]["set"], 0)


class PetrelRespPreloaded(BenchChecks, unittest.TestCase):
    """Closed loop over RESP (--resp-port), pipelines 4 deep, gets of two keys (MGET), sets and
    incrs, after --preload: every get must hit."""

    @classmethod
    def setUpClass(cls):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            resp_port = s.getsockname()[1]
        cls.server = Server(PETREL, "-t", "2", "-m", "64", "--resp-port", str(resp_port))
        cls.server.port = resp_port
        cls.rc, out, cls.err = bench(resp_port, "-P", "resp", "-c", "4", "-d", "4", "--keys",
                                     "2000", "-v", "32", "--ratio", "9:1:0:1", "-m", "2",
                                     "--preload", "-w", "0.2", "-D", "1")
        cls.out = json.loads(out) if cls.rc == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def test_says_resp(self):
        self.assertEqual(self.out["protocol"], "resp")

    def test_preload_wrote_every_key_and_counter(self):
        self.assertEqual(self.out["preload_sets"], 4000)
        self.assertEqual(self.out["preload_errors"], 0)

    def test_every_get_hits_after_preload(self):
        self.assertGreater(self.out["get_keys"], 0)
        self.assertEqual(self.out["get_keys"], 2 * self.out["ops"]["get"])
        self.assertEqual(self.out["get_hits"], self.out["get_keys"])

    def test_mix_has_gets_sets_and_incrs(self):
        for op in ("get", "set", "incr"):
            self.assertGreater(self.out["ops"][op], 0, op)


class PetrelRespCountsMisses(unittest.TestCase):
    """Gets of keys never written are misses over RESP, not errors."""

    def test_gets_without_preload_miss(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            resp_port = s.getsockname()[1]
        with Server(PETREL, "-t", "1", "-m", "64", "--resp-port", str(resp_port)):
            rc, out, err = bench(resp_port, "-P", "resp", "-c", "2", "--ratio", "1:0",
                                 "-w", "0", "-D", "0.3")
        self.assertEqual(rc, 0, err)
        report = json.loads(out)
        self.assertGreater(report["get_keys"], 0)
        self.assertEqual(report["get_hits"], 0)
        self.assertEqual(report["errors"], 0)


def served(server):
    """cmd_get + cmd_set from the data port's stats, which asks every shard (exact)."""
    with server.connect() as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    stats = dict(line.split(" ")[1:3] for line in data.decode().splitlines()
                 if line.startswith("STAT "))
    return int(stats["cmd_get"]) + int(stats["cmd_set"])


class PetrelCountsWhatTheServerServed(unittest.TestCase):
    """Closed loop without warm-up: the server served exactly the requests the report counts
    (nothing sent before the window opens, everything in flight at its end answered)."""

    def test_server_counters_match_the_report(self):
        with Server(PETREL, "-t", "1", "-m", "64") as server:
            before = served(server)
            rc, out, err = bench(server.port, "-c", "4", "-d", "4", "--keys", "1000", "-v", "32",
                                 "--ratio", "9:1", "-w", "0", "-D", "0.5")
            after = served(server)
        self.assertEqual(rc, 0, err)
        report = json.loads(out)
        self.assertGreater(report["requests"], 0)
        self.assertEqual(report["unfinished"], 0)
        self.assertEqual(after - before, report["requests"])


class PetrelOpenLoop(BenchChecks, unittest.TestCase):
    """Open loop at a low fixed rate: it sends what it schedules, and reports the send lag."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(PETREL, "-t", "1", "-m", "64")
        cls.rc, out, cls.err = bench(cls.server.port, "-c", "4", "--keys", "1000", "-v", "32",
                                     "--preload", "--rate", "2000", "-w", "0.2", "-D", "1")
        cls.out = json.loads(out) if cls.rc == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def test_answers_what_it_scheduled(self):
        self.assertEqual(self.out["mode"], "open")
        self.assertGreater(self.out["scheduled"], 0)
        self.assertEqual(self.out["requests"], self.out["scheduled"])
        self.assertAlmostEqual(self.out["throughput"], 2000, delta=200)

    def test_send_lag_percentiles_are_ordered(self):
        lag = self.out["send_lag_us"]
        values = [lag[p] for p in PERCENTILES]
        self.assertGreaterEqual(values[0], 0)
        self.assertEqual(values, sorted(values), values)


class PetrelFanout(BenchChecks, unittest.TestCase):
    """--fanout 2, closed loop: 4 connections in 2 groups (one per client thread), each logical
    request 2 gets."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(PETREL, "-t", "2", "-m", "64")
        cls.rc, out, cls.err = bench(cls.server.port, "-c", "4", "--fanout", "2", "-t", "2", "-d", "2",
                                     "--keys", "1000", "-v", "32", "--preload", "-w", "0.2",
                                     "-D", "1")
        cls.out = json.loads(out) if cls.rc == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def test_reports_the_logical_requests(self):
        fan = self.out["fanout"]
        self.assertEqual(fan["n"], 2)
        self.assertGreater(fan["requests"], 0)
        self.assertEqual(fan["unfinished"], 0)

    def test_every_logical_request_is_two_gets(self):
        self.assertEqual(self.out["requests"], 2 * self.out["fanout"]["requests"])
        self.assertEqual(self.out["ops"]["get"], self.out["requests"])

    def test_logical_latency_is_the_slowest_part(self):
        fan, part = self.out["fanout"]["latency_us"], self.out["latency_us"]
        values = [fan[p] for p in PERCENTILES]
        self.assertEqual(values, sorted(values), values)
        # The slowest part of the run is the slowest part of some logical request.
        self.assertEqual(fan["max"], part["max"])
        self.assertGreaterEqual(fan["min"], part["min"])
        self.assertGreaterEqual(fan["mean"], part["mean"])


class PetrelFanoutOpenLoop(unittest.TestCase):
    """--fanout at a rate: the rate counts logical requests, and each sends its 4 gets."""

    def test_answers_what_it_scheduled(self):
        with Server(PETREL, "-t", "2", "-m", "64") as server:
            rc, out, err = bench(server.port, "-c", "8", "--fanout", "4", "--keys", "1000",
                                 "--rate", "500", "-w", "0.2", "-D", "1")
        self.assertEqual(rc, 0, err)
        report = json.loads(out)
        fan = report["fanout"]
        self.assertEqual(report["mode"], "open")
        self.assertGreater(fan["scheduled"], 0)
        self.assertEqual(fan["requests"], fan["scheduled"])
        self.assertAlmostEqual(fan["per_s"], 500, delta=50)
        self.assertEqual(report["scheduled"], 4 * fan["scheduled"])
        self.assertEqual(report["requests"], 4 * fan["requests"])


class FanoutCommandLine(unittest.TestCase):
    """Fanout options that cannot work are refused with a one-line reason and status 64."""

    def refused(self, *args):
        p = subprocess.run([BENCH, "-s", "127.0.0.1:1", *args], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 64, p.stderr)
        return p.stderr.decode()

    def test_connections_must_split_into_groups(self):
        self.assertIn("multiple of --fanout", self.refused("-c", "8", "--fanout", "3"))

    def test_every_thread_needs_a_group(self):
        self.assertIn("at least --threads", self.refused("-c", "8", "-t", "4", "--fanout", "4"))

    def test_mix_does_not_apply(self):
        self.assertIn("--ratio does not apply",
                      self.refused("-c", "8", "--fanout", "4", "--ratio", "9:1"))

    def test_fanout_zero_is_refused(self):
        self.assertIn("--fanout", self.refused("-c", "8", "--fanout", "0"))


if __name__ == "__main__":
    unittest.main()
