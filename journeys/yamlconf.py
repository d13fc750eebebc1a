"""YAML configuration that remembers where each value came from, so errors can name the line.

Strings may use ${NAME} or ${NAME:-default} to take values from the environment, which the
caller hands in (pipelines.config passes the process environment; without one, only defaults
apply). Reading the files is pipelines.config's part.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file, the line and the key."""


class Located(dict):
    """A mapping that knows the file and line of each of its keys."""

    source: str = "<config>"
    lines: dict

    def where(self, key: str | None = None) -> str:
        line = self.lines.get(key) or self.lines.get(None)
        return f"{self.source} line {line}" if line else self.source


class LocatedList(list):
    source: str = "<config>"
    lines: list

    def where(self, index: int) -> str:
        line = self.lines[index] if index < len(self.lines) else None
        return f"{self.source} line {line}" if line else self.source


NO_ENVIRONMENT: Mapping[str, str] = {}


def expand_env(text: str, env: Mapping[str, str] = NO_ENVIRONMENT) -> str:
    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None:
            if default is None:
                raise ConfigError(f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)")
            return default
        return value

    return _ENV.sub(substitute, text)


class _LocatingLoader(yaml.SafeLoader):
    pass


# YAML 1.1 reads on/off/yes/no as booleans, which turns a rule's `on:` key into True. Resolve
# booleans as YAML 1.2 does: only true and false.
_LocatingLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LocatingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_mapping(loader: _LocatingLoader, node: yaml.MappingNode) -> Located:
    mapping = Located()
    mapping.source = loader.name
    mapping.lines = {None: node.start_mark.line + 1}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _LocatingLoader, node: yaml.SequenceNode) -> LocatedList:
    sequence = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    sequence.source = loader.name
    sequence.lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


def _construct_string(loader: _LocatingLoader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    try:
        return expand_env(value, loader.env)
    except ConfigError as error:
        raise ConfigError(f"{loader.name} line {node.start_mark.line + 1}: {error}") from None


_LocatingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LocatingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_LocatingLoader.add_constructor("tag:yaml.org,2002:str", _construct_string)


def loads_yaml(text: str, source: str = "<config>", env: Mapping[str, str] = NO_ENVIRONMENT) -> Any:
    loader = _LocatingLoader(text)
    loader.name = source
    loader.env = env
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    finally:
        loader.dispose()


def where(container: Any, key: Any = None) -> str:
    if isinstance(container, (Located, LocatedList)):
        return container.where(key)
    return "<config>"
