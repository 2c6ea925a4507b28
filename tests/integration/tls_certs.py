"""Certificates for the TLS tests, made with the openssl CLI into a directory.

make(directory) writes, and returns the paths of (as attributes of a Certs):

  ca, ca_key            CA "Petrel Test CA" (ECDSA P-256, self-signed)
  server_ec, server_ec_key
                        server certificate for 127.0.0.1, ::1 and localhost, ECDSA P-256, by ca
  server_rsa, server_rsa_key
                        the same with an RSA-2048 key, by ca
  server2_ec, server2_ec_key
                        another P-256 server certificate by ca (a different key and serial: what
                        a reload replaces the first with)
  client, client_key    client certificate CN=client1, by ca
  other_ca, other_ca_key
                        CA "Other Test CA", unknown to the server
  unknown_client, unknown_client_key
                        client certificate CN=stranger, by other_ca
  expired_client, expired_client_key
                        client certificate CN=expired, by ca, valid 2020-01-01 to 2020-01-02
  garbage               a file that is no PEM at all

Each call to openssl is checked; a failure raises with openssl's stderr.
"""
import os
import subprocess

SERVER_EXT = """\
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

# `openssl ca` is the one CLI command (in OpenSSL 3.0) that signs with a start date in the
# past; it wants a database, a serial file and a policy.
CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = policy_any
email_in_dn = no
unique_subject = no
copy_extensions = none
x509_extensions = client_ext
[policy_any]
commonName = supplied
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Certs:
    pass


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *args], capture_output=True, timeout=60, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: exit %d\n%s" % (" ".join(args), p.returncode,
                                                        p.stderr.decode(errors="replace")))
    return p.stdout


def ec_key(path):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def rsa_key(path):
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)


def self_signed_ca(d, name, cn):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    ec_key(key)
    openssl("req", "-x509", "-new", "-key", key, "-out", pem, "-days", "30", "-subj", "/CN=" + cn,
            "-sha256", "-extensions", "ca", "-config", os.path.join(d, "ext.cnf"))
    return pem, key


def signed(d, name, cn, ca, ca_key, section, keygen=ec_key, serial=None):
    key, csr, pem = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    keygen(key)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-out", pem, "-days", "30",
            "-sha256", "-set_serial", str(serial or int.from_bytes(os.urandom(8), "big")),
            "-extfile", os.path.join(d, "ext.cnf"), "-extensions", section)
    return pem, key


def expired(d, name, cn, ca, ca_key):
    key, csr, pem = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    db = os.path.join(d, "ca-db")
    os.makedirs(os.path.join(db, "newcerts"), exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("1000\n")
    conf = os.path.join(db, "ca.cnf")
    with open(conf, "w") as f:
        f.write(CA_CONFIG.format(dir=db))
    ec_key(key)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn)
    openssl("ca", "-batch", "-config", conf, "-cert", ca, "-keyfile", ca_key, "-in", csr,
            "-out", pem, "-notext", "-startdate", "20200101000000Z",
            "-enddate", "20200102000000Z")
    return pem, key


def make(d):
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\n[dn]\n" + SERVER_EXT)
    c = Certs()
    c.dir = d
    c.ca, c.ca_key = self_signed_ca(d, "ca", "Petrel Test CA")
    c.server_ec, c.server_ec_key = signed(d, "server-ec", "localhost", c.ca, c.ca_key, "server")
    c.server_rsa, c.server_rsa_key = signed(d, "server-rsa", "localhost", c.ca, c.ca_key,
                                            "server", keygen=rsa_key)
    c.server2_ec, c.server2_ec_key = signed(d, "server2-ec", "localhost", c.ca, c.ca_key,
                                            "server")
    c.client, c.client_key = signed(d, "client", "client1", c.ca, c.ca_key, "client")
    c.other_ca, c.other_ca_key = self_signed_ca(d, "other-ca", "Other Test CA")
    c.unknown_client, c.unknown_client_key = signed(d, "unknown-client", "stranger", c.other_ca,
                                                    c.other_ca_key, "client")
    c.expired_client, c.expired_client_key = expired(d, "expired-client", "expired", c.ca,
                                                     c.ca_key)
    c.garbage = os.path.join(d, "garbage.pem")
    with open(c.garbage, "wb") as f:
        f.write(b"this is not a certificate\n" + bytes(range(256)))
    return c


if __name__ == "__main__":
    import sys
    import tempfile
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="petrel-certs-")
    certs = make(out)
    for name, value in sorted(vars(certs).items()):
        print("%-20s %s" % (name, value))
