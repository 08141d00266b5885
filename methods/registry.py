"""The method registry: method name -> ``"package.module:Class"``, imported when first used.

A method joins the suite without an edit of it, in one of three ways (docs/extending.md):

- an installed package declares an entry point in the group ``bse_bench.methods``, one per
  method: ``mymethod = "my_package.my_method:MyMethod"`` (as pytest and napari find plugins);
- the environment variable ``BSE_BENCH_PLUGINS`` lists modules (comma-separated,
  ``my_package.my_method,other``) that call :func:`register` when imported; this is how the
  command line learns of a module that is not an installed package;
- code in the same process calls :func:`register`.

Plugins are loaded lazily, the first time a name is looked up (:func:`available`, :func:`get`),
so listing methods imports nothing heavy and a plugin costs nothing until it is used. A plugin
that does not load raises :class:`PluginError` naming the plugin and the cause; an unknown name
raises ``UnknownNameError`` listing every known name, plugins included.

This module decides no result, so it is not part of any method's code version
(``benchmark.runner.code_version``): adding a method here or in a plugin reruns nothing else.
It imports nothing from the suite's methods (``methods.base`` imports it), to stay out of
their import graph.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

from datasets.errors import look_up

#: the environment variable listing modules that register methods when imported
PLUGINS_ENV = "BSE_BENCH_PLUGINS"
#: the ``importlib.metadata`` entry-point group of installed method plugins
ENTRY_POINT_GROUP = "bse_bench.methods"

#: name -> "module:Class". The suite's own methods; plugins add theirs.
REGISTRY: dict[str, str] = {
    "medsem": "methods.medsem:MedSem",
    "unet3d": "methods.unet3d:UNet3D",
    "bsevox": "methods.bsevoxnets:BseVoxNets",
}
#: name -> where a registration came from, for error messages (default: a register() call)
_ORIGINS: dict[str, str] = {name: "built in" for name in REGISTRY}
#: plugin modules of ``BSE_BENCH_PLUGINS`` already imported, and whether entry points were read
_loaded_modules: set[str] = set()
_entry_points_loaded = False
#: the origin a register() call is attributed to while a plugin loads
_current_origin = "a register() call"


class PluginError(ImportError):
    """A method plugin (module, entry point or registered class) that cannot be loaded (exit 1)."""

    exit_code = 1


def register(name: str, target: str) -> None:
    """Register method ``name`` as ``"package.module:Class"`` (imported when first used).

    Registering the same target again is a no-op; another target under a taken name is an error
    naming both, so a plugin cannot silently replace a method.
    """
    if not isinstance(name, str) or not name or any(c in name for c in " ,:/"):
        raise ValueError(f"register({name!r}, ...): a method name is a non-empty word without "
                         "spaces, commas, colons or slashes")
    module_name, _, class_name = str(target).partition(":")
    if not module_name or not class_name:
        raise ValueError(f"register('{name}', '{target}'): the target must read 'package.module:Class'")
    if name in REGISTRY and REGISTRY[name] != target:
        raise ValueError(f"method '{name}' is already registered as {REGISTRY[name]} "
                         f"({_ORIGINS.get(name, 'a register() call')}); {_current_origin} "
                         f"registers it as {target}")
    REGISTRY[name] = target
    _ORIGINS.setdefault(name, _current_origin)


def plugin_modules() -> list[str]:
    """The module names listed in ``BSE_BENCH_PLUGINS`` (comma-separated, blanks ignored)."""
    return [part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(",") if part.strip()]


def load_plugins() -> None:
    """Import the modules of ``BSE_BENCH_PLUGINS`` not imported yet and, once per process,
    register the entry points of the group ``bse_bench.methods``; :class:`PluginError` names a
    plugin that fails. Called by every look-up, so callers never need to."""
    global _current_origin, _entry_points_loaded
    for module_name in plugin_modules():
        if module_name in _loaded_modules:
            continue
        _current_origin = f"plugin module '{module_name}' (from {PLUGINS_ENV})"
        try:
            importlib.import_module(module_name)
        except Exception as err:  # noqa: BLE001 - any failure of the user's module is reported
            raise PluginError(f"{_current_origin} failed to import: {type(err).__name__}: {err}") from err
        finally:
            _current_origin = "a register() call"
        _loaded_modules.add(module_name)
    if not _entry_points_loaded:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _current_origin = f"entry point '{entry_point.name} = {entry_point.value}'{_distribution(entry_point)}"
            try:
                register(entry_point.name, entry_point.value)
            except ValueError as err:
                raise PluginError(str(err)) from err
            finally:
                _current_origin = "a register() call"
        _entry_points_loaded = True


def _distribution(entry_point) -> str:
    dist = getattr(entry_point, "dist", None)
    return f" of {dist.name}" if dist is not None and getattr(dist, "name", None) else ""


def available() -> list[str]:
    """Registered method names, plugins included, sorted."""
    load_plugins()
    return sorted(REGISTRY)


def get(name: str):
    """Import and return the ``methods.base.Method`` subclass registered as ``name``.

    ``UnknownNameError`` lists the known names; :class:`PluginError` names the registration
    (built in, plugin module, entry point) and why its class cannot be imported."""
    load_plugins()
    target = look_up("method", name, dict(sorted(REGISTRY.items())))
    module_name, _, class_name = target.partition(":")
    where = f"method '{name}' ({target}, {_ORIGINS.get(name, 'a register() call')})"
    try:
        klass = getattr(importlib.import_module(module_name), class_name)
    except Exception as err:  # noqa: BLE001 - an import of the user's code can raise anything
        raise PluginError(f"{where} could not be imported: {type(err).__name__}: {err}") from err
    if not _is_method_class(klass):
        raise PluginError(f"{where} is not a subclass of methods.base.Method")
    if klass.name != name:
        raise PluginError(f"{where} declares name = '{klass.name}'; the registered name and the "
                          "class's name must agree (result rows and saved models use the latter)")
    return klass


def _is_method_class(obj) -> bool:
    """Whether ``obj`` is a class deriving from ``methods.base.Method`` (checked by name, so
    this module does not import ``methods.base``)."""
    return isinstance(obj, type) and any(
        base.__module__ == "methods.base" and base.__name__ == "Method" for base in obj.__mro__)


def create(name: str, device: str = "cpu", **params):
    """Instantiate the method registered as ``name`` with the given hyper-parameters."""
    return get(name)(device=device, **params)


def label_of(name) -> str:
    """The label a registered method declares (for rows that carry none), else
    ``name`` (also when the method cannot be imported here)."""
    try:
        return get(str(name)).display_name()
    except (KeyError, ImportError, AttributeError):
        return str(name)
