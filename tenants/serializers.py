"""Validation of tenantSync, applicationSync and authSync bodies (spec §4.1.1–§4.1.3, §4.3).

Serializers only validate and normalise; they never save (STYLE.md §2). Any violation becomes
`000002` with a message naming the field (the pipeline builds it from the errors).

Where the spec says M but a value may legitimately be empty (`orderId` of the seller's
credential, descriptive fields such as `name` in debug calls), the field must be present and a
string, and may be blank; business keys (`tenantId`, `appId`, `userName`) may not be blank.
"""

from functools import cached_property
from itertools import chain, compress, repeat
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from koogallery.inbound import fastvalidate
from koogallery.inbound.serializers import (
    KgChoiceInteger,
    KgString,
    KitSerializer,
    LenientListField,
    LenientObjectField,
    call_time,
)
from koogallery.protocol.jsonbody import has_nul

from .models import Role, SyncFlag

TENANT_FLAGS = (SyncFlag.DELETE, SyncFlag.ADD, SyncFlag.MODIFY)
V1_TENANT_FLAGS = (SyncFlag.DELETE, SyncFlag.ADD)  # §4.3: V1 has no "modify"
AUTH_FLAGS = (SyncFlag.DELETE, SyncFlag.ADD, SyncFlag.MODIFY, SyncFlag.CANCEL)
V1_AUTH_FLAGS = (SyncFlag.DELETE, SyncFlag.ADD, SyncFlag.MODIFY)  # §4.3: no "cancel" in V1
EMPLOYEE_TYPES = (1, 2, 3, 4)  # regular, intern, dispatched, outsourced (§4.1.3)


def optional_string(max_length: int | None, **kwargs) -> KgString:
    """An O String(n): absent, null and "" all mean "not given"."""
    return KgString(max_length, required=False, allow_null=True, **kwargs)


# --- tenantSync (§4.1.1) -----------------------------------------------------------------------


class TenantSyncSerializer(KitSerializer):
    orderId = KgString(64, allow_blank=True)
    tenantId = KgString(64)
    tenantCode = KgString(64, allow_blank=True)
    name = KgString(255, allow_blank=True)
    domainName = KgString(255, allow_blank=True)
    flag = KgChoiceInteger(choices=TENANT_FLAGS)


class TenantSyncV1Serializer(TenantSyncSerializer):
    flag = KgChoiceInteger(choices=V1_TENANT_FLAGS)


# --- applicationSync (§4.1.2) ------------------------------------------------------------------


class ApplicationSyncSerializer(KitSerializer):
    tenantId = KgString(64)
    appId = KgString(64)
    clientId = KgString(64, allow_blank=True)
    # RSA-OAEP ciphertext in base64 (§3.6); no length in the spec and never stored as sent.
    clientSecret = KgString(None, allow_blank=True)
    flag = KgChoiceInteger(choices=TENANT_FLAGS)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        # A delete needs no secret; an add or modify without one could never sign anybody in.
        if attrs["flag"] != SyncFlag.DELETE and not attrs["clientSecret"]:
            raise serializers.ValidationError({"clientSecret": "may not be blank"})
        return attrs


class ApplicationSyncV1Serializer(ApplicationSyncSerializer):
    flag = KgChoiceInteger(choices=V1_TENANT_FLAGS)


# --- authSync (§4.1.3) -------------------------------------------------------------------------


