"""petrel-ping over real sockets: the runtime's behaviour seen from clients."""
import os
import selectors
import signal
import socket
import tempfile
import time
import unittest

from harness import Server, raise_fd_limit, recv_exactly, recv_until_closed, run

PING = os.environ.get("PETREL_PING", "build/src/bin/petrel-ping")


class PingBasics(unittest.TestCase):
    workers = 2

    def setUp(self):
        self.server = Server(PING, "-t", str(self.workers))

    def tearDown(self):
        self.server.__exit__()

    def test_ping_gets_pong(self):
        with self.server.connect() as s:
            s.sendall(b"PING\r\n")
            self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")

    def test_unknown_line_gets_error_and_connection_stays(self):
        with self.server.connect() as s:
            s.sendall(b"HELLO\r\nPING\r\n")
            self.assertEqual(recv_exactly(s, 13), b"ERROR\r\nPONG\r\n")

    def test_quit_closes_the_connection(self):
        with self.server.connect() as s:
            s.sendall(b"PING\r\nQUIT\r\nPING\r\n")
            self.assertEqual(recv_until_closed(s), b"PONG\r\n")

    def test_line_without_newline_past_the_limit_gets_error_and_close(self):
        with self.server.connect() as s:
            s.sendall(b"P" * 5000)
            self.assertEqual(recv_until_closed(s), b"ERROR\r\n")

    def test_pipelined_pings_are_answered_in_order(self):
        with self.server.connect() as s:
            s.sendall(b"PING\r\nBAD\r\n" * 500)
            self.assertEqual(recv_exactly(s, 13 * 500), b"PONG\r\nERROR\r\n" * 500)

    def test_request_split_at_every_byte_boundary(self):
        msg = b"PING\r\nXX\r\nPING\r\n"
        want = b"PONG\r\nERROR\r\nPONG\r\n"
        with self.server.connect() as s:
            for cut in range(1, len(msg)):
                s.sendall(msg[:cut])
                time.sleep(0.003)  # let the first part arrive and be read on its own
                s.sendall(msg[cut:])
                self.assertEqual(recv_exactly(s, len(want)), want, "split at byte %d" % cut)

    def test_ipv6_listener_answers(self):
        with Server(PING, "-t", "1", listen="::1") as v6:
            with socket.create_connection(("::1", v6.port), timeout=10) as s:
                s.sendall(b"PING\r\n")
                self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")

    def test_unix_socket_listener_answers_with_its_mode(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ping.sock")
            with Server(PING, "-t", "1", "-s", path, "--unix-mode", "0770") as server:
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o770)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(path)
                    s.sendall(b"PING\r\n")
                    self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")
                self.assertEqual(server.stop()[0], 0)
            self.assertFalse(os.path.exists(path), "the socket file is removed at exit")

    def test_admin_version_and_stats(self):
        self.assertRegex(self.server.admin("version"), r"^VERSION \d+\.\d+\.\d+\r\n$")
        with self.server.connect() as s:
            s.sendall(b"PING\r\n")
            recv_exactly(s, 6)
            st = self.server.stats()
            self.assertEqual(st["threads"], str(self.workers))
            self.assertEqual(st["curr_connections"], "1")
            self.assertGreaterEqual(int(st["total_connections"]), 1)
            self.assertEqual(st["rejected_connections"], "0")
            per_worker = sum(int(st["worker_%d_connections" % i]) for i in range(self.workers))
            self.assertEqual(per_worker, 1)
            self.assertGreaterEqual(int(st["uptime"]), 0)

    def test_admin_unknown_command_is_an_error(self):
        self.assertEqual(self.server.admin("bogus"), "ERROR\r\n")

    def test_admin_quit_closes(self):
        with self.server.connect(self.server.admin_port) as s:
            s.sendall(b"quit\r\n")
            self.assertEqual(recv_until_closed(s), b"")


class PingBasicsFourWorkers(PingBasics):
    workers = 4


