"""Field encryption at rest: ciphertext in the column, round trip, rotation, wrong key -> clear error."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from apps.audit.services import Actor
from apps.core import crypto
from apps.core.tenancy import firm_scope
from apps.marketdata.models import AlpacaConnection
from apps.marketdata.provider_services import alpaca_connection_set

SECRET = "s3cr3t-Alpaca-KEY-0123456789abcdefWXYZ"
KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()


def test_round_trip_and_fresh_ciphertext_each_time():
    first, second = crypto.encrypt(SECRET), crypto.encrypt(SECRET)
    assert first != second  # random IV: equal secrets are not recognisable in the table
    assert SECRET not in first
    assert crypto.decrypt(first) == crypto.decrypt(second) == SECRET


def test_development_key_is_derived_from_secret_key_not_equal_to_it(settings):
    settings.OCTOPUS_FIELD_KEYS = []
    token = crypto.encrypt(SECRET)
    assert Fernet(crypto.derived_key(settings.SECRET_KEY)).decrypt(token.encode()).decode() == SECRET
    with override_settings(SECRET_KEY="another-secret-key-" + "x" * 40):
        with pytest.raises(crypto.FieldDecryptError):
            crypto.decrypt(token)


def test_rotation_with_two_keys():
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_OLD]):
        old_token = crypto.encrypt(SECRET)
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW, KEY_OLD]):
        assert crypto.decrypt(old_token) == SECRET  # every listed key decrypts
        new_token = crypto.rotate(old_token)
        assert crypto.decrypt(new_token) == SECRET
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW]):  # old key dropped after rotating
        assert crypto.decrypt(new_token) == SECRET
        with pytest.raises(crypto.FieldDecryptError):
            crypto.decrypt(old_token)


def test_first_key_encrypts():
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW, KEY_OLD]):
        token = crypto.encrypt(SECRET)
    assert Fernet(KEY_NEW.encode()).decrypt(token.encode()).decode() == SECRET


def test_wrong_key_is_a_clear_error():
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_OLD]):
        token = crypto.encrypt(SECRET)
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW]):
        with pytest.raises(crypto.FieldDecryptError) as caught:
            crypto.decrypt(token)
    assert caught.value.message == crypto.MSG_UNDECRYPTABLE
    with pytest.raises(crypto.FieldDecryptError):
        crypto.decrypt("not a token at all")


def test_malformed_key_names_its_position():
    with pytest.raises(ImproperlyConfigured, match=r"OCTOPUS_FIELD_KEYS entry 2 is not a Fernet key"):
        crypto.parse_keys([KEY_OLD, "too-short"])


def test_mask_shows_at_most_last_four():
    assert crypto.hint(SECRET) == "WXYZ"
    assert crypto.hint("short") == ""  # a short secret keeps all of it hidden
    assert crypto.masked("WXYZ") == "\u2022" * 8 + "WXYZ"


@pytest.mark.django_db
def test_the_database_column_holds_ciphertext_not_the_secret(firm_a):
    owner = firm_a.member("owner")
    with firm_scope(firm_a.firm.pk):
        conn = alpaca_connection_set(firm_id=firm_a.firm.pk, key_id="AKTEST123", secret=SECRET,
                                     actor=Actor.for_user(owner.user))
    with connection.cursor() as cur:
        cur.execute("SELECT key_id, secret_encrypted, secret_hint FROM marketdata_alpacaconnection WHERE id = %s",
                    [conn.pk])
        key_id, stored, hint = cur.fetchone()
        cur.execute("SELECT count(*) FROM marketdata_alpacaconnection WHERE secret_encrypted LIKE %s",
                    [f"%{SECRET[:-4]}%"])
        assert cur.fetchone()[0] == 0
    assert key_id == "AKTEST123"
    assert stored != SECRET and SECRET[:-4] not in stored
    assert hint == "WXYZ"
    assert crypto.decrypt(stored) == SECRET
    with firm_scope(firm_a.firm.pk):
        assert AlpacaConnection.objects.get(pk=conn.pk).secret_encrypted == stored


@pytest.mark.django_db
def test_field_keys_rotate_command_reencrypts_under_the_first_key(firm_a, firm_b):
    from django.core.management import call_command

    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_OLD]):
        for world in (firm_a, firm_b):
            with firm_scope(world.firm.pk):
                alpaca_connection_set(firm_id=world.firm.pk, key_id="AK", secret=SECRET,
                                      actor=Actor.for_user(world.member("owner").user))
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW, KEY_OLD]):
        call_command("field_keys_rotate")
    with override_settings(OCTOPUS_FIELD_KEYS=[KEY_NEW]):
        with connection.cursor() as cur:
            cur.execute("SELECT secret_encrypted FROM marketdata_alpacaconnection")
            assert [crypto.decrypt(row[0]) for row in cur.fetchall()] == [SECRET, SECRET]
