"""Connecting to PostgreSQL from DATABASE_URL (postgres://user:pass@host:port/dbname) with pg8000."""
import os
import ssl
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.dbapi


class ConfigError(Exception):
    pass


def connect_args(url=None):
    """pg8000.dbapi.connect() keyword arguments for a postgres:// URL (default: $DATABASE_URL)."""
    url = url if url is not None else os.environ.get("DATABASE_URL", "")
    if not url:
        raise ConfigError("DATABASE_URL is not set (attach a database: paas addons create APP postgres)")
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must start with postgres:// or postgresql://, not {u.scheme}://")
    args = {
        "user": unquote(u.username or "postgres"),
        "host": u.hostname or "localhost",
        "port": u.port or 5432,
        "database": unquote(u.path.lstrip("/")) or None,
        "timeout": 10,
    }
    if u.password is not None:
        args["password"] = unquote(u.password)
    # ?sslmode=require encrypts without checking the certificate; verify-ca/verify-full check it.
    sslmode = parse_qs(u.query).get("sslmode", ["disable"])[-1]
    if sslmode in ("require", "prefer", "allow"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        args["ssl_context"] = ctx
    elif sslmode in ("verify-ca", "verify-full"):
        args["ssl_context"] = ssl.create_default_context()
    return args


def connect():
    return pg8000.dbapi.connect(**connect_args())


def describe(e):
    """A readable message for a pg8000 error (server errors carry a dict of fields)."""
    if e.args and isinstance(e.args[0], dict):
        f = e.args[0]
        return f"{f.get('M', '')} (SQLSTATE {f.get('C', '?')})"
    return str(e)


def is_retryable(e):
    """Connection problems and "the database system is starting up" are worth retrying;
    other server errors (bad password, unknown database) are not."""
    if isinstance(e, pg8000.dbapi.DatabaseError) and e.args and isinstance(e.args[0], dict):
        return e.args[0].get("C") == "57P03"
    return True
