"""How a component's typed config declares its settings, once.

Each component owns a frozen dataclass config (`EngineConfig`, `ControllerConfig`, `Sampling`)
whose fields carry their default and help text, declared here with `setting(...)`. The settings
registry (backend/settings.py) lists those fields under the component's prefix
(``engine_kv_cache_gib`` is `EngineConfig.kv_cache_gib`) with `inherit(...)`, and builds the
config back with `section(...)`: no default or help is written twice, and nothing is copied
field by field. A field without help (``EngineConfig.device``) is not a setting.

Convention: a config's validation messages start with the field's name ("dtype 'int4': ..."), so
that the registry can show the setting's name instead (``engine_dtype 'int4': ...``).

    @dataclass(frozen=True)
    class EngineConfig:
        kv_cache_gib: float = setting(1.0, "CPU only: GiB of RAM for the KV cache.")

    engine_kv_cache_gib: float = inherit(EngineConfig, "kv_cache_gib")    # in AppSettings
    config = section(EngineConfig, settings, prefix="engine_")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


def setting(default: Any, help: str, *, secret: bool = False, name: str | None = None) -> Any:  # noqa: A002 - "help" reads best
    """A config field that is also a setting; ``name`` overrides the registry's prefixed name."""
    return dataclasses.field(default=default, metadata={"help": help, "secret": secret, "name": name})


def setting_fields(config_cls: type) -> Iterator[dataclasses.Field]:
    """The fields of ``config_cls`` that are settings (those declared with help text)."""
    return (f for f in dataclasses.fields(config_cls) if "help" in f.metadata)


def setting_name(field: dataclasses.Field, prefix: str) -> str:
    return field.metadata.get("name") or prefix + field.name


def inherit(config_cls: type, name: str) -> Any:
    """A settings-registry field with the default and help of ``config_cls``'s field ``name``."""
    source = next(f for f in setting_fields(config_cls) if f.name == name)
    return dataclasses.field(default=source.default, metadata={**source.metadata, "name": None})


def section(config_cls: type, values: Any, prefix: str, **extra: Any):
    """``config_cls`` built from the settings ``values`` holds under ``prefix`` (plus ``extra``
    fields that are not settings). A ValueError names the setting, not the config's field."""
    kwargs = {f.name: getattr(values, setting_name(f, prefix)) for f in setting_fields(config_cls)}
    try:
        return config_cls(**kwargs, **extra)
    except ValueError as exc:
        raise ValueError(_with_setting_name(str(exc), config_cls, prefix)) from None


def _with_setting_name(message: str, config_cls: type, prefix: str) -> str:
    for f in sorted(setting_fields(config_cls), key=lambda f: -len(f.name)):
        if message.startswith(f.name):
            return setting_name(f, prefix) + message[len(f.name):]
    return message
