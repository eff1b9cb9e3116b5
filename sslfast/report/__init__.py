"""``sslfast report``: benchmark results JSON -> markdown report, plots and the README's results section.

- ``schema``: the one results contract, validated when a benchmark writes and when the report reads;
- ``tables`` / ``plots``: one renderer per benchmark kind;
- ``build``: collecting, selecting the newest run per group, writing the report and the README section.
"""

from .build import END, START, build, main

__all__ = ["END", "START", "build", "main"]
