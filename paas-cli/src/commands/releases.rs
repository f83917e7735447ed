//! `paas releases ...`: an app's release history (`/apps/{app}/releases`, one release at
//! `/apps/{app}/releases/{version}`) and the deploys still building or failed without a release
//! (`/apps/{app}/deploy`). Read-only; must not create or roll back releases.

use std::cmp::Ordering;

use anyhow::Result;
use paas_api::{ClientError, Deployment, DeploymentStatus, Release};

use super::{app_path, typed, Ctx};
use crate::args::parse_version;
use crate::cli::ReleaseInfoArgs;
use crate::output;

const COLUMNS: [&str; 8] = [
    "VERSION",
    "STATUS",
    "SOURCE",
    "BUILDPACK",
    "BY",
    "CREATED",
    "DURATION",
    "DESCRIPTION",
];

/// `GET /apps/{app}/releases`, shown in the daemon's order (newest first), below the deploys
/// that have not (yet) made a release since the newest one. `--json` prints the releases as
/// the daemon sent them.
pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/releases")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let releases: Vec<Release> = typed(value)?;
    let deployments = match ctx
        .client
        .get::<Vec<Deployment>>(&app_path(name, "/deploy")?)
        .await
    {
        Ok(d) => d,
        // A paasd without deploys has nothing to add.
        Err(ClientError::Api { code, .. }) if code == "not_found" => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let pending = unreleased(&deployments, releases.first());
    if releases.is_empty() && pending.is_empty() {
        output::status("no releases");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = pending
        .into_iter()
        .map(deployment_row)
        .chain(releases.iter().map(release_row))
        .collect();
    output::out(&output::table(&COLUMNS, &rows))
}

/// `GET /apps/{app}/releases/{version}`.
pub async fn info(ctx: &Ctx, args: ReleaseInfoArgs) -> Result<()> {
    let version = parse_version(&args.release)?;
    let value = ctx
        .get(&app_path(&args.name, &format!("/releases/{version}"))?)
        .await?;
    if ctx.json {
        return output::json(&value);
    }
    let release: Release = typed(value)?;
    output::out(&output::key_values(&info_pairs(&release)))
}

/// Deploys without a release that the list should show on top: every one still building,
/// and failed ones that started after (or in the same second as) the newest release.
fn unreleased<'a>(deployments: &'a [Deployment], newest: Option<&Release>) -> Vec<&'a Deployment> {
    deployments
        .iter()
        .filter(|d| d.version.is_none())
        .filter(|d| match d.status {
            DeploymentStatus::Building => true,
            DeploymentStatus::Failed => match newest {
                // Timestamps have whole seconds: a tie counts as newer.
                Some(r) => later(&d.started_at, &r.created_at) != Ordering::Less,
                None => true,
            },
            DeploymentStatus::Succeeded => false,
        })
        .collect()
}

