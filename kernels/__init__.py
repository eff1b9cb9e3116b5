"""Raw Triton kernels and their host launchers (no autograd, no nn), installed as ``sslfast.kernels``.

One file per loss, named as its module in ``sslfast.losses``: ``_<loss>_fwd_kernel`` (the
@triton.jit kernel) and ``<loss>_fwd`` (the launcher, a registered ``torch.ops.sslfast`` op that
returns the loss and dL/dz in one forward launch sequence). Shared pieces: ``_op.py``
(registration with torch.library, guarded for the interpreter) and ``_covariance.py`` (the
column statistics of the covariance family). Imports only the leaf ``sslfast._numerics`` and
``sslfast.backend``, never the torch backend.
"""
