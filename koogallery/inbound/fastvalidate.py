"""A fast path through DRF validation for bodies whose values are plainly valid.

DRF spends several microseconds on each field it validates (validate_empty_values,
to_internal_value, a list of validator objects, exception handling); an authSync of 50 users is
650 fields, a quarter of the call. `validated_data(serializer_class, body)` returns exactly the
`validated_data` DRF would return, or None: then the caller runs DRF, which also writes the
error message. Nothing here decides what is valid on its own authority:

- Each serializer class is compiled once into a plan of its writable fields. A field whose
  exact class has a registered compiler (see `compiler`) gets a check that recognises the
  common shape of a valid value (a short clean string, a listed integer, ...) and returns what
  DRF would; every other value, and every field of a class without a compiler, goes through the
  field's own `run_validation`, so an odd value that is still valid gets DRF's answer and an
  invalid one raises DRF's error (the whole fast path then returns None).
- Serializer hooks run as DRF runs them: `validate_<field>` after its field, `validate()` on the
  validated attributes. A serializer that changes DRF's machinery itself (its own
  `to_internal_value`, `run_validation`, serializer-level validators, dotted sources) is not
  compiled.

tests/koogallery/inbound/test_fast_validation.py proves, over every serializer the pipeline
validates with, that the result equals DRF's or is None, and is None whenever DRF refuses.
"""

import re
import sys
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.fields import SkipField, _UnvalidatedField, empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from koogallery.inbound.serializers import (
    BasicTestFlag,
    KgChoiceInteger,
    KgString,
    LenientListField,
    LenientObjectField,
)
from koogallery.protocol.jsonbody import BodyError, has_nul, lenient_list, lenient_object

# A check's answer for an absent optional field without a default: DRF leaves it out.
SKIP = object()

# A check takes the field's primitive value (`empty` when absent) and returns the internal
# value or SKIP; an invalid value raises DRF's ValidationError.
Check = Callable[[Any], Any]
# A compiler takes a bound field and its DRF check (for every value it does not recognise)
# and returns a faster check, or None when the field's configuration is not one it knows.
Compiler = Callable[[serializers.Field, Check], Check | None]

_COMPILERS: dict[type, Compiler] = {}


def compiler(*field_classes: type) -> Callable[[Compiler], Compiler]:
    """Register a compiler for fields of exactly these classes (a subclass may behave
    differently, so it needs its own)."""

    def register(function: Compiler) -> Compiler:
        for field_class in field_classes:
            _COMPILERS[field_class] = function
        return function

    return register


def drf_check(field: serializers.Field) -> Check:
    """The field's own validation, as a check."""
    run = field.run_validation

    def check(value: Any) -> Any:
        try:
            return run(value)
        except SkipField:
            return SKIP

    return check


def field_check(field: serializers.Field) -> Check:
    """The fastest exact check of a bound field: its compiler's, else DRF's."""
    drf = drf_check(field)
    if isinstance(field, serializers.Serializer):
        plan = SerializerPlan.compile(field)
        return plan.as_check(field, drf) if plan else drf
    compile_field = _COMPILERS.get(type(field))
    fast = compile_field(field, drf) if compile_field else None
    return fast or drf


def absent_value(field: serializers.Field) -> Any:
    """What DRF makes of an absent field when that is plain: SKIP (optional, no default), or
    `empty` when DRF must decide (required: an error; a default: DRF computes it)."""
    if field.required or field.default is not empty or field.read_only:
        return empty
    return SKIP


def fallback(field: serializers.Field, drf: Check) -> Check:
    """What a check does with a value that is not plainly valid: null where the field allows
    it, an absent optional field skipped, anything else to DRF for its verdict."""
    allow_null, absent = field.allow_null, absent_value(field)

    def otherwise(value: Any) -> Any:
        if value is None and allow_null:
            return None
        if value is empty and absent is SKIP:
            return SKIP
        return drf(value)

    return otherwise


# --- strings ----------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> bool:
    """What CharField's NUL and surrogate validators accept."""
    return "\x00" not in value and (value.isascii() or _SURROGATE.search(value) is None)


