"""CURVE encryption and authentication for camera links; key files come from ``zmq.auth.create_certificates``.

The station's socket is always the CURVE server, whichever side binds: it holds the one secret key the
cameras must know the public half of, and it decides which camera keys are let in. Authentication runs in a
``ThreadAuthenticator`` (ZAP) on the station socket's own context.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, FilePath, field_validator, model_validator
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


def _keys(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read CURVE key file {path}: {error}") from error


class CurveServerConfig(BaseModel):
    """The station side: its own key pair and the cameras it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_secret_key_file: FilePath = Field(
        description="The station's key pair: the *.key_secret file written by zmq.auth.create_certificates."
    )
    client_public_keys_dir: DirectoryPath | None = Field(
        None, description="Folder of the accepted cameras' public *.key files; read when the source opens."
    )
    allow_any: bool = Field(False, description="Accept any camera key: encryption without authentication.")

    @field_validator("server_secret_key_file")
    @classmethod
    def _has_secret(cls, path: Path) -> Path:
        if _keys(path)[1] is None:
            raise ValueError(f"{path} holds no secret key (use the .key_secret file, not the public .key)")
        return path

    @model_validator(mode="after")
    def _one_policy(self) -> CurveServerConfig:
        if (self.client_public_keys_dir is None) == (not self.allow_any):
            raise ValueError("give exactly one of client_public_keys_dir or allow_any=true")
        return self


def serve_curve(
    context: zmq.Context[Any], socket: zmq.Socket[Any], config: CurveServerConfig
) -> ThreadAuthenticator:
    """Make ``socket`` (not yet bound or connected) a CURVE server; returns the authenticator to stop."""
    auth = ThreadAuthenticator(context, log=log)
    auth.start()
    if config.allow_any:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    else:
        keys_dir = config.client_public_keys_dir
        if not any(keys_dir.glob("*.key")):
            log.warning("no camera public keys (*.key) in %s: every camera will be refused", keys_dir)
        auth.configure_curve(domain="*", location=str(keys_dir))
    public, secret = _keys(config.server_secret_key_file)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_server = True
    return auth


def curve_client(socket: zmq.Socket[Any], client_secret_key_file: Path, server_public_key_file: Path) -> None:
    """Make a camera's ``socket`` (not yet connected) a CURVE client of the station's public key."""
    public, secret = _keys(client_secret_key_file)
    if secret is None:
        raise ValueError(f"{client_secret_key_file} holds no secret key (use the .key_secret file)")
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = _keys(server_public_key_file)[0]
