"""Time-to-accuracy speed runs; same as `sslfast bench tta` (see sslfast/benchmarks/speedrun.py)."""
import sys

from sslfast.benchmarks.speedrun import main

if __name__ == "__main__":
    sys.exit(main())