def string_limit(field: serializers.CharField) -> int | None:
    """The length limit of a CharField whose validators are exactly those CharField adds for
    its own `max_length` (NUL, surrogates), or None when it has others (checked by DRF)."""
    expected = [ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator]
    validators = list(field.validators)
    if field.max_length is not None:
        first = validators[0] if validators else None
        if type(first) is not MaxLengthValidator or first.limit_value != field.max_length:
            return None
        validators = validators[1:]
    if field.min_length is not None or [type(v) for v in validators] != expected:
        return None
    return sys.maxsize if field.max_length is None else field.max_length


@compiler(KgString)
def _kg_string(field: KgString, drf: Check) -> Check | None:
    limit = string_limit(field)
    if limit is None or field.trim_whitespace:
        return None
    allow_blank, otherwise = field.allow_blank, fallback(field, drf)

    def check(value: Any) -> Any:
        plain = type(value) is str and (value or allow_blank) and len(value) <= limit
        if plain and clean_text(value):
            return value
        return otherwise(value)

    return check


@compiler(BasicTestFlag)
def _basic_test_flag(field: BasicTestFlag, drf: Check) -> Check | None:
    if string_limit(field) is None or field.allow_blank or absent_value(field) is not SKIP:
        return None

    def check(value: Any) -> Any:
        if value is empty:
            return SKIP
        if type(value) is str and value in ("0", "1"):
            return value
        return drf(value)

    return check


# --- integers ---------------------------------------------------------------------------------


def choice_table(field: KgChoiceInteger) -> dict[Any, int] | None:
    """Each allowed integer by itself and by its decimal text, as KgChoiceInteger reads them,
    or None when the field has validators (min/max) of its own."""
    if field.validators:
        return None
    table: dict[Any, int] = {}
    for value in field.allowed:
        table[value] = value
        table[str(value)] = value
    return table


@compiler(KgChoiceInteger)
def _kg_choice_integer(field: KgChoiceInteger, drf: Check) -> Check | None:
    table = choice_table(field)
    if table is None:
        return None
    otherwise = fallback(field, drf)

    def check(value: Any) -> Any:
        # `type` rather than isinstance: True is no integer here, and 1.0 no text.
        kind = type(value)
        if kind is int or kind is str:
            found = table.get(value)
            if found is not None:
                return found
        return otherwise(value)

    return check


# --- lists and objects ------------------------------------------------------------------------


def lenient_list_check(
    field: LenientListField,
    drf: Check,
    columns: Callable[[list], list | None] | None = None,
) -> Check | None:
    """The check of a list sent as JSON or as a string holding one: every item through the
    child's check; `columns`, when given, first (it answers the whole list, or None to leave it
    to the items: a fast path that can only accept, e.g. authSync's userList)."""
    if field.validators:
        return None
    item_check = field_check(field.child)
    allow_empty = field.allow_empty

    def check(value: Any) -> Any:
        items = value
        if type(value) is str:
            try:
                items = lenient_list(value)
            except BodyError:
                return drf(value)
        if type(items) is list and (items or allow_empty):
            if columns is not None:
                checked = columns(items)
                if checked is not None:
                    return checked
            return [item_check(item) for item in items]
        return drf(value)

    return check


@compiler(LenientListField)
def _lenient_list(field: LenientListField, drf: Check) -> Check | None:
    return lenient_list_check(field, drf)


def unvalidated_values(field: serializers.DictField) -> bool:
    """A DictField whose values are taken as they are (the default child)."""
    child = field.child
    return type(child) is _UnvalidatedField and not child.validators and not field.validators


def lenient_object_check(
    field: LenientObjectField, drf: Check, *, blank_is_null: bool = False
) -> Check | None:
    """The check of a LenientObjectField (or a subclass that reads "" as null)."""
    if not unvalidated_values(field):
        return None
    allow_empty, otherwise = field.allow_empty, fallback(field, drf)

    def check(value: Any) -> Any:
        found = value
        if type(value) is str:
            if not value and blank_is_null:
                return None
            try:
                found = lenient_object(value)
            except BodyError:
                return drf(value)
        if type(found) is dict and not has_nul(found) and (found or allow_empty):
            return {str(key): item for key, item in found.items()}
        return otherwise(value)

    return check


@compiler(LenientObjectField)
def _lenient_object(field: LenientObjectField, drf: Check) -> Check | None:
    return lenient_object_check(field, drf)


# --- serializers ------------------------------------------------------------------------------


