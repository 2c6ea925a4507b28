"""Petrel's command line as memcached 1.6's: every flag and -o key of memcached 1.6.45 is
honoured with memcached's meaning, accepted with a notice where it means nothing for Petrel's
design, or refused naming itself and why; and --check-config agrees with start-up.

The lists below are memcached 1.6.45's (memcached.c: its getopt string, its long options and its
-o keys, with those of extstore and of the TLS and proxy builds)."""
import os
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import Server, recv_exactly, recv_until_closed, run
from test_hostile import sanitized

PETREL = os.environ.get("PETREL", "build/src/bin/petrel")

# memcached 1.6.45's getopt string and long options (-h and -V print and exit).
MEMCACHED_SHORT = "aAZpsUmMckhiVrvdluPfntDLRCbBISFXWYeoN"
MEMCACHED_TAKES_VALUE = set("apsUmcluPfntDRbBIYeoN")
MEMCACHED_LONG = {
    "unix-mask": True, "enable-shutdown": False, "enable-ssl": False, "port": True,
    "unix-socket": True, "udp-port": True, "memory-limit": True, "disable-evictions": False,
    "conn-limit": True, "lock-memory": False, "help": False, "license": False, "version": False,
    "enable-coredumps": False, "verbose": False, "daemon": False, "listen": True, "user": True,
    "pidfile": True, "slab-growth-factor": True, "slab-min-size": True, "threads": True,
    "enable-largepages": False, "max-reqs-per-event": True, "disable-cas": False,
    "listen-backlog": True, "protocol": True, "max-item-size": True, "enable-sasl": False,
    "disable-flush-all": False, "disable-dumping": False, "disable-watch": False,
    "auth-file": True, "memory-file": True, "extended": True, "napi-ids": True,
}
MEMCACHED_O_KEYS = (
    "maxconns_fast hashpower no_hashexpand slab_reassign slab_automove slab_automove_ratio "
    "slab_automove_window tail_repair_time hash_algorithm lru_crawler lru_crawler_sleep "
    "lru_crawler_tocrawl lru_maintainer hot_lru_pct warm_lru_pct hot_max_factor warm_max_factor "
    "temporary_ttl idle_timeout watcher_logbuf_size worker_logbuf_size slab_sizes slab_chunk_max "
    "track_sizes no_inline_ascii_resp modern no_modern no_chunked_items no_slab_reassign "
    "no_slab_automove no_maxconns_fast inline_ascii_resp no_lru_crawler no_lru_maintainer "
    "no_drop_privileges drop_privileges resp_obj_mem_limit read_buf_mem_limit ssl_chain_cert "
    "ssl_key ssl_verify_mode ssl_keyformat ssl_ciphers ssl_ca_cert ssl_wbuf_size "
    "ssl_session_cache ssl_kernel_tls ssl_min_version proxy_config proxy_arg proxy_uring "
    "proxy_memprofile relaxed_privileges sock_cookie_id ext_page_size ext_wbuf_size ext_threads "
    "ext_io_depth ext_path ext_item_size ext_item_age ext_low_ttl ext_recache_rate "
    "ext_compact_under ext_drop_under ext_max_sleep ext_max_frag ext_drop_unread "
    "slab_automove_freeratio").split()

# A value memcached would take for the flags and keys that need one.
SAMPLE_VALUE = {"a": "700", "p": "0", "s": "/nonexistent/dir/sock", "U": "0", "m": "64",
                "c": "100", "l": "127.0.0.1", "u": "nobody", "P": "/nonexistent/pid", "f": "1.25",
                "n": "48", "t": "2", "D": ":", "R": "20", "b": "1024", "B": "ascii", "I": "1m",
                "Y": "/nonexistent/auth", "e": "/nonexistent/mem", "o": "modern", "N": "2"}
LONG_SHORT = {"unix-mask": "a", "port": "p", "unix-socket": "s", "udp-port": "U",
              "memory-limit": "m", "conn-limit": "c", "listen": "l", "user": "u", "pidfile": "P",
              "slab-growth-factor": "f", "slab-min-size": "n", "threads": "t",
              "max-reqs-per-event": "R", "listen-backlog": "b", "protocol": "B",
              "max-item-size": "I", "auth-file": "Y", "memory-file": "e", "extended": "o",
              "napi-ids": "N"}

REFUSED_FLAGS = {"-i": [], "-S": [], "-Y": ["/x"], "--license": [],
                 "--enable-sasl": [], "--auth-file": ["/x"]}
IGNORED_FLAGS = {"-f": ["1.25"], "-n": ["48"], "-R": ["20"], "-N": ["2"],
                 "--slab-growth-factor": ["1.25"], "--slab-min-size": ["48"],
                 "--max-reqs-per-event": ["20"], "--napi-ids": ["2"]}
