"""Augmentation throughput: `python bench/bench_augment.py [--quick]` == `sslfast bench augment`."""
import sys

from sslfast.benchmarks.augment import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
