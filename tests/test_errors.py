"""One root for swimmesh's errors, with each class keeping the base callers already catch."""

from __future__ import annotations

import pytest

from swimmesh import SwimmeshError
from swimmesh.agent import AgentError
from swimmesh.cli import CliError
from swimmesh.codec import DecodeError
from swimmesh.config import ConfigError
from swimmesh.crypto import KeyringError
from swimmesh.devcerts import DevCertError
from swimmesh.protocol import MetadataTooLarge
from swimmesh.runtime import JoinError, RequestError
from swimmesh.transport import TransportError


@pytest.mark.parametrize(
    "error",
    [
        AgentError,
        CliError,
        ConfigError,
        DecodeError,
        DevCertError,
        JoinError,
        KeyringError,
        MetadataTooLarge,
        RequestError,
        TransportError,
    ],
)
def test_every_swimmesh_error_has_the_one_root(error: type[Exception]) -> None:
    assert issubclass(error, SwimmeshError)


def test_value_errors_stay_value_errors() -> None:
    for error in (ConfigError, DecodeError, DevCertError, KeyringError, MetadataTooLarge):
        assert issubclass(error, ValueError)


def test_leadership_and_peerhealth_keep_their_own_roots() -> None:
    import leadership
    import peerhealth

    for package in (leadership, peerhealth):
        for value in vars(package).values():
            if isinstance(value, type) and issubclass(value, Exception):
                assert not issubclass(value, SwimmeshError)
