//! Versioned schema migrations, applied in order and recorded in `PRAGMA user_version`.
//! Append only: never edit a migration that has shipped.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: apps, config vars (sealed values), domains, formation, releases.
    r#"
    CREATE TABLE apps (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        stack       TEXT NOT NULL,
        buildpack   TEXT,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE config_vars (
        app_id  INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        key     TEXT NOT NULL,
        value   BLOB NOT NULL,
        PRIMARY KEY (app_id, key)
    );
    CREATE TABLE domains (
        domain      TEXT PRIMARY KEY,
        app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX domains_app ON domains(app_id);
    CREATE TABLE formation (
        app_id        INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        process_type  TEXT NOT NULL,
        quantity      INTEGER NOT NULL CHECK (quantity >= 0),
        PRIMARY KEY (app_id, process_type)
    );
    CREATE TABLE releases (
        id           INTEGER PRIMARY KEY,
        app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        version      INTEGER NOT NULL CHECK (version > 0),
        description  TEXT NOT NULL,
        status       TEXT NOT NULL,
        config       BLOB NOT NULL,
        config_keys  TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        UNIQUE (app_id, version)
    );
    "#,
    // 2: instance addresses on the bridge (one per instance; the ip is never handed out twice).
    r#"
    CREATE TABLE addresses (
        ip            TEXT PRIMARY KEY,
        instance      TEXT NOT NULL UNIQUE,
        allocated_at  INTEGER NOT NULL
    );
    "#,
    // 3: slugs, deployments (every deploy attempt), and what a release runs.
    r#"
    CREATE TABLE slugs (
        id          INTEGER PRIMARY KEY,
        app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        sha256      TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        removed     INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE deployments (
        id             INTEGER PRIMARY KEY,
        app_id         INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        status         TEXT NOT NULL,
        version        INTEGER,
        source_sha256  TEXT NOT NULL,
        source_bytes   INTEGER NOT NULL,
        buildpacks     TEXT NOT NULL DEFAULT '[]',
        user           TEXT NOT NULL,
        started_at     INTEGER NOT NULL,
        finished_at    INTEGER,
        phases         TEXT NOT NULL DEFAULT '[]',
        slug_id        INTEGER REFERENCES slugs(id),
        error          TEXT
    );
    CREATE INDEX deployments_app ON deployments(app_id, id);
    ALTER TABLE releases ADD COLUMN slug_id INTEGER REFERENCES slugs(id);
    ALTER TABLE releases ADD COLUMN process_types TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE releases ADD COLUMN deployment_id INTEGER REFERENCES deployments(id);
    "#,
    // 4: health checks set with `paas checks set` (over app.json's), and how each release's
    // rollout went (start, ready, switch, drain durations).
    r#"
    CREATE TABLE checks (
        app_id        INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        process_type  TEXT NOT NULL,
        spec          TEXT NOT NULL,
        PRIMARY KEY (app_id, process_type)
    );
    ALTER TABLE releases ADD COLUMN rollout TEXT NOT NULL DEFAULT '[]';
    "#,
    // 5: SSH public keys allowed to `git push` (rendered into the git user's
    // authorized_keys with a forced command).
    r#"
    CREATE TABLE ssh_keys (
        name         TEXT PRIMARY KEY,
        key_type     TEXT NOT NULL,
        blob         TEXT NOT NULL UNIQUE,
        fingerprint  TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    "#,
    // 6: app.json: each release's `formation` quantities (used for types never scaled).
    r#"
    ALTER TABLE releases ADD COLUMN formation TEXT NOT NULL DEFAULT '{}';
    "#,
    // 7: app.json `cron`: the last run of each entry (entries live in the slug's app.json;
    // a row is keyed by schedule and command, so an unchanged entry keeps its history
    // across deploys).
    r#"
    CREATE TABLE cron_runs (
        app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        schedule     TEXT NOT NULL,
        command      TEXT NOT NULL,
        release      INTEGER NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER,
        exit_code    INTEGER,
        outcome      TEXT NOT NULL,
        PRIMARY KEY (app_id, schedule, command)
    );
    "#,
    // 8: isolation. Each app's own uid, handed out by `uid_next` and never reused (a new app
    // never inherits a deleted one's leftover files or kernel objects; NULL until paasd
    // gives one to an app made before this migration), and the limits `paas resources`
    // sets per process type ('' for every type; NULL means the config default).
    r#"
    ALTER TABLE apps ADD COLUMN uid INTEGER;
    CREATE UNIQUE INDEX apps_uid ON apps(uid);
    CREATE TABLE uid_next (next_offset INTEGER NOT NULL);
    INSERT INTO uid_next (next_offset) VALUES (0);
    CREATE TABLE resources (
        app_id        INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        process_type  TEXT NOT NULL,
        memory_mb     INTEGER CHECK (memory_mb > 0),
        cpu_percent   INTEGER CHECK (cpu_percent > 0),
        pids          INTEGER CHECK (pids > 0),
        disk_mb       INTEGER CHECK (disk_mb > 0),
        PRIMARY KEY (app_id, process_type)
    );
    "#,
    // 9: the edge. A certificate per name an app serves over HTTPS (a custom one copied to
    // each name it covers, or one ACME issues; chain and key are NULL until it does; the key
    // is sealed with the config-var key), and each app's HTTPS choices (no row: redirect on,
    // HSTS off), and the ACME account per directory (its key sealed too). app_id NULL is
    // reserved for platform-wide certificates.
    r#"
    CREATE TABLE certs (
        domain      TEXT PRIMARY KEY,
        app_id      INTEGER REFERENCES apps(id) ON DELETE CASCADE,
        source      TEXT NOT NULL CHECK (source IN ('custom', 'acme')),
        chain_pem   TEXT,
        key_sealed  BLOB,
        names       TEXT NOT NULL DEFAULT '',
        issuer      TEXT,
        not_after   INTEGER,
        last_error  TEXT,
        retry_at    INTEGER,
        failures    INTEGER NOT NULL DEFAULT 0,
        renew       INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX certs_app ON certs(app_id);
    CREATE TABLE acme_accounts (
        directory_url  TEXT PRIMARY KEY,
        sealed         BLOB NOT NULL
    );
    CREATE TABLE app_https (
        app_id    INTEGER PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
        redirect  INTEGER NOT NULL,
        hsts      INTEGER NOT NULL
    );
    "#,
    // 10: add-on services (PostgreSQL, Redis): the service (its uid taken from the apps'
    // never-reused counter, its password sealed like config vars, its backup schedule) and
    // its links to apps, each with the config var it sets there. Backups are files, not rows:
    // they outlive the service. And apps' persistent volumes.
    r#"
    CREATE TABLE addons (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        kind          TEXT NOT NULL CHECK (kind IN ('postgres', 'redis')),
        version       TEXT NOT NULL,
        uid           INTEGER NOT NULL,
        password      BLOB NOT NULL,
        memory_mb     INTEGER NOT NULL,
        disk_mb       INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        backup_every  INTEGER,
        backup_keep   INTEGER
    );
    CREATE TABLE addon_links (
        addon_id    INTEGER NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
        app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        env_var     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (addon_id, app_id),
        UNIQUE (app_id, env_var)
    );
    CREATE INDEX addon_links_app ON addon_links(app_id);
    CREATE TABLE volumes (
        app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        size_mb     INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (app_id, name),
        UNIQUE (app_id, path)
    );
    "#,
];

/// The schema version this paasd migrates to.
pub fn known() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut c = Connection::open_in_memory().expect("open");
        migrate(&mut c).expect("first");
        migrate(&mut c).expect("idempotent");
        c.pragma_update(None, "user_version", 999).expect("bump");
        assert!(matches!(
            migrate(&mut c),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }
}
