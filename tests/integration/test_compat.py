"""Petrel's data-port replies against memcached 1.6.45's, byte for byte.

Every case below is a short conversation on one connection: requests, and the exact reply that
memcached 1.6.45 gives to each, recorded here as golden bytes. Each case runs against Petrel.
When MEMCACHED_CURRENT names a memcached 1.6.45 binary, the same case runs against it too, so
that the golden replies stay true to the real server; Debian's memcached (1.6.18, found on PATH
or as /usr/bin/memcached) runs the cases where its replies agree (the others say why not).
A server whose binary is absent is skipped.

A reply is read up to the reply to a sentinel request sent after each request (an mg miss that
echoes a unique opaque), so requests that get no reply (noreply, q) are checked as well. Keys
differ between cases; every class starts its own servers. Left out on purpose: stats, lru_crawler, version (its text differs by design), CAS
values the server picks (they are set with E where a reply shows one), me's item line, and
settings memcached cannot share. docs/protocol.md lists the differences that remain.
"""
import os
import re
import shutil
import socket
import subprocess
import time
import unittest

from harness import Server, free_port

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")
K251 = b"k" * 251  # one byte too long for a key


def debian_memcached():
    path = shutil.which("memcached")
    if path is None and os.access("/usr/bin/memcached", os.X_OK):
        path = "/usr/bin/memcached"
    return path


class Memcached:
    """A memcached binary on an ephemeral port (TCP only, on the loopback address)."""

    def __init__(self, binary):
        self.port = free_port()
        args = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # memcached refuses to run as root without -u
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("%s did not start on port %d" % (binary, self.port))
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Case:
    """One behaviour: (request, reply) steps on one connection.

    closes: the server closes the connection after the request, without a reply.
    slack: the replies show TTLs (t) or idle seconds (l) that a clock tick during the case may
    lower (t) or raise (l) by one.
    debian: why Debian's memcached 1.6.18 answers otherwise (None: it agrees)."""

    def __init__(self, name, *steps, closes=False, slack=False, debian=None):
        self.name = name
        self.steps = steps
        self.closes = closes
        self.slack = slack
        self.debian = debian


def accepted(reply, slack):
    """The replies that count as this golden reply."""
    if not slack:
        return {reply}
    later = re.sub(rb"(?<= )t(\d+)", lambda m: b"t%d" % max(int(m.group(1)) - 1, 0), reply)
    later = re.sub(rb"(?<= )l(\d+)", lambda m: b"l%d" % (int(m.group(1)) + 1), later)
    return {reply, later}


SENTINEL = b"mg compat:end Ocompat-end\r\n"
SENTINEL_REPLY = b"EN Ocompat-end\r\n"


def read_reply(sock):
    """Read up to and without the reply to the SENTINEL sent after a request."""
    data = b""
    while not data.endswith(SENTINEL_REPLY):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError("connection closed; got %r" % data[-200:])
        data += chunk
    return data[:-len(SENTINEL_REPLY)]


