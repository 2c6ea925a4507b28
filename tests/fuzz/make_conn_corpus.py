#!/usr/bin/env python3
"""Write the seeds of fuzz_conn (tests/fuzz/corpus/conn/) from the memcache parser's seeds.

Each memcache seed becomes two fuzz_conn inputs (the format is described in fuzz_conn.c): the
requests sent whole to worker 0 of 2, and the same requests on worker 1 of 3 under a 4 KiB output
limit, read in small pieces with messages delivered one pair at a time and output drained slowly.
Run from anywhere: python3 tests/fuzz/make_conn_corpus.py

The regress-* seeds beside them are not generated: they are minimized inputs of past findings
(a multi-key get whose keys all miss on another worker, the output of a pipeline of meta sets and
gets depending on the schedule, pipelined "stats" passing the output bound), kept so that every
run starts by checking them again.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "corpus", "memcache")
DST = os.path.join(HERE, "corpus", "conn")

WHOLE = bytes([0x00, 0])  # 2 workers, worker 0, 1 MiB output limit, no control bytes

# 3 workers, worker 1, 4 KiB output limit; then a schedule (op << 5 | arg, see step()).
PIECES_CFG = 0x01 | (1 << 1) | (1 << 3)
PIECES_CTL = bytes([
    0 << 5 | 6,   # send and read 7 bytes
    3 << 5 | 0,   # deliver one message of pair 0
    2 << 5 | 2,   # drain 9 bytes
    0 << 5 | 30,  # send and read 31 bytes
    3 << 5 | 3,   # deliver one message of pair 3
    7 << 5 | 3,   # send 32 bytes, not read yet
    5 << 5 | 15,  # read 16 of them
    2 << 5 | 7,   # drain 64 bytes
    4 << 5,       # deliver everything
    1 << 5 | 1,   # send and read 128 bytes
    2 << 5 | 31,  # drain everything
])


def main():
    os.makedirs(DST, exist_ok=True)
    for name in sorted(os.listdir(SRC)):
        with open(os.path.join(SRC, name), "rb") as f:
            requests = f.read()
        with open(os.path.join(DST, name + "-whole"), "wb") as f:
            f.write(WHOLE + requests)
        with open(os.path.join(DST, name + "-pieces"), "wb") as f:
            f.write(bytes([PIECES_CFG, len(PIECES_CTL)]) + PIECES_CTL + requests)


if __name__ == "__main__":
    main()
