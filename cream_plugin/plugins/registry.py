"""Components collected from the plugins' ``register_*`` hooks, looked up by kind and name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cream_plugin.errors import CreamError
from cream_plugin.plugins.manager import ON_RESET, PluginManager, get_plugin_manager

KINDS: dict[str, str] = {
    "rewarder": "register_rewarders",
    "consistency_metric": "register_consistency_metrics",
    "trainer": "register_trainers",
    "evaluator": "register_evaluators",
    "sampler": "register_samplers",
    "method": "register_methods",
}


@dataclass(frozen=True)
class Component:
    """One registered component and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    origin: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "origin": self.origin,
            "description": self.description,
        }
        data.update({k: str(v) for k, v in self.extra.items()})
        return data


class UnknownComponentError(CreamError, KeyError):
    """No component of that kind has that name; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _collect(pm: PluginManager, kind: str) -> dict[str, Component]:
    found: dict[str, Component] = {}
    hook = getattr(pm.hook, KINDS[kind])
    # Call each implementation on its own so a broken plugin cannot hide the others and every
    # component knows which plugin registered it.
    # Registration order: built-ins first, so a third party cannot shadow a built-in name.
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name
        origin = pm.origins.get(plugin_name, plugin_name)

        def register(
            name: Any,
            obj: Any = None,
            *args: Any,
            description: str | None = None,
            _plugin: str = plugin_name,
            _origin: str = origin,
            **extra: Any,
        ) -> None:
            if kind == "method" and not isinstance(name, str):
                name, obj = getattr(name, "name", None), name  # register(Method(...))
                if not isinstance(name, str):
                    raise TypeError("register() for methods takes a Method with a name")
                options, text = getattr(obj, "options", None), getattr(obj, "description", None)
                if options:  # listed by `cream plugins`
                    extra.setdefault("options", dict(options))
                if description is None and text:
                    description = str(text)  # the Method's own, not the Method class's docstring
            if kind == "trainer" and args:
                extra["config_class"] = args[0]
            elif args:
                raise TypeError(f"register() for {kind} takes only a name and an object")
            if name in found:
                previous = found[name]
                pm._record(
                    f"plugin {_plugin!r} ({_origin}) registers {kind} {name!r}, which plugin "
                    f"{previous.plugin!r} ({previous.origin}) already registered; kept the first",
                    _plugin,
                )
                return
            desc = description if description is not None else _first_line(inspect.getdoc(obj))
            found[name] = Component(kind, name, obj, _plugin, _origin, desc, dict(extra))

        try:
            impl.function(register=register)
        except Exception as exc:
            pm._record(
                f"plugin {plugin_name!r} ({origin}) failed in {KINDS[kind]}: "
                f"{type(exc).__name__}: {exc}",
                plugin_name,
            )
    return found


_cache: dict[str, dict[str, Component]] = {}


def clear_cache() -> None:
    _cache.clear()


ON_RESET.append(clear_cache)


def components(kind: str) -> dict[str, Component]:
    """All components of one kind, by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if kind not in _cache:
        _cache[kind] = _collect(get_plugin_manager(), kind)
    return _cache[kind]


def list_components(kind: str | None = None) -> list[Component]:
    """Every registered component (of one kind, or of all kinds), sorted by kind and name."""
    kinds = [kind] if kind else list(KINDS)
    return [c for k in kinds for _, c in sorted(components(k).items())]


def get_component(kind: str, name: str) -> Component:
    found = components(kind)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        hint = ""
        errors = get_plugin_manager().errors
        if errors:
            hint = " Plugin errors: " + " | ".join(errors)
        raise UnknownComponentError(
            f"unknown {kind.replace('_', ' ')} {name!r}; known: {known}.{hint}"
        )
    return found[name]


def factory_parameters(factory: Callable[..., Any]) -> set[str]:
    """Names of the keyword parameters a factory accepts."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {
        name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def build(
    kind: str,
    name: str,
    resources: Mapping[str, Callable[[], Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build the component ``name`` of ``kind``: the one way every component is made.

    A factory declares what it needs by its parameter names: each resource it names is loaded
    (``resources`` maps a name to a zero-argument loader, so a model is loaded only when
    asked for); a factory that names none and takes ``**kwargs`` gets them all. ``options``
    (the user's settings for this component) are passed as given and win over resources.
    """
    from cream_plugin.errors import ConfigError

    factory = get_component(kind, name).obj
    wanted = factory_parameters(factory)
    takes_all = not wanted and any(
        p.kind is p.VAR_KEYWORD for p in _parameters(factory)
    )
    opts = dict(options or {})
    kwargs = {
        key: load()
        for key, load in (resources or {}).items()
        if (takes_all or key in wanted) and key not in opts
    }
    kwargs.update(opts)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"{kind.replace('_', ' ')} {name!r}: bad options {sorted(opts)}: {exc}"
        ) from exc


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return []


def get_rewarder(name: str, **config: Any) -> Any:
    """Build the rewarder registered as ``name`` with its keyword configuration."""
    return build("rewarder", name, options=config)


def get_consistency_metric(name: str) -> Callable[..., Any]:
    """The metric function ``(a, b) -> (P,) array`` registered as ``name``."""
    fn: Callable[..., Any] = get_component("consistency_metric", name).obj
    return fn


def get_trainer(name: str) -> tuple[type, type]:
    """``(TrainerClass, ConfigClass)`` registered as ``name``."""
    comp = get_component("trainer", name)
    return comp.obj, comp.extra["config_class"]


def get_evaluator(name: str, **config: Any) -> Any:
    """Build the evaluator registered as ``name``."""
    return build("evaluator", name, options=config)


def get_sampler(name: str, **config: Any) -> Any:
    """Build the sampler (generation backend) registered as ``name``."""
    return build("sampler", name, options=config)


def task_paths() -> list[str]:
    """lm-eval task folders of every registered evaluator, for ``--include_path``."""
    paths: list[str] = []
    for comp in list_components("evaluator"):
        path = comp.extra.get("tasks_path")
        if path and str(path) not in paths:
            paths.append(str(path))
    return paths