class NotPlain(Exception):
    """The value needs DRF after all (e.g. `validate()` returned None: DRF asserts)."""


# DRF's machinery a compiled serializer must not have replaced.
_SERIALIZER_METHODS = (
    "run_validation",
    "to_internal_value",
    "validate_empty_values",
    "run_validators",
    "set_value",
    "get_value",
)
# Field classes whose `get_value` on a plain dict is `dict.get(field_name, empty)`.
_DICT_GET = {
    serializers.Field.get_value,
    serializers.ListField.get_value,
    serializers.DictField.get_value,
    serializers.Serializer.get_value,
}


class SerializerPlan:
    """One serializer's writable fields, each as (wire name, source, check, getter, hook)."""

    def __init__(self, steps: list[tuple], validate_name: str | None):
        self.steps = steps
        self.validate_name = validate_name
        if all(getter is None and hook is None for _, _, _, getter, hook in steps):
            # The usual plan: a tighter loop (this one runs for each of 50 users of authSync).
            self.simple_steps = [(name, source, check) for name, source, check, _, _ in steps]
            self.run = self.run_simple

    @classmethod
    def compile(cls, serializer: serializers.Serializer) -> "SerializerPlan | None":
        """The plan of a bound serializer, or None when it cannot be compiled."""
        kind = type(serializer)
        for name in _SERIALIZER_METHODS:
            if getattr(kind, name) is not getattr(serializers.Serializer, name):
                return None
        if serializer.validators:
            return None
        steps = []
        for field in serializer.fields.values():
            if field.read_only:
                continue  # DRF's _writable_fields skips it
            if len(field.source_attrs) != 1:
                return None
            getter = None if type(field).get_value in _DICT_GET else field.get_value
            hook = "validate_" + field.field_name
            steps.append(
                (
                    field.field_name,
                    field.source,
                    field_check(field),
                    getter,
                    hook if callable(getattr(kind, hook, None)) else None,
                )
            )
        validate = kind.validate is not serializers.Serializer.validate
        return cls(steps, "validate" if validate else None)

    def run(self, data: dict, serializer: serializers.Serializer) -> dict:
        """Validated data of a plain dict, with `serializer`'s hooks; raises on invalid."""
        attrs: dict = {}
        for name, source, check, getter, hook in self.steps:
            value = check(data.get(name, empty) if getter is None else getter(data))
            if value is SKIP:
                continue
            if hook is not None:
                value = getattr(serializer, hook)(value)
            attrs[source] = value
        if self.validate_name is not None:
            attrs = serializer.validate(attrs)
            if attrs is None:
                raise NotPlain
        return attrs

    def run_simple(self, data: dict, serializer: serializers.Serializer) -> dict:
        """`run` for a plan without getters or `validate_<field>` hooks."""
        attrs: dict = {}
        get = data.get
        for name, source, check in self.simple_steps:
            value = check(get(name, empty))
            if value is not SKIP:
                attrs[source] = value
        if self.validate_name is not None:
            attrs = serializer.validate(attrs)
            if attrs is None:
                raise NotPlain
        return attrs

    def as_check(self, serializer: serializers.Serializer, drf: Check) -> Check:
        """A check for a nested serializer (e.g. a list's child): its hooks are its own."""
        run = self.run

        def check(value: Any) -> Any:
            if type(value) is dict:
                return run(value, serializer)
            return drf(value)

        return check


_PLANS: dict[type, SerializerPlan | None] = {}


def plan_for(serializer_class: type[serializers.Serializer]) -> SerializerPlan | None:
    """The compiled plan of a serializer class (built on first use), or None."""
    try:
        return _PLANS[serializer_class]
    except KeyError:
        pass
    plan = None
    if issubclass(serializer_class, serializers.Serializer):
        plan = SerializerPlan.compile(serializer_class())
    _PLANS[serializer_class] = plan
    return plan


def validated_data(serializer_class: type[serializers.Serializer], body: Any) -> dict | None:
    """`serializer_class(data=body).validated_data` when the body is valid, computed without
    most of DRF; None when the body is invalid or not plainly valid (ask DRF)."""
    if type(body) is not dict:
        return None
    plan = plan_for(serializer_class)
    if plan is None:
        return None
    try:
        return plan.run(body, serializer_class(data=body))
    except (serializers.ValidationError, DjangoValidationError, NotPlain):
        return None
