//! app.json at the start of a build: read from the uploaded source tree right after it
//! landed (before detect, so a malformed one fails in seconds, with its line and column),
//! each warning one line of the deploy output, `env` decided against the app's config (a
//! required key with no value fails the deploy, naming it), `formation` checked. Must not
//! write config or run scripts: the release step does both (`release.rs`, through apps and
//! one-offs).

use super::pipeline::Build;
use super::Failure;
use crate::app_json::{self, Manifest};
use crate::apps::{generate_secret, validate, EnvDefaults};

/// What a build takes from app.json: the manifest, and the config vars its release sets.
#[derive(Debug, Clone, Default)]
pub(super) struct FromAppJson {
    pub(super) manifest: Manifest,
    pub(super) env: EnvDefaults,
}

fn invalid(message: String) -> Failure {
    Failure::new("invalid_app_json", message)
}

impl Build {
    /// Reads and checks the source's app.json (none: an empty manifest). The config vars it
    /// sets are visible to the build (the env dir) from here on.
    pub(super) async fn read_app_json(&mut self) -> Result<FromAppJson, Failure> {
        let dir = self.scratch.0.join("app");
        let text = crate::app_files::read(&dir, "app.json")
            .map_err(|e| invalid(format!("app.json: {e}")))?;
        let Some(text) = text else {
            return Ok(FromAppJson::default());
        };
        let parsed = app_json::parse(&text).map_err(|e| invalid(e.to_string()))?;
        for w in &parsed.warnings {
            self.line(format!(" !     {w}")).await;
        }
        let manifest = parsed.manifest;
        self.check(&manifest)?;
        let plan = manifest.env_plan(&self.ctx.config);
        if !plan.missing.is_empty() {
            return Err(self.missing(&manifest, &plan.missing));
        }
        let mut env = EnvDefaults {
            if_absent: plan.defaults,
            overwrite: plan.sync,
        };
        let mut said: Vec<String> = env
            .if_absent
            .keys()
            .map(|k| format!("{k} (default)"))
            .chain(env.overwrite.keys().map(|k| format!("{k} (sync)")))
            .collect();
        for k in plan.generate {
            said.push(format!("{k} (generated secret)"));
            env.if_absent.insert(k, generate_secret());
        }
        if !said.is_empty() {
            said.sort();
            self.line(format!(
                "-----> app.json: setting config vars {}",
                said.join(", ")
            ))
            .await;
            for (k, v) in &env.if_absent {
                self.ctx
                    .config
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
            self.ctx.config.extend(env.overwrite.clone());
        }
        Ok(FromAppJson { manifest, env })
    }

    /// Names and numbers app.json gives must be ones the platform takes.
    fn check(&self, m: &Manifest) -> Result<(), Failure> {
        for (k, spec) in &m.env {
            validate::env_key(k).map_err(|e| invalid(format!("app.json env: {e}")))?;
            if let Some(v) = &spec.value {
                validate::env_value(k, v).map_err(|e| invalid(format!("app.json env: {e}")))?;
            }
        }
        let max = self.inner.apps.max_instances_per_type();
        for (t, n) in m.quantities() {
            validate::process_type(&t).map_err(|e| invalid(format!("app.json formation: {e}")))?;
            if n > max {
                return Err(invalid(format!(
                    "app.json formation: {t} quantity {n} is more than {max} (max_instances_per_type in paasd.toml)"
                )));
            }
        }
        Ok(())
    }

    fn missing(&self, m: &Manifest, keys: &[String]) -> Failure {
        let described: Vec<String> = keys
            .iter()
            .map(
                |k| match m.env.get(k).and_then(|s| s.description.as_deref()) {
                    Some(d) => format!("{k} ({d})"),
                    None => k.clone(),
                },
            )
            .collect();
        let (noun, them) = if keys.len() == 1 {
            ("config var", "it")
        } else {
            ("config vars", "them")
        };
        let assignments: Vec<String> = keys.iter().map(|k| format!("{k}=...")).collect();
        Failure::new(
            "missing_config",
            format!(
                "app.json requires {noun} {}, which app '{app}' does not have: set {them} with \
                 `paas config:set {app} {}` and deploy again",
                described.join(", "),
                assignments.join(" "),
                app = self.app
            ),
        )
    }
}
