//! Per-app resource limits (`paas resources`): the bounds a value must be in, storing a
//! change, and the effective limits of a process type: paasd's `[instances]` defaults,
//! overlaid field by field by what the app set for every type, then by what it set for that
//! type. The reserved type `build` holds the app's own limits for its builds, over `[build]`
//! (the every-type row does not apply to builds: it is about instances). Must not apply
//! anything: the supervisor reads the effective limits (through `Runnable`) when it starts
//! an instance, and a build (through `BuildContext`) when it starts, so a change takes effect
//! at the next rollout or deploy.

use std::collections::BTreeMap;

use paas_api as api;
use paas_api::LimitOrigin;

use super::{find, AppError, Apps};
use crate::store::{self, apps::AppRow, resources::ResourceRow, Tx};

/// The process type of the row that applies to every type.
const EVERY_TYPE: &str = "";

/// The reserved type whose row limits the app's builds.
pub const BUILD: &str = "build";

const MIN_MEMORY_MB: u64 = 16;
const MIN_PIDS: u64 = 16;
const MAX_PIDS: u64 = 1 << 22;
const MIN_DISK_MB: u64 = 16;
const MAX_DISK_MB: u64 = 1 << 20;

/// One instance's limits in the units people give them: memory and disk in MB (MiB), CPU in
/// % of one CPU, pids a count of processes and threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u64,
    pub cpu_percent: u32,
    pub pids: u64,
    pub disk_mb: u64,
}

/// What the service needs to judge and resolve limits: paasd's defaults and the host's size.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSettings {
    pub defaults: Limits,
    /// `[build]`: what a build gets unless the app set its `build` limits.
    pub build_defaults: Limits,
    /// The most memory an instance may be given (the host's, so a typo like 51200 for 512
    /// is refused instead of silently meaning "no limit").
    pub host_memory_mb: u64,
    /// CPUs of the host: the CPU quota may reach 100% of each.
    pub cpus: u32,
}

/// An app's settings with the defaults under them: the effective limits of any process type.
#[derive(Debug, Clone)]
pub struct AppResources {
    defaults: Limits,
    build_defaults: Limits,
    all: ResourceRow,
    types: BTreeMap<String, ResourceRow>,
}

impl AppResources {
    fn new(defaults: Limits, build_defaults: Limits, rows: Vec<ResourceRow>) -> AppResources {
        let mut all = ResourceRow::default();
        let mut types = BTreeMap::new();
        for row in rows {
            if row.process_type == EVERY_TYPE {
                all = row;
            } else {
                types.insert(row.process_type.clone(), row);
            }
        }
        AppResources {
            defaults,
            build_defaults,
            all,
            types,
        }
    }

    /// The limits the app's builds get: its `build` row over `[build]`.
    pub fn build_limits(&self) -> Limits {
        let own = self.types.get(BUILD);
        let d = self.build_defaults;
        Limits {
            memory_mb: own.and_then(|r| r.memory_mb).unwrap_or(d.memory_mb),
            cpu_percent: own.and_then(|r| r.cpu_percent).unwrap_or(d.cpu_percent),
            pids: own.and_then(|r| r.pids).unwrap_or(d.pids),
            disk_mb: own.and_then(|r| r.disk_mb).unwrap_or(d.disk_mb),
        }
    }

    /// The limits an instance of `process_type` gets.
    pub fn limits(&self, process_type: &str) -> Limits {
        let e = self.effective(Some(process_type));
        Limits {
            memory_mb: e.memory_mb.value,
            cpu_percent: u32::try_from(e.cpu_percent.value).unwrap_or(u32::MAX),
            pids: e.pids.value,
            disk_mb: e.disk_mb.value,
        }
    }

    /// Effective limits with their origins: of a process type, or (`None`) of a type that
    /// has no settings of its own.
    fn effective(&self, process_type: Option<&str>) -> api::ResourceLimits {
        if process_type == Some(BUILD) {
            let own = self.types.get(BUILD);
            let pick =
                |field: fn(&ResourceRow) -> Option<u64>, default: u64| match own.and_then(field) {
                    Some(value) => api::Limit {
                        value,
                        origin: LimitOrigin::ProcessType,
                    },
                    None => api::Limit {
                        value: default,
                        origin: LimitOrigin::Default,
                    },
                };
            let d = self.build_defaults;
            return api::ResourceLimits {
                memory_mb: pick(|r| r.memory_mb, d.memory_mb),
                cpu_percent: pick(|r| r.cpu_percent.map(u64::from), u64::from(d.cpu_percent)),
                pids: pick(|r| r.pids, d.pids),
                disk_mb: pick(|r| r.disk_mb, d.disk_mb),
            };
        }
        let own = process_type.and_then(|t| self.types.get(t));
        let pick = |field: fn(&ResourceRow) -> Option<u64>, default: u64| {
            if let Some(value) = own.and_then(field) {
                api::Limit {
                    value,
                    origin: LimitOrigin::ProcessType,
                }
            } else if let Some(value) = field(&self.all) {
                api::Limit {
                    value,
                    origin: LimitOrigin::App,
                }
            } else {
                api::Limit {
                    value: default,
                    origin: LimitOrigin::Default,
                }
            }
        };
        api::ResourceLimits {
            memory_mb: pick(|r| r.memory_mb, self.defaults.memory_mb),
            cpu_percent: pick(
                |r| r.cpu_percent.map(u64::from),
                u64::from(self.defaults.cpu_percent),
            ),
            pids: pick(|r| r.pids, self.defaults.pids),
            disk_mb: pick(|r| r.disk_mb, self.defaults.disk_mb),
        }
    }