class EmployeeTypeField(KgChoiceInteger):
    """O Integer 1–4, possibly a decimal string (Huawei's example sends "4"); "" = not given."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(choices=EMPLOYEE_TYPES, **kwargs)

    def validate_empty_values(self, data: Any):
        if data == "":
            return True, None
        return super().validate_empty_values(data)


class EnableField(serializers.Field):
    """`enable`: "true"/"false" (String(8)) or a JSON boolean (§2.6); false blocks sign-in."""

    default_error_messages = {"invalid": 'must be "true" or "false"'}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data.lower() in ("true", "false"):
            return data.lower() == "true"
        self.fail("invalid")

    def to_representation(self, value: bool) -> str:
        return "true" if value else "false"


class RoleField(KgString):
    """`role` String(32): `admin` makes a tenant administrator, anything else a user (§2.6).

    Only the exact value `admin` grants administration: a near miss is not worth the risk.
    """

    def __init__(self, **kwargs):
        super().__init__(32, allow_blank=True, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Role:
        # Mapped after the length check, which runs on the value as sent.
        return self.role_of(super().run_validation(data))

    @staticmethod
    def role_of(value: str) -> Role:
        return _ROLES.get(value, Role.USER)


_ROLES = {Role.ADMIN.value: Role.ADMIN}  # by the exact text; anything else is Role.USER


class ExtensionField(LenientObjectField):
    """`extension` O Object (an object, or a string holding one); absent/null/"" → {}."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data: Any):
        if data == "":
            return True, None
        return super().validate_empty_values(data)


# Fields that may sit at the top level of a user or inside its `extension` (§2.6); the same rules
# apply wherever they are found, since both end up in the same column.
EXTENSION_FALLBACKS = {
    "entryDate": ("entry_date", lambda: optional_string(32)),
    "employeeType": ("employee_type", EmployeeTypeField),
    "workPlace": ("work_place", lambda: optional_string(255)),
}


# Optional text columns stored as "" when not given.
BLANK_WHEN_ABSENT = ("position", "employee_code", "mobile", "email", "work_place", "entry_date")


class UserSerializer(serializers.Serializer):
    """One item of `userList`; validated data uses the TenantUser field names."""

    userName = KgString(64, source="user_name")
    name = KgString(64, allow_blank=True)
    orgCode = KgString(64, allow_blank=True, source="org_code")
    position = optional_string(64)
    employeeCode = optional_string(64, source="employee_code")
    employeeType = EmployeeTypeField(source="employee_type")
    role = RoleField()
    enable = EnableField(source="enabled")
    mobile = optional_string(32)
    email = optional_string(128)
    # No length in the spec: the column's size bounds them (a longer value is 000002, §2.3).
    workPlace = optional_string(255, source="work_place")
    entryDate = optional_string(32, source="entry_date")
    extension = ExtensionField()

    @cached_property
    def extension_fields(self) -> dict[str, tuple[str, fastvalidate.Check]]:
        """The fallback fields' checks (`run_validation`, faster for plainly valid values),
        built once per serializer (one serializer checks every user)."""
        fields = {}
        for wire_name, (column, make_field) in EXTENSION_FALLBACKS.items():
            field = make_field()
            field.bind(wire_name, self)
            fields[wire_name] = (column, fastvalidate.field_check(field))
        return fields

    def validate(self, attrs: dict) -> dict:
        extension = attrs.get("extension") or {}
        attrs["extension"] = extension
        if extension:
            errors = {}
            for wire_name, (column, check) in self.extension_fields.items():
                if wire_name not in extension or attrs.get(column) not in (None, ""):
                    continue
                try:
                    attrs[column] = check(extension[wire_name])
                except serializers.ValidationError as exc:
                    errors[wire_name] = exc.detail
            if errors:
                raise serializers.ValidationError({"extension": errors})
        for column in BLANK_WHEN_ABSENT:
            if attrs.get(column) is None:
                attrs[column] = ""
        if "employee_type" not in attrs:
            attrs["employee_type"] = None
        return attrs


class UserListField(LenientListField):
    """`userList`: a LenientListField of users, validated (and refused) by DRF as any other; its
    fast check (`_user_list_check`) takes a list of plainly valid users column by column."""


