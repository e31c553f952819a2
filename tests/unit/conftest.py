"""Fixtures of the unit tests."""

import os

import pytest
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import AesWrappingAlg, CreateRawAesKeyringInput


@pytest.fixture(scope="session")
def raw_keyring():
    """A raw AES keyring: ESDK messages without AWS (the wrapping key lives only in this process)."""
    providers = AwsCryptographicMaterialProviders(MaterialProvidersConfig())
    return providers.create_raw_aes_keyring(
        CreateRawAesKeyringInput(key_namespace="test", key_name="k", wrapping_key=os.urandom(32),
                                 wrapping_alg=AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16)
    )