    /// The API view: every type in `types` plus every type with settings of its own.
    fn view(&self, types: impl Iterator<Item = String>) -> api::Resources {
        let mut names: Vec<String> = types.chain(self.types.keys().cloned()).collect();
        names.sort();
        names.dedup();
        api::Resources {
            all: self.effective(None),
            process_types: names
                .into_iter()
                .map(|t| {
                    let limits = self.effective(Some(&t));
                    (t, limits)
                })
                .collect(),
        }
    }
}

impl Apps {
    /// `GET /apps/{app}/resources`.
    pub async fn resources(&self, name: String) -> Result<api::Resources, AppError> {
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                this.resources_view(tx, &app)
            })
            .await
    }

    /// `PATCH /apps/{app}/resources[/{type}]`: changes the settings of one process type (or,
    /// `None`, of every type). Nothing restarts: instances started from now on get them.
    pub async fn set_resources(
        &self,
        name: String,
        process_type: Option<String>,
        patch: api::ResourcesPatch,
    ) -> Result<api::Resources, AppError> {
        if let Some(t) = &process_type {
            super::validate::process_type(t).map_err(AppError::InvalidResources)?;
        }
        let change = Change::parse(&patch, &self.settings.resources)?;
        let this = self.clone();
        self.store
            .tx(move |tx| {
                let app = find(tx, &name)?;
                let key = process_type.unwrap_or_default();
                let stored = store::resources::get(tx, app.id, &key)?;
                if key != EVERY_TYPE {
                    check_type(tx, &app, &key, stored.is_some(), change.only_resets())?;
                }
                let mut row = stored.unwrap_or_else(|| ResourceRow {
                    process_type: key.clone(),
                    ..ResourceRow::default()
                });
                change.apply(&mut row);
                store::resources::put(tx, app.id, &row)?;
                tracing::info!(app = %app.name, process_type = %key, ?row, "resources set");
                this.resources_view(tx, &app)
            })
            .await
    }

    /// The app's settings over the defaults.
    pub(super) fn app_resources(&self, tx: &Tx<'_>, app_id: i64) -> Result<AppResources, AppError> {
        Ok(AppResources::new(
            self.settings.resources.defaults,
            self.settings.resources.build_defaults,
            store::resources::list(tx, app_id)?,
        ))
    }

    /// Effective limits of every process type the app runs (or was scaled for before its
    /// first build) and every type with settings of its own.
    pub(super) fn resources_view(
        &self,
        tx: &Tx<'_>,
        app: &AppRow,
    ) -> Result<api::Resources, AppError> {
        let built = super::built_release(tx, app.id)?;
        let types = super::formation_of(tx, app.id, built.as_ref())?;
        Ok(self.app_resources(tx, app.id)?.view(types.into_keys()))
    }
}

