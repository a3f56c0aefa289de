"""Proto3 JSON as etcd 3.4's gateway reads and writes it, with Go's error texts.

etcd 3.4 serves its JSON gateway through grpc-gateway v1 with golang/protobuf's
jsonpb (``OrigName``): field names as declared in the proto, int64/uint64 as
strings, 32-bit integers as numbers, bytes as standard padded base64, enums by name,
zero values and empty lists left out, fields in declaration order, no spaces.
Requests are read as Go reads them: the first JSON value of the body (what
follows it is ignored), which must be an object (or null); unknown fields are
ignored; a field is found by its proto name or its JSON (lowerCamel) name;
integers may come as numbers or strings; an empty body is an empty request.
Mistakes are answered with the texts Go's ``encoding/json``, ``encoding/base64``
and jsonpb use, since clients and tests compare them.

The wire form is built here rather than with ``google.protobuf.json_format``
because that module's field order, string escaping and error texts differ.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

_F = FieldDescriptor
_INT64 = frozenset({_F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_SINT64, _F.TYPE_FIXED64, _F.TYPE_SFIXED64})
_INT32 = frozenset({_F.TYPE_INT32, _F.TYPE_UINT32, _F.TYPE_SINT32, _F.TYPE_FIXED32, _F.TYPE_SFIXED32})
_UNSIGNED = frozenset({_F.TYPE_UINT64, _F.TYPE_FIXED64, _F.TYPE_UINT32, _F.TYPE_FIXED32})
_GO_TYPE = {_F.TYPE_INT64: "int64", _F.TYPE_UINT64: "uint64", _F.TYPE_INT32: "int32", _F.TYPE_UINT32: "uint32",
            _F.TYPE_SINT64: "int64", _F.TYPE_FIXED64: "uint64", _F.TYPE_SFIXED64: "int64",
            _F.TYPE_SINT32: "int32", _F.TYPE_FIXED32: "uint32", _F.TYPE_SFIXED32: "int32",
            _F.TYPE_BOOL: "bool", _F.TYPE_STRING: "string", _F.TYPE_BYTES: "[]uint8"}


class JsonError(ValueError):
    """A request body Go's decoders would refuse; ``str()`` is Go's text."""


# -- writing ------------------------------------------------------------------------------

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
               "\\\\": "\\\\", "\\b": "\\u0008", "\\f": "\\u000c"}
# Python's escapes Go writes otherwise: HTML characters, line/paragraph separators, \b and \f
# (an escaped backslash is matched whole, so the b of "\\b" is left alone).
_GO_ESCAPE_RE = re.compile(r"[<>&\u2028\u2029]|\\[\\bf]")


def go_string(s: str) -> str:
    """``s`` as Go's encoding/json quotes it (HTML-safe, UTF-8 kept)."""
    out = json.dumps(s, ensure_ascii=False)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], out)


def _scalar(field: FieldDescriptor, value: Any) -> str:
    t = field.type
    if t in _INT64:
        return f'"{value}"'
    if t in _INT32:
        return str(value)
    if t == _F.TYPE_BOOL:
        return "true" if value else "false"
    if t == _F.TYPE_STRING:
        return go_string(value)
    if t == _F.TYPE_BYTES:
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if t == _F.TYPE_ENUM:
        named = field.enum_type.values_by_number.get(value)
        return go_string(named.name) if named is not None else str(value)
    if t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return json.dumps(value)
    raise TypeError(f"unsupported field type {t} ({field.full_name})")


def _value(field: FieldDescriptor, value: Any) -> str:
    if field.type == _F.TYPE_MESSAGE:
        return dumps(value)
    return _scalar(field, value)


def dumps(msg: Any) -> str:
    """``msg`` as etcd 3.4's gateway writes it."""
    parts = []
    for field in msg.DESCRIPTOR.fields:
        name = field.name
        if field.is_repeated:
            values = getattr(msg, name)
            if not values:
                continue
            parts.append(f'"{name}":[' + ",".join(_value(field, v) for v in values) + "]")
        elif field.type == _F.TYPE_MESSAGE or field.containing_oneof is not None:
            if msg.HasField(name):
                parts.append(f'"{name}":' + _value(field, getattr(msg, name)))
        else:
            value = getattr(msg, name)
            if value:
                parts.append(f'"{name}":' + _scalar(field, value))
    return "{" + ",".join(parts) + "}"


# -- reading ------------------------------------------------------------------------------

