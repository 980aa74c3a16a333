import pytest
from cryptography.fernet import Fernet

from services.broker_gateway.credentials_vault import CredentialsVault, StoredCredentials, VaultError, hint


def test_credentials_round_trip_and_ciphertext_hides_them():
    vault = CredentialsVault(Fernet.generate_key().decode())
    stored = StoredCredentials(app_key="APPKEY-12345", app_secret="s3cr3t-value")
    sealed = vault.seal_credentials(stored)
    assert "APPKEY" not in sealed and "s3cr3t" not in sealed
    assert vault.open_credentials(sealed) == stored
    token = vault.seal_session("session-token-xyz")
    assert "session-token" not in token
    assert vault.open_session(token) == "session-token-xyz"


def test_secrets_never_appear_in_repr():
    stored = StoredCredentials(app_key="APPKEY-12345", app_secret="s3cr3t-value")
    assert "s3cr3t" not in repr(stored) and "APPKEY-1" not in repr(stored)
    assert hint("APPKEY-12345") == "…2345"


def test_another_key_cannot_open_and_says_so():
    sealed = CredentialsVault(Fernet.generate_key().decode()).seal_session("t")
    with pytest.raises(VaultError, match="CREDENTIALS_KEY"):
        CredentialsVault(Fernet.generate_key().decode()).open_session(sealed)
