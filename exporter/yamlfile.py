"""Strict YAML for both configuration files, and one-line errors from typed decoding.

Read as Go's `yaml.UnmarshalStrict` reads: duplicate keys are refused (a user listed twice would
otherwise keep only the last value). Hostile files are bounded before anything is built: the
size, the nesting depth and the size an alias expands to (a 600-byte "billion laughs" file
would otherwise grow to gigabytes), and the text must be UTF-8.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import yaml

T = TypeVar("T")

MAX_BYTES = 1 << 20  # a configuration file is a few kilobytes
MAX_DEPTH = 32  # our deepest key is four levels down
MAX_NODES = 10_000  # after alias expansion
QUOTE_LIMIT = 60  # characters of a value an error message shows


class YamlError(ValueError):
    """A file that cannot be read as strict YAML; the message is one line."""


def load_yaml(path: str) -> object:
    """The document in the file at `path` (None for an empty file)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise YamlError(f"cannot read: {error.strerror or type(error).__name__}") from None
    if len(data) > MAX_BYTES:
        raise YamlError(f"larger than {MAX_BYTES // 1024} KiB")
    return parse_yaml(data)


def parse_yaml(data: bytes) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlError(f"not UTF-8 text (byte {error.start})") from None
    try:
        _check_events(text)
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        # Only the problem and its position: the context snippet could show a secret.
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlError(f"invalid YAML{where}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise YamlError(f"invalid YAML: {type(error).__name__}") from None


def _check_events(text: str) -> None:
    """Nesting depth from the event stream, which is read without recursion."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise YamlError(
                    f"invalid YAML at line {line}: nested deeper than {MAX_DEPTH} levels"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Counts the nodes the document has once every alias is expanded, without expanding."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, path: frozenset[int]) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in path:
            raise YamlError("invalid YAML: an alias refers to itself")
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, path | {id(node)}) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            inner = path | {id(node)}
            total += sum(size(k, inner) + size(v, inner) for k, v in node.value)
        if total > MAX_NODES:
            raise YamlError(f"invalid YAML: aliases expand to more than {MAX_NODES} values")
        sizes[id(node)] = total
        return total

    size(root, frozenset())


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {quote(key)}", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A value as an error message may show it: repr-quoted, one line, at most `limit` chars."""
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DecodeError(ValueError):
    """A value of the wrong shape: `key` is the dotted path ("poll.interval")."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")


def decode(
    data: object,
    type_: type[T],
    *,
    dec_hook: Callable[[type, Any], Any] | None = None,
) -> T:
    """`data` (plain YAML values) as `type_`, strictly: unknown keys and wrong types are errors
    that name the key. `dec_hook` turns strings into custom types (durations, secrets)."""
    try:
        return msgspec.convert(data, type_, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError as error:
        raise _decode_error(str(error)) from None


def _decode_error(message: str) -> DecodeError:
    path = ""
    match = _PATH.search(message)
    if match:
        path = _dotted(match["path"])
        message = message[: match.start()]
    unknown = _UNKNOWN.match(message)
    if unknown:
        return DecodeError(_join(path, unknown["field"]), "unknown key")
    missing = _MISSING.match(message)
    if missing:
        return DecodeError(_join(path, missing["field"]), "is required")
    return DecodeError(path, message[:1].lower() + message[1:])


def _dotted(path: str) -> str:
    """msgspec's `.poll.interval` / `[3]` / `["key"]` as `poll.interval`, `[3]`, `key`."""
    path = re.sub(r'\["((?:[^"\\]|\\.)*)"\]', r".\1", path)
    return path.removeprefix(".")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def kind(value: object) -> str:
    """What a YAML value is, in words: "a string", "a number", "a mapping"..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    words: dict[type, str] = {str: "a string", list: "a list", dict: "a mapping"}
    return words.get(type(value), type(value).__name__)


_WANTED_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}
_GOT_WORDS = {**_WANTED_WORDS, "bool": "a boolean", "int": "a number"}
_EXPECTED = re.compile(r"^expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`| (?P<bound>.+))$")


def in_words(problem: str) -> str:
    """A DecodeError's problem for people: msgspec's "expected `int`, got `str`" as
    "must be a whole number, not a string"; other problems as they are."""
    match = _EXPECTED.match(problem)
    if match is None:
        return problem
    want = " or ".join(_WANTED_WORDS.get(w.strip(), w.strip()) for w in match["want"].split("|"))
    if match["got"]:
        return f"must be {want}, not {_GOT_WORDS.get(match['got'], match['got'])}"
    bound = match["bound"]
    return "must be 0 or more" if bound == ">= 0" else f"must be {want} {bound}"


def did_you_mean(type_: type, key: str) -> str:
    """' (did you mean "interval"?)' for an unknown dotted `key` of `type_`'s schema, or ""."""
    parent, _, name = key.rpartition(".")
    info: Any = msgspec.inspect.type_info(type_)
    for part in parent.split(".") if parent else ():
        fields = {f.name: f.type for f in getattr(info, "fields", ())}
        info = fields.get(part)
        if isinstance(info, msgspec.inspect.UnionType):
            info = next((t for t in info.types if hasattr(t, "fields")), None)
    known = [f.name for f in getattr(info, "fields", ())]
    near = difflib.get_close_matches(name, known, n=1)
    return f' (did you mean "{near[0]}"?)' if near else ""


def drop_empty(value: object, path: str = "") -> object:
    """`value` without the keys whose value is empty (`interval:`), so that they take their
    default; DecodeError for a key that is not a string, which no schema of ours has."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise DecodeError(path, f"keys must be strings, not {quote(key)}")
        return {k: drop_empty(v, _join(path, k)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_empty(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value