def _go_char(c: str) -> str:
    """A character as Go's JSON scanner quotes it in an error."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    if c.isprintable():
        return f"'{c}'"
    return "'" + json.dumps(c)[1:-1].replace("\\u00", "\\x") + "'"


def _syntax_error(text: str, err: json.JSONDecodeError) -> JsonError:
    pos = err.pos
    if pos >= len(text) or err.msg.startswith("Unterminated string"):
        return JsonError("unexpected EOF")
    c = _go_char(text[pos])
    msg = err.msg
    if msg.startswith("Expecting property name"):
        return JsonError(f"invalid character {c} looking for beginning of object key string")
    if msg.startswith("Expecting ':'"):
        return JsonError(f"invalid character {c} after object key")
    if msg.startswith("Expecting ','"):
        # Python names the delimiter it wanted; Go says what the value was in.
        opener = _enclosing(text, pos)
        where = "object key:value pair" if opener == "{" else "array element"
        return JsonError(f"invalid character {c} after {where}")
    if msg.startswith("Invalid control character"):
        return JsonError(f"invalid character {c} in string literal")
    if msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\uXXXX"):
        return JsonError(f"invalid character {c} in string escape code")
    return JsonError(f"invalid character {c} looking for beginning of value")


def _enclosing(text: str, pos: int) -> str:
    """The bracket that encloses ``pos`` (strings skipped)."""
    stack, in_string, escaped = [], False, False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


class _Number(float):
    """A JSON number with a fraction or exponent, keeping its literal for Go's error texts."""

    text: str

    def __new__(cls, text: str) -> _Number:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _no_constants(name: str) -> Any:
    """Python reads NaN and Infinity; Go's JSON has no such values."""
    if name == "-Infinity":
        raise JsonError("invalid character 'I' in numeric literal")
    raise JsonError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_float=_Number, parse_constant=_no_constants)
_SURROGATE = re.compile("[\ud800-\udfff]")
_WS = " \t\r\n"


def messages(body: bytes, message_class: Any) -> tuple[list[Any], JsonError | None]:
    """The request messages of a streaming call: every JSON value of ``body`` in turn.

    Decoding stops at the first value that is not a valid message: the
    messages before it and its error are returned (grpc-gateway sends those
    and then half-closes; only a bad first message fails the call).
    """
    text = body.decode("utf-8", errors="replace")
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos >= len(text):
            return out, None
        try:
            value, pos = _DECODER.raw_decode(text, pos)
            out.append(parse(value, message_class))
        except json.JSONDecodeError as err:
            return out, _syntax_error(text, err)
        except JsonError as err:
            return out, err


def first_value(body: bytes) -> Any:
    """The first JSON value of ``body`` (None for an empty body); the rest is ignored, as Go does."""
    text = body.decode("utf-8", errors="replace").lstrip(_WS)
    if not text:
        return None
    try:
        return _DECODER.raw_decode(text)[0]
    except json.JSONDecodeError as err:
        raise _syntax_error(text, err) from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _cannot(value: Any, go_type: str) -> JsonError:
    return JsonError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type {go_type}")


def parse(value: Any, message_class: Any) -> Any:
    """A request message from a decoded JSON value (see the module docstring)."""
    msg = message_class()
    if value is None:
        return msg
    if not isinstance(value, dict):
        raise _cannot(value, "map[string]json.RawMessage")
    _fill(msg, value)
    return msg


def _lookup(desc: Descriptor) -> dict[str, FieldDescriptor]:
    names = {}
    for f in desc.fields:
        names[f.json_name] = f
        names[f.name] = f
    return names


def _fill(msg: Any, obj: dict) -> None:
    names = _lookup(msg.DESCRIPTOR)
    for key, value in obj.items():
        field = names.get(key)
        if field is None or value is None:
            continue  # unknown fields are ignored; null leaves the field unset
        if field.is_repeated:
            if not isinstance(value, list):
                raise _cannot(value, "[]json.RawMessage")
            target = getattr(msg, field.name)
            for item in value:
                if field.type == _F.TYPE_MESSAGE:
                    if not isinstance(item, dict):
                        raise _cannot(item, "map[string]json.RawMessage")
                    _fill(target.add(), item)
                elif item is not None:
                    target.append(_parse_scalar(field, item))
        elif field.type == _F.TYPE_MESSAGE:
            if not isinstance(value, dict):
                raise _cannot(value, "map[string]json.RawMessage")
            sub = getattr(msg, field.name)
            sub.SetInParent()
            _fill(sub, value)
        else:
            setattr(msg, field.name, _parse_scalar(field, value))


def _go_enum_name(enum: EnumDescriptor) -> str:
    """Go's name for an enum type: a nested enum is Outer_Inner."""
    pkg = enum.file.package
    name = enum.full_name[len(pkg) + 1:] if pkg else enum.full_name
    return f"{pkg}.{name.replace('.', '_')}" if pkg else name.replace(".", "_")


