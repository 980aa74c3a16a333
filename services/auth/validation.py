"""Registration input rules. Each failure names the field, so a client knows what to fix."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from copytrade.core.errors import InvalidArgument

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9]{0,32}$")
REGISTRABLE_ROLES = ("MASTER", "FOLLOWER")
PASSWORD_MIN_CHARS = 8
# bcrypt ignores everything past 72 bytes; a longer password would be silently truncated.
PASSWORD_MAX_BYTES = 72


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str
    username: str
    password: str
    full_name: str
    role: str
    iifl_account_id: str


def _required(field: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument("is required", field=field)
    return value


def check_email(value: str) -> str:
    _required("email", value)
    if len(value) > 254:
        raise InvalidArgument("must be at most 254 characters", field="email")
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidArgument(f"not a valid email address ({exc})", field="email") from None


def check_username(value: str) -> str:
    _required("username", value)
    if not USERNAME.fullmatch(value):
        raise InvalidArgument("must be 3 to 32 letters, digits, '_', '.' or '-'", field="username")
    return value


def check_password(value: str) -> str:
    _required("password", value)
    if len(value) < PASSWORD_MIN_CHARS:
        raise InvalidArgument(f"must be at least {PASSWORD_MIN_CHARS} characters", field="password")
    if "\x00" in value:
        # Some bcrypt implementations stop at a NUL, which would make everything after it optional.
        raise InvalidArgument("must not contain NUL characters", field="password")
    if len(value.encode()) > PASSWORD_MAX_BYTES:
        raise InvalidArgument(f"must be at most {PASSWORD_MAX_BYTES} bytes", field="password")
    if not (any(c.isalpha() for c in value) and any(c.isdigit() for c in value)):
        raise InvalidArgument("must contain at least one letter and one digit", field="password")
    return value


def check_full_name(value: str) -> str:
    value = value.strip()
    if len(value) > 100:
        raise InvalidArgument("must be at most 100 characters", field="full_name")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value):
        raise InvalidArgument("must not contain control characters", field="full_name")
    return value


def check_role(value: str) -> str:
    role = value.strip().upper() or "FOLLOWER"
    if role == "ADMIN":
        raise InvalidArgument("cannot register as ADMIN; use MASTER or FOLLOWER", field="role")
    if role not in REGISTRABLE_ROLES:
        raise InvalidArgument(f"must be MASTER or FOLLOWER, not {value!r}", field="role")
    return role


def check_account_id(value: str) -> str:
    value = value.strip()
    if not ACCOUNT_ID.fullmatch(value):
        raise InvalidArgument("must be at most 32 letters and digits", field="iifl_account_id")
    return value.upper()


def new_user(
    *, email: str, username: str, password: str, full_name: str, role: str, iifl_account_id: str
) -> NewUser:
    return NewUser(
        email=check_email(email),
        username=check_username(username),
        password=check_password(password),
        full_name=check_full_name(full_name),
        role=check_role(role),
        iifl_account_id=check_account_id(iifl_account_id),
    )