/// Compares two RFC 3339 timestamps; as text when one cannot be read (UTC text sorts in time
/// order as long as both use the same format).
fn later(a: &str, b: &str) -> Ordering {
    match (humantime::parse_rfc3339(a), humantime::parse_rfc3339(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

fn total_ms(d: &Deployment) -> u64 {
    d.phases.iter().map(|p| p.ms).sum()
}

fn buildpacks(d: &Deployment) -> String {
    if d.buildpacks.is_empty() {
        "-".to_owned()
    } else {
        d.buildpacks.join(",")
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// A release's row. SOURCE and BUILDPACK describe its slug, so a config change shows those of
/// the deploy it kept; BY and DURATION only belong to the release that deploy made.
fn release_row(r: &Release) -> Vec<String> {
    let slug = r.deployment.as_ref();
    let own = slug.filter(|d| d.version == Some(r.version));
    vec![
        format!("v{}", r.version),
        r.status.to_string(),
        output::short_sha(slug.map(|d| d.source_sha256.as_str())),
        slug.map_or_else(|| "-".to_owned(), buildpacks),
        own.map_or_else(|| "-".to_owned(), |d| or_dash(&d.user)),
        output::ago(&r.created_at),
        own.map_or_else(|| "-".to_owned(), |d| output::duration_ms(total_ms(d))),
        r.description.clone(),
    ]
}

fn deployment_row(d: &Deployment) -> Vec<String> {
    let (duration, description) = match d.status {
        DeploymentStatus::Building => ("-".to_owned(), format!("Deploy #{} building", d.id)),
        _ => (
            output::duration_ms(total_ms(d)),
            match d.error.as_deref().and_then(|e| e.lines().next()) {
                Some(why) => format!("Deploy #{} failed: {why}", d.id),
                None => format!("Deploy #{} failed", d.id),
            },
        ),
    };
    vec![
        "-".to_owned(),
        d.status.to_string(),
        output::short_sha(Some(&d.source_sha256)),
        buildpacks(d),
        or_dash(&d.user),
        output::ago(&d.started_at),
        duration,
        description,
    ]
}

fn info_pairs(r: &Release) -> Vec<(&'static str, String)> {
    let none = |s: String| if s.is_empty() { "none".to_owned() } else { s };
    let mut pairs = vec![
        ("version", format!("v{}", r.version)),
        ("status", r.status.to_string()),
        ("description", r.description.clone()),
        (
            "created",
            format!("{} ({})", r.created_at, output::ago(&r.created_at)),
        ),
        ("config keys", none(r.config_keys.join(", "))),
        (
            "process types",
            none(
                r.process_types
                    .iter()
                    .map(|(kind, command)| format!("{kind}: {command}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ),
    ];
    if !r.rollout.is_empty() {
        pairs.push(("rollout", timings(&r.rollout)));
    }
    let Some(d) = &r.deployment else {
        pairs.push(("deployment", "none (no source deployed yet)".to_owned()));
        return pairs;
    };
    let made = match d.version {
        Some(v) if v == r.version => String::new(),
        Some(v) => format!(", slug of v{v}"),
        None => String::new(),
    };
    pairs.push(("deployment", format!("#{} ({}{made})", d.id, d.status)));
    pairs.push((
        "source",
        format!(
            "sha256:{} ({})",
            d.source_sha256,
            output::bytes(d.source_bytes)
        ),
    ));
    pairs.push((
        "slug",
        match (&d.slug_sha256, d.slug_bytes) {
            (Some(sha), Some(n)) => format!("sha256:{sha} ({})", output::bytes(n)),
            (Some(sha), None) => format!("sha256:{sha}"),
            _ => "-".to_owned(),
        },
    ));
    pairs.push(("buildpacks", none(d.buildpacks.join(", "))));
    pairs.push(("by", or_dash(&d.user)));
    pairs.push(("started", d.started_at.clone()));
    pairs.push((
        "finished",
        d.finished_at.clone().unwrap_or_else(|| "-".to_owned()),
    ));
    if let Some(error) = &d.error {
        pairs.push(("error", error.clone()));
    }
    pairs.push(("phases", phases(d)));
    pairs
}

/// One line per phase with its duration, then the total; durations right-aligned.
fn phases(d: &Deployment) -> String {
    if d.phases.is_empty() {
        return "none recorded".to_owned();
    }
    timings(&d.phases)
}

fn timings(phases: &[paas_api::PhaseTiming]) -> String {
    let mut rows: Vec<(String, String)> = phases
        .iter()
        .map(|p| (p.phase.to_string(), output::duration_ms(p.ms)))
        .collect();
    let total: u64 = phases.iter().map(|p| p.ms).sum();
    rows.push(("total".to_owned(), output::duration_ms(total)));
    let name_width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let time_width = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(n, t)| format!("{n:<name_width$}  {t:>time_width$}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::{DeployPhase, PhaseTiming, ReleaseStatus};

    fn deployment(id: u64, status: DeploymentStatus, version: Option<u32>, at: &str) -> Deployment {
        Deployment {
            id,
            status,
            version,
            source_sha256: "0123456789abcdef".repeat(4),
            source_bytes: 2048,
            buildpacks: vec!["nodejs".to_owned()],
            user: "alice".to_owned(),
            started_at: at.to_owned(),
            finished_at: None,
            phases: vec![
                PhaseTiming {
                    phase: DeployPhase::Receive,
                    ms: 300,
                },
                PhaseTiming {
                    phase: DeployPhase::Compile,
                    ms: 12_000,
                },
            ],
            slug_sha256: None,
            slug_bytes: None,
            error: None,
        }
    }

    fn release(version: u32, at: &str, deployment: Option<Deployment>) -> Release {
        Release {
            version,
            description: format!("v{version}"),
            status: ReleaseStatus::Succeeded,
            created_at: at.to_owned(),
            config_keys: vec![],
            process_types: Default::default(),
            deployment,
            rollout: vec![],
        }
    }

    #[test]
    fn only_newer_failures_and_all_builds_are_pending() {
        let newest = release(2, "2026-01-01T12:00:00Z", None);
        let ds = vec![
            deployment(5, DeploymentStatus::Building, None, "2026-01-01T11:00:00Z"),
            deployment(4, DeploymentStatus::Failed, None, "2026-01-01T12:30:00Z"),
            deployment(
                3,
                DeploymentStatus::Succeeded,
                Some(2),
                "2026-01-01T11:59:00Z",
            ),
            deployment(2, DeploymentStatus::Failed, None, "2026-01-01T11:30:00Z"),
        ];
        let ids: Vec<u64> = unreleased(&ds, Some(&newest))
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, [5, 4]);
        let ids: Vec<u64> = unreleased(&ds, None).iter().map(|d| d.id).collect();
        assert_eq!(ids, [5, 4, 2]);
    }

    #[test]
    fn timestamps_compare_in_time_order() {
        assert_eq!(
            later("2026-01-01T12:00:00.5Z", "2026-01-01T12:00:00Z"),
            Ordering::Greater
        );
        assert_eq!(later("b", "a"), Ordering::Greater);
    }

    #[test]
    fn rows_for_deploys_and_config_changes() {
        let built = deployment(
            7,
            DeploymentStatus::Succeeded,
            Some(3),
            "2026-01-01T12:00:00Z",
        );
        let row = release_row(&release(3, "2026-01-01T12:00:00Z", Some(built.clone())));
        assert_eq!(
            [&row[0], &row[2], &row[3], &row[4], &row[6]],
            ["v3", "01234567", "nodejs", "alice", "12.3s"]
        );
        // v4 changed config only: same slug and source, nobody's build time.
        let row = release_row(&release(4, "2026-01-01T13:00:00Z", Some(built)));
        assert_eq!(
            [&row[0], &row[2], &row[3], &row[4], &row[6]],
            ["v4", "01234567", "nodejs", "-", "-"]
        );
        let row = release_row(&release(1, "2026-01-01T13:00:00Z", None));
        assert_eq!([&row[2], &row[3], &row[4], &row[6]], ["-", "-", "-", "-"]);

        let mut failed = deployment(9, DeploymentStatus::Failed, None, "2026-01-01T14:00:00Z");
        failed.error = Some("npm ci failed\nmore detail".to_owned());
        let row = deployment_row(&failed);
        assert_eq!(
            [&row[0], &row[1], &row[6], &row[7]],
            ["-", "failed", "12.3s", "Deploy #9 failed: npm ci failed"]
        );
        let building = deployment(10, DeploymentStatus::Building, None, "2026-01-01T14:00:00Z");
        let row = deployment_row(&building);
        assert_eq!([&row[1], &row[6]], ["building", "-"]);
    }

    #[test]
    fn info_lists_phases_with_a_total() {
        let mut d = deployment(
            7,
            DeploymentStatus::Succeeded,
            Some(3),
            "2026-01-01T12:00:00Z",
        );
        d.slug_sha256 = Some("ff".repeat(32));
        d.slug_bytes = Some(3 * 1024 * 1024);
        let mut r = release(3, "2026-01-01T12:00:00Z", Some(d));
        r.process_types
            .insert("web".to_owned(), "npm start".to_owned());
        r.process_types
            .insert("worker".to_owned(), "node work.js".to_owned());
        let text = output::key_values(&info_pairs(&r));
        assert!(
            text.contains("process types: web: npm start\n               worker: node work.js\n"),
            "{text}"
        );
        assert!(text.contains("slug:          sha256:ffff"), "{text}");
        assert!(text.contains("(3.00 MiB)"), "{text}");
        assert!(
            text.ends_with(
                "phases:        receive  300ms\n               compile  12.0s\n               total    12.3s\n"
            ),
            "{text}"
        );
    }
}
