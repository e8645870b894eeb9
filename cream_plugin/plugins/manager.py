"""The plugin manager: built-in default plugins plus third-party entry points.

Third parties publish a module under the entry-point group ``cream``. Setting
``CREAM_PLUGINS`` to a comma-separated list of entry-point names loads only those
(an empty value loads none); built-ins always load.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import sys
from collections.abc import Callable
from types import ModuleType

import pluggy

from cream_plugin.plugins import hookspecs

ENTRY_POINT_GROUP = "cream"
ENV_RESTRICT = "CREAM_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = tuple(
    f"cream_plugin.plugins.builtins.{name}"
    for name in ("consistency_metrics", "samplers", "trainers", "methods", "rewarders",
                 "evaluators", "spin", "meta_rewarding")
)
"""Every built-in component is registered by one module of :mod:`cream_plugin.plugins.builtins`,
through the same hooks as a third-party plugin."""


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered a broken component."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the distribution each plugin came from and the load errors."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, str] = {}
        self.errors: list[str] = []

    def origin_of(self, plugin: object) -> str:
        name = self.get_name(plugin) or repr(plugin)
        return self.origins.get(name, name)

    def add_plugin(self, module: object, name: str, origin: str) -> None:
        """Register one plugin, turning pluggy's validation errors into a recorded error."""
        try:
            self.register(module, name=name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._record(f"plugin {name!r} ({origin}) was not loaded: {exc}", name)
            return
        self.origins[name] = origin
        unknown = [c.name for c in self.get_hookcallers(module) or [] if not c.has_spec()]
        if unknown:
            known = sorted(h for h in dir(hookspecs) if h.startswith("register_"))
            self._record(
                f"plugin {name!r} ({origin}) implements unknown hook(s) {', '.join(unknown)}; "
                f"known hooks: {', '.join(known)}",
                name,
            )

    def _record(self, message: str, name: str) -> None:
        """Keep the error and print it as one line on stderr, with how to silence it.

        One line, not a ``UserWarning`` with the file and line of this module: the user needs
        the plugin's name and the fix, on every command that builds the manager."""
        message = " ".join(message.split())  # pluggy's validation errors span several lines
        self.errors.append(message)
        if name in DEFAULT_PLUGINS:
            hint = "a built-in plugin: reinstall cream-plugin"
        else:
            others = sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
                            if ep.name != name)
            hint = (f"to silence it, uninstall it or set {ENV_RESTRICT} to the plugins to load "
                    f"({ENV_RESTRICT}={','.join(others)!s})")
        print(f"cream: {message.rstrip('.')}; {hint}", file=sys.stderr)


def _distribution_label(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _allowed_external() -> set[str] | None:
    raw = os.environ.get(ENV_RESTRICT)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _load_entry_points(pm: PluginManager) -> None:
    allowed = _allowed_external()
    seen: set[str] = set()
    # Sorted by name so which of two clashing plugins wins does not depend on sys.path order.
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen or (allowed is not None and ep.name not in allowed):
            continue
        seen.add(ep.name)
        origin = _distribution_label(ep)
        try:
            module = ep.load()
        except Exception as exc:
            pm._record(
                f"plugin {ep.name!r} from {origin} failed to import: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())}",
                ep.name,
            )
            continue
        pm.add_plugin(module, ep.name, origin)


def _build() -> PluginManager:
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        module: ModuleType = importlib.import_module(module_name)
        pm.add_plugin(module, module_name, "built-in")
    _load_entry_points(pm)
    return pm


_pm: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = _build()
    return _pm


ON_RESET: list[Callable[[], None]] = []
"""Caches built from the manager's hooks, cleared with it (the registry adds its own)."""


def reset_plugin_manager() -> None:
    """Forget the manager and every cache built from it (tests; after installing a plugin)."""
    global _pm
    _pm = None
    for clear in ON_RESET:
        clear()
