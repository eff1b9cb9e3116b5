"""The built wheel holds only the sslfast namespace (kernels/ and data_pipelines/ inside it)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_only_sslfast(tmp_path):
    pytest.importorskip("build", reason="pip install build (part of sslfast[test])")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("sslfast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"sslfast", next(t for t in top if t.endswith(".dist-info"))}, top
    # every source module ships (a subpackage missing from setup.py's list would break the wheel only)
    sources = {f"sslfast/{p.relative_to(ROOT / 'sslfast').as_posix()}" for p in (ROOT / "sslfast").rglob("*.py")}
    sources |= {f"sslfast/{sub}/{p.name}" for sub in ("kernels", "data_pipelines") for p in (ROOT / sub).glob("*.py")}
    assert sources - set(names) == set()
    assert "sslfast/kernels/vicreg.py" in names
    assert "sslfast/benchmarks/losses.py" in names  # `sslfast bench` must work from a wheel
    assert not any(n.startswith(("kernels/", "data_pipelines/", "tests/", "bench/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sslfast = sslfast.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_import_has_no_heavy_side_effects():
    """Importing sslfast must not import triton, DALI or matplotlib."""
    code = "import sys, sslfast; print(sorted(m for m in ('triton', 'nvidia.dali', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
