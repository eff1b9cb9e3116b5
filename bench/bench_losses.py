"""Loss microbenchmarks; same as `sslfast bench losses` (see sslfast/benchmarks/losses.py)."""
import sys

from sslfast.benchmarks.losses import main

if __name__ == "__main__":
    sys.exit(main())
