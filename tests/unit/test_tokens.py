import base64
import json
import time

import jwt
import pytest

from copytrade.core.settings import Settings
from copytrade.core.tokens import InvalidToken, bearer_token, issue_access_token, verify_access_token

SETTINGS = Settings(jwt_secret="unit-test-secret-that-is-at-least-32-bytes")


def _claims(**overrides):
    now = int(time.time())
    claims = {"iss": SETTINGS.jwt_issuer, "aud": SETTINGS.jwt_audience, "sub": "7", "role": "MASTER",
              "iat": now, "exp": now + 60, "jti": "j1"}
    claims.update(overrides)
    return claims


def test_issued_token_verifies_with_its_claims():
    token, principal = issue_access_token(SETTINGS, 7, "FOLLOWER")
    verified = verify_access_token(SETTINGS, token)
    assert verified == principal
    assert (verified.user_id, verified.role) == (7, "FOLLOWER")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert set(jwt.decode(token, options={"verify_signature": False})) == {"iss", "aud", "sub", "role", "iat", "exp", "jti"}


@pytest.mark.parametrize(
    ("token_factory", "reason"),
    [
        (lambda: jwt.encode(_claims(), "another-secret-that-is-at-least-32-bytes!", algorithm="HS256"), "Signature"),
        (lambda: jwt.encode(_claims(exp=int(time.time()) - 5), SETTINGS.jwt_secret, algorithm="HS256"), "expired"),
        (lambda: jwt.encode(_claims(aud="someone-else"), SETTINGS.jwt_secret, algorithm="HS256"), "audience"),
        (lambda: jwt.encode(_claims(iss="evil"), SETTINGS.jwt_secret, algorithm="HS256"), "issuer"),
        (lambda: jwt.encode(_claims(role="GOD"), SETTINGS.jwt_secret, algorithm="HS256"), "role"),
        (lambda: jwt.encode({k: v for k, v in _claims().items() if k != "jti"}, SETTINGS.jwt_secret, algorithm="HS256"), "jti"),
    ],
)
def test_bad_tokens_are_refused(token_factory, reason):
    with pytest.raises(InvalidToken) as raised:
        verify_access_token(SETTINGS, token_factory())
    assert reason.lower() in str(raised.value).lower()


def test_alg_none_is_refused():
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(_claims())}."
    with pytest.raises(InvalidToken):
        verify_access_token(SETTINGS, unsigned)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_malformed_authorization_header(header):
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive():
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"
