"""Self-supervised training: methods, backbones, optimisers, the compiled step, the run setup and loop.

Import what you need from the submodules (``sslfast.train.methods``, ``.step``, ``.loop``...);
importing this package imports nothing heavy.
"""
