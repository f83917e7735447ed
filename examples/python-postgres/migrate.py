"""python-postgres release phase (Procfile `release: python migrate.py`): idempotent migrations.

Each migration runs once, in a transaction, and is recorded in schema_migrations. Running this
again does nothing. Exits non-zero when DATABASE_URL is unset or the database stays unreachable.
"""
import sys
import time

import db

MIGRATIONS = [
    (1, """CREATE TABLE IF NOT EXISTS notes (
             id serial PRIMARY KEY,
             body text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now())"""),
]
CONNECT_TIMEOUT = 20  # seconds: the database may still be starting


def connect_with_retry():
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            return db.connect()
        except Exception as e:  # connection refused, DNS not ready, database starting up...
            if not db.is_retryable(e):
                raise SystemExit(f"migrate: cannot connect to the database: {db.describe(e)}")
            if time.monotonic() >= deadline:
                raise SystemExit(f"migrate: cannot connect to the database after {CONNECT_TIMEOUT}s: {db.describe(e)}")
            print(f"migrate: database not reachable yet ({db.describe(e)}), retrying", flush=True)
            time.sleep(1)


def main():
    try:
        db.connect_args()
    except db.ConfigError as e:
        raise SystemExit(f"migrate: {e}")
    conn = connect_with_retry()
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY)")
        conn.commit()
        applied = 0
        for version, sql in MIGRATIONS:
            # Serialize concurrent runs; the lock is released at commit/rollback.
            cur.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            if cur.fetchone():
                conn.rollback()
                continue
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            conn.commit()
            print(f"migrated to {version}", flush=True)
            applied += 1
        if not applied:
            print("schema up to date", flush=True)
    except Exception as e:
        raise SystemExit(f"migrate: migration failed: {db.describe(e)}")
    finally:
        try:
            conn.close()
        except Exception:
            pass


if __name__ == "__main__":
    main()
