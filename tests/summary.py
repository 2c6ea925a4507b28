#!/usr/bin/python3
"""Sum up the meson test logs of several build directories; exit 1 if anything failed.

Arguments are build directories, or NAME=STATUS for a run outside meson (its exit status; 77
means skipped, as for meson).

Each `meson test` run writes meson-logs/testlog.json (one JSON object per test). .ci/test
lets every run finish, so that one failure does not hide the others, and this script
gives the verdict and the closing line.
"""
import json
import os
import sys

passed = failed = skipped = 0
failures = []
for build in sys.argv[1:]:
    if "=" in build:  # NAME=STATUS: a run outside meson (.ci/test-packages), by its exit status
        name, status = build.split("=", 1)
        if status == "0":
            passed += 1
        elif status == "77":  # skipped, as meson counts exit status 77; the run said why
            skipped += 1
        else:
            failed += 1
            failures.append("%s (exit status %s)" % (name, status))
        continue
    path = os.path.join(build, "meson-logs", "testlog.json")
    if not os.path.exists(path):
        print("%s: no test log (the build or the test run failed)" % build)
        failed += 1
        failures.append(build)
        continue
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            result = t.get("result")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
                failures.append("%s: %s (%s)" % (build, t.get("name"), result))
for f in failures:
    print("FAILED " + f)
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