REFUSED_KEYS = ["no_maxconns_fast", "no_modern", "temporary_ttl=10", "track_sizes",
                "drop_privileges", "sock_cookie_id=1", "proxy_config=x.lua", "proxy_arg=x",
                "proxy_uring", "proxy_memprofile", "ext_path=/x:1G", "ext_page_size=8",
                "ext_wbuf_size=8", "ext_threads=2", "ext_io_depth=2", "ext_item_size=512",
                "ext_item_age=1", "ext_low_ttl=1", "ext_recache_rate=1", "ext_compact_under=1",
                "ext_drop_under=1", "ext_max_sleep=1", "ext_max_frag=0.5", "ext_drop_unread",
                "ssl_min_version=0", "ssl_min_version=1", "ssl_min_version=3",
                "ssl_keyformat=3", "read_buf_mem_limit=0"]
IGNORED_KEYS = ["hashpower=20", "no_hashexpand", "hash_algorithm=xxh3", "slab_reassign",
                "no_slab_reassign", "slab_automove", "slab_automove=2", "no_slab_automove",
                "slab_automove_ratio=0.8", "slab_automove_window=30",
                "slab_automove_freeratio=0.01", "slab_sizes=96-128", "slab_chunk_max=512",
                "no_chunked_items", "lru_maintainer", "no_lru_maintainer", "hot_lru_pct=20",
                "warm_lru_pct=40", "hot_max_factor=0.2", "warm_max_factor=2.0",
                "tail_repair_time=60", "lru_crawler", "no_lru_crawler", "lru_crawler_sleep=100",
                "lru_crawler_tocrawl=10", "watcher_logbuf_size=256", "worker_logbuf_size=64",
                "resp_obj_mem_limit=1", "ssl_wbuf_size=16", "ssl_kernel_tls"]
SILENT_KEYS = ["maxconns_fast", "modern", "inline_ascii_resp", "no_inline_ascii_resp",
               "no_drop_privileges", "relaxed_privileges", "ssl_session_cache",
               "ssl_min_version=2", "ssl_keyformat=1", "ssl_keyformat=2"]


def printed(*args):
    """--print-config for args: {key: value}; fails the test on a non-zero exit."""
    rc, out, err = run(PETREL, *args, "--print-config")
    if rc != 0:
        raise AssertionError("exit %d: %s" % (rc, err))
    values = {}
    for line in out.splitlines():
        if " =" in line and not line.startswith("#"):
            key, _, value = line.partition(" =")
            values[key] = value.strip()
    return values


def start(*args, listen="127.0.0.1"):
    """Start-up as a service would run it, on ephemeral ports: (exit status, its stderr); a
    server that comes up is stopped, and counts as status 0. listen=None: no -l of the
    harness's before args."""
    server = Server(PETREL, *args, wait_ready=False, listen=listen)
    try:
        try:
            server.wait_for(r" ready: ", 15)
        except AssertionError:
            return server.proc.wait(10), "\n".join(server.lines)
        server.stop()
        return 0, "\n".join(server.lines)
    finally:
        server.__exit__()


