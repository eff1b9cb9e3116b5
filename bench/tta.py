"""Time-to-accuracy speed runs; same as `sslfast bench tta` (see sslfast/benchmarks/tta.py)."""
import sys

from sslfast.benchmarks.tta import main

if __name__ == "__main__":
    sys.exit(main())
