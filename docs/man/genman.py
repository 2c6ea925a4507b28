#!/usr/bin/env python3
"""Write a man page from a hand-written template and what a built binary says about itself.

The options of a page are not written by hand: they are parsed from the binary's --help (the
OPTIONS section) or from `petrel --print-config` (the options of petrel.conf(5)), so a page
cannot drift from the option tables that --help and --print-config are generated from.

    genman.py TEMPLATE OUTPUT BINARY

The template is roff with these placeholders, each alone on its line:
    @OPTIONS@   the options of BINARY --help, one .TP entry each, under .SS per option group
    @CONFIG@    the sections and keys of BINARY --print-config, one .TP entry per key
and, anywhere, @VERSION@ (from BINARY --version) and @DATE@ (from SOURCE_DATE_EPOCH when the
build sets it, as Debian's and RPM's builds do; empty otherwise, so the page is reproducible).
"""

import datetime
import os
import re
import subprocess
import sys

# An option line of --help: two to six blanks, then the option (or a -o key), then (after two or
# more blanks) the start of its description, or nothing when the option is too long to share its
# line.
OPTION_LINE = re.compile(r"^ {1,6}(\S(?:.*?\S)??)(?: {2,}(\S.*))?$")
# One flag of an option line: -p, --port=NUM, --server HOST:PORT, --[no-]prefault, or a key of
# memcached's -o: idle_timeout=VALUE.
FLAG = re.compile(r"^((?:--?)?[\w\[\]-]+)(?:[= ](.+))?$")
CONTINUATION = re.compile(r"^ {8,}(\S.*)$")


def run(binary, *args):
    """BINARY's standard output for ARGS; a failing binary fails the build."""
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout


def roff_text(text):
    """TEXT made safe for roff: backslashes and minus signs escaped, no line starts a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"(?m)^([.'])", r"\\&\1", text)


def roff_flags(spec):
    """An option spec such as '-p, --port=NUM' as roff: flags bold, the argument italic."""
    out = []
    for flag in spec.split(", "):
        m = FLAG.match(flag.strip())
        if not m:
            out.append(roff_text(flag))
            continue
        name, arg = m.groups()
        sep = "=" if "=" in flag else " "
        text = "\\fB" + roff_text(name) + "\\fR"
        if arg:
            text += sep + "\\fI" + roff_text(arg) + "\\fR"
        out.append(text)
    return ", ".join(out)


def parse_help(text):
    """--help as [(group title or None, [(spec, description)]), [trailing paragraphs]]."""
    groups, trailer = [], []
    current, group = None, None
    para = []
    seen_option = False
    for line in text.splitlines():
        if not line.strip():
            if para and seen_option:
                trailer.append(" ".join(para))
            para, current = [], None
            continue
        m = OPTION_LINE.match(line)
        if m and not CONTINUATION.match(line):
            seen_option = True
            if group is None:
                group = (None, [])
                groups.append(group)
            current = [m.group(1), m.group(2) or ""]
            group[1].append(current)
            continue
        m = CONTINUATION.match(line)
        if m and current is not None:
            current[1] = (current[1] + " " + m.group(1)).strip()
            continue
        if line.endswith(":") and not line.startswith(" "):  # a group of options
            group = (line[:-1], [])
            groups.append(group)
            current = None
            continue
        para.append(line.strip())
    if para and seen_option:
        trailer.append(" ".join(para))
    return groups, trailer


def render_options(text):
    """The roff of an OPTIONS section from --help TEXT."""
    groups, trailer = parse_help(text)
    out = []
    for title, options in groups:
        if not options:
            continue
        if title:
            out.append(".SS " + roff_text(title))
        for spec, desc in options:
            out += [".TP", roff_flags(spec), roff_text(desc)]
    for para in trailer:
        out += [".PP", roff_text(para)]
    return "\n".join(out)


def render_config(text):
    """The roff of the options of a config file from --print-config TEXT."""
    out, comment, started = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            started = True
            out.append(".SS " + roff_text(line))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("#").strip())
        elif "=" in line and started:
            key = line.split("=", 1)[0].strip()
            out += [".TP", "\\fB" + roff_text(key) + "\\fR", roff_text(" ".join(comment))]
            comment = []
        else:
            comment = []
    return "\n".join(out)


def build_date():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d")


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: genman.py TEMPLATE OUTPUT BINARY")
    template, output, binary = argv[1:]
    with open(template, encoding="utf-8") as f:
        page = f.read()
    version = run(binary, "--version").split()[-1]
    if "@OPTIONS@" in page:
        page = page.replace("@OPTIONS@", render_options(run(binary, "--help")))
    if "@CONFIG@" in page:
        page = page.replace("@CONFIG@", render_config(run(binary, "--print-config")))
    page = page.replace("@VERSION@", version).replace("@DATE@", build_date())
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)


if __name__ == "__main__":
    main(sys.argv)
