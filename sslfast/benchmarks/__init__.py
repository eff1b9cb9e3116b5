"""Benchmarks behind `sslfast bench ...`; the scripts in bench/ are thin wrappers."""
