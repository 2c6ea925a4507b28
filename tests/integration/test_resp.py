"""The Redis protocol port (--resp-port): replies byte for byte against Debian's redis-server,
the same items as the memcached port, and real clients (redis-cli, redis-benchmark, Python's
redis package). Each part skips when its tool is absent: redis-server (or $REDIS_SERVER),
redis-cli, redis-benchmark, the redis module.
"""
import os
import shutil
import socket
import subprocess
import time
import unittest

from harness import Server, recv_until_closed

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_reply(sock, buf):
    """One complete RESP reply from sock (buf: bytes already read): (reply bytes, rest)."""
    while True:
        end = reply_end(buf, 0)
        if end is not None:
            return buf[:end], buf[end:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed after %r" % buf)
        buf += chunk


def reply_end(buf, at):
    """Where the reply starting at buf[at] ends, or None when it is not all there."""
    nl = buf.find(b"\r\n", at)
    if nl < 0:
        return None
    kind, line = buf[at:at + 1], buf[at + 1:nl]
    if kind in b"+-:_,#(":
        return nl + 2
    if kind in b"$=!":
        n = int(line)
        if n < 0:
            return nl + 2
        return nl + 2 + n + 2 if len(buf) >= nl + 2 + n + 2 else None
    if kind in b"*~%>":
        n = int(line)
        if kind == b"%":
            n *= 2
        pos = nl + 2
        for _ in range(max(n, 0)):
            pos = reply_end(buf, pos)
            if pos is None:
                return None
        return pos
    raise ValueError("not a reply: %r" % buf[at:])


def mb(*args):
    """A multibulk request."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def call(self, *args):
        self.sock.sendall(mb(*args))
        reply, self.buf = read_reply(self.sock, self.buf)
        return reply

    def raw(self, data):
        self.sock.sendall(data)
        reply, self.buf = read_reply(self.sock, self.buf)
        return reply

    def close(self):
        self.sock.close()


def start_petrel(*extra):
    port = free_port()
    srv = Server(PETREL, "-t", "2", "--resp-port", str(port), *extra)
    return srv, port


class RespServer(unittest.TestCase):
    """Petrel with --resp-port on 2 workers (so half the keys are forwarded)."""

    @classmethod
    def setUpClass(cls):
        cls.srv, cls.port = start_petrel()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        self.c = Client(self.port)
        self.c.call("FLUSHALL")

    def tearDown(self):
        self.c.close()

    def test_ping_pongs(self):
        self.assertEqual(self.c.call("PING"), b"+PONG\r\n")

    def test_set_then_get_returns_the_value(self):
        self.assertEqual(self.c.call("SET", "k", "v"), b"+OK\r\n")
        self.assertEqual(self.c.call("GET", "k"), b"$1\r\nv\r\n")

    def test_keys_of_every_shard_read_back_in_order(self):
        keys = ["key:%d" % i for i in range(200)]
        for k in keys:
            self.c.call("SET", k, k.upper())
        want = b"*%d\r\n" % (len(keys) + 1) + b"".join(
            b"$%d\r\n%s\r\n" % (len(k), k.upper().encode()) for k in keys) + b"$-1\r\n"
        self.assertEqual(self.c.call("MGET", *keys, "missing"), want)

    def test_pipelined_requests_answer_in_order(self):
        reqs = b"".join(mb("SET", "p%d" % i, i) + mb("GET", "p%d" % i) for i in range(300))
        self.c.sock.sendall(reqs)
        for i in range(300):
            r, self.c.buf = read_reply(self.c.sock, self.c.buf)
            self.assertEqual(r, b"+OK\r\n")
            r, self.c.buf = read_reply(self.c.sock, self.c.buf)
            self.assertEqual(r, b"$%d\r\n%d\r\n" % (len(str(i)), i))

    def test_a_large_value_comes_back_whole_from_every_shard(self):
        value = bytes(range(256)) * 3000  # 768,000 bytes
        for i in range(8):
            self.c.call("SET", "big%d" % i, value)
        for i in range(8):
            self.assertEqual(self.c.call("GET", "big%d" % i),
                             b"$%d\r\n" % len(value) + value + b"\r\n")

    def test_mget_of_large_values_sends_every_value_whole(self):
        value = b"v" * 500000
        keys = ["mbig%d" % i for i in range(6)]
        for k in keys:
            self.c.call("SET", k, value)
        want = b"*6\r\n" + (b"$%d\r\n" % len(value) + value + b"\r\n") * 6
        self.assertEqual(self.c.call("MGET", *keys), want)

    def test_set_with_many_options_is_answered_on_every_shard(self):
        # More than a handful of arguments: SET's owner, when another worker, must still parse
        # and answer it, or every later reply is taken for the one before it.
        for i in range(20):
            self.assertEqual(self.c.call("SET", "opt%d" % i, "v", "a", "b", "c", "d", "e", "f"),
                             b"-ERR syntax error\r\n")
            self.assertEqual(self.c.call("PING"), b"+PONG\r\n")

    def test_multi_key_commands_take_at_most_256_keys(self):
        err = b"-ERR too many keys: Petrel takes at most 256 per command\r\n"
        keys = ["m%d" % i for i in range(257)]
        self.assertEqual(self.c.call("MGET", *keys), err)
        self.assertEqual(self.c.call("DEL", *keys), err)
        self.assertEqual(self.c.call("MSET", *[x for k in keys for x in (k, "v")]), err)
        self.assertTrue(self.c.call("MGET", *keys[:256]).startswith(b"*256\r\n"))
        self.assertEqual(self.c.call("PING"), b"+PONG\r\n")

    def test_dbsize_counts_every_shard(self):
        for i in range(50):
            self.c.call("SET", "d%d" % i, "x")
        self.assertEqual(self.c.call("DBSIZE"), b":50\r\n")

    def test_hello_3_answers_a_map_and_nulls_become_resp3(self):
        hello = self.c.call("HELLO", "3")
        self.assertTrue(hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), hello)
        self.assertEqual(self.c.call("GET", "nothing"), b"_\r\n")

    def test_a_protocol_error_is_answered_after_every_earlier_reply(self):
        self.c.sock.sendall(b"".join(mb("GET", "e%d" % i) for i in range(100)) + b"*1\r\n$x\r\n")
        for i in range(100):
            r, self.c.buf = read_reply(self.c.sock, self.c.buf)
            self.assertEqual(r, b"$-1\r\n")
        r, self.c.buf = read_reply(self.c.sock, self.c.buf)
        self.assertEqual(r, b"-ERR Protocol error: invalid bulk length\r\n")
        self.assertEqual(self.c.sock.recv(10), b"")

    def test_select_of_another_database_is_refused(self):
        # Petrel has one keyspace: Redis's databases 1..15 do not exist here.
        self.assertEqual(self.c.call("SELECT", "1"), b"-ERR DB index is out of range\r\n")

    def test_quit_says_ok_then_closes(self):
        self.assertEqual(self.c.call("QUIT"), b"+OK\r\n")
        self.assertEqual(self.c.sock.recv(10), b"")


class SameItems(unittest.TestCase):
    """A key set through one protocol reads back byte for byte through the other."""

    @classmethod
    def setUpClass(cls):
        cls.srv, cls.port = start_petrel()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def mc(self, data):
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as s:
            s.sendall(data + b"quit\r\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk

    def test_resp_set_reads_back_through_memcached(self):
        c = Client(self.port)
        value = b"\x00\r\nbinary\xff" * 100
        c.call("SET", "x:resp", value)
        c.close()
        self.assertEqual(self.mc(b"get x:resp\r\n"),
                         b"VALUE x:resp 0 %d\r\n" % len(value) + value + b"\r\nEND\r\n")

    def test_memcached_set_reads_back_through_resp(self):
        value = b"memcached \x01\x02 value"
        self.assertEqual(self.mc(b"set x:mc 7 0 %d\r\n" % len(value) + value + b"\r\n"),
                         b"STORED\r\n")
        c = Client(self.port)
        self.assertEqual(c.call("GET", "x:mc"), b"$%d\r\n" % len(value) + value + b"\r\n")
        c.close()

    def test_incr_on_either_side_sees_the_other(self):
        c = Client(self.port)
        c.call("SET", "x:n", "41")
        self.assertEqual(self.mc(b"incr x:n 1\r\n"), b"42\r\n")
        self.assertEqual(c.call("INCR", "x:n"), b":43\r\n")
        c.close()


# Requests whose replies must be byte for byte Redis 7.0's. Each list runs on a fresh
# connection after FLUSHALL, on both servers.
CASES = [
    [("PING",), ("PING", "hello"), ("PING", "a", "b"), ("ECHO", "x\r\ny")],
    [("SET", "k", "v"), ("GET", "k"), ("GET", "missing"), ("GET",), ("GET", "a", "b")],
    [("SET", "k", "v", "NX"), ("SET", "k", "w", "NX"), ("SET", "k", "w", "XX"), ("GET", "k"),
     ("SET", "k2", "v", "XX"), ("SET", "k", "z", "GET"), ("SET", "new", "z", "GET")],
    [("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "EX", "abc"), ("SET", "k", "v", "PX", "-5"),
     ("SET", "k", "v", "FOO"), ("SET", "k", "v", "NX", "XX"), ("SET", "k", "v", "EX", "10", "PX",
                                                                "10"),
     ("SET", "k", "v", "EX", "10", "KEEPTTL"), ("SET", "k", "v", "EX")],
    [("SET", "k", "v", "EX", "100"), ("TTL", "k"), ("PTTL", "missing"), ("TTL", "missing"),
     ("SET", "p", "v"), ("TTL", "p"), ("PERSIST", "p"), ("PERSIST", "k"), ("TTL", "k")],
    [("SET", "k", "v"), ("EXPIRE", "k", "100", "XX"), ("EXPIRE", "k", "100", "NX"),
     ("EXPIRE", "k", "200", "NX"), ("EXPIRE", "k", "50", "GT"), ("EXPIRE", "k", "50", "LT"),
     ("EXPIRE", "k", "abc"), ("EXPIRE", "k", "10", "NX", "XX"), ("EXPIRE", "k", "10", "GT", "LT"),
     ("EXPIRE", "k", "10", "FOO"), ("EXPIRE", "missing", "10"), ("TTL", "k")],
    [("INCR", "n"), ("INCRBY", "n", "10"), ("DECR", "n"), ("DECRBY", "n", "100"),
     ("INCRBY", "n", "x"), ("SET", "s", "abc"), ("INCR", "s"), ("SET", "big",
                                                                  "9223372036854775807"),
     ("INCR", "big"), ("SET", "z", " 1"), ("INCR", "z"), ("SET", "lz", "01"), ("INCR", "lz")],
    [("MSET", "a", "1", "b", "2", "c", "3"), ("MGET", "a", "b", "x", "c"), ("MSET", "a"),
     ("MSET", "a", "1", "b"), ("DEL", "a", "b", "x"), ("EXISTS", "a", "c", "c", "x"),
     ("UNLINK", "c"), ("DBSIZE",)],
    [("SETNX", "k", "1"), ("SETNX", "k", "2"), ("GET", "k"), ("SETEX", "e", "100", "v"),
     ("TTL", "e"), ("SETEX", "e", "0", "v"), ("PSETEX", "e", "-1", "v"), ("SETEX", "e", "x", "v")],
    [("SET", "k", "hello"), ("STRLEN", "k"), ("STRLEN", "x"), ("APPEND", "k", " world"),
     ("APPEND", "new", "abc"), ("GET", "k"), ("GETDEL", "k"), ("GETDEL", "k"), ("TYPE", "new"),
     ("TYPE", "k")],
    [("NOSUCH",), ("NOSUCH", "a", "b c"), ("nosuch", "x" * 200), ("SELECT", "0"),
     ("SELECT", "x"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "bob"),
     ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "a b"), ("CLIENT", "NOSUCH"), ("CLIENT", "SETNAME"),
     ("CLIENT", "ID", "x"), ("ECHO",), ("HELLO", "3", "FOO")],
    [("SET", "k", "hello"), ("GETRANGE", "k", "0", "-1"), ("GETRANGE", "k", "-3", "-1"),
     ("GETRANGE", "k", "5", "1"), ("GETRANGE", "k", "10", "20"), ("GETRANGE", "nokey", "0", "1"),
     ("GETRANGE", "k", "a", "1"), ("SETRANGE", "k", "8", "XY"), ("GET", "k"),
     ("SETRANGE", "k", "-1", "a"), ("SETRANGE", "new", "0", ""), ("EXISTS", "new"),
     ("SETRANGE", "k3", "2", "ab"), ("GET", "k3")],
    [("SET", "k", "v"), ("GETEX", "k"), ("GETEX", "k", "EX", "100"), ("TTL", "k"),
     ("GETEX", "k", "PERSIST"), ("TTL", "k"), ("GETEX", "k", "EX", "0"),
     ("GETEX", "k", "EX", "10", "PX", "10"), ("GETEX", "nokey", "EX", "10"), ("GETEX", "k", "FOO"),
     ("GETEX", "k", "PERSIST", "EX", "1"), ("GETEX", "k", "EX", "x"), ("RESET",), ("GET", "k")],
    [("HELLO", "4"), ("HELLO", "x"), ("DBSIZE",), ("FLUSHALL",), ("FLUSHDB",),
     ("FLUSHALL", "ASYNC"), ("FLUSHDB", "SYNC"), ("FLUSHALL", "NOW"), ("FLUSHDB", "A", "B")],
]


@unittest.skipUnless(REDIS_SERVER, "redis-server not found (set REDIS_SERVER)")
class SameAsRedis(unittest.TestCase):
    """Each case's replies from petrel equal redis-server's, byte for byte."""

    @classmethod
    def setUpClass(cls):
        cls.srv, cls.port = start_petrel()
        cls.rport = free_port()
        cls.redis = subprocess.Popen(
            [REDIS_SERVER, "--port", str(cls.rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", cls.rport), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.redis.terminate()
        cls.redis.wait(10)

    def run_case(self, port, case):
        c = Client(port)
        c.call("FLUSHALL")
        out = [c.call(*req) for req in case]
        c.close()
        return out

    def test_replies_match_redis(self):
        for case in CASES:
            with self.subTest(case=case[0]):
                ours = self.run_case(self.port, case)
                theirs = self.run_case(self.rport, case)
                for req, a, b in zip(case, ours, theirs):
                    self.assertEqual(a, b, "request %r" % (req,))

    def test_inline_requests_match_redis(self):
        for port in (self.port, self.rport):
            Client(port).call("FLUSHALL")
        ours, theirs = Client(self.port), Client(self.rport)
        for line in [b"SET k \"a b\"\r\n", b"GET k\r\n", b"PING\r\n", b"EXISTS k\r\n"]:
            self.assertEqual(ours.raw(line), theirs.raw(line), line)

    def test_protocol_errors_match_redis_and_close(self):
        for bad in [b"*1\r\n$x\r\n", b"*abc\r\n", b"*1\r\n+foo\r\n"]:
            ours, theirs = Client(self.port), Client(self.rport)
            self.assertEqual(ours.raw(bad), theirs.raw(bad), bad)
            self.assertEqual(ours.sock.recv(10), b"")


@unittest.skipUnless(shutil.which("redis-cli"), "redis-cli not found")
class RedisCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv, cls.port = start_petrel()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def cli(self, *args, stdin=None):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], input=stdin,
                              capture_output=True, timeout=30, check=True).stdout

    def test_commands_from_the_command_line(self):
        self.assertEqual(self.cli("SET", "cli", "hello"), b"OK\n")
        self.assertEqual(self.cli("GET", "cli"), b"hello\n")
        self.assertEqual(self.cli("GET", "none"), b"\n")  # redis-cli's nil, when piped

    def test_interactive_session_reads_stdin(self):
        out = self.cli(stdin=b"SET s1 v1\nGET s1\nINCR c\nINCR c\n")
        self.assertEqual(out, b"OK\nv1\n1\n2\n")

    @unittest.skipUnless(shutil.which("redis-benchmark"), "redis-benchmark not found")
    def test_redis_benchmark_runs_pipelined_without_errors(self):
        out = subprocess.run(["redis-benchmark", "-p", str(self.port), "-t", "set,get", "-n",
                              "20000", "-P", "16", "-q", "-d", "64"],
                             capture_output=True, timeout=120, check=True).stdout
        self.assertIn(b"SET:", out)
        self.assertIn(b"GET:", out)
        self.assertNotIn(b"ERR", out)


try:
    import redis
except ImportError:
    redis = None


@unittest.skipUnless(redis, "Python's redis package not found (python3-redis)")
class PythonRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv, cls.port = start_petrel()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_client_sets_gets_and_pipelines(self):
        r = redis.Redis(port=self.port)
        self.assertTrue(r.ping())
        self.assertTrue(r.set("py", b"\x00bytes"))
        self.assertEqual(r.get("py"), b"\x00bytes")
        self.assertEqual(r.incrby("pyn", 5), 5)
        p = r.pipeline(transaction=False)
        for i in range(100):
            p.set("pp%d" % i, i)
        p.mget(["pp%d" % i for i in range(100)])
        res = p.execute()
        self.assertEqual(res[-1], [str(i).encode() for i in range(100)])
        self.assertEqual(r.delete("py", "pyn", "nothere"), 2)
        r.close()


class RespConnLimit(unittest.TestCase):
    """Past --max-conns the RESP port refuses with Redis's error, the memcached port with
    memcached's: each listener has its own refusal."""

    def refused(self, srv, port):
        with srv.connect(port) as extra:
            return recv_until_closed(extra)

    def test_resp_port_refuses_with_redis_error_and_memcached_port_with_memcacheds(self):
        srv, port = start_petrel("--max-conns", "3")
        try:
            held = [Client(port) for _ in range(3)]
            for c in held:
                self.assertEqual(c.call("PING"), b"+PONG\r\n")
            self.assertEqual(self.refused(srv, port), b"-ERR max number of clients reached\r\n")
            self.assertEqual(self.refused(srv, srv.port), b"ERROR Too many open connections\r\n")
            held.pop().close()
            deadline = time.monotonic() + 10
            while True:  # the worker sees the close a moment later
                with srv.connect(port) as s:
                    s.sendall(mb("PING"))
                    s.settimeout(10)
                    got = s.recv(100)
                if got == b"+PONG\r\n" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual(got, b"+PONG\r\n")
            for c in held:
                c.close()
        finally:
            srv.stop()


@unittest.skipUnless(REDIS_SERVER, "redis-server not found (set REDIS_SERVER)")
class RespPipelines(unittest.TestCase):
    """One write of many requests (more than a batch parsed ahead), mixing data commands with
    the forms that end a batch (inline requests, empty ones, a local command) and ending in a
    protocol error: petrel's whole reply stream equals redis-server's, byte for byte."""

    def stream(self):
        reqs = [mb("SET", "p%d" % i, "v" * i) for i in range(20)]
        reqs += [b"*0\r\n", b"\r\n", b"GET p3\r\n", b"SET q \"a b\"\r\n", mb("GET", "q")]
        reqs += [mb("GET", "p%d" % i) for i in range(20)]
        reqs += [mb("MGET", "p1", "nope", "p2"), mb("INCR", "n"), mb("PING"), mb("INCR", "n")]
        reqs += [mb("DEL", "p1", "p2", "nope"), mb("get", "P1"), mb("GET", "p1")]
        return b"".join(reqs) + b"*1\r\n$x\r\n" + mb("PING")

    def replies(self, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(mb("FLUSHALL"))
            self.assertEqual(s.recv(100), b"+OK\r\n")
            s.sendall(self.stream())
            return recv_until_closed(s)

    def test_a_long_pipeline_answers_as_redis_does(self):
        rport = free_port()
        redis_proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv, port = start_petrel()
        try:
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", rport), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            ours, theirs = self.replies(port), self.replies(rport)
            self.assertTrue(theirs.endswith(b"-ERR Protocol error: invalid bulk length\r\n"))
            self.assertEqual(ours, theirs)
        finally:
            srv.stop()
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    unittest.main()
