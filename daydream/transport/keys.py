"""CURVE keys for the learner/actor links: generating, loading and applying them to sockets.

Key files are the standard zmq ones (``<name>.key`` public, ``<name>.key_secret``
secret) from `zmq.auth.create_certificates`. The learner is a CURVE server that
admits only clients whose public key file is in ``allowed_clients_dir`` (checked by
a ZAP `ThreadAuthenticator` on the learner's context); each actor pins the learner's
public key as ``curve_serverkey``, so it only talks to, and only accepts policies
from, that learner.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CurveServerKeys:
    """Learner side: its own secret key file and the directory of admitted actors' public key files."""

    secret_key_file: Path
    allowed_clients_dir: Path


@dataclasses.dataclass(frozen=True)
class CurveClientKeys:
    """Actor side: its own secret key file and the learner's public key file."""

    secret_key_file: Path
    server_public_key_file: Path


LEARNER_KEY_NAME = "learner"
ALLOWED_DIR = "allowed"


def server_keys_from_dir(keys_dir: str | Path) -> CurveServerKeys:
    """The learner's keys in a `daydream keys` folder; errors say how to make missing ones."""
    keys_dir = Path(keys_dir)
    secret = keys_dir / f"{LEARNER_KEY_NAME}.key_secret"
    if not secret.is_file():
        raise FileNotFoundError(f"CURVE is on but {secret} does not exist; run `daydream keys --dir {keys_dir} "
                                "--actors <actor ids>` on the learner machine")
    return CurveServerKeys(secret, keys_dir / ALLOWED_DIR)


def client_keys_from_dir(keys_dir: str | Path, actor_id: str) -> CurveClientKeys:
    """An actor's keys in a `daydream keys` folder (its secret key and the learner's public key)."""
    keys_dir = Path(keys_dir)
    secret = keys_dir / f"{actor_id}.key_secret"
    server = keys_dir / f"{LEARNER_KEY_NAME}.key"
    for path in (secret, server):
        if not path.is_file():
            raise FileNotFoundError(f"CURVE is on but {path} does not exist; make keys with `daydream keys --dir "
                                    f"{keys_dir} --actors {actor_id}` and copy {LEARNER_KEY_NAME}.key and "
                                    f"{actor_id}.key_secret to this machine's keys folder")
    return CurveClientKeys(secret, server)


def make_key_folder(keys_dir: str | Path, actor_ids: list[str]) -> list[Path]:
    """Create the learner's keypair and one per actor (existing keys are kept); admit each actor's
    public key by copying it into ``allowed/``. Returns the files written."""
    keys_dir = Path(keys_dir)
    (keys_dir / ALLOWED_DIR).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in [LEARNER_KEY_NAME, *actor_ids]:
        public, secret = keys_dir / f"{name}.key", keys_dir / f"{name}.key_secret"
        if not secret.exists():
            written += generate_keypair(keys_dir, name)
        if name != LEARNER_KEY_NAME:
            admitted = keys_dir / ALLOWED_DIR / public.name
            if not admitted.exists():
                admitted.write_bytes(public.read_bytes())
                written.append(admitted)
    return written


def generate_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` and ``<name>.key_secret`` into `directory`; returns (public file, secret file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_public_key(path: str | Path) -> bytes:
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def load_keypair(secret_key_file: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a ``.key_secret`` file."""
    public, secret = zmq.auth.load_certificate(str(secret_key_file))
    if secret is None:
        raise ValueError(f"{secret_key_file} holds no secret key; pass the '.key_secret' file, not the public '.key'")
    return public, secret


def secure_server(context: zmq.Context, socket: zmq.Socket, keys: CurveServerKeys) -> ThreadAuthenticator:
    """Make `socket` (not yet bound) a CURVE server; returns the started authenticator (stop it on close)."""
    allowed = Path(keys.allowed_clients_dir)
    if not allowed.is_dir():
        raise FileNotFoundError(f"allowed_clients_dir {allowed} does not exist; create it and copy admitted actors' "
                                "public '.key' files into it")
    public, secret = load_keypair(keys.secret_key_file)
    auth = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
    auth.start()
    # the key directory is read once here: admitting a new actor means restarting the learner's transport
    auth.configure_curve(domain="*", location=str(allowed))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth


def secure_client(socket: zmq.Socket, keys: CurveClientKeys) -> None:
    """Make `socket` (not yet connected) a CURVE client that only accepts the configured server."""
    public, secret = load_keypair(keys.secret_key_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public_key(keys.server_public_key_file)
