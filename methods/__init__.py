"""Reconstruction methods behind one interface: ``methods.get("medsem")``, ``methods.create(...)``."""

from methods.base import HyperParam, Method
from methods.registry import REGISTRY, available, create, get, register

__all__ = ["REGISTRY", "HyperParam", "Method", "available", "create", "get", "register"]