class ManyConnections(unittest.TestCase):
    def run_load(self, workers):
        raise_fd_limit(4096)
        with Server(PING, "-t", str(workers), "-c", "2000") as server:
            nconns, per_conn = 1000, 1000
            sel = selectors.DefaultSelector()
            request = b"PING\r\n" * per_conn
            want = b"PONG\r\n" * per_conn
            state = {}
            for i in range(nconns):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                s.setblocking(False)
                state[s] = [memoryview(request), bytearray()]
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
            deadline = time.monotonic() + 120
            finished = 0
            while finished < nconns:
                self.assertLess(time.monotonic(), deadline, "load did not finish in time")
                for key, ev in sel.select(timeout=1):
                    s = key.fileobj
                    out, got = state[s]
                    if ev & selectors.EVENT_WRITE and out:
                        n = s.send(out)
                        state[s][0] = out = out[n:]
                        if not out:
                            sel.modify(s, selectors.EVENT_READ)
                    if ev & selectors.EVENT_READ:
                        chunk = s.recv(1 << 16)
                        got += chunk
                        if not chunk or len(got) >= len(want):
                            sel.unregister(s)
                            finished += 1
            bad = [i for i, (s, (_, got)) in enumerate(state.items()) if bytes(got) != want]
            st = server.stats()
            for s in state:
                s.close()
            self.assertEqual(bad, [], "connections with a wrong or short reply stream")
            # The acceptor spread the connections over every worker.
            for i in range(workers):
                self.assertGreater(int(st["worker_%d_connections" % i]), nconns // workers // 2)

    def test_1000_connections_pipelining_1000_pings_with_2_workers(self):
        self.run_load(2)

    def test_1000_connections_pipelining_1000_pings_with_4_workers(self):
        self.run_load(4)


class Backpressure(unittest.TestCase):
    def test_a_client_that_stops_reading_does_not_stall_others(self):
        with Server(PING, "-t", "1", "--output-limit", "64k") as server:
            hog = server.connect()
            hog.setblocking(False)
            sent = 0
            chunk = b"PING\r\n" * 10000
            deadline = time.monotonic() + 5
            # Write until the kernel buffers on both sides are full and the server stopped reading.
            while time.monotonic() < deadline:
                try:
                    sent += hog.send(chunk)
                except BlockingIOError:
                    time.sleep(0.05)
                    try:
                        sent += hog.send(chunk)
                    except BlockingIOError:
                        break
            self.assertGreater(sent, 100000, "the hog should have queued a lot")
            with server.connect() as s:
                for _ in range(50):
                    t0 = time.monotonic()
                    s.sendall(b"PING\r\n")
                    self.assertEqual(recv_exactly(s, 6, timeout=5), b"PONG\r\n")
                    self.assertLess(time.monotonic() - t0, 1.0)
            hog.close()


class Limits(unittest.TestCase):
    def test_too_many_connections_get_memcached_error(self):
        with Server(PING, "-t", "2", "-c", "10") as server:
            held = [server.connect() for _ in range(10)]
            for s in held:  # every held connection is really established and served
                s.sendall(b"PING\r\n")
                self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")
            with server.connect() as extra:
                self.assertEqual(recv_until_closed(extra), b"ERROR Too many open connections\r\n")
            self.assertEqual(server.stats()["rejected_connections"], "1")
            held.pop().close()
            time.sleep(0.3)
            with server.connect() as again:
                again.sendall(b"PING\r\n")
                self.assertEqual(recv_exactly(again, 6), b"PONG\r\n")
            for s in held:
                s.close()

    def test_idle_connections_are_closed_after_the_timeout(self):
        with Server(PING, "-t", "1", "--idle-timeout", "1") as server:
            with server.connect() as s:
                s.sendall(b"PING\r\n")
                self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")
                t0 = time.monotonic()
                self.assertEqual(recv_until_closed(s, timeout=10), b"")
                self.assertLess(time.monotonic() - t0, 5)


class Lifecycle(unittest.TestCase):
    def test_sigterm_with_clients_connected_exits_0_promptly(self):
        server = Server(PING, "-t", "2")
        clients = [server.connect() for _ in range(20)]
        for s in clients:
            s.sendall(b"PING\r\n")
            self.assertEqual(recv_exactly(s, 6), b"PONG\r\n")
        rc, seconds = server.stop(signal.SIGTERM)
        self.assertEqual(rc, 0)
        self.assertLess(seconds, 5)
        for s in clients:
            self.assertEqual(recv_until_closed(s), b"", "clients see an orderly close")
            s.close()

    def test_sigint_exits_0(self):
        server = Server(PING, "-t", "1")
        rc, _ = server.stop(signal.SIGINT)
        self.assertEqual(rc, 0)

    def test_sighup_reopens_the_log_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ping.log")
            server = Server(PING, "-t", "1", "--log-file", path, wait_ready=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if os.path.exists(path) and " ready: " in open(path).read():
                    break
                time.sleep(0.05)
            os.rename(path, path + ".1")
            server.proc.send_signal(signal.SIGHUP)
            while time.monotonic() < deadline and not os.path.exists(path):
                time.sleep(0.05)
            rc, _ = server.stop()
            self.assertEqual(rc, 0)
            self.assertTrue(os.path.exists(path), "a new log file was opened")
            self.assertIn("stopping", open(path).read(), "lines after the reopen go to it")
            self.assertIn(" ready: ", open(path + ".1").read())

    def test_address_in_use_fails_with_a_message(self):
        with Server(PING, "-t", "1") as first:
            rc, _, err = run(PING, "-l", "127.0.0.1", "-p", str(first.port), "--admin-port", "0")
            self.assertNotEqual(rc, 0)
            self.assertIn("cannot listen on 127.0.0.1 port %d" % first.port, err)


class CommandLine(unittest.TestCase):
    def test_unknown_option_exits_64_naming_it(self):
        rc, _, err = run(PING, "--no-such-option")
        self.assertEqual(rc, 64)
        self.assertIn("no-such-option", err)

    def test_bad_value_exits_64_naming_the_option(self):
        rc, _, err = run(PING, "-t", "many")
        self.assertEqual(rc, 64)
        self.assertIn("threads", err)

    def test_udp_is_refused(self):
        rc, _, err = run(PING, "-U", "11211")
        self.assertEqual(rc, 64)
        self.assertIn("UDP is not supported", err)

    def test_bad_config_line_exits_78_naming_file_and_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("[server]\nthreads = 2\nbogus = 1\n")
        try:
            rc, _, err = run(PING, "--config", f.name)
            self.assertEqual(rc, 78)
            self.assertIn("%s:3" % f.name, err)
        finally:
            os.unlink(f.name)

    def test_help_lists_the_options(self):
        rc, out, _ = run(PING, "--help")
        self.assertEqual(rc, 0)
        for opt in ("--port", "--threads", "--max-conns", "--listen", "--admin-port"):
            self.assertIn(opt, out)

    def test_version(self):
        rc, out, _ = run(PING, "--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"petrel-ping \d+\.\d+\.\d+")

    def test_config_file_settings_are_used(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("[server]\nthreads = 3\n")
        try:
            with Server(PING, "--config", f.name) as server:
                self.assertEqual(server.stats()["threads"], "3")
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