class EveryMemcachedFlag(unittest.TestCase):
    """No flag or -o key of memcached 1.6.45 is an unknown option."""

    def assert_known(self, args):
        rc, _, err = run(PETREL, *args, "--check-config")
        self.assertNotIn("unknown option", err, args)
        self.assertNotIn("unknown extended option", err, args)
        # 78: the sample value names a file start-up could not create, which the check says.
        self.assertIn(rc, (0, 64, 78), (args, err))
        return rc, err

    def test_every_short_flag_is_known(self):
        for ch in MEMCACHED_SHORT:
            if ch in "hV":
                continue
            args = ["-" + ch] + ([SAMPLE_VALUE[ch]] if ch in MEMCACHED_TAKES_VALUE else [])
            with self.subTest(flag=ch):
                self.assert_known(args)

    def test_every_long_option_is_known(self):
        for name, takes_value in MEMCACHED_LONG.items():
            if name in ("help", "version"):
                continue
            args = ["--" + name] + ([SAMPLE_VALUE[LONG_SHORT[name]]] if takes_value else [])
            with self.subTest(option=name):
                self.assert_known(args)

    def test_every_extended_key_is_known(self):
        for key in MEMCACHED_O_KEYS:
            with self.subTest(key=key):
                self.assert_known(["-o", key + "=1"])

    def test_a_key_memcached_does_not_have_is_named_unknown(self):
        rc, _, err = run(PETREL, "-o", "no_such_knob=1", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-o: unknown extended option 'no_such_knob'", err)


class HonouredFlags(unittest.TestCase):
    """memcached's spellings set the Petrel option of the same meaning (seen in --print-config)."""

    def test_memcached_long_forms_set_the_same_options(self):
        cases = [(["--conn-limit=50"], "max-conns", "50"), (["--daemon"], "daemonize", "yes"),
                 (["--pidfile=/run/x.pid"], "pid-file", "/run/x.pid"),
                 (["--listen-backlog=77"], "backlog", "77"),
                 (["--enable-largepages"], "prefault", "yes"),
                 (["--port=11311"], "port", "11311"), (["--memory-limit=128"], "memory-limit", "128m"),
                 (["--threads=3"], "threads", "3"), (["--max-item-size=2m"], "max-item-size", "2m"),
                 (["--unix-socket=/tmp/m.sock"], "unix-socket", "/tmp/m.sock"),
                 (["--listen=127.0.0.2"], "listen", "127.0.0.2"), (["--user=nobody"], "user", "nobody"),
                 (["--enable-shutdown"], "enable-shutdown", "yes"),
                 (["--enable-ssl"], "enable-ssl", "yes"), (["--udp-port=0"], "udp-port", "0"),
                 (["--memory-file=/dev/shm/m"], "memory-file", "/dev/shm/m")]
        for args, key, want in cases:
            with self.subTest(args=args):
                self.assertEqual(printed(*args)[key], want)

    def test_memcached_short_flags_set_the_same_options(self):
        cases = [(["-c", "50"], "max-conns", "50"), (["-d"], "daemonize", "yes"),
                 (["-P", "/run/x.pid"], "pid-file", "/run/x.pid"), (["-b", "77"], "backlog", "77"),
                 (["-L"], "prefault", "yes"), (["-p", "11311"], "port", "11311"),
                 (["-m", "128"], "memory-limit", "128m"), (["-t", "3"], "threads", "3"),
                 (["-I", "2m"], "max-item-size", "2m"), (["-a", "770"], "unix-mode", "770"),
                 (["-u", "nobody"], "user", "nobody"), (["-A"], "enable-shutdown", "yes"),
                 (["-M"], "eviction", "none"), (["-vv"], "verbose", "2"),
                 (["-U", "0"], "udp-port", "0"), (["-e", "/dev/shm/m"], "memory-file", "/dev/shm/m")]
        for args, key, want in cases:
            with self.subTest(args=args):
                self.assertEqual(printed(*args)[key], want)

    def test_disable_evictions_sets_eviction_none(self):
        self.assertEqual(printed("--disable-evictions")["eviction"], "none")

    def test_listen_given_twice_listens_on_both_as_memcached(self):
        self.assertEqual(printed("-l", "127.0.0.1", "-l", "127.0.0.2")["listen"],
                         "127.0.0.1,127.0.0.2")

    def test_protocol_ascii_is_accepted_silently(self):
        rc, out, err = run(PETREL, "-B", "ascii", "--check-config")
        self.assertEqual((rc, out, err), (0, "configuration OK\n", ""))

    def test_disable_dumping_and_watch_are_accepted_silently(self):
        rc, out, err = run(PETREL, "-X", "-W", "--check-config")
        self.assertEqual((rc, out, err), (0, "configuration OK\n", ""))


class DumpingAndCasFlags(unittest.TestCase):
    """memcached's -C and -X, with the replies memcached 1.6.45 gives under them."""

    def exchange(self, server, request, reply_len):
        with server.connect() as s:
            s.sendall(request)
            return recv_exactly(s, reply_len)

    def test_C_shows_every_cas_as_0(self):
        with Server(PETREL, "-t", "1", "-C") as server:
            reply = b"STORED\r\nVALUE a 0 1 0\r\nx\r\nEND\r\n"
            self.assertEqual(self.exchange(server, b"set a 0 0 1\r\nx\r\ngets a\r\n",
                                           len(reply)), reply)

    def test_X_refuses_stats_detail(self):
        with Server(PETREL, "-t", "1", "-X") as server:
            reply = b"CLIENT_ERROR stats detail not allowed\r\n" * 2
            self.assertEqual(self.exchange(server, b"stats detail dump\r\nstats detail on\r\n",
                                           len(reply)), reply)

    def test_X_refuses_metadump_and_mgdump(self):
        with Server(PETREL, "-t", "2", "-X") as server:
            reply = b"ERROR metadump not allowed\r\nERROR key dump not allowed\r\n"
            request = b"lru_crawler metadump all\r\nlru_crawler mgdump all\r\n"
            self.assertEqual(self.exchange(server, request, len(reply)), reply)

    def test_X_shows_in_stats_settings(self):
        with Server(PETREL, "-t", "1", "-X") as server:
            self.assertIn(b"STAT dump_enabled no\r\n", server_settings(server))


    def test_F_refuses_flush_all_and_noreply_stays_silent(self):
        with Server(PETREL, "-t", "2", "-F") as server:
            reply = b"CLIENT_ERROR flush_all not allowed\r\nVERSION "
            self.assertEqual(self.exchange(server, b"flush_all\r\nflush_all noreply\r\n"
                                           b"version\r\n", len(reply)), reply)
            self.assertIn(b"STAT flush_enabled no\r\n", server_settings(server))

    def test_r_lifts_the_core_file_limit(self):
        def no_cores():
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.RLIM_INFINITY))
        with Server(PETREL, "-t", "1", "-r", preexec=no_cores) as server:
            with open("/proc/%d/limits" % server.proc.pid) as f:
                line = [l for l in f if l.startswith("Max core file size")][0]
            self.assertEqual(line.split()[4], "unlimited", line)

    def test_k_locks_memory_or_says_why_not(self):
        with Server(PETREL, "-t", "1", "-m", "8", "-k") as server:
            if sanitized(server):
                self.skipTest("AddressSanitizer makes mlockall a no-op")
            with open("/proc/%d/status" % server.proc.pid) as f:
                locked = [int(l.split()[1]) for l in f if l.startswith("VmLck:")][0]
            warned = [l for l in server.lines if "--lock-memory: mlockall failed" in l]
            self.assertTrue(locked > 0 or warned, "\n".join(server.lines))
            if os.geteuid() == 0:
                self.assertGreater(locked, 8 * 1024, "root may lock the item memory")