class AuthSyncSerializer(KitSerializer):
    tenantId = KgString(64)
    appId = KgString(64)
    # A JSON array, or (V1, and sometimes V2) a string holding one (§2.6, §4.3); no 500 cap.
    userList = UserListField(child=UserSerializer())
    currentSyncTime = KgString(32)
    flag = KgChoiceInteger(choices=AUTH_FLAGS)

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        # An authorisation is ordered by `currentSyncTime`, else the call's `timeStamp` (§2.3).
        if attrs.get("currentSyncTime"):
            attrs["call_time"] = call_time(attrs, "currentSyncTime")
        return attrs


class AuthSyncV1Serializer(AuthSyncSerializer):
    flag = KgChoiceInteger(choices=V1_AUTH_FLAGS)


# --- fast validation (koogallery/inbound/fastvalidate.py) of this module's field types ------------
# Each check answers as the field's run_validation for the values it recognises and asks the
# field itself for every other one.


@fastvalidate.compiler(EmployeeTypeField)
def _employee_type_check(field: EmployeeTypeField, drf: fastvalidate.Check):
    table = fastvalidate.choice_table(field)
    if table is None or field.required or not field.allow_null or field.default is not empty:
        return None

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is int or kind is str:
            found = table.get(value)
            if found is not None:
                return found
            if value == "":
                return None
        elif value is None:
            return None
        elif value is empty:
            return fastvalidate.SKIP
        return drf(value)

    return check


@fastvalidate.compiler(EnableField)
def _enable_check(field: EnableField, drf: fastvalidate.Check):
    if field.validators:
        return None

    def check(value: Any) -> Any:
        if value is True or value is False:
            return value
        if type(value) is str:
            text = value.lower()
            if text == "true":
                return True
            if text == "false":
                return False
        return drf(value)

    return check


@fastvalidate.compiler(RoleField)
def _role_check(field: RoleField, drf: fastvalidate.Check):
    limit = fastvalidate.string_limit(field)
    if limit is None or field.trim_whitespace or not field.allow_blank:
        return None
    role_of, user, clean_text = _ROLES.get, Role.USER, fastvalidate.clean_text

    def check(value: Any) -> Any:
        if type(value) is str and len(value) <= limit and clean_text(value):
            return role_of(value, user)  # RoleField.role_of, inlined
        return drf(value)

    return check


@fastvalidate.compiler(ExtensionField)
def _extension_check(field: ExtensionField, drf: fastvalidate.Check):
    return fastvalidate.lenient_object_check(field, drf, blank_is_null=True)


# --- userList column by column (issue 17) -------------------------------------------------------
# An authSync of 5,000 users is 65,000 fields: a check per field is ~40 ms, a pass per column
# with built-in loops (map, set, max, one join for the NUL and surrogate scan) a fraction of
# that. Like orgsync's validate_org_items, the columns only ever accept: a list they do not
# find plainly valid, in any way, goes item by item through UserSerializer's compiled checks
# and DRF, which alone describe a refusal, so its message cannot depend on the path.
# tests/tenants/test_user_columns.py holds the two paths to the same answers.


class NotPlain(Exception):
    """A column holds a value the columns do not take (it may still be valid)."""


_NONE = type(None)
_ABSENT = object()
_ENABLED = {"true": True, "false": False, True: True, False: False}
# The user fields, by wire name, in the order of a record's keys; each record holds them all.
_USER_KEYS = (
    ("userName", "user_name"),
    ("name", "name"),
    ("orgCode", "org_code"),
    ("position", "position"),
    ("employeeCode", "employee_code"),
    ("employeeType", "employee_type"),
    ("role", "role"),
    ("enable", "enabled"),
    ("mobile", "mobile"),
    ("email", "email"),
    ("workPlace", "work_place"),
    ("entryDate", "entry_date"),
    ("extension", "extension"),
)
_USER_CLASSES = {
    "userName": KgString,
    "name": KgString,
    "orgCode": KgString,
    "position": KgString,
    "employeeCode": KgString,
    "employeeType": EmployeeTypeField,
    "role": RoleField,
    "enable": EnableField,
    "mobile": KgString,
    "email": KgString,
    "workPlace": KgString,
    "entryDate": KgString,
    "extension": ExtensionField,
}


