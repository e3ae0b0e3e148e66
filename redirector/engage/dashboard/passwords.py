"""Password hashes for dashboard users, in Werkzeug's text format, with the stdlib only.

``scrypt:N:r:p$salt$hex`` (the default) and ``pbkdf2:sha256:iterations$salt$hex``: a hash
made by Werkzeug 3's ``generate_password_hash`` verifies here and the other way round,
but neither side needs Werkzeug (Debian 12's 2.2 knows no scrypt). Verification is
constant-time in the digest comparison.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

SALT_CHARS = string.ascii_letters + string.digits
SCRYPT_DEFAULT = (2 ** 15, 8, 1)  # Werkzeug 3's
PBKDF2_DEFAULT_ITERATIONS = 1_000_000
SHAPE = re.compile(r"(scrypt(?::\d+:\d+:\d+)?|pbkdf2:[a-z0-9_]+(?::\d+)?)\$([!-#%-~]+)\$([0-9a-f]+)")


@dataclass(frozen=True)
class Hash:
    method: str  # "scrypt" or "pbkdf2"
    params: tuple[int, ...]  # (N, r, p) or (iterations,)
    digest_name: str  # pbkdf2's hash function
    salt: str
    hexdigest: str


def parse_hash(text: str) -> Hash:
    """The parts of a stored hash; ValueError saying what is wrong."""
    match = SHAPE.fullmatch(text.strip())
    if not match:
        raise ValueError("not a password hash (expected scrypt:N:r:p$salt$hex or "
                         "pbkdf2:sha256:iterations$salt$hex, from `engage dashboard-user`)")
    method, salt, hexdigest = match.groups()
    fields = method.split(":")
    if fields[0] == "scrypt":
        params = tuple(int(x) for x in fields[1:]) or SCRYPT_DEFAULT
        n, r, p = params
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or n * r > 2 ** 24:
            raise ValueError("scrypt parameters out of range")
        return Hash("scrypt", params, "", salt, hexdigest)
    if fields[1] not in hashlib.algorithms_guaranteed:
        raise ValueError(f"unknown pbkdf2 hash function {fields[1]!r}")
    iterations = int(fields[2]) if len(fields) > 2 else PBKDF2_DEFAULT_ITERATIONS
    if not 1 <= iterations <= 100_000_000:
        raise ValueError("pbkdf2 iterations out of range")
    return Hash("pbkdf2", (iterations,), fields[1], salt, hexdigest)


def _derive(stored: Hash, password: str) -> str:
    secret, salt = password.encode(), stored.salt.encode()
    if stored.method == "scrypt":
        n, r, p = stored.params
        return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    return hashlib.pbkdf2_hmac(stored.digest_name, secret, salt, stored.params[0]).hex()


def verify(stored: Hash, password: str) -> bool:
    return hmac.compare_digest(_derive(stored, password), stored.hexdigest)


def make_hash(password: str, method: str = "scrypt") -> str:
    """A new salted hash of ``password`` in the text form ``[dashboard] users`` takes."""
    salt = "".join(secrets.choice(SALT_CHARS) for _ in range(16))
    if method == "scrypt":
        head, stored = "scrypt:%d:%d:%d" % SCRYPT_DEFAULT, Hash("scrypt", SCRYPT_DEFAULT, "", salt, "")
    else:
        iterations = (PBKDF2_DEFAULT_ITERATIONS,)
        head, stored = f"pbkdf2:sha256:{iterations[0]}", Hash("pbkdf2", iterations, "sha256", salt, "")
    return f"{head}${salt}${_derive(stored, password)}"