/// A type-specific setting names a process type the current release runs (as scaling
/// does). Before the first build any valid name is taken; a stored one the release lacks may
/// only be reset, so it can be cleared.
fn check_type(
    tx: &Tx<'_>,
    app: &AppRow,
    process_type: &str,
    stored: bool,
    only_resets: bool,
) -> Result<(), AppError> {
    if process_type == BUILD {
        return Ok(());
    }
    let Some(release) = super::built_release(tx, app.id)? else {
        return Ok(());
    };
    let known: Vec<&str> = super::scalable_types(&release)
        .map(String::as_str)
        .collect();
    if known.contains(&process_type) || (stored && only_resets) {
        return Ok(());
    }
    Err(AppError::InvalidResources(format!(
        "unknown process type '{process_type}': v{} of {} runs {} (leave the type out to set \
         limits for every type)",
        release.version,
        app.name,
        if known.is_empty() {
            "no process types".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// A validated patch: per field, leave (`None`), reset (`Some(None)`) or set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    memory_mb: Option<Option<u64>>,
    cpu_percent: Option<Option<u32>>,
    pids: Option<Option<u64>>,
    disk_mb: Option<Option<u64>>,
}

impl Change {
    /// Checks every value against its bounds before anything is written.
    fn parse(p: &api::ResourcesPatch, s: &ResourceSettings) -> Result<Change, AppError> {
        if p.memory_mb.is_none()
            && p.cpu_percent.is_none()
            && p.pids.is_none()
            && p.disk_mb.is_none()
        {
            return Err(AppError::InvalidResources(
                "nothing to change: give memory_mb, cpu_percent, pids or disk_mb (a number, or \
                 null for the default)"
                    .into(),
            ));
        }
        let cpus = s.cpus.max(1);
        let cpu_why = format!(
            "100% per CPU, and this host has {cpus} CPU{}",
            if cpus == 1 { "" } else { "s" }
        );
        let cpu = Bound {
            what: "cpu",
            unit: "%",
            min: 1,
            max: 100 * u64::from(cpus),
            why_max: &cpu_why,
        }
        .check_field(p.cpu_percent)?;
        Ok(Change {
            memory_mb: Bound {
                what: "memory",
                unit: " MB",
                min: MIN_MEMORY_MB,
                max: s.host_memory_mb.max(MIN_MEMORY_MB),
                why_max: "this host's memory",
            }
            .check_field(p.memory_mb)?,
            // At most 100 x CPUs (a u32), so the conversion cannot fail.
            cpu_percent: cpu.map(|c| c.map(|v| u32::try_from(v).unwrap_or(u32::MAX))),
            pids: Bound {
                what: "pids",
                unit: "",
                min: MIN_PIDS,
                max: MAX_PIDS,
                why_max: "the kernel's ceiling",
            }
            .check_field(p.pids)?,
            disk_mb: Bound {
                what: "disk",
                unit: " MB",
                min: MIN_DISK_MB,
                max: MAX_DISK_MB,
                why_max: "1 TB",
            }
            .check_field(p.disk_mb)?,
        })
    }

    /// Every field given is a reset.
    fn only_resets(&self) -> bool {
        [
            self.memory_mb.map(|v| v.is_none()),
            self.cpu_percent.map(|v| v.is_none()),
            self.pids.map(|v| v.is_none()),
            self.disk_mb.map(|v| v.is_none()),
        ]
        .iter()
        .all(|f| f.unwrap_or(true))
    }

    fn apply(&self, row: &mut ResourceRow) {
        if let Some(v) = self.memory_mb {
            row.memory_mb = v;
        }
        if let Some(v) = self.cpu_percent {
            row.cpu_percent = v;
        }
        if let Some(v) = self.pids {
            row.pids = v;
        }
        if let Some(v) = self.disk_mb {
            row.disk_mb = v;
        }
    }
}

/// The range one limit must be in, and how to say so.
struct Bound<'a> {
    what: &'static str,
    unit: &'static str,
    min: u64,
    max: u64,
    why_max: &'a str,
}

impl Bound<'_> {
    fn check_field(&self, field: Option<Option<i64>>) -> Result<Option<Option<u64>>, AppError> {
        match field {
            Some(Some(v)) => self.check(v).map(|v| Some(Some(v))),
            other => Ok(other.map(|_| None)),
        }
    }

    fn check(&self, v: i64) -> Result<u64, AppError> {
        let Bound {
            what,
            unit,
            min,
            max,
            why_max,
        } = self;
        match u64::try_from(v) {
            Ok(n) if n < *min => Err(AppError::InvalidResources(format!(
                "{what} must be at least {min}{unit} (got {v})"
            ))),
            Ok(n) if n > *max => Err(AppError::InvalidResources(format!(
                "{what} must be at most {max}{unit} ({why_max}; got {v})"
            ))),
            Ok(n) => Ok(n),
            Err(_) => Err(AppError::InvalidResources(format!(
                "{what} must be at least {min}{unit} (got {v})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Limits = Limits {
        memory_mb: 512,
        cpu_percent: 100,
        pids: 512,
        disk_mb: 256,
    };

    const BUILD_DEFAULTS: Limits = Limits {
        memory_mb: 2048,
        cpu_percent: 200,
        pids: 4096,
        disk_mb: 4096,
    };

    const HOST: ResourceSettings = ResourceSettings {
        defaults: DEFAULTS,
        build_defaults: BUILD_DEFAULTS,
        host_memory_mb: 4096,
        cpus: 2,
    };

    fn row(t: &str, memory: Option<u64>, cpu: Option<u32>, pids: Option<u64>) -> ResourceRow {
        ResourceRow {
            process_type: t.into(),
            memory_mb: memory,
            cpu_percent: cpu,
            pids,
            disk_mb: None,
        }
    }

    #[test]
    fn a_type_overrides_every_type_which_overrides_the_default_field_by_field() {
        let r = AppResources::new(
            DEFAULTS,
            BUILD_DEFAULTS,
            vec![
                row("", Some(256), Some(50), None),
                row("web", Some(64), None, Some(64)),
            ],
        );
        let web = r.effective(Some("web"));
        assert_eq!(
            (web.memory_mb.value, web.memory_mb.origin),
            (64, LimitOrigin::ProcessType)
        );
        assert_eq!(
            (web.cpu_percent.value, web.cpu_percent.origin),
            (50, LimitOrigin::App)
        );
        assert_eq!(
            (web.pids.value, web.pids.origin),
            (64, LimitOrigin::ProcessType)
        );
        assert_eq!(
            (web.disk_mb.value, web.disk_mb.origin),
            (256, LimitOrigin::Default)
        );
        assert_eq!(
            r.limits("worker"),
            Limits {
                memory_mb: 256,
                cpu_percent: 50,
                pids: 512,
                disk_mb: 256
            }
        );
        assert_eq!(r.limits("web").memory_mb, 64);
        let v = r.view(["worker".to_string()].into_iter());
        assert_eq!(
            v.process_types.keys().collect::<Vec<_>>(),
            ["web", "worker"]
        );
        assert_eq!(v.all.memory_mb.origin, LimitOrigin::App);
        let none = AppResources::new(DEFAULTS, BUILD_DEFAULTS, vec![]);
        assert_eq!(none.limits("web"), DEFAULTS);
        assert_eq!(none.build_limits(), BUILD_DEFAULTS);
    }

    #[test]
    fn builds_get_build_defaults_under_their_own_row_only() {
        let mut build = row(BUILD, None, None, None);
        build.disk_mb = Some(8192);
        let r = AppResources::new(
            DEFAULTS,
            BUILD_DEFAULTS,
            vec![row("", Some(256), Some(50), None), build],
        );
        // The every-type row is about instances; builds keep [build] but for their own row.
        assert_eq!(
            r.build_limits(),
            Limits {
                disk_mb: 8192,
                ..BUILD_DEFAULTS
            }
        );
        let b = r.effective(Some(BUILD));
        assert_eq!(
            (b.disk_mb.value, b.disk_mb.origin),
            (8192, LimitOrigin::ProcessType)
        );
        assert_eq!(
            (b.memory_mb.value, b.memory_mb.origin),
            (2048, LimitOrigin::Default)
        );
    }

    fn patch(memory: Option<Option<i64>>, cpu: Option<Option<i64>>) -> api::ResourcesPatch {
        api::ResourcesPatch {
            memory_mb: memory,
            cpu_percent: cpu,
            ..api::ResourcesPatch::default()
        }
    }

    fn refused(p: &api::ResourcesPatch) -> String {
        Change::parse(p, &HOST).expect_err("refused").to_string()
    }

    #[test]
    fn values_out_of_bounds_are_refused_with_the_bound() {
        assert_eq!(
            refused(&patch(Some(Some(8)), None)),
            "memory must be at least 16 MB (got 8)"
        );
        assert_eq!(
            refused(&patch(Some(Some(-1)), None)),
            "memory must be at least 16 MB (got -1)"
        );
        assert!(refused(&patch(Some(Some(5000)), None))
            .contains("memory must be at most 4096 MB (this host's memory"));
        assert!(refused(&patch(None, Some(Some(201))))
            .contains("cpu must be at most 200% (100% per CPU, and this host has 2 CPUs"));
        assert!(refused(&patch(None, Some(Some(0)))).contains("cpu must be at least 1%"));
        let pids = api::ResourcesPatch {
            pids: Some(Some(8)),
            ..Default::default()
        };
        assert_eq!(refused(&pids), "pids must be at least 16 (got 8)");
        let disk = api::ResourcesPatch {
            disk_mb: Some(Some((1 << 20) + 1)),
            ..Default::default()
        };
        assert!(refused(&disk).starts_with("disk must be at most 1048576 MB"));
        assert!(refused(&api::ResourcesPatch::default()).starts_with("nothing to change"));
    }

    #[test]
    fn a_change_sets_resets_and_leaves() {
        let c = Change::parse(&patch(Some(Some(64)), Some(None)), &HOST).expect("valid");
        assert!(!c.only_resets());
        let mut r = row("web", Some(128), Some(50), Some(100));
        c.apply(&mut r);
        assert_eq!(r, row("web", Some(64), None, Some(100)));
        let reset = Change::parse(&patch(Some(None), None), &HOST).expect("valid");
        assert!(reset.only_resets());
    }
}
