//! `paas resources APP [TYPE] [--memory MB] [--cpu PCT] [--pids N] [--disk MB] [--reset]`:
//! instance limits (`/apps/{app}/resources[/{type}]`). Owns building the patch and the
//! table; must not judge values (paasd refuses out-of-range ones with its own message).

use anyhow::Result;
use paas_api::{Limit, Method, ResourceLimits, Resources, ResourcesPatch};

use super::{app_path, seg, typed, Ctx};
use crate::args::{parse_limit, UsageError};
use crate::cli::ResourcesArgs;
use crate::output;

/// Label of the row every process type without settings of its own gets.
const EVERY_TYPE: &str = "(every type)";

/// Shows the limits, or changes them when a flag is given.
pub async fn resources(ctx: &Ctx, a: ResourcesArgs) -> Result<()> {
    let patch = build_patch(&a)?;
    if patch == ResourcesPatch::default() {
        let value = ctx.get(&app_path(&a.name, "/resources")?).await?;
        return show(ctx, value);
    }
    let rest = match &a.process_type {
        Some(t) => format!("/resources/{}", seg(t, "process type")?),
        None => "/resources".to_owned(),
    };
    let value = ctx
        .request(Method::PATCH, &app_path(&a.name, &rest)?, Some(&patch))
        .await?;
    let whose = match &a.process_type {
        Some(t) => format!("{t} limits of {}", a.name),
        None => format!("limits of every process type of {}", a.name),
    };
    output::status(&format!(
        "Setting {whose}... done; they apply at the next rollout (deploy, restart, \
         rollback or config change): run `paas restart {}` to apply them now",
        a.name
    ));
    show(ctx, value)
}

/// Each flag given becomes a field: a number sets, `default` (or `--reset`) is `null`.
fn build_patch(a: &ResourcesArgs) -> Result<ResourcesPatch, UsageError> {
    if a.reset {
        return Ok(ResourcesPatch {
            memory_mb: Some(None),
            cpu_percent: Some(None),
            pids: Some(None),
            disk_mb: Some(None),
        });
    }
    let field =
        |flag: &str, v: &Option<String>| v.as_deref().map(|s| parse_limit(flag, s)).transpose();
    Ok(ResourcesPatch {
        memory_mb: field("memory", &a.memory)?,
        cpu_percent: field("cpu", &a.cpu)?,
        pids: field("pids", &a.pids)?,
        disk_mb: field("disk", &a.disk)?,
    })
}

fn show(ctx: &Ctx, value: serde_json::Value) -> Result<()> {
    if ctx.json {
        return output::json(&value);
    }
    let r: Resources = typed(value)?;
    let mut rows = Vec::new();
    let all = std::iter::once((EVERY_TYPE, &r.all));
    for (ptype, limits) in all.chain(r.process_types.iter().map(|(t, l)| (t.as_str(), l))) {
        for (name, limit, text) in described(limits) {
            rows.push(vec![
                ptype.to_owned(),
                name.to_owned(),
                text,
                limit.origin.to_string(),
            ]);
        }
    }
    output::out(&output::table(&["TYPE", "LIMIT", "VALUE", "FROM"], &rows))
}

/// Each limit with its name and its value as people read it.
fn described(l: &ResourceLimits) -> [(&'static str, Limit, String); 4] {
    [
        ("memory", l.memory_mb, format!("{} MB", l.memory_mb.value)),
        ("cpu", l.cpu_percent, format!("{}%", l.cpu_percent.value)),
        ("pids", l.pids, l.pids.value.to_string()),
        ("disk", l.disk_mb, format!("{} MB", l.disk_mb.value)),
    ]
}

/// For `paas info`, a line per process type: `web: 64 MB memory, 100% CPU, 64 pids, 256 MB
/// disk` (the every-type values when the app has no process types yet).
pub fn summary(r: &Resources) -> String {
    let one = |l: &ResourceLimits| {
        format!(
            "{} MB memory, {}% CPU, {} pids, {} MB disk",
            l.memory_mb.value, l.cpu_percent.value, l.pids.value, l.disk_mb.value
        )
    };
    if r.process_types.is_empty() {
        return format!("every type: {}", one(&r.all));
    }
    r.process_types
        .iter()
        .map(|(t, l)| format!("{t}: {}", one(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::LimitOrigin;

    fn args(memory: Option<&str>, reset: bool) -> ResourcesArgs {
        ResourcesArgs {
            name: "x".into(),
            process_type: None,
            memory: memory.map(str::to_owned),
            cpu: None,
            pids: Some("default".into()),
            disk: None,
            reset,
        }
    }

    #[test]
    fn flags_become_a_patch() {
        let p = build_patch(&args(Some("64"), false)).expect("valid");
        assert_eq!(
            serde_json::to_value(&p).expect("encodes"),
            serde_json::json!({"memory_mb": 64, "pids": null})
        );
        let all = build_patch(&args(None, true)).expect("valid");
        assert_eq!(
            serde_json::to_value(&all).expect("encodes"),
            serde_json::json!({"memory_mb": null, "cpu_percent": null, "pids": null, "disk_mb": null})
        );
        assert!(build_patch(&args(Some("lots"), false)).is_err());
    }

    #[test]
    fn info_summary() {
        let l = |value| Limit {
            value,
            origin: LimitOrigin::Default,
        };
        let limits = ResourceLimits {
            memory_mb: l(64),
            cpu_percent: l(100),
            pids: l(64),
            disk_mb: l(256),
        };
        let mut r = Resources {
            all: limits,
            process_types: Default::default(),
        };
        assert_eq!(
            summary(&r),
            "every type: 64 MB memory, 100% CPU, 64 pids, 256 MB disk"
        );
        r.process_types.insert("web".into(), limits);
        r.process_types.insert("worker".into(), limits);
        assert_eq!(
            summary(&r),
            "web: 64 MB memory, 100% CPU, 64 pids, 256 MB disk\n\
             worker: 64 MB memory, 100% CPU, 64 pids, 256 MB disk"
        );
    }
}