def server_settings(server):
    with server.connect() as s:
        s.sendall(b"stats settings\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class RefusedFlags(unittest.TestCase):
    def test_each_refused_flag_exits_64_naming_itself(self):
        for flag, args in REFUSED_FLAGS.items():
            with self.subTest(flag=flag):
                rc, out, err = run(PETREL, flag, *args, "--check-config")
                self.assertEqual(rc, 64, err)
                self.assertEqual(out, "")
                self.assertTrue(err.startswith("petrel: ") and (flag + ":" in err or flag + "/" in err
                                                                or "/" + flag + ":" in err), err)
                self.assertNotIn("unknown option", err)

    def test_binary_protocol_is_refused_saying_why(self):
        rc, _, err = run(PETREL, "-B", "binary", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-B/--protocol: 'binary': petrel speaks the text and meta protocols only", err)

    def test_c_no_longer_names_a_config_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("[server]\nthreads = 3\n")
            f.flush()
            rc, _, err = run(PETREL, "-C", f.name, "--check-config")
            self.assertEqual(rc, 64)
            self.assertEqual(printed("--config", f.name)["threads"], "3")


class IgnoredFlags(unittest.TestCase):
    def test_each_knob_flag_is_accepted_with_a_notice_naming_it(self):
        for flag, args in IGNORED_FLAGS.items():
            with self.subTest(flag=flag):
                rc, out, err = run(PETREL, flag, *args, "--check-config")
                self.assertEqual((rc, out), (0, "configuration OK\n"), err)
                self.assertRegex(err, r"^petrel: [^\n]*%s[^\n]*: accepted, no effect: " % flag)


class Extended(unittest.TestCase):
    """-o KEY[=VALUE],...: memcached's extended options."""

    def test_tls_keys_map_to_the_tls_options(self):
        v = printed("-o", "ssl_chain_cert=/etc/c.pem,ssl_key=/etc/k.pem,ssl_ca_cert=/etc/ca.pem")
        self.assertEqual((v["tls-cert"], v["tls-key"], v["tls-ca"]),
                         ("/etc/c.pem", "/etc/k.pem", "/etc/ca.pem"))

    def test_ssl_verify_mode_numbers_map_to_tls_verify(self):
        for mode, want in (("0", "none"), ("1", "optional"), ("2", "required"), ("3", "required")):
            with self.subTest(mode=mode):
                self.assertEqual(printed("-o", "ssl_verify_mode=" + mode)["tls-verify"], want)

    def test_ssl_verify_mode_out_of_range_is_named(self):
        rc, _, err = run(PETREL, "-o", "ssl_verify_mode=4", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-o ssl_verify_mode: '4' is not 0", err)

    def test_ssl_ciphers_openssl_names_become_mbedtls_names(self):
        v = printed("-o", "ssl_ciphers=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305")
        self.assertEqual(v["tls-ciphers"], "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256:"
                                           "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256")

    def test_ssl_ciphers_openssl_keywords_are_refused_naming_the_key(self):
        rc, _, err = run(PETREL, "-o", "ssl_ciphers=HIGH:!aNULL", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-o ssl_ciphers: 'HIGH'", err)

    def test_idle_timeout_maps_to_idle_timeout(self):
        self.assertEqual(printed("-o", "idle_timeout=30")["idle-timeout"], "30")

    def test_read_buf_mem_limit_counts_megabytes(self):
        self.assertEqual(printed("-o", "read_buf_mem_limit=32")["buffer-memory"], "32m")

    def test_o_is_repeatable_and_the_last_value_wins(self):
        v = printed("-o", "idle_timeout=30", "-o", "modern,idle_timeout=40")
        self.assertEqual(v["idle-timeout"], "40")

    def test_long_form_extended(self):
        self.assertEqual(printed("--extended=idle_timeout=9")["idle-timeout"], "9")

    def test_a_key_needing_a_value_without_one_is_named(self):
        rc, _, err = run(PETREL, "-o", "idle_timeout", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-o idle_timeout: needs a value", err)

    def test_a_bad_value_names_the_key(self):
        rc, _, err = run(PETREL, "-o", "idle_timeout=soon", "--check-config")
        self.assertEqual(rc, 64)
        self.assertIn("-o idle_timeout: 'soon' is not a number", err)

    def test_each_refused_key_exits_64_naming_itself(self):
        for item in REFUSED_KEYS:
            key = item.split("=")[0]
            with self.subTest(key=item):
                rc, out, err = run(PETREL, "-o", item, "--check-config")
                self.assertEqual((rc, out), (64, ""), err)
                self.assertTrue(err.startswith("petrel: -o %s: " % key), err)

    def test_each_knob_key_is_accepted_with_a_notice_naming_it(self):
        for item in IGNORED_KEYS:
            key = item.split("=")[0]
            with self.subTest(key=item):
                rc, out, err = run(PETREL, "-o", item, "--check-config")
                self.assertEqual((rc, out), (0, "configuration OK\n"), err)
                self.assertEqual(err.count("\n"), 1, err)
                self.assertTrue(err.startswith("petrel: -o %s: accepted, no effect: " % key), err)

    def test_keys_petrel_always_honours_are_accepted_silently(self):
        for item in SILENT_KEYS:
            with self.subTest(key=item):
                rc, out, err = run(PETREL, "-o", item, "--check-config")
                self.assertEqual((rc, out, err), (0, "configuration OK\n", ""))


def ipv6_loopback():
    """True if ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A TCP port nothing listens on now (the kernel's ephemeral pick, released)."""
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


NO_DIR = "/nonexistent/petrel-test-dir"


class CheckConfigAgreesWithStartUp(unittest.TestCase):
    def assert_both_refuse(self, args, expect=None, listen="127.0.0.1"):
        rc_check, _, err_check = run(PETREL, *args, "--check-config")
        rc_start, err_start = start(*args, listen=listen)
        self.assertNotEqual(rc_check, 0, err_check)
        self.assertEqual(rc_check, rc_start, (err_check, err_start))
        self.assertIn(err_check.splitlines()[0], err_start)
        if expect is not None:
            self.assertIn(expect, err_check.splitlines()[0])
        return err_check.splitlines()[0]

    def assert_both_accept(self, args):
        rc, _, err = run(PETREL, *args, "--check-config")
        self.assertEqual(rc, 0, err)
        rc, log = start(*args)
        self.assertEqual(rc, 0, log)

    def test_refusals_and_bad_values_fail_both_the_same_way(self):
        for args in (["-o", "temporary_ttl=5"], ["-o", "read_buf_mem_limit=0"],
                     ["-o", "ssl_verify_mode=9"], ["-o", "bogus"], ["--conn-limit=0"],
                     ["-B", "auto"], ["-o", "ssl_min_version=3"], ["-a", "999"],
                     ["-D", "::"]):
            with self.subTest(args=args):
                self.assert_both_refuse(args)

    def test_accepted_knobs_pass_both(self):
        args = ["-o", "modern,hashpower=20,slab_reassign,lru_crawler", "-f", "1.25"]
        rc, _, err = run(PETREL, *args, "--check-config")
        self.assertEqual(rc, 0, err)
        rc, log = start(*args)
        self.assertEqual(rc, 0, log)
        self.assertIn("petrel: -o hashpower: accepted, no effect", log)

    def test_bad_listen_forms_fail_both_naming_the_option_and_value(self):
        for value in ("[::1", "host:", "host:99999", "host:65536", "host:abc", ":11211",
                      "[::1]x", "[]:1", "notls:127.0.0.1:1", "proto[ascii]:127.0.0.1:1"):
            with self.subTest(value=value):
                self.assert_both_refuse(["-l", value], "-l/--listen: '%s'" % value)

    def test_a_listen_list_without_an_address_fails_both(self):
        for value in (",", ";", ",;,"):
            with self.subTest(value=value):
                self.assert_both_refuse(["-l", value],
                                        "-l/--listen: '%s' names no address" % value,
                                        listen=None)

    def test_a_resp_port_that_is_an_addresss_own_port_fails_both(self):
        port = str(free_port())
        self.assert_both_refuse(["-l", "127.0.0.1:" + port, "--resp-port", port],
                                "--resp-port: %s is also the port of -l/--listen" % port)

    def test_a_resp_port_that_is_the_main_port_fails_both(self):
        port = str(free_port())
        self.assert_both_refuse(["-p", port, "--resp-port", port],
                                "--resp-port: %s is also --port" % port)

    def test_log_file_stderr_needs_no_file_in_the_working_directory(self):
        # log-file "stderr" is the log's own stream: nothing is opened where the server runs,
        # here /proc, where not even root may create a file.
        p = subprocess.run([os.path.abspath(PETREL), "--log-file", "stderr", "--check-config"],
                           cwd="/proc", capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_a_listen_host_that_does_not_resolve_fails_both(self):
        line = self.assert_both_refuse(["-l", "no-such-host.invalid:11211"],
                                       "-l/--listen: cannot resolve")
        self.assertIn("no-such-host.invalid", line)

    def test_a_port_of_65535_is_the_largest_taken(self):
        rc, _, err = run(PETREL, "-l", "127.0.0.1:65535", "--check-config")
        self.assertEqual(rc, 0, err)

    def test_a_shard_smaller_than_two_segments_fails_both_saying_the_least_that_works(self):
        line = self.assert_both_refuse(["-m", "1", "-t", "2"], "--memory-limit: 1m")
        self.assertIn("the least that works is 4m", line)
        line = self.assert_both_refuse(["-I", "2m", "-m", "2", "-t", "2"], "--memory-limit: 2m")
        self.assertIn("the least that works is 8m", line)
        self.assertIn("--max-item-size", line)
        line = self.assert_both_refuse(["-m", "3", "-t", "2"], "--memory-limit: 3m")
        self.assertIn("the least that works is 4m", line)

    def test_the_least_memory_that_works_passes_both(self):
        self.assert_both_accept(["-m", "4", "-t", "2"])

    def test_a_shard_larger_than_segment_ids_reach_fails_both(self):
        line = self.assert_both_refuse(["-m", "2048g", "-t", "1"], "--memory-limit: 2048g")
        self.assertIn("the most that works is 1048574m", line)

    def test_segment_size_not_a_power_of_two_fails_both(self):
        self.assert_both_refuse(["--segment-size", "5000"], "--segment-size")

    def test_unix_socket_paths_start_up_cannot_bind_fail_both(self):
        self.assert_both_refuse(["-s", NO_DIR + "/mc.sock"], "-s/--unix-socket")
        self.assert_both_refuse(["-s", "/tmp/" + "x" * 120], "unix socket path too long")
        with tempfile.NamedTemporaryFile() as f:
            self.assert_both_refuse(["-s", f.name], "not a socket")

    def test_files_start_up_cannot_write_fail_both(self):
        for option in ("--log-file", "--klog-file", "--pid-file"):
            with self.subTest(option=option):
                self.assert_both_refuse([option, NO_DIR + "/f"], option + ": cannot open")
        with tempfile.TemporaryDirectory() as d:
            self.assert_both_refuse(["--pid-file", d], "Is a directory")

    def test_a_memory_file_start_up_cannot_open_fails_both(self):
        self.assert_both_refuse(["-e", NO_DIR + "/mem"], "-e/--memory-file")
        with tempfile.TemporaryDirectory() as d:
            self.assert_both_refuse(["-e", d], "-e/--memory-file")

    def test_resp_password_problems_fail_both(self):
        port = str(free_port())
        self.assert_both_refuse(["--resp-port", port, "--resp-password-file", NO_DIR + "/pw"],
                                "--resp-password-file")
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("secret\n")
            f.flush()
            self.assert_both_refuse(["--resp-port", port, "--resp-password", "a",
                                     "--resp-password-file", f.name], "give one of them")

    def test_an_empty_resp_password_file_fails_both(self):
        # Starting without the password the operator meant to set would open the port to all.
        port = str(free_port())
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("\nsecret\n")
            f.flush()
            self.assert_both_refuse(["--resp-port", port, "--resp-password-file", f.name],
                                    "holds no password")

    def test_a_fifo_as_resp_password_file_fails_both_without_waiting(self):
        port = str(free_port())
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "pw")
            os.mkfifo(fifo)
            self.assert_both_refuse(["--resp-port", port, "--resp-password-file", fifo],
                                    "not a regular file")

    def test_a_tls_port_that_is_a_listen_address_own_port_fails_both(self):
        port = str(free_port())
        self.assert_both_refuse(["-l", "127.0.0.1:" + port, "--tls-port", port],
                                "--tls-port: %s is also the port of -l/--listen" % port)

    def test_an_admin_address_with_a_port_fails_both(self):
        self.assert_both_refuse(["--admin-address", "127.0.0.1:9000"], "--admin-address")

    @unittest.skipIf(os.geteuid() != 0, "-u applies only when started as root")
    def test_a_user_that_does_not_exist_fails_both(self):
        self.assert_both_refuse(["-u", "no-such-user-petrel"], "-u/--user: no user")


class ListenForms(unittest.TestCase):
    """memcached's -l HOST:PORT and [IPV6]:PORT: the port replaces -p for that address."""

    def served_ports(self, server):
        return [line.rsplit(" ", 1)[1] for line in server.lines if " listening on " in line]

    def assert_serves(self, family, host, port):
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"version\r\n")
            self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))

    def test_host_port_serves_on_that_port_only(self):
        port = free_port()
        with Server(PETREL, "-t", "1", listen="127.0.0.1:%d" % port) as server:
            self.assertEqual(self.served_ports(server), ["127.0.0.1:%d" % port])
            self.assert_serves(socket.AF_INET, "127.0.0.1", port)

    def test_two_listen_addresses_with_their_own_ports_serve_on_both(self):
        p1, p2 = free_port(), free_port()
        while p2 == p1:
            p2 = free_port()
        with Server(PETREL, "-t", "1", "-l", "127.0.0.1:%d" % p2,
                    listen="127.0.0.1:%d" % p1) as server:
            self.assertEqual(sorted(self.served_ports(server)),
                             sorted(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2]))
            self.assert_serves(socket.AF_INET, "127.0.0.1", p1)
            self.assert_serves(socket.AF_INET, "127.0.0.1", p2)

    def test_an_address_without_port_keeps_the_p_port(self):
        port = free_port()
        with Server(PETREL, "-t", "1", "-l", "127.0.0.1:%d" % port) as server:
            served = self.served_ports(server)
            self.assertEqual(len(served), 2, served)
            self.assertIn("127.0.0.1:%d" % port, served)

    def test_a_comma_list_of_host_ports_serves_on_each(self):
        p1, p2 = free_port(), free_port()
        while p2 == p1:
            p2 = free_port()
        with Server(PETREL, "-t", "1", listen="127.0.0.1:%d,127.0.0.1:%d" % (p1, p2)) as server:
            self.assertEqual(sorted(self.served_ports(server)),
                             sorted(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2]))

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback")
    def test_bracketed_ipv6_with_port_serves_there(self):
        port = free_port(socket.AF_INET6, "::1")
        with Server(PETREL, "-t", "1", listen="[::1]:%d" % port) as server:
            self.assertEqual(self.served_ports(server), ["[::1]:%d" % port])
            self.assert_serves(socket.AF_INET6, "::1", port)

    def test_the_config_file_listen_key_takes_host_port(self):
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("[server]\nlisten = 127.0.0.1:%d\n" % port)
            f.flush()
            with Server(PETREL, "-t", "1", "--config", f.name, listen=None) as server:
                self.assertEqual(self.served_ports(server), ["127.0.0.1:%d" % port])
                self.assert_serves(socket.AF_INET, "127.0.0.1", port)

    def test_a_bad_form_in_the_config_file_is_refused_naming_it(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("[server]\nlisten = 127.0.0.1:abc\n")
            f.flush()
            rc, _, err = run(PETREL, "--config", f.name, "--check-config")
            self.assertEqual(rc, 64, err)
            self.assertIn("-l/--listen: '127.0.0.1:abc'", err)


class Behaviour(unittest.TestCase):
    """Running servers: the mapped flags do what memcached's do."""

    def test_disable_evictions_answers_out_of_memory_and_keeps_what_it_has(self):
        value = b"x" * 100000
        with Server(PETREL, "-t", "1", "-m", "2", "-M") as server, server.connect() as s:
            s.settimeout(10)
            stored = 0
            reply = b""
            for i in range(200):
                s.sendall(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
                reply = b""
                while not reply.endswith(b"\r\n"):
                    reply += s.recv(100)
                if reply != b"STORED\r\n":
                    break
                stored += 1
            self.assertEqual(reply, b"SERVER_ERROR out of memory storing object\r\n")
            self.assertGreater(stored, 0)
            s.sendall(b"mg k0 v\r\n")
            self.assertEqual(recv_exactly(s, 11), b"VA 100000\r\n")

    def test_conn_limit_refuses_one_more_with_memcacheds_error(self):
        with Server(PETREL, "-t", "1", "--conn-limit=3") as server:
            held = [server.connect() for _ in range(3)]
            for s in held:
                s.sendall(b"version\r\n")
                self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))
            with server.connect() as extra:
                self.assertEqual(recv_until_closed(extra), b"ERROR Too many open connections\r\n")
            for s in held:
                s.close()

    def test_idle_timeout_closes_an_idle_connection(self):
        with Server(PETREL, "-t", "1", "-o", "idle_timeout=1") as server, server.connect() as s:
            s.sendall(b"version\r\n")
            self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))
            t0 = time.monotonic()
            recv_until_closed(s, timeout=15)
            self.assertLess(time.monotonic() - t0, 10)

    def test_an_idle_close_counts_in_idle_kicks(self):
        with Server(PETREL, "-t", "1", "-o", "idle_timeout=1") as server:
            with server.connect() as s:
                recv_until_closed(s, timeout=15)
            with server.connect() as s:  # a new connection: not idle for a second yet
                s.sendall(b"stats\r\n")
                data = b""
                while not data.endswith(b"END\r\n"):
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, data)
                    data += chunk
            self.assertIn(b"STAT idle_kicks 1\r\n", data)

    def test_unix_mask_sets_the_socket_mode(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "mc.sock")
            with Server(PETREL, "-t", "1", "-s", path, "-a", "770"):
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o770)

    def test_a_unix_socket_replaces_the_tcp_port(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "mc.sock")
            with Server(PETREL, "-t", "1", "-s", path) as server:
                self.assertIsNone(server.port, "\n".join(server.lines))
                self.assertFalse([l for l in server.lines if "listening on" in l
                                  and "mc.sock" not in l], "\n".join(server.lines))
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(path)
                    s.sendall(b"version\r\n")
                    self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))

    def test_pidfile_long_form_writes_the_pid(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "mc.pid")
            with Server(PETREL, "-t", "1", "--pidfile=" + path) as server:
                with open(path) as f:
                    self.assertEqual(int(f.read().strip()), server.proc.pid)

    def test_listen_twice_serves_on_both_addresses(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        with Server(PETREL, "-t", "1", "-l", "::1") as server:
            ports = {}
            for line in server.lines:
                if "listening on 127.0.0.1:" in line:
                    ports["v4"] = int(line.rsplit(":", 1)[1])
                if "listening on [::1]:" in line:
                    ports["v6"] = int(line.rsplit(":", 1)[1])
            self.assertEqual(set(ports), {"v4", "v6"}, server.lines)
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                key = "v4" if family == socket.AF_INET else "v6"
                with socket.create_connection((host, ports[key]), timeout=10) as s:
                    s.sendall(b"version\r\n")
                    self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))


