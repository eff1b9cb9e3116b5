"""Kept for ``import sslfast.methods`` (the methods now live in ``sslfast.train.methods``)."""

from .train.methods import METHODS, MethodSpec, SSLModel, build_model, get_method, momentum_tau

__all__ = ["METHODS", "MethodSpec", "SSLModel", "build_model", "get_method", "momentum_tau"]
