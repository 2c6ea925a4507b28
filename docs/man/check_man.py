#!/usr/bin/env python3
"""Check a generated man page: man(1) renders it without a warning, and it names every option.

    check_man.py PAGE BINARY help|config

help: every long option of BINARY --help must appear in the rendered page;
config: every key of BINARY --print-config must.
Exits 77 (skipped) when man(1) is not installed.
"""

import os
import re
import shutil
import subprocess
import sys


def render(page):
    """PAGE as man(1) shows it, and groff's warnings; man(1) with --warnings runs groff -w all
    over the page (the check lintian and Debian's man-db make)."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_KEEP_FORMATTING="")
    proc = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{page}: man exited {proc.returncode}: {proc.stderr.strip()}")
    # man(1) draws hyphens as U+2010 where it breaks words; compare plain ASCII.
    text = proc.stdout.replace("\u2010", "-").replace("\u2212", "-")
    # Undo the hyphenation at line ends, so a long option split over two lines still counts.
    text = re.sub(r"-\n\s+", "-", text)
    return text, proc.stderr.strip()


def expected(binary, kind):
    if kind == "help":
        out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                             check=True).stdout
        return sorted(set(re.findall(r"(?<![\w-])--(?:\[no-\])?[a-z][a-z0-9-]*", out)))
    out = subprocess.run([binary, "--print-config"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("=", 1)[0].strip() for line in out.splitlines()
            if "=" in line and not line.startswith("#")]


def main(argv):
    if len(argv) != 4 or argv[3] not in ("help", "config"):
        sys.exit("usage: check_man.py PAGE BINARY help|config")
    page, binary, kind = argv[1:]
    if shutil.which("man") is None:
        print("man(1) is not installed: skipped")
        return 77
    text, warnings = render(page)
    failures = []
    if warnings:
        failures.append(f"man --warnings: {warnings}")
    for name in expected(binary, kind):
        pattern = re.escape(name) if kind == "help" else r"(?m)^\s+" + re.escape(name) + r"\b"
        if not re.search(pattern, text):
            failures.append(f"{name} is in {binary} --{'help' if kind == 'help' else 'print-config'}"
                            " but not in the page")
    for f in failures:
        print(f"{os.path.basename(page)}: {f}")
    if not failures:
        print(f"{os.path.basename(page)}: renders without warnings, names every option")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
