"""--io-uring: a worker makes the reads that one epoll_wait allows, and then the sends of the
replies, with one io_uring call each. Requests and replies must be the same bytes as with recv()
and send(), through every path: many connections at once, a reply larger than the socket takes
(partial sends, then EPOLLOUT), a client that reads slowly, unix sockets, a client that resets;
and the counters say which way they went."""
import os
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Server, read_until, recv_exactly

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")


def io_uring_usable():
    """Whether this kernel lets an unprivileged process use io_uring: --io-uring=on starts."""
    with Server(PETREL, "--io-uring", "on", wait_ready=False) as s:
        try:
            s.wait_for(r" ready: | setup failed", 15)
        except AssertionError:
            return False
        ok = any(" ready: " in line for line in s.lines)
        s.stop()
        return ok


USABLE = io_uring_usable()


def set_item(sock, key, value):
    sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
    assert read_until(sock, b"\r\n", 10.0) == b"STORED\r\n"


def get_reply(key, value):
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)


@unittest.skipUnless(USABLE, "io_uring is not allowed here (seccomp or kernel.io_uring_disabled)")
class Sends(unittest.TestCase):
    def test_replies_go_through_io_uring_when_on(self):
        with Server(PETREL, "--io-uring", "on", "-t", "2") as s:
            with s.connect() as c:
                for i in range(20):
                    set_item(c, b"k%d" % i, b"v" * i)
                c.sendall(b"".join(b"get k%d\r\n" % i for i in range(20)))
                want = b"".join(get_reply(b"k%d" % i, b"v" * i) for i in range(20))
                self.assertEqual(recv_exactly(c, len(want)), want)
            st = s.stats()
            self.assertGreater(int(st["io_uring_calls"]), 0)
            self.assertGreater(int(st["io_uring_reads"]), 0)
            self.assertGreater(int(st["io_uring_sends"]), 0)

    def test_off_makes_no_io_uring_call(self):
        with Server(PETREL, "--io-uring", "off") as s:
            with s.connect() as c:
                set_item(c, b"k", b"value")
                c.sendall(b"get k\r\n")
                self.assertEqual(read_until(c, b"END\r\n", 10.0), get_reply(b"k", b"value"))
            st = s.stats()
            self.assertEqual(int(st["io_uring_calls"]), 0)
            self.assertEqual(int(st["io_uring_reads"]), 0)
            self.assertEqual(int(st["io_uring_sends"]), 0)

    def test_many_connections_share_a_call(self):
        """Two hundred clients ask at once: every one gets its own reply, and the calls carried
        several connections each."""
        with Server(PETREL, "--io-uring", "on", "-t", "1") as s:
            with s.connect() as c:
                set_item(c, b"shared", b"x" * 100)
            conns = [s.connect() for _ in range(200)]
            try:
                for c in conns:
                    c.sendall(b"get shared\r\n")
                for c in conns:
                    self.assertEqual(read_until(c, b"END\r\n", 10.0),
                                     get_reply(b"shared", b"x" * 100))
            finally:
                for c in conns:
                    c.close()
            st = s.stats()
            ops = int(st["io_uring_reads"]) + int(st["io_uring_sends"])
            self.assertGreater(ops, int(st["io_uring_calls"]))

    def test_large_replies_to_a_slow_reader_arrive_whole(self):
        """Replies far larger than the socket's buffer: sends come back short or with EAGAIN,
        the rest waits for EPOLLOUT; the client reads slowly and must get every byte in order."""
        value = bytes(range(256)) * 4096  # 1 MiB
        with Server(PETREL, "--io-uring", "on", "-t", "1", "-I", "2m") as s:
            with s.connect() as c:
                set_item(c, b"big", value)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                c.sendall(b"get big\r\n" * 8)
                want = get_reply(b"big", value) * 8
                got = bytearray()
                while len(got) < len(want):
                    chunk = c.recv(65536)
                    self.assertTrue(chunk, "closed after %d of %d bytes" % (len(got), len(want)))
                    got += chunk
                    if len(got) < 1 << 20:
                        time.sleep(0.005)  # slow at first: the server's socket fills
                self.assertEqual(bytes(got), want)
                # The connection still serves after the backlog drained.
                c.sendall(b"version\r\n")
                self.assertTrue(read_until(c, b"\r\n", 10.0).startswith(b"VERSION "))

    def test_unix_socket(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "petrel.sock")
            with Server(PETREL, "--io-uring", "on", "-s", path, listen=None) as s:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.settimeout(10)
                    c.connect(path)
                    set_item(c, b"u", b"over unix")
                    c.sendall(b"get u\r\n")
                    self.assertEqual(read_until(c, b"END\r\n", 10.0),
                                     get_reply(b"u", b"over unix"))
                self.assertGreater(int(s.stats()["io_uring_calls"]), 0)

    def test_client_gone_mid_reply_closes_cleanly(self):
        """A client that asks for a lot and resets: the failed send closes its connection, and
        the worker goes on serving the others."""
        value = b"z" * 500000
        with Server(PETREL, "--io-uring", "on", "-t", "1") as s:
            with s.connect() as c:
                set_item(c, b"z", value)
            for _ in range(5):
                c = s.connect()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.sendall(b"get z\r\n" * 20)
                time.sleep(0.05)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()  # RST
            deadline = time.monotonic() + 10
            while int(s.stats()["curr_connections"]) > 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(int(s.stats()["curr_connections"]), 0)
            with s.connect() as c:
                c.sendall(b"get z\r\n")
                self.assertEqual(read_until(c, b"END\r\n", 10.0), get_reply(b"z", value))


class Option(unittest.TestCase):
    def test_bad_value_names_the_option(self):
        r = subprocess.run([PETREL, "--io-uring", "sometimes", "-p", "0"], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("io-uring", r.stderr)
        self.assertIn("sometimes", r.stderr)

    def test_auto_starts_either_way(self):
        with Server(PETREL, "--io-uring", "auto") as s:
            with s.connect() as c:
                set_item(c, b"a", b"1")
                c.sendall(b"get a\r\n")
                self.assertEqual(read_until(c, b"END\r\n", 10.0), get_reply(b"a", b"1"))
            calls = int(s.stats()["io_uring_calls"])
            self.assertEqual(calls > 0, USABLE)


if __name__ == "__main__":
    unittest.main()