def read_to_close(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class CompatCase(unittest.TestCase):
    """Runs its class's cases (one test method each) against every server there is."""

    cases = []

    @classmethod
    def setUpClass(cls):
        cls.servers = []
        cls.skipped = {}
        cls.petrel = Server(PETREL, "-t", "2")
        cls.servers.append(("petrel", cls.petrel.port, cls.petrel))
        current = os.environ.get("MEMCACHED_CURRENT")
        if current and os.access(current, os.X_OK):
            mc = Memcached(current)
            cls.servers.append(("memcached-1.6.45", mc.port, mc))
        else:
            cls.skipped["memcached-1.6.45"] = "MEMCACHED_CURRENT names no memcached binary"
        debian = debian_memcached()
        if debian:
            mc = Memcached(debian)
            cls.servers.append(("memcached-debian", mc.port, mc))
        else:
            cls.skipped["memcached-debian"] = "no memcached on PATH or in /usr/bin"

    @classmethod
    def tearDownClass(cls):
        for _, _, server in cls.servers:
            if isinstance(server, Memcached):
                server.stop()
            else:
                server.__exit__(None, None, None)

    def run_case(self, case):
        for label, why in self.skipped.items():
            with self.subTest(server=label):
                self.skipTest(why)
        for label, port, _ in self.servers:
            with self.subTest(server=label):
                if label == "memcached-debian" and case.debian:
                    self.skipTest(case.debian)
                self.converse(port, case)

    def converse(self, port, case):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for request, reply in case.steps:
                if case.closes:
                    sock.sendall(request)
                    self.assertEqual(read_to_close(sock), reply, request[:80])
                    continue
                sock.sendall(request + SENTINEL)
                got = read_reply(sock)
                self.assertIn(got, accepted(reply, case.slack),
                              "request %r: got %r, want %r" % (request[:80], got[:200], reply))


def install(cls):
    """One test method per case of cls."""
    for case in cls.cases:
        name = "test_" + case.name
        assert not hasattr(cls, name), name
        setattr(cls, name, lambda self, case=case: self.run_case(case))
    return cls


# Why Debian's memcached 1.6.18 answers some cases otherwise.
R_SHORT = "1.6.18 answers ERROR to a line too short for a command"
R_TOKENS = "1.6.18 wants an exact token count and answers ERROR otherwise"
R_SWALLOW = "1.6.18 reads the data block of a refused storage line as a command"
R_NOREPLY = "1.6.18 treats noreply differently here"
R_NUMBERS = "1.6.18 reads these numbers with strtol/strtoul (a '+' and wider values pass)"
R_GETKEY = "1.6.18 sends no empty line after a bad get key"
R_LEADING = "1.6.18 skips leading spaces before a command"
R_DELETE = "1.6.18 accepts only 0 or noreply after a delete key"
R_SHUTDOWN = "1.6.18 says ERROR: shutdown not enabled"
R_SLABS = "1.6.18 checks slabs automove arguments differently"
R_METAFLAG = "1.6.18 lacks this meta flag or its meaning here (E, C on mg, x, I, F on md, N on ms)"
R_METAERR = "1.6.18 reports this meta error differently"
R_MTOKEN = "1.6.18 wants an M token of exactly two bytes"
R_TOKENIZER = "1.6.18 has no meta tokenizer check on a flag's first byte"
R_TOOMANY = "1.6.18 allows 19 meta tokens, not 20, and words the error differently"
R_QUIET = "1.6.18's q does not hide ma's HD"


@install
class Framing(CompatCase):
    """Lines memcached 1.6.45 cannot read as a command."""

    cases = [
        # A line shorter than four bytes is a format error.
        Case('blank_line',
             (b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        Case('bare_newline',
             (b"\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        Case('short_line',
             (b"x\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        # Three bytes: too short even for mn.
        Case('two_letters_and_bare_newline',
             (b"mn\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        # Four bytes or more without a command: unknown.
        Case('spaces_only',
             (b"   \r\n",
              b'ERROR\r\n')),
        # The command is what precedes the first space.
        Case('leading_space_before_get',
             (b"  get k\r\n",
              b'ERROR\r\n'),
             debian=R_LEADING),
        Case('unknown_command',
             (b"foo bar\r\n",
              b'ERROR\r\n')),
        # Noreply silences even ERROR.
        Case('unknown_command_noreply',
             (b"foo noreply\r\n",
              b''),
             debian=R_NOREPLY),
        Case('uppercase_command',
             (b"GET k\r\n",
              b'ERROR\r\n')),
        Case('tab_after_command',
             (b"get\tk\r\n",
              b'ERROR\r\n')),
        Case('unknown_meta_command',
             (b"mz foo\r\n",
              b'ERROR\r\n')),
        Case('too_many_tokens_unknown',
             (b"foo " + b" ".join(b"t%d" % i for i in range(30)) + b"\r\n",
              b'ERROR\r\n')),
    ]


@install
class Storage(CompatCase):
    """set and friends: token counts, numbers, data blocks, noreply."""

    cases = [
        Case('set_too_few_tokens',
             (b"set st1 0 0\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        # Never silenced: noreply is not looked for yet.
        Case('set_too_few_tokens_noreply',
             (b"set st1 0 noreply\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('set_extra_tokens_ignored',
             (b"set st2 0 0 1 noreply extra\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st2\r\n",
              b'VALUE st2 0 1\r\nx\r\nEND\r\n'),
             debian=R_TOKENS),
        Case('set_noreply_after_23_tokens_unseen',
             (b"set st3 0 0 1 " + b"a " * 25 + b"noreply\r\nx\r\n",
              b'STORED\r\n'),
             debian=R_TOKENS),
        Case('set_noreply',
             (b"set st4 0 0 1 noreply\r\nx\r\n",
              b''),
             (b"get st4\r\n",
              b'VALUE st4 0 1\r\nx\r\nEND\r\n')),
        Case('key_of_250_bytes',
             (b"set " + b"k" * 250 + b" 0 0 1\r\nx\r\n",
              b'STORED\r\n')),
        Case('key_too_long_swallows_data',
             (b"set " + K251 + b" 0 0 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('key_too_long_noreply',
             (b"set " + K251 + b" 0 0 1 noreply\r\nx\r\n",
              b''),
             debian=R_SWALLOW),
        Case('bad_flags_swallow_data',
             (b"set st5 x 0 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('negative_flags',
             (b"set st5 -1 0 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('bad_flags_noreply',
             (b"set st5 x 0 1 noreply\r\nx\r\n",
              b''),
             debian=R_SWALLOW),
        Case('flags_wrap_at_32_bits',
             (b"set st6 4294967297 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st6\r\n",
              b'VALUE st6 1 1\r\nx\r\nEND\r\n')),
        Case('flags_with_plus',
             (b"set st7 +3 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st7\r\n",
              b'VALUE st7 3 1\r\nx\r\nEND\r\n')),
        Case('bad_exptime',
             (b"set st8 0 x 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('negative_exptime_expires_at_once',
             (b"set st9 0 -1 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st9\r\n",
              b'END\r\n')),
        # 2^32 cut to 32 bits is 0: no expiry.
        Case('exptime_wraps_to_zero',
             (b"set st10 0 4294967296 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st10\r\n",
              b'VALUE st10 0 1\r\nx\r\nEND\r\n')),
        # 2^31 cut to 32 bits is negative: expired.
        Case('exptime_wraps_negative',
             (b"set st11 0 2147483648 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get st11\r\n",
              b'END\r\n')),
        Case('huge_exptime',
             (b"set st12 0 99999999999 1\r\nx\r\n",
              b'STORED\r\n')),
        # Not swallowed: memcached does not know the block's length.
        Case('bad_length',
             (b"set st13 0 0 x\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('bad_length_noreply',
             (b"set st13 0 0 x noreply\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_NOREPLY),
        Case('negative_length_data_read_as_command',
             (b"set st13 0 0 -1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        Case('length_with_plus',
             (b"set st13 0 0 +1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_NUMBERS),
        # The bad block is read at its length; its last byte is a short line.
        Case('data_too_long',
             (b"set st14 0 0 1\r\nxy\r\n",
              b'CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        Case('data_without_crlf',
             (b"set st14 0 0 1\r\nxyz",
              b'CLIENT_ERROR bad data chunk\r\n')),
        Case('bad_data_noreply',
             (b"set st14 0 0 1 noreply\r\nxy\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        # The line's error wins; the block is swallowed at its length.
        Case('key_too_long_and_bad_data',
             (b"set " + K251 + b" 0 0 1\r\nxy\r\n",
              b'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('value_too_large',
             (b"set st15 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\n",
              b'SERVER_ERROR object too large for cache\r\n')),
        Case('value_too_large_drops_old_value',
             (b"set st21 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"set st21 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\n",
              b'SERVER_ERROR object too large for cache\r\n'),
             (b"get st21\r\n",
              b'END\r\n')),
        Case('value_too_large_noreply',
             (b"set st15 0 0 2000000 noreply\r\n" + b"x" * 2000000 + b"\r\n",
              b'')),
        # Its data line is swallowed.
        Case('cas_without_unique',
             (b"cas st16 0 0 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('cas_without_unique_noreply',
             (b"cas st16 0 0 1 noreply\r\nx\r\n",
              b''),
             debian=R_TOKENS),
        Case('cas_bad_unique',
             (b"cas st16 0 0 1 x\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('cas_unique_with_plus',
             (b"cas st16 0 0 1 +1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_NUMBERS),
        Case('cas_missing_key',
             (b"cas st17 0 0 1 5\r\nx\r\n",
              b'NOT_FOUND\r\n')),
        Case('cas_mismatch',
             (b"set st18 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"ms st18 1 E77\r\ny\r\n",
              b'HD\r\n'),
             (b"cas st18 0 0 1 76\r\nz\r\n",
              b'EXISTS\r\n'),
             (b"cas st18 0 0 1 77\r\nz\r\n",
              b'STORED\r\n'),
             (b"get st18\r\n",
              b'VALUE st18 0 1\r\nz\r\nEND\r\n'),
             debian=R_METAFLAG),
        Case('add_existing_noreply',
             (b"set st19 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"add st19 0 0 1 noreply\r\ny\r\n",
              b''),
             (b"add st19 0 0 1\r\ny\r\n",
              b'NOT_STORED\r\n')),
        Case('replace_append_prepend',
             (b"replace st20 0 0 1\r\nx\r\n",
              b'NOT_STORED\r\n'),
             (b"append st20 0 0 1\r\nx\r\n",
              b'NOT_STORED\r\n'),
             (b"set st20 5 0 1\r\nb\r\n",
              b'STORED\r\n'),
             (b"append st20 9 0 1\r\nc\r\n",
              b'STORED\r\n'),
             (b"prepend st20 9 0 1\r\na\r\n",
              b'STORED\r\n'),
             (b"get st20\r\n",
              b'VALUE st20 5 3\r\nabc\r\nEND\r\n')),
    ]


@install
class Retrieval(CompatCase):
    """get, gets, gat, gats."""

    cases = [
        Case('get_without_key',
             (b"get\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('gets_without_key',
             (b"gets\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        # The error line is followed by an empty line.
        Case('get_key_too_long',
             (b"get " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n\r\n'),
             debian=R_GETKEY),
        Case('get_key_too_long_drops_earlier_hits',
             (b"set rt1 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get rt1 " + K251 + b" rt1\r\n",
              b'CLIENT_ERROR bad command line format\r\n\r\n'),
             debian=R_GETKEY),
        # Noreply silences the error line, not the empty line.
        Case('get_key_too_long_noreply',
             (b"get " + K251 + b" noreply\r\n",
              b'\r\n'),
             debian=R_GETKEY),
        Case('gets_key_too_long',
             (b"gets " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n\r\n'),
             debian=R_GETKEY),
        Case('get_noreply_is_a_key',
             (b"get rt2 noreply\r\n",
              b'END\r\n')),
        Case('get_many_keys',
             (b"set rt3 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"get " + b" ".join(b"rt3" if i == 40 else b"rt3x%d" % i for i in range(300)) + b"\r\n",
              b'VALUE rt3 0 1\r\nx\r\nEND\r\n')),
        Case('gat_without_key',
             (b"gat 10\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('gat_alone',
             (b"gat\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('gat_bad_exptime',
             (b"gat x rt4\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n')),
        Case('gat_exptime_with_plus',
             (b"gat +1 rt4\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n'),
             debian=R_NUMBERS),
        Case('gats_bad_exptime',
             (b"gats x rt4\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n')),
        Case('gat_key_too_long',
             (b"gat 0 " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n\r\n'),
             debian=R_GETKEY),
        Case('gat_hit',
             (b"set rt5 3 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"gat 100 rt5 rt6\r\n",
              b'VALUE rt5 3 1\r\nx\r\nEND\r\n'),
             (b"mg rt5 t\r\n",
              b'HD t100\r\n'),
             slack=True),
        Case('gat_past_exptime',
             (b"set rt7 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"gat -1 rt7\r\n",
              b'VALUE rt7 0 1\r\nx\r\nEND\r\n'),
             (b"get rt7\r\n",
              b'END\r\n')),
    ]


@install
class Arithmetic(CompatCase):
    """incr and decr."""

    cases = [
        Case('incr_non_numeric',
             (b"set ar1 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"incr ar1 1\r\n",
              b'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n'),
             (b"decr ar1 1\r\n",
              b'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n')),
        Case('incr_bad_delta',
             (b"incr ar2 x\r\n",
              b'CLIENT_ERROR invalid numeric delta argument\r\n')),
        Case('incr_negative_delta',
             (b"incr ar2 -1\r\n",
              b'CLIENT_ERROR invalid numeric delta argument\r\n')),
        Case('incr_delta_with_plus',
             (b"incr ar2 +1\r\n",
              b'CLIENT_ERROR invalid numeric delta argument\r\n'),
             debian=R_NUMBERS),
        Case('incr_delta_too_large',
             (b"incr ar2 18446744073709551616\r\n",
              b'CLIENT_ERROR invalid numeric delta argument\r\n')),
        Case('incr_bad_delta_noreply',
             (b"incr ar2 x noreply\r\n",
              b'')),
        Case('incr_too_few_tokens',
             (b"incr ar2\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('incr_too_few_tokens_noreply',
             (b"incr noreply\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('incr_key_too_long',
             (b"incr " + K251 + b" 1\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('incr_missing',
             (b"incr ar3 1\r\n",
              b'NOT_FOUND\r\n'),
             (b"decr ar3 1\r\n",
              b'NOT_FOUND\r\n')),
        Case('incr_decr_values',
             (b"set ar4 0 0 2\r\n10\r\n",
              b'STORED\r\n'),
             (b"incr ar4 5\r\n",
              b'15\r\n'),
             (b"decr ar4 100\r\n",
              b'0\r\n'),
             (b"incr ar4 18446744073709551615\r\n",
              b'18446744073709551615\r\n'),
             (b"incr ar4 2\r\n",
              b'1\r\n')),
        Case('incr_noreply',
             (b"set ar5 0 0 1\r\n1\r\n",
              b'STORED\r\n'),
             (b"incr ar5 5 noreply\r\n",
              b''),
             (b"get ar5\r\n",
              b'VALUE ar5 0 1\r\n6\r\nEND\r\n')),
        Case('incr_extra_tokens',
             (b"set ar6 0 0 1\r\n1\r\n",
              b'STORED\r\n'),
             (b"incr ar6 1 x y\r\n",
              b'2\r\n'),
             debian=R_TOKENS),
    ]


@install
class DeleteTouch(CompatCase):
    """delete and touch."""

    cases = [
        Case('delete_without_key',
             (b"delete\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('delete_extra_tokens_ignored',
             (b"set dt1 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"delete dt1 x\r\n",
              b'DELETED\r\n'),
             (b"delete dt1 0\r\n",
              b'NOT_FOUND\r\n'),
             debian=R_DELETE),
        Case('delete_noreply',
             (b"set dt2 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"delete dt2 noreply\r\n",
              b''),
             (b"delete dt2 0 noreply\r\n",
              b'')),
        Case('delete_key_too_long',
             (b"delete " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('delete_key_too_long_noreply',
             (b"delete " + K251 + b" noreply\r\n",
              b'')),
        Case('touch_too_few_tokens',
             (b"touch dt3\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('touch_bad_exptime',
             (b"touch dt3 x\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n')),
        Case('touch_exptime_with_plus',
             (b"touch dt3 +5\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n'),
             debian=R_NUMBERS),
        Case('touch_bad_exptime_noreply',
             (b"touch dt3 x noreply\r\n",
              b'')),
        Case('touch_missing',
             (b"touch dt3 10\r\n",
              b'NOT_FOUND\r\n')),
        Case('touch_hit',
             (b"set dt4 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"touch dt4 100\r\n",
              b'TOUCHED\r\n'),
             (b"touch dt4 100 noreply\r\n",
              b''),
             (b"mg dt4 t\r\n",
              b'HD t100\r\n'),
             slack=True),
        Case('touch_key_too_long',
             (b"touch " + K251 + b" 1\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
    ]


@install
class ServerCommands(CompatCase):
    """verbosity, flush_all, slabs, shutdown, quit: argument errors."""

    cases = [
        Case('verbosity_without_level',
             (b"verbosity\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('verbosity_bad_level',
             (b"verbosity x\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('verbosity_negative',
             (b"verbosity -1\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('verbosity_with_plus',
             (b"verbosity +1\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_NUMBERS),
        Case('verbosity_beyond_32_bits',
             (b"verbosity 4294967296\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_NUMBERS),
        Case('verbosity_bad_level_noreply',
             (b"verbosity x noreply\r\n",
              b'')),
        Case('verbosity_noreply_alone',
             (b"verbosity noreply\r\n",
              b'')),
        Case('verbosity_extra_tokens',
             (b"verbosity 0 2 3\r\n",
              b'OK\r\n'),
             debian=R_TOKENS),
        Case('verbosity_ok',
             (b"verbosity 0\r\n",
              b'OK\r\n'),
             (b"verbosity 0 noreply\r\n",
              b'')),
        Case('flush_all_bad_delay',
             (b"flush_all x\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n')),
        Case('flush_all_bad_delay_noreply',
             (b"flush_all x noreply\r\n",
              b'')),
        Case('flush_all_delay_with_plus',
             (b"flush_all +0\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n'),
             debian=R_NUMBERS),
        Case('flush_all_delay_too_large',
             (b"flush_all 99999999999\r\n",
              b'CLIENT_ERROR invalid exptime argument\r\n'),
             debian=R_NUMBERS),
        Case('flush_all_extra_tokens',
             (b"flush_all 0 2 3\r\n",
              b'OK\r\n'),
             debian=R_TOKENS),
        Case('flush_all_negative_delay',
             (b"set sv1 0 0 1\r\nx\r\n",
              b'STORED\r\n'),
             (b"flush_all -1\r\n",
              b'OK\r\n'),
             (b"get sv1\r\n",
              b'END\r\n')),
        Case('flush_all_noreply',
             (b"flush_all noreply\r\n",
              b'')),
        Case('slabs_alone',
             (b"slabs\r\n",
              b'ERROR\r\n')),
        Case('slabs_unknown_subcommand',
             (b"slabs foo\r\n",
              b'ERROR\r\n')),
        Case('slabs_automove_alone',
             (b"slabs automove\r\n",
              b'ERROR\r\n')),
        Case('slabs_automove_invalid',
             (b"slabs automove invalid\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('slabs_automove_negative',
             (b"slabs automove -1\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('slabs_automove_level_too_high',
             (b"slabs automove 3\r\n",
              b'ERROR\r\n')),
        Case('slabs_automove_levels',
             (b"slabs automove 0\r\n",
              b'OK\r\n'),
             (b"slabs automove 1\r\n",
              b'OK\r\n'),
             (b"slabs automove 2\r\n",
              b'OK\r\n')),
        Case('slabs_automove_abbreviated',
             (b"slabs auto 0\r\n",
              b'OK\r\n'),
             debian=R_SLABS),
        Case('slabs_automove_noreply',
             (b"slabs automove 1 noreply\r\n",
              b''),
             (b"slabs automove x noreply\r\n",
              b'')),
        Case('slabs_automove_ratio',
             (b"slabs automove ratio x\r\n",
              b'ERROR\r\n'),
             (b"slabs automove ratio\r\n",
              b'ERROR\r\n'),
             (b"slabs automove ratio 0.8\r\n",
              b'OK\r\n')),
        Case('slabs_automove_freeratio',
             (b"slabs automove freeratio x\r\n",
              b'ERROR\r\n'),
             (b"slabs automove freeratio 0.01\r\n",
              b'OK\r\n'),
             debian=R_SLABS),
        Case('slabs_automove_window',
             (b"slabs automove window x\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             (b"slabs automove window 2\r\n",
              b'CLIENT_ERROR automove window too low or too high\r\n'),
             (b"slabs automove window 1801\r\n",
              b'CLIENT_ERROR automove window too low or too high\r\n'),
             (b"slabs automove window 30\r\n",
              b'OK\r\n'),
             debian=R_SLABS),
        Case('slabs_reassign_bad_classes',
             (b"slabs reassign x y\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('slabs_reassign_too_few',
             (b"slabs reassign 1\r\n",
              b'ERROR\r\n')),
        Case('slabs_reassign_same_class',
             (b"slabs reassign 3 3\r\n",
              b'SAME src and dst class are identical\r\n')),
        Case('slabs_reassign_no_such_class',
             (b"slabs reassign 99 1\r\n",
              b'BADCLASS invalid src or dst class id\r\n')),
        Case('shutdown_not_enabled',
             (b"shutdown\r\n",
              b'SERVER_ERROR: shutdown not enabled\r\n'),
             (b"shutdown graceful\r\n",
              b'SERVER_ERROR: shutdown not enabled\r\n'),
             (b"shutdown x\r\n",
              b'SERVER_ERROR: shutdown not enabled\r\n'),
             debian=R_SHUTDOWN),
        Case('shutdown_noreply',
             (b"shutdown noreply\r\n",
              b''),
             debian=R_SHUTDOWN),
        Case('quit_with_arguments',
             (b"quit x\r\n",
              b''),
             closes=True),
        Case('http_request',
             (b"GET / HTTP/1.1\r\n",
              b''),
             closes=True),
    ]


@install
class MetaGet(CompatCase):
    """mg and its flags."""

    cases = [
        Case('mg_without_key',
             (b"mg\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('mg_key_too_long',
             (b"mg " + K251 + b" v\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('mg_miss',
             (b"mg mg1 v\r\n",
              b'EN\r\n')),
        Case('mg_miss_echoes_k_and_O',
             (b"mg mg1 s v k Oabc t\r\n",
              b'EN kmg1 Oabc\r\n')),
        Case('mg_miss_q',
             (b"mg mg1 v q\r\n",
              b''),
             (b"mg mg1 q k Ox\r\n",
              b'')),
        Case('mg_hit_flags',
             (b"ms mg2 2 F5 T0 E41\r\nhi\r\n",
              b'HD\r\n'),
             (b"mg mg2 v f t s k c\r\n",
              b'VA 2 f5 t-1 s2 kmg2 c41\r\nhi\r\n'),
             (b"mg mg2\r\n",
              b'HD\r\n'),
             debian=R_METAFLAG),
        Case('mg_hit_q_is_not_quiet',
             (b"ms mg3 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg3 q v\r\n",
              b'VA 1\r\nx\r\n'),
             (b"mg mg3 q\r\n",
              b'HD\r\n')),
        Case('mg_h_and_l',
             (b"ms mg4 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg4 h l\r\n",
              b'HD h0 l0\r\n'),
             (b"mg mg4 h\r\n",
              b'HD h1\r\n'),
             slack=True),
        Case('mg_u_does_not_mark_fetched',
             (b"ms mg5 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg5 u\r\n",
              b'HD\r\n'),
             (b"mg mg5 h\r\n",
              b'HD h0\r\n')),
        Case('mg_flags_without_effect',
             (b"ms mg6 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg6 x P L I\r\n",
              b'HD\r\n'),
             debian=R_METAFLAG),
        Case('mg_bare_O',
             (b"ms mg7 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg7 O\r\n",
              b'HD O\r\n')),
        Case('mg_opaque_31',
             (b"mg mg8 O" + b"o" * 31 + b"\r\n",
              b'EN Oooooooooooooooooooooooooooooooo\r\n')),
        Case('mg_opaque_too_long',
             (b"mg mg8 O" + b"o" * 32 + b"\r\n",
              b'CLIENT_ERROR opaque token too long\r\n')),
        Case('mg_extra_spaces',
             (b"ms mg9 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg   mg9    v  \r\n",
              b'VA 1\r\nx\r\n')),
        Case('mg_C_matching_cas_leaves_the_value_out',
             (b"ms mg10 1 E100\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg10 C100 v c\r\n",
              b'HD c100\r\n'),
             (b"mg mg10 C100 v q\r\n",
              b'HD\r\n'),
             (b"mg mg10 C99 v c\r\n",
              b'VA 1 c100\r\nx\r\n'),
             debian=R_METAFLAG),
        Case('mg_C_bad',
             (b"mg mg10 Cx v\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_C_empty',
             (b"mg mg10 C v\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_E_sets_cas_of_vivified_item',
             (b"mg mg11 N30 E77 c v\r\n",
              b'VA 0 c77 W\r\n\r\n'),
             (b"mg mg11 c v\r\n",
              b'VA 0 c77 Z\r\n\r\n'),
             debian=R_METAFLAG),
        Case('mg_E_ignored_on_hit',
             (b"ms mg12 1 E7\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg12 E9 c\r\n",
              b'HD c7\r\n'),
             debian=R_METAFLAG),
        Case('mg_E_bad',
             (b"mg mg12 Ex\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n'),
             debian=R_METAFLAG),
        Case('mg_N_vivify',
             (b"mg mg13 N30 s v t\r\n",
              b'VA 0 s0 t30 W\r\n\r\n'),
             (b"mg mg13 N30 v\r\n",
              b'VA 0 Z\r\n\r\n'),
             slack=True),
        Case('mg_N_bad',
             (b"mg mg13 Nx\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_T_updates_ttl',
             (b"ms mg14 1 T0\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg14 t T100\r\n",
              b'HD t-1\r\n'),
             (b"mg mg14 t\r\n",
              b'HD t100\r\n'),
             slack=True),
        Case('mg_T_then_t',
             (b"ms mg15 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg15 T100 t\r\n",
              b'HD t100\r\n'),
             slack=True),
        Case('mg_T_negative_expires',
             (b"ms mg16 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg16 T-1 v\r\n",
              b'VA 1\r\nx\r\n'),
             (b"mg mg16 v\r\n",
              b'EN\r\n')),
        Case('mg_T_bad',
             (b"mg mg16 Tx\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_T_with_plus',
             (b"mg mg16 T+5\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n'),
             debian=R_NUMBERS),
        Case('mg_T_empty',
             (b"mg mg16 T\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_R_wins_recache',
             (b"ms mg17 1 T100\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg17 R200\r\n",
              b'HD W\r\n'),
             (b"mg mg17 R200\r\n",
              b'HD Z\r\n')),
        Case('mg_R_above_ttl',
             (b"ms mg18 1 T100\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg18 R50\r\n",
              b'HD\r\n')),
        Case('mg_R_no_expiry',
             (b"ms mg19 1\r\nx\r\n",
              b'HD\r\n'),
             (b"mg mg19 R50\r\n",
              b'HD\r\n')),
        Case('mg_R_bad',
             (b"mg mg19 Rx\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_base64_key',
             (b"ms bWcyMA== 1 b\r\nx\r\n",
              b'HD\r\n'),
             (b"mg bWcyMA== b k v\r\n",
              b'VA 1 kbWcyMA== b\r\nx\r\n'),
             (b"get mg20\r\n",
              b'VALUE mg20 0 1\r\nx\r\nEND\r\n')),
        Case('mg_base64_key_miss',
             (b"mg bWcyMQ== b k\r\n",
              b'EN kbWcyMQ== b\r\n')),
        Case('mg_base64_bad',
             (b"mg !!!! b\r\n",
              b'CLIENT_ERROR error decoding key\r\n'),
             (b"mg abc b\r\n",
              b'CLIENT_ERROR error decoding key\r\n')),
        # The last error wins.
        Case('mg_base64_bad_then_bad_token',
             (b"mg !!!! b Tx\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('mg_duplicate_flag',
             (b"mg mg21 v v\r\n",
              b'CLIENT_ERROR duplicate flag\r\n')),
        Case('mg_invalid_flag',
             (b"mg mg21 z\r\n",
              b'CLIENT_ERROR invalid flag\r\n'),
             (b"mg mg21 Q\r\n",
              b'CLIENT_ERROR invalid flag\r\n'),
             (b"mg mg21 1\r\n",
              b'CLIENT_ERROR invalid flag\r\n'),
             (b"mg mg21 [\r\n",
              b'CLIENT_ERROR invalid flag\r\n')),
        Case('mg_flag_failing_the_tokenizer',
             (b"mg mg21 !\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             (b"mg mg21 v ~\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             (b"mg mg21 \xc3\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENIZER),
        Case('mg_error_then_duplicate',
             (b"mg mg21 Tx v v\r\n",
              b'CLIENT_ERROR duplicate flag\r\n')),
        Case('mg_bad_client_flags_token',
             (b"mg mg21 Fx\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('mg_20_tokens',
             (b"mg mg21 c f h k l s t v u q O P L x I D J M\r\n",
              b'CLIENT_ERROR invalid numeric initial value\r\n'),
             debian=R_TOOMANY),
        Case('mg_21_tokens',
             (b"mg mg21 c f h k l s t v u q O P L x I D J M S\r\n",
              b'CLIENT_ERROR options flags are too long\r\n')),
        Case('mg_noreply_is_a_flag',
             (b"mg mg21 noreply\r\n",
              b'CLIENT_ERROR invalid flag\r\n')),
        Case('mg_quiet_pipeline',
             (b"mg mg22 O1 q\r\nmg mg22 O2\r\n",
              b'EN O2\r\n')),
    ]


@install
class MetaSet(CompatCase):
    """ms and its modes and flags."""

    cases = [
        Case('ms_without_length',
             (b"ms ms1\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('ms_bad_length',
             (b"ms ms1 x\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('ms_negative_length',
             (b"ms ms1 -1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        # Its data block is swallowed.
        Case('ms_key_too_long',
             (b"ms " + K251 + b" 1\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_SWALLOW),
        Case('ms_invalid_mode',
             (b"ms ms2 1 MX\r\nx\r\n",
              b'CLIENT_ERROR invalid mode for ms M token\r\n'),
             (b"ms ms2 1 Ms\r\nx\r\n",
              b'CLIENT_ERROR invalid mode for ms M token\r\n'),
             (b"ms ms2 1 M\r\nx\r\n",
              b'CLIENT_ERROR invalid mode for ms M token\r\n'),
             debian=R_MTOKEN),
        Case('ms_mode_reads_one_byte',
             (b"ms ms3 1 MSS\r\nx\r\n",
              b'HD\r\n'),
             (b"ms ms3 1 MEX\r\nx\r\n",
              b'NS\r\n'),
             debian=R_MTOKEN),
        Case('ms_modes',
             (b"ms ms4 1 ME\r\na\r\n",
              b'HD\r\n'),
             (b"ms ms4 1 ME\r\nb\r\n",
              b'NS\r\n'),
             (b"ms ms4 1 MA\r\nc\r\n",
              b'HD\r\n'),
             (b"ms ms4 1 MP\r\nd\r\n",
              b'HD\r\n'),
             (b"ms ms4 1 MR\r\ne\r\n",
              b'HD\r\n'),
             (b"ms ms5 1 MR\r\ne\r\n",
              b'NS\r\n'),
             (b"ms ms4 1 MS\r\nf\r\n",
              b'HD\r\n'),
             (b"mg ms4 v\r\n",
              b'VA 1\r\nf\r\n')),
        Case('ms_append_size',
             (b"ms ms6 2\r\nab\r\n",
              b'HD\r\n'),
             (b"ms ms6 1 MA s\r\nc\r\n",
              b'HD s3\r\n'),
             debian=R_METAFLAG),
        Case('ms_append_vivify',
             (b"ms ms7 1 MA N0\r\nz\r\n",
              b'HD\r\n'),
             (b"mg ms7 v t\r\n",
              b'VA 1 t-1\r\nz\r\n'),
             (b"ms ms8 1 MA\r\nz\r\n",
              b'NS\r\n'),
             debian=R_METAFLAG),
        Case('ms_compare_cas',
             (b"ms ms9 1 E10\r\na\r\n",
              b'HD\r\n'),
             (b"ms ms9 1 C11\r\nb\r\n",
              b'EX\r\n'),
             (b"ms ms9 1 C10 E12 c\r\nb\r\n",
              b'HD c12\r\n'),
             (b"ms ms10 1 C10\r\nb\r\n",
              b'NF\r\n'),
             (b"mg ms9 v c\r\n",
              b'VA 1 c12\r\nb\r\n'),
             debian=R_METAFLAG),
        Case('ms_invalidate_stale_item',
             (b"ms ms11 1 E10\r\na\r\n",
              b'HD\r\n'),
             (b"md ms11 I E20\r\n",
              b'HD\r\n'),
             (b"ms ms11 1 C1 I E30 c\r\nb\r\n",
              b'HD c30\r\n'),
             (b"mg ms11 v\r\n",
              b'VA 1 X W\r\nb\r\n'),
             debian=R_METAFLAG),
        Case('ms_I_without_C',
             (b"ms ms12 1 I\r\nx\r\n",
              b'HD\r\n')),
        # Q hides HD only.
        Case('ms_q',
             (b"ms ms13 1 q\r\na\r\n",
              b''),
             (b"ms ms13 1 q ME\r\na\r\n",
              b'NS\r\n')),
        Case('ms_return_flags',
             (b"ms bXMxNA== 1 b k O9 s c E3 T0 F1\r\na\r\n",
              b'HD kbXMxNA== b O9 s1 c3\r\n'),
             debian=R_METAFLAG),
        Case('ms_duplicate_flag',
             (b"ms ms15 1 T1 T1\r\na\r\n",
              b'CLIENT_ERROR duplicate flag\r\n')),
        Case('ms_invalid_flag',
             (b"ms ms15 1 z\r\na\r\n",
              b'CLIENT_ERROR invalid flag\r\n'),
             (b"ms ms15 1 S1\r\na\r\n",
              b'CLIENT_ERROR invalid flag\r\n')),
        # Not swallowed.
        Case('ms_flag_failing_the_tokenizer',
             (b"ms ms15 1 !\r\nx\r\n",
              b'CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENIZER),
        Case('ms_bad_client_flags',
             (b"ms ms15 1 Fx\r\na\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('ms_bad_ttl',
             (b"ms ms15 1 Tx\r\na\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('ms_bad_compare_cas',
             (b"ms ms15 1 Cx\r\na\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n')),
        Case('ms_base64_bad',
             (b"ms !!!! 1 b\r\nx\r\n",
              b'CLIENT_ERROR error decoding key\r\n')),
        Case('ms_opaque_too_long',
             (b"ms ms16 1 O" + b"o" * 32 + b"\r\na\r\n",
              b'CLIENT_ERROR opaque token too long\r\n')),
        Case('ms_21_tokens',
             (b"ms ms16 1 c f h k l s t v u q O P L x I D J M\r\nx\r\n",
              b'CLIENT_ERROR options flags are too long\r\n'),
             debian=R_TOOMANY),
        Case('ms_bad_data',
             (b"ms ms17 1\r\nab\r\n",
              b'CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        # Never silenced.
        Case('ms_bad_data_q',
             (b"ms ms17 1 q\r\nab\r\n",
              b'CLIENT_ERROR bad data chunk\r\nCLIENT_ERROR bad command line format\r\n'),
             debian=R_SHORT),
        Case('ms_too_large',
             (b"ms ms18 2000000 q\r\n" + b"x" * 2000000 + b"\r\n",
              b'SERVER_ERROR object too large for cache\r\n')),
        Case('ms_too_large_drops_old_value',
             (b"ms ms19 1\r\nx\r\n",
              b'HD\r\n'),
             (b"ms ms19 2000000 MA\r\n" + b"x" * 2000000 + b"\r\n",
              b'SERVER_ERROR object too large for cache\r\n'),
             (b"mg ms19 v\r\n",
              b'EN\r\n')),
    ]


@install
class MetaDelete(CompatCase):
    """md."""

    cases = [
        Case('md_without_key',
             (b"md\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        Case('md_key_too_long',
             (b"md " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('md_hit_and_miss',
             (b"ms md1 1\r\nx\r\n",
              b'HD\r\n'),
             (b"md md1\r\n",
              b'HD\r\n'),
             (b"md md1\r\n",
              b'NF\r\n')),
        # Q hides HD only.
        Case('md_q',
             (b"ms md2 1\r\nx\r\n",
              b'HD\r\n'),
             (b"md md2 q\r\n",
              b''),
             (b"md md2 q\r\n",
              b'NF\r\n')),
        Case('md_k_and_O',
             (b"md md3 k O1\r\n",
              b'NF kmd3 O1\r\n')),
        Case('md_compare_cas',
             (b"ms md4 1 E5\r\nx\r\n",
              b'HD\r\n'),
             (b"md md4 C6\r\n",
              b'EX\r\n'),
             (b"md md4 C5 k Oz\r\n",
              b'HD kmd4 Oz\r\n'),
             debian=R_METAFLAG),
        Case('md_invalidate',
             (b"ms md5 1 E5\r\nx\r\n",
              b'HD\r\n'),
             (b"md md5 I E6\r\n",
              b'HD\r\n'),
             (b"mg md5 v c\r\n",
              b'VA 1 c6 X W\r\nx\r\n'),
             (b"mg md5\r\n",
              b'HD Z X\r\n'),
             debian=R_METAFLAG),
        Case('md_invalidate_with_ttl',
             (b"ms md6 1\r\nx\r\n",
              b'HD\r\n'),
             (b"md md6 I T30 E500\r\n",
              b'HD\r\n'),
             (b"mg md6 t c\r\n",
              b'HD t30 c500 X W\r\n'),
             slack=True, debian=R_METAFLAG),
        Case('md_x_empties_the_item',
             (b"ms md7 2 F7 T0 E9\r\nab\r\n",
              b'HD\r\n'),
             (b"md md7 x\r\n",
              b'HD\r\n'),
             (b"mg md7 v f s c t\r\n",
              b'VA 0 f0 s0 c9 t-1\r\n\r\n'),
             debian=R_METAFLAG),
        Case('md_x_with_F_and_E',
             (b"ms md8 2 F7\r\nab\r\n",
              b'HD\r\n'),
             (b"md md8 x F9 E33\r\n",
              b'HD\r\n'),
             (b"mg md8 v f c\r\n",
              b'VA 0 f9 c33\r\n\r\n'),
             debian=R_METAFLAG),
        Case('md_x_drops_the_ttl',
             (b"ms md9 2 T500\r\nab\r\n",
              b'HD\r\n'),
             (b"md md9 x\r\n",
              b'HD\r\n'),
             (b"mg md9 t\r\n",
              b'HD t-1\r\n'),
             debian=R_METAFLAG),
        Case('md_x_and_I',
             (b"ms md10 2 F3\r\nab\r\n",
              b'HD\r\n'),
             (b"md md10 x I\r\n",
              b'HD\r\n'),
             (b"mg md10 v f\r\n",
              b'VA 0 f0 X W\r\n\r\n'),
             debian=R_METAFLAG),
        Case('md_x_q_and_miss',
             (b"ms md11 2\r\nab\r\n",
              b'HD\r\n'),
             (b"md md11 x q\r\n",
              b''),
             (b"md md12 x q\r\n",
              b'NF\r\n'),
             debian=R_METAFLAG),
        Case('md_base64_key',
             (b"ms bWQxMw== 1 b\r\nx\r\n",
              b'HD\r\n'),
             (b"md bWQxMw== b k\r\n",
              b'HD kbWQxMw== b\r\n')),
        Case('md_bad_token',
             (b"md md14 Cx\r\n",
              b'CLIENT_ERROR bad token in command line format\r\n'),
             debian=R_METAERR),
        Case('md_duplicate_flag',
             (b"md md14 q q\r\n",
              b'CLIENT_ERROR duplicate flag\r\n'),
             debian=R_METAERR),
        Case('md_invalid_flag',
             (b"md md14 z\r\n",
              b'CLIENT_ERROR invalid flag\r\n'),
             debian=R_METAERR),
        Case('md_flag_failing_the_tokenizer',
             (b"md md14 !\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENIZER),
        Case('md_opaque_too_long',
             (b"md md14 O" + b"o" * 32 + b"\r\n",
              b'CLIENT_ERROR opaque token too long\r\n')),
        Case('md_21_tokens',
             (b"md md14 c f h k l s t v u q O P L x I D J M S\r\n",
              b'CLIENT_ERROR options flags are too long\r\n'),
             debian=R_TOOMANY),
    ]


@install
class MetaArithmetic(CompatCase):
    """ma."""

    cases = [
        Case('ma_without_key',
             (b"ma\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENS),
        # Ma reports every flag-stage error alike.
        Case('ma_key_too_long',
             (b"ma " + K251 + b"\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n'),
             debian=R_METAERR),
        Case('ma_vivify_and_modes',
             (b"ma ma1 N0 J10 v\r\n",
              b'VA 2\r\n10\r\n'),
             (b"ma ma1 v\r\n",
              b'VA 2\r\n11\r\n'),
             (b"ma ma1 MD D3 v\r\n",
              b'VA 1\r\n8\r\n'),
             (b"ma ma1 M- v\r\n",
              b'VA 1\r\n7\r\n'),
             (b"ma ma1 M+ D2 v\r\n",
              b'VA 1\r\n9\r\n'),
             (b"ma ma1 MI v\r\n",
              b'VA 2\r\n10\r\n')),
        # Q hides HD only.
        Case('ma_miss',
             (b"ma ma2\r\n",
              b'NF\r\n'),
             (b"ma ma2 q\r\n",
              b'NF\r\n'),
             (b"ma ma2 k O5\r\n",
              b'NF kma2 O5\r\n')),
        Case('ma_q',
             (b"ma ma3 N0 q\r\n",
              b''),
             (b"ma ma3 q v\r\n",
              b''),
             (b"mg ma3 v\r\n",
              b'VA 1\r\n1\r\n'),
             debian=R_QUIET),
        Case('ma_invalid_mode',
             (b"ma ma4 MX\r\n",
              b'CLIENT_ERROR invalid mode for ma M token\r\n'),
             (b"ma ma4 M\r\n",
              b'CLIENT_ERROR invalid mode for ma M token\r\n'),
             debian=R_MTOKEN),
        Case('ma_mode_reads_one_byte',
             (b"ma ma4 N0 MII v\r\n",
              b'VA 1\r\n0\r\n'),
             debian=R_MTOKEN),
        Case('ma_bad_delta',
             (b"ma ma4 Dx\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n')),
        Case('ma_bad_initial',
             (b"ma ma4 Jx N0\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n')),
        Case('ma_duplicate_flag',
             (b"ma ma4 v v\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n')),
        Case('ma_invalid_flag',
             (b"ma ma4 z\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n')),
        Case('ma_flag_failing_the_tokenizer',
             (b"ma ma4 !\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENIZER),
        Case('ma_21_tokens',
             (b"ma ma4 c f h k l s t v u q O P L x I D J M S\r\n",
              b'CLIENT_ERROR invalid or duplicate flag\r\n'),
             debian=R_TOOMANY),
        Case('ma_opaque_too_long',
             (b"ma ma4 O" + b"o" * 32 + b"\r\n",
              b'CLIENT_ERROR opaque token too long\r\n')),
        Case('ma_non_numeric',
             (b"ms ma5 1\r\nx\r\n",
              b'HD\r\n'),
             (b"ma ma5\r\n",
              b'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n')),
        # C0 compares nothing.
        Case('ma_compare_cas',
             (b"ms ma6 1 E50\r\n5\r\n",
              b'HD\r\n'),
             (b"ma ma6 C49\r\n",
              b'EX\r\n'),
             (b"ma ma6 C50 c v E60\r\n",
              b'VA 1 c60\r\n6\r\n'),
             (b"ma ma6 C0 v\r\n",
              b'VA 1\r\n7\r\n'),
             debian=R_METAFLAG),
        Case('ma_t_and_T',
             (b"ma ma7 N0 J1 t v\r\n",
              b'VA 1 t-1\r\n1\r\n'),
             (b"ma ma7 T100 t\r\n",
              b'HD t100\r\n'),
             (b"ma ma7 t T200\r\n",
              b'HD t100\r\n'),
             slack=True),
        Case('ma_decr_stops_at_zero',
             (b"ma ma8 N0 J3 MD D10 v\r\n",
              b'VA 1\r\n3\r\n'),
             (b"ma ma8 MD D10 v\r\n",
              b'VA 1\r\n0\r\n')),
        Case('ma_incr_wraps',
             (b"ma ma9 N0 J18446744073709551615 v\r\n",
              b'VA 20\r\n18446744073709551615\r\n'),
             (b"ma ma9 v\r\n",
              b'VA 1\r\n0\r\n')),
        Case('ma_base64_key',
             (b"ma bWExMA== b N0 J5 v k\r\n",
              b'VA 1 kbWExMA== b\r\n5\r\n')),
    ]


@install
class MetaOther(CompatCase):
    """mn and me."""

    cases = [
        Case('mn_with_arguments',
             (b"mn foo\r\n",
              b'MN\r\n')),
        Case('me_without_key',
             (b"me\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('me_key_too_long',
             (b"me " + K251 + b"\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
        Case('me_miss',
             (b"me me1\r\n",
              b'EN\r\n')),
        Case('me_flag_failing_the_tokenizer',
             (b"me me1 !\r\n",
              b'CLIENT_ERROR bad command line format\r\n'),
             debian=R_TOKENIZER),
        Case('me_base64_bad',
             (b"me !!!! b x\r\n",
              b'CLIENT_ERROR bad command line format\r\n')),
    ]


if __name__ == "__main__":
    unittest.main()