@unittest.skipIf(shutil.which("openssl") is None, "no openssl CLI to make test certificates")
class ExtendedTls(unittest.TestCase):
    """-Z with memcached's ssl_* keys serves TLS as the tls-* options would."""

    @classmethod
    def setUpClass(cls):
        import tls_certs
        cls.dir = tempfile.TemporaryDirectory(prefix="petrel-flags-")
        cls.certs = tls_certs.make(cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def client(self, port, cipher=None):
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cipher:
            ctx.set_ciphers(cipher)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def test_chain_cert_and_key_serve_tls_with_the_openssl_cipher_asked(self):
        o = "ssl_chain_cert=%s,ssl_key=%s,ssl_ciphers=ECDHE-ECDSA-AES256-GCM-SHA384" % (
            self.certs.server_ec, self.certs.server_ec_key)
        with Server(PETREL, "-t", "1", "-Z", "-o", o) as server:
            with self.client(server.tls_port) as s:
                self.assertEqual(s.cipher()[0], "ECDHE-ECDSA-AES256-GCM-SHA384")
                s.sendall(b"version\r\n")
                self.assertTrue(recv_exactly(s, 8).startswith(b"VERSION "))

    def test_verify_mode_2_refuses_a_client_without_a_certificate(self):
        o = "ssl_chain_cert=%s,ssl_key=%s,ssl_ca_cert=%s,ssl_verify_mode=2" % (
            self.certs.server_ec, self.certs.server_ec_key, self.certs.ca)
        with Server(PETREL, "-t", "1", "-Z", "-o", o) as server:
            with self.assertRaises((ssl.SSLError, ConnectionError, socket.timeout)):
                with self.client(server.tls_port) as s:
                    s.sendall(b"version\r\n")
                    if not s.recv(100):
                        raise ConnectionError("closed")


class AutomaticThreads(unittest.TestCase):
    """--threads 0 (the default) starts one worker per online CPU, but never so many that a
    shard gets fewer than 8 segments of the memory limit (a packaged 64m on a large host)."""

    def threads(self, *args):
        with Server(PETREL, *args) as server:
            return int(server.stats()["threads"])

    def test_a_small_memory_limit_caps_the_automatic_count(self):
        # 8m in 1m segments: one shard of 8 segments, whatever the CPU count.
        self.assertEqual(self.threads("-m", "8"), 1)

    def test_the_cap_counts_in_segments_of_the_given_size(self):
        # 8m in 512k segments (items up to 512k, or the segments grow to fit -I): two shards of
        # 8 segments, if there are two CPUs.
        self.assertEqual(self.threads("-m", "8", "--segment-size", "512k", "-I", "512k"),
                         min(2, os.cpu_count()))

    def test_an_explicit_count_is_not_capped(self):
        self.assertEqual(self.threads("-m", "8", "-t", "3"), 3)


if __name__ == "__main__":
    unittest.main()
