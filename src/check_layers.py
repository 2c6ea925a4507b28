#!/usr/bin/env python3
"""Check the dependency direction of ../shared/DESIGN.md's layers on every #include in src/.

Each header of include/petrel/ belongs to one module, and each directory of src/ (and each header
of include/petrel/) may include only the headers of the modules it may use:

    util <- log <- config;  util <- rcu <- metrics;  util, log <- io
    core -> {util, log, config, io, rcu, metrics}
    proto, storage -> util only          (they never see core or io)
    server -> {core, proto, storage} and what core sees, but not io (no sockets in product glue)
    bin -> anything

A directory's private headers ("x.h", without petrel/) must sit in that directory. A new public
header must be given its module here. Run by the build (a failed check fails `ninja`) and by the
style suite.

usage: check_layers.py SOURCE_ROOT [STAMP]
"""
import os
import re
import sys

# Which module each public header belongs to.
HEADERS = {
    "buf.h": "util", "ring.h": "util",
    "log.h": "log",
    "config.h": "config",
    "sock.h": "io", "tls.h": "io", "transport.h": "io",
    "prcu.h": "rcu",
    "metrics.h": "metrics",
    "runtime.h": "core", "route.h": "core",
    "memcache.h": "proto", "ping.h": "proto", "resp.h": "proto",
    "seg.h": "storage", "seg_file.h": "storage",
    "mc_server.h": "server", "mc_exec.h": "server", "mc_detail.h": "server",
    "mc_dump.h": "server", "mc_persist.h": "server",
}

# What each module may include (its own headers always).
ALLOWED = {
    "util": {"util"},
    "log": {"util"},
    "config": {"util", "log"},
    "io": {"util", "log"},
    "rcu": {"util"},
    "metrics": {"util", "rcu"},
    "core": {"util", "log", "config", "io", "rcu", "metrics"},
    "proto": {"util"},
    "storage": {"util"},
    "server": {"util", "log", "config", "rcu", "metrics", "core", "proto", "storage"},
    "bin": set(HEADERS.values()) | {"bin"},
}

# The module of each directory under src/.
DIRS = {
    "util": "util", "log": "log", "config": "config", "io": "io", "rcu": "rcu", "metrics": "metrics",
    "core": "core", "proto": "proto", "storage": "storage", "server": "server", "bin": "bin",
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def check_file(path, module, errors):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for name in INCLUDE.findall(text):
        if name == "petrel_build.h":
            continue
        if name.startswith("petrel/"):
            header = name[len("petrel/"):]
            owner = HEADERS.get(header)
            if owner is None:
                errors.append(f"{path}: includes {name}, which check_layers.py gives no module")
            elif owner != module and owner not in ALLOWED[module]:
                errors.append(f"{path}: {module} must not include {name} ({owner})")
        elif not os.path.exists(os.path.join(os.path.dirname(path), name)) or "/" in name:
            errors.append(f"{path}: private header \"{name}\" is not in its own directory")


def main():
    root = sys.argv[1]
    errors = []
    inc = os.path.join(root, "include", "petrel")
    for header in sorted(os.listdir(inc)):
        if header not in HEADERS:
            errors.append(f"{os.path.join(inc, header)}: not given a module in check_layers.py")
            continue
        check_file(os.path.join(inc, header), HEADERS[header], errors)
    src = os.path.join(root, "src")
    for top in sorted(os.listdir(src)):
        module = DIRS.get(top)
        top_path = os.path.join(src, top)
        if not os.path.isdir(top_path):
            continue
        if module is None:
            errors.append(f"{top_path}: a directory check_layers.py gives no module")
            continue
        for dirpath, _, files in os.walk(top_path):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    check_file(os.path.join(dirpath, f), module, errors)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