class TextColumn:
    """A KgString's column: strings within the limit (blank if allowed), null where allowed
    (an absent field reads as null: both end as "" in UserSerializer.validate)."""

    def __init__(self, field: KgString):
        limit = fastvalidate.string_limit(field)
        if limit is None or field.trim_whitespace or field.default is not empty:
            raise NotPlain
        self.limit, self.blank = limit, field.allow_blank
        self.kinds = {str, _NONE} if field.allow_null and not field.required else {str}

    def strings(self, values: list) -> list[str]:
        """The column's strings, for the caller's NUL and surrogate scan; raises NotPlain."""
        kinds = set(map(type, values))
        if not kinds <= self.kinds:
            raise NotPlain
        strings = values
        if _NONE in kinds:
            strings = [value for value in values if value is not None] if len(kinds) > 1 else []
        if strings and (max(map(len, strings)) > self.limit or (not self.blank and "" in strings)):
            raise NotPlain
        return strings


class UserColumns:
    """UserSerializer's validation of a whole list, column by column; built from the bound
    serializer's own fields, and not at all (`compile` None) if they are not the ones this
    was written for."""

    def __init__(self, serializer: UserSerializer):
        fields = {name: field for name, field in serializer.fields.items() if not field.read_only}
        if (
            type(serializer) is not UserSerializer
            or {name: type(field) for name, field in fields.items()} != _USER_CLASSES
        ):
            raise NotPlain
        if [(name, field.source) for name, field in fields.items()] != list(_USER_KEYS):
            raise NotPlain
        self.texts = {
            name: TextColumn(field) for name, field in fields.items() if type(field) is KgString
        }
        self.role = TextColumn(fields["role"])
        if fields["enable"].validators:
            raise NotPlain
        employee_type = fields["employeeType"]
        table = fastvalidate.choice_table(employee_type)
        if table is None or employee_type.required or not employee_type.allow_null:
            raise NotPlain
        self.employee_types = {**table, None: None, "": None}
        extension = fields["extension"]
        if (
            not fastvalidate.unvalidated_values(extension)
            or extension.required
            or not extension.allow_null
            or not extension.allow_empty
        ):
            raise NotPlain
        # The fallbacks' own fields (EXTENSION_FALLBACKS makes them), for their limits.
        self.fallback_texts = {}
        for wire_name, (column, make_field) in EXTENSION_FALLBACKS.items():
            field = make_field()
            field.bind(wire_name, serializer)
            if type(field) is KgString:
                self.fallback_texts[column] = TextColumn(field)
            elif (
                type(field) is not EmployeeTypeField
                or field.required
                or not field.allow_null
                or fastvalidate.choice_table(field) != table
            ):
                raise NotPlain

    @classmethod
    def compile(cls, serializer: serializers.Serializer) -> "UserColumns | None":
        try:
            return cls(serializer)
        except NotPlain:
            return None

    def __call__(self, items: list) -> list[dict] | None:
        """The validated users, as UserSerializer makes them, or None (ask item by item)."""
        if not items or set(map(type, items)) != {dict}:
            return None
        try:
            return self.validated(items)
        except NotPlain:
            return None

    def validated(self, items: list) -> list[dict]:
        get = dict.get

        def column(name: str) -> list:
            return list(map(get, items, repeat(name)))

        texts: list[str] = []  # every accepted string of a string field: NUL, surrogates
        values = {}
        for name, check in self.texts.items():
            values[name] = column(name)
            texts += check.strings(values[name])
        roles = column("role")
        texts += self.role.strings(roles)
        values["role"] = list(map(_ROLES.get, roles, repeat(Role.USER)))
        values["enable"] = self.enabled(column("enable"))
        employee_types = column("employeeType")
        if not set(map(type, employee_types)) <= {int, str, _NONE}:
            raise NotPlain  # (bool and float would find 1 in the table)
        values["employeeType"] = self.employee_type(employee_types)
        extensions = values["extension"] = self.extensions(column("extension"))
        self.fall_back(values, extensions, texts)
        if not fastvalidate.clean_text("".join(texts)):
            raise NotPlain
        for name in ("position", "employeeCode", "mobile", "email", "workPlace", "entryDate"):
            if None in values[name]:  # BLANK_WHEN_ABSENT
                values[name] = ["" if value is None else value for value in values[name]]
        keys = [source for _, source in _USER_KEYS]
        return list(
            map(dict, map(zip, repeat(keys), zip(*(values[n] for n, _ in _USER_KEYS), strict=True)))
        )

    @staticmethod
    def enabled(values: list) -> list[bool]:
        """EnableField: booleans, or "true"/"false" in any case."""
        if not set(map(type, values)) <= {bool, str}:
            raise NotPlain
        if not set(values) <= _ENABLED.keys():
            values = [value.lower() if type(value) is str else value for value in values]
            if not set(values) <= _ENABLED.keys():
                raise NotPlain
        return list(map(_ENABLED.__getitem__, values))

    def employee_type(self, values: list) -> list:
        missing = object()
        found = list(map(self.employee_types.get, values, repeat(missing)))
        if missing in found:
            raise NotPlain
        return found

    @staticmethod
    def extensions(values: list) -> list[dict]:
        """ExtensionField, then UserSerializer.validate's `or {}`: objects with string keys and
        no NUL anywhere, copied; null, absent and "" are {}."""
        kinds = set(map(type, values))
        if not kinds <= {dict, _NONE, str}:
            raise NotPlain
        if kinds != {dict}:
            if str in kinds and set(value for value in values if type(value) is str) != {""}:
                raise NotPlain  # a string holding an object: item by item
            values = [value if type(value) is dict else {} for value in values]
        keys = list(chain.from_iterable(values))
        if not set(map(type, keys)) <= {str}:
            raise NotPlain
        items = list(chain.from_iterable(map(dict.values, values)))
        if set(map(type, items)) <= {str}:
            keys += items
        elif any(map(has_nul, values)):
            raise NotPlain
        if "\x00" in "".join(keys):
            raise NotPlain
        return list(map(dict, values))

    def fall_back(self, values: dict, extensions: list[dict], texts: list[str]) -> None:
        """UserSerializer.validate's fallbacks: a field absent, null or "" at the top level is
        taken from `extension` when it is there, checked as the field itself."""
        for wire_name, (column, _) in EXTENSION_FALLBACKS.items():
            top = values[wire_name]
            inside = list(map(dict.get, extensions, repeat(wire_name), repeat(_ABSENT)))
            if _ABSENT not in inside and set(top) <= {None, ""}:
                taken = [True] * len(top)  # (the usual case, without a loop)
            else:
                taken = [
                    (value is not _ABSENT and (given is None or given == ""))
                    for value, given in zip(inside, top, strict=True)
                ]
            if True not in taken:
                continue
            found = list(compress(inside, taken))
            if column == "employee_type":
                if not set(map(type, found)) <= {int, str, _NONE}:
                    raise NotPlain
                found = self.employee_type(found)
            else:
                texts += self.fallback_texts[column].strings(found)
            if False not in taken:  # Huawei's shape: the field only in every extension
                values[wire_name] = found
                continue
            checked = iter(found)
            values[wire_name] = [
                next(checked) if take else given for take, given in zip(taken, top, strict=True)
            ]


@fastvalidate.compiler(UserListField)
def _user_list_check(field: UserListField, drf: fastvalidate.Check):
    return fastvalidate.lenient_list_check(field, drf, columns=UserColumns.compile(field.child))
