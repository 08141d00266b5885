"""Reconstruction methods behind one interface: ``methods.get("medsem")``, ``methods.create(...)``."""

from methods.base import REGISTRY, HyperParam, Method, available, create, get

__all__ = ["REGISTRY", "HyperParam", "Method", "available", "create", "get"]
