"""Packaging for sslfast.

`kernels/` and `data_pipelines/` install *inside* the sslfast namespace so that a
top-level `kernels` never shadows PyPI's `kernels` package. No hardware probing here:
torch is left to the user (or to `make`), which picks the CPU or CUDA build.
"""
from setuptools import setup

setup(
    name="sslfast",
    version="0.1.0",
    description="Fused Triton kernels, GPU augmentation and fast training for self-supervised learning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "sslfast",
        "sslfast.losses",
        "sslfast.train",
        "sslfast.eval",
        "sslfast.report",
        "sslfast.benchmarks",
        "sslfast.kernels",
        "sslfast.data_pipelines",
    ],
    package_dir={
        "sslfast": "sslfast",
        "sslfast.kernels": "kernels",
        "sslfast.data_pipelines": "data_pipelines",
    },
    install_requires=[
        "torch>=2.11",
        "numpy>=1.26",
        "rich>=13",
        "pyyaml>=6",
    ],
    extras_require={
        # Triton ships with CUDA torch builds; the CPU interpreter path needs >=3.9 with numpy 2.x.
        "triton": ["triton>=3.6"],
        "dali": ["nvidia-dali-cuda130"],
        "bench": ["matplotlib>=3.8", "pytest-benchmark>=4", "tensorboard>=2.15", "pillow>=10"],
        "test": [
            "pytest>=8",
            "pytest-benchmark>=4",
            "hypothesis>=6",
            "build>=1",
            "pillow>=10",
            "matplotlib>=3.8",
            "tensorboard>=2.15",
        ],
    },
    entry_points={"console_scripts": ["sslfast=sslfast.cli:main"]},
)
