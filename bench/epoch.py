"""Epoch time, ours vs the reference pipeline; same as `sslfast bench epoch` (sslfast/benchmarks/epoch.py)."""

import sys

from sslfast.benchmarks.epoch import main

if __name__ == "__main__":
    sys.exit(main())