_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)")


def _parse_scalar(field: FieldDescriptor, value: Any) -> Any:
    t = field.type
    if t in _INT64 or t in _INT32:
        return _parse_int(field, value)
    if t == _F.TYPE_BOOL:
        if not isinstance(value, bool):
            raise _cannot(value, "bool")
        return value
    if t == _F.TYPE_STRING:
        if not isinstance(value, str):
            raise _cannot(value, "string")
        return _SURROGATE.sub("\ufffd", value)  # a lone surrogate escape, as Go decodes it
    if t == _F.TYPE_BYTES:
        if isinstance(value, list):
            return _parse_bytes_array(value)
        if not isinstance(value, str):
            raise _cannot(value, "[]uint8")
        return _parse_base64(value)
    if t == _F.TYPE_ENUM:
        return _parse_enum(field.enum_type, value)
    if t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _cannot(value, "float64")
        return float(value)
    raise JsonError(f"unsupported field {field.full_name}")


def _unmarshal(text: str) -> Any:
    """``text`` as Go's json.Unmarshal reads a whole document (what jsonpb does inside quotes)."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as err:
        if err.msg.startswith("Extra data"):
            raise JsonError(f"invalid character {_go_char(text[err.pos])} after top-level value") from None
        if err.pos >= len(text.rstrip(_WS)):
            raise JsonError("unexpected end of JSON input") from None
        raise _syntax_error(text, err) from None


def _parse_int(field: FieldDescriptor, value: Any) -> int:
    go_type = _GO_TYPE[field.type]
    if isinstance(value, str):
        # jsonpb reads a quoted integer by unmarshalling what is inside the quotes.
        value = int(value) if _INT_RE.fullmatch(value) else _unmarshal(value)
        if value is None:
            return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _cannot(value, go_type)
    if isinstance(value, float):  # Go takes no fraction or exponent for an integer
        raise JsonError(f"json: cannot unmarshal number {_literal(value)} into Go value of type {go_type}")
    bits = 64 if field.type in _INT64 else 32
    lo, hi = (0, 2 ** bits - 1) if field.type in _UNSIGNED else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not lo <= value <= hi:
        raise JsonError(f"json: cannot unmarshal number {value} into Go value of type {go_type}")
    return value


def _literal(number: float) -> str:
    return getattr(number, "text", repr(number))


def _parse_bytes_array(values: list) -> bytes:
    """A JSON array for a bytes field: Go's encoding/json reads it as a []uint8, number by number."""
    out = bytearray()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
            if v is None:
                out.append(0)
                continue
            raise _cannot(v, "uint8")
        if isinstance(v, float) or not 0 <= v <= 255:
            raise JsonError(f"json: cannot unmarshal number {_literal(v) if isinstance(v, float) else v} "
                            "into Go value of type uint8")
        out.append(v)
    return bytes(out)


def _parse_base64(value: str) -> bytes:
    """Standard base64 with padding, newlines ignored, as Go's encoding/json reads []byte."""
    bad = _base64_error_at(value)
    if bad is not None:
        raise JsonError(f"illegal base64 data at input byte {bad}")
    return base64.b64decode(value.replace("\r", "").replace("\n", ""))


_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NEWLINES = "\r\n"


def _base64_error_at(s: str) -> int | None:
    """Where Go's base64.StdEncoding fails on ``s`` (the offset it reports), or None if it decodes."""
    n, si = len(s), 0
    while True:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            c = s[si]
            si += 1
            if c in _NEWLINES:
                continue
            if c in _B64:
                j += 1
                continue
            if c != "=" or j < 2:
                return si - 1
            if j == 2:  # a second "=" must follow
                while si < n and s[si] in _NEWLINES:
                    si += 1
                if si == n:
                    return n
                if s[si] != "=":
                    return si - 1
                si += 1
            while si < n and s[si] in _NEWLINES:
                si += 1
            return si if si < n else None


def _parse_enum(enum: EnumDescriptor, value: Any) -> int:
    if isinstance(value, str):
        named = enum.values_by_name.get(value)
        if named is None:
            raise JsonError(f"unknown value {go_string(value)} for enum {_go_enum_name(enum)}")
        return named.number
    if isinstance(value, float):
        raise JsonError(f"json: cannot unmarshal number {_literal(value)} into Go value of type {_go_enum_name(enum)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _cannot(value, _go_enum_name(enum))
    if not -(2 ** 31) <= value < 2 ** 31:
        raise JsonError(f"json: cannot unmarshal number {value} into Go value of type {_go_enum_name(enum)}")
    return value
