"""Raw Triton kernels and their host launchers (no autograd, no nn)."""
