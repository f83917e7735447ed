//! `app.json`, the manifest Heroku and dokku read, as typed data: [`parse`] takes the text
//! and returns the [`Manifest`] plus one warning per key that does nothing here (unknown, or
//! known but not supported), or a [`ParseError`] with the line and column. Also the pure
//! decisions over it that need no state: which config vars a deploy sets or misses
//! ([`Manifest::env_plan`]). `//` and `/* */` comments are accepted (blanked out, so positions
//! stay right). Must not read files (callers use `app_files`), touch the store, generate
//! secrets or run anything.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A malformed app.json: where, and what the parser expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app.json line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Everything paasd acts on in an app.json. Metadata keys (name, description, ...) are
/// accepted and kept out of the way; keys the platform cannot honour produce warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(expecting = "a JSON object (the app.json manifest)")]
pub struct Manifest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    #[serde(default)]
    pub website: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub logo: Option<String>,
    #[serde(default)]
    pub success_url: Option<String>,
    #[serde(default)]
    pub scripts: Scripts,
    #[serde(default)]
    pub env: BTreeMap<String, EnvVar>,
    #[serde(default)]
    pub formation: BTreeMap<String, Formation>,
    /// Add-ons are Heroku's marketplace: nothing to provision them from here.
    #[serde(default)]
    pub addons: Option<serde_json::Value>,
    /// Read by buildpack selection (build), not here.
    #[serde(default)]
    pub buildpacks: Option<serde_json::Value>,
    /// Heroku's stack name (`heroku-24`): apps here run on their paas stack.
    #[serde(default)]
    pub stack: Option<serde_json::Value>,
    /// Heroku CI's test image.
    #[serde(default)]
    pub image: Option<serde_json::Value>,
    /// Heroku CI and review apps overrides.
    #[serde(default)]
    pub environments: Option<serde_json::Value>,
    #[serde(default)]
    pub healthchecks: BTreeMap<String, Vec<Healthcheck>>,
    #[serde(default)]
    pub cron: Vec<CronEntry>,
}

/// `scripts`: dokku's `dokku.predeploy` / `dokku.postdeploy` and Heroku's `postdeploy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Scripts {
    #[serde(default)]
    pub dokku: DokkuScripts,
    /// Heroku: runs once, after the app's first successful deploy.
    #[serde(default)]
    pub postdeploy: Option<Command>,
    /// Review apps only (Heroku).
    #[serde(default, rename = "pr-predestroy")]
    pub pr_predestroy: Option<serde_json::Value>,
    /// Heroku CI only.
    #[serde(default)]
    pub test: Option<serde_json::Value>,
    #[serde(default, rename = "test-setup")]
    pub test_setup: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DokkuScripts {
    /// Runs on the new release before it goes live; failing it fails the deploy.
    #[serde(default)]
    pub predeploy: Option<Command>,
    /// Runs after the new release went live; failing it is reported, not rolled back.
    #[serde(default)]
    pub postdeploy: Option<Command>,
}

/// A script: a command line (`"./seed"`) or Heroku's `{"command": "./seed", "size": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(pub String);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            command: String,
            #[serde(default)]
            #[allow(dead_code)] // accepted; one-offs get the platform's limits
            size: Option<serde_json::Value>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command line, or an object with \"command\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                nonblank(v).map(Command)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Command, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                nonblank(&o.command).map(Command)
            }
        }
        d.deserialize_any(V)
    }
}

fn nonblank<E: de::Error>(v: &str) -> Result<String, E> {
    if v.trim().is_empty() {
        Err(E::custom("the command is empty"))
    } else {
        Ok(v.to_string())
    }
}

/// One `env` entry: `"KEY": "value"` or `"KEY": {"description", "value", "required",
/// "generator", "sync"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVar {
    pub description: Option<String>,
    /// The default, set when the app has no value yet.
    pub value: Option<String>,
    /// Heroku's and dokku's default is `true`; a `value` or a `generator` satisfies it.
    pub required: Option<bool>,
    pub generator: Option<Generator>,
    /// dokku: set `value` on every deploy, over whatever the app has.
    pub sync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// 64 hex characters (32 random bytes), made once.
    Secret,
}

impl<'de> Deserialize<'de> for EnvVar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EnvVar, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            #[serde(default)]
            description: Option<String>,
            #[serde(default)]
            value: Option<String>,
            #[serde(default)]
            required: Option<bool>,
            #[serde(default)]
            generator: Option<Generator>,
            #[serde(default)]
            sync: bool,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvVar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string (the value) or an object with description, value, required, generator",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvVar, E> {
                Ok(EnvVar {
                    value: Some(v.to_string()),
                    ..EnvVar::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvVar, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if o.sync && o.value.is_none() {
                    return Err(de::Error::custom("\"sync\": true needs a \"value\""));
                }
                Ok(EnvVar {
                    description: o.description,
                    value: o.value,
                    required: o.required,
                    generator: o.generator,
                    sync: o.sync,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `formation.TYPE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Formation {
    /// Instances when the type was never scaled with `paas scale`.
    #[serde(default)]
    pub quantity: Option<u32>,
    /// Heroku's dyno size: accepted, not mapped (instances get `[instances]` limits).
    #[serde(default)]
    pub size: Option<serde_json::Value>,
    /// dokku: rollouts here start every new instance at once.
    #[serde(default)]
    pub max_parallel: Option<serde_json::Value>,
    #[serde(default)]
    pub autoscaling: Option<serde_json::Value>,
    #[serde(default)]
    pub service: Option<serde_json::Value>,
}

/// One `healthchecks.TYPE[]` entry (dokku's fields). The supervisor reads them from the
/// slug; here they are checked for shape so a typo shows at deploy time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Healthcheck {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub wait: Option<u64>,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub initial_delay: Option<u64>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub uptime: Option<u64>,
    // dokku fields with no equivalent here: warned about.
    #[serde(default)]
    pub command: Option<serde_json::Value>,
    #[serde(default)]
    pub http_headers: Option<serde_json::Value>,
    #[serde(default)]
    pub listening: Option<serde_json::Value>,
    #[serde(default)]
    pub scheme: Option<serde_json::Value>,
    #[serde(default)]
    pub warn: Option<serde_json::Value>,
    #[serde(default)]
    pub on_failure: Option<serde_json::Value>,
}

/// One `cron[]` entry (dokku's format).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CronEntry {
    pub command: Command,
    pub schedule: Schedule,
    /// dokku: `allow` (default), `forbid`, `replace`. Runs here never overlap (`forbid`).
    #[serde(default)]
    pub concurrency_policy: Option<serde_json::Value>,
    #[serde(default)]
    pub maintenance: Option<serde_json::Value>,
}

/// A five-field crontab schedule (minute hour day-of-month month day-of-week), checked when
/// parsed. Times are UTC.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "schedule \"{text}\" has {fields} fields; use five: minute hour day-of-month month day-of-week (e.g. \"*/5 * * * *\")"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("schedule \"{text}\": {e}"))?;
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the schedule fires in the minute that starts at `minute` (UTC).
    pub fn fires_at(&self, minute: chrono::DateTime<chrono::Utc>) -> bool {
        self.cron.is_time_matching(&minute).unwrap_or(false)
    }

    /// The next minute it fires after `t`.
    pub fn next_after(
        &self,
        t: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}
impl Eq for Schedule {}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(text.trim()).map_err(de::Error::custom)
    }
}

/// A parsed manifest and what the deploy should say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub manifest: Manifest,
    /// One line per key that does nothing here, without the ` !     ` prefix.
    pub warnings: Vec<String>,
}

/// Parses app.json text. A syntax or type error is a [`ParseError`] with its position.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let clean = strip_comments(text);
    // serde lets a struct come as an array too; the manifest is an object.
    if let Some((i, c)) = clean.char_indices().find(|(_, c)| !c.is_whitespace()) {
        if c != '{' {
            let before = &clean[..i];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(ParseError {
                line,
                column,
                message: "expected a JSON object (the app.json manifest)".into(),
            });
        }
    }
    let mut ignored = Vec::new();
    let mut de = serde_json::Deserializer::from_str(&clean);
    let manifest: Manifest = serde_ignored::deserialize(&mut de, |path| {
        ignored.push(path.to_string());
    })
    .map_err(position)?;
    de.end().map_err(position)?;
    let mut warnings: Vec<String> = ignored
        .into_iter()
        .map(|p| format!("app.json: unknown key \"{p}\" is ignored"))
        .collect();
    warnings.extend(unsupported(&manifest));
    Ok(Parsed { manifest, warnings })
}

fn position(e: serde_json::Error) -> ParseError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    ParseError {
        line,
        column,
        message,
    }
}

/// Warnings for keys that are understood but have no effect on this platform.
fn unsupported(m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |key: &str, why: &str| {
        out.push(format!(
            "app.json: \"{key}\" is not supported here and is ignored ({why})"
        ));
    };
    if m.addons.is_some() {
        note(
            "addons",
            "no add-on marketplace: run the service yourself and set its URL with `paas config:set`",
        );
    }
    if m.environments.is_some() {
        note("environments", "Heroku CI and review apps only");
    }
    if m.image.is_some() {
        note("image", "Heroku CI only");
    }
    if m.stack.is_some() {
        note(
            "stack",
            "apps run on their paas stack: `paas apps:create --stack`",
        );
    }
    if m.scripts.pr_predestroy.is_some() {
        note("scripts.pr-predestroy", "review apps only");
    }
    if m.scripts.test.is_some() {
        note("scripts.test", "Heroku CI only");
    }
    if m.scripts.test_setup.is_some() {
        note("scripts.test-setup", "Heroku CI only");
    }
    for (t, f) in &m.formation {
        if f.size.is_some() {
            note(
                &format!("formation.{t}.size"),
                "sizes are not mapped: instances get the [instances] limits of paasd.toml",
            );
        }
        if f.max_parallel.is_some() {
            note(
                &format!("formation.{t}.max_parallel"),
                "a rollout starts every new instance at once",
            );
        }
        if f.autoscaling.is_some() {
            note(&format!("formation.{t}.autoscaling"), "no autoscaling yet");
        }
        if f.service.is_some() {
            note(&format!("formation.{t}.service"), "only web is routed");
        }
    }
    for (t, list) in &m.healthchecks {
        for (i, c) in list.iter().enumerate() {
            for (field, set) in [
                ("command", c.command.is_some()),
                ("httpHeaders", c.http_headers.is_some()),
                ("listening", c.listening.is_some()),
                ("scheme", c.scheme.is_some()),
                ("warn", c.warn.is_some()),
                ("onFailure", c.on_failure.is_some()),
            ] {
                if set {
                    note(
                        &format!("healthchecks.{t}[{i}].{field}"),
                        "checks here are HTTP GET or TCP connect",
                    );
                }
            }
        }
    }
    for (i, c) in m.cron.iter().enumerate() {
        if c.concurrency_policy.is_some() {
            note(
                &format!("cron[{i}].concurrency_policy"),
                "a run never overlaps the previous one of the same entry",
            );
        }
        if c.maintenance.is_some() {
            note(&format!("cron[{i}].maintenance"), "no maintenance mode yet");
        }
    }
    out
}

/// What a deploy does to the app's config vars for `env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPlan {
    /// Keys the app has no value for, with their app.json default.
    pub defaults: BTreeMap<String, String>,
    /// Keys the app has no value for that get a generated secret.
    pub generate: Vec<String>,
    /// `sync: true` keys whose value differs from the app's.
    pub sync: BTreeMap<String, String>,
    /// Required keys with no value anywhere: the deploy must fail naming them.
    pub missing: Vec<String>,
}

impl Manifest {
    /// Decides, against the app's current config vars, what `env` sets and what is missing.
    /// A key is required unless it says `"required": false`; a default `value` or a
    /// `generator` satisfies it (Heroku and dokku).
    pub fn env_plan(&self, current: &BTreeMap<String, String>) -> EnvPlan {
        let mut plan = EnvPlan::default();
        for (key, spec) in &self.env {
            let have = current.get(key);
            match (&spec.value, spec.sync, have) {
                (Some(v), true, h) if h != Some(v) => {
                    plan.sync.insert(key.clone(), v.clone());
                }
                (_, _, Some(_)) => {}
                (Some(v), _, None) => {
                    plan.defaults.insert(key.clone(), v.clone());
                }
                (None, _, None) if spec.generator == Some(Generator::Secret) => {
                    plan.generate.push(key.clone());
                }
                (None, _, None) if spec.required.unwrap_or(true) => {
                    plan.missing.push(key.clone());
                }
                _ => {}
            }
        }
        plan
    }

    /// The script dokku runs before the release goes live.
    pub fn predeploy(&self) -> Option<&str> {
        self.scripts.dokku.predeploy.as_ref().map(|c| c.0.as_str())
    }

    /// The script dokku runs after every deploy went live.
    pub fn postdeploy(&self) -> Option<&str> {
        self.scripts.dokku.postdeploy.as_ref().map(|c| c.0.as_str())
    }

    /// Heroku's `scripts.postdeploy`: after the app's first successful deploy only.
    pub fn first_deploy(&self) -> Option<&str> {
        self.scripts.postdeploy.as_ref().map(|c| c.0.as_str())
    }

    /// `formation.TYPE.quantity` for each type that gives one.
    pub fn quantities(&self) -> BTreeMap<String, u32> {
        self.formation
            .iter()
            .filter_map(|(t, f)| f.quantity.map(|q| (t.clone(), q)))
            .collect()
    }
}

/// Blanks out `//` line and `/* */` block comments outside strings, keeping every newline
/// and the length of each line, so positions in errors still point at the original text.
pub fn strip_comments(text: &str) -> String {
    #[derive(PartialEq)]
    enum S {
        Code,
        Str,
        Escape,
        Line,
        Block,
    }
    let mut out = String::with_capacity(text.len());
    let mut s = S::Code;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match s {
            S::Code => match (c, chars.peek()) {
                ('"', _) => {
                    s = S::Str;
                    out.push(c);
                }
                ('/', Some('/')) => {
                    chars.next();
                    s = S::Line;
                    out.push_str("  ");
                }
                ('/', Some('*')) => {
                    chars.next();
                    s = S::Block;
                    out.push_str("  ");
                }
                _ => out.push(c),
            },
            S::Str => {
                out.push(c);
                match c {
                    '\\' => s = S::Escape,
                    '"' => s = S::Code,
                    _ => {}
                }
            }
            S::Escape => {
                out.push(c);
                s = S::Str;
            }
            S::Line => {
                if c == '\n' {
                    s = S::Code;
                    out.push('\n');
                } else {
                    out.push(' ');
                }
            }
            S::Block => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    out.push_str("  ");
                    s = S::Code;
                } else if c == '\n' {
                    out.push('\n');
                } else {
                    out.push(' ');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Parsed {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn an_empty_object_and_heroku_s_metadata_parse_without_warnings() {
        assert_eq!(ok("{}").manifest, Manifest::default());
        let p = ok(
            r#"{"name": "x", "description": "d", "keywords": ["a"], "website": "w",
                     "repository": "r", "logo": "l", "success_url": "/"}"#,
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.manifest.name.as_deref(), Some("x"));
    }

    #[test]
    fn syntax_and_type_errors_carry_line_and_column() {
        let e = parse("{\n  \"env\": {\n    \"A\": 1\n  }\n}").expect_err("number");
        assert_eq!((e.line, e.column), (3, 10), "{e}");
        assert!(
            e.to_string().starts_with("app.json line 3, column 10: "),
            "{e}"
        );
        assert!(
            e.message.contains("a string (the value) or an object"),
            "{e}"
        );

        let e = parse("{\n  \"name\": \"x\",\n}").expect_err("trailing comma");
        assert_eq!(e.line, 3, "{e}");
        assert!(!e.message.contains(" at line "), "position only once: {e}");

        let e = parse("\n  []").expect_err("not an object");
        assert!(e.message.contains("a JSON object"), "{e}");
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        assert!(parse("").is_err(), "empty");
        let e = parse("{} {}").expect_err("trailing data");
        assert_eq!(e.line, 1);
        let e = parse(r#"{"formation": {"web": {"quantity": -1}}}"#).expect_err("negative");
        assert!(e.message.contains("-1"), "{e}");
        let e = parse(r#"{"env": {"K": {"generator": "uuid"}}}"#).expect_err("generator");
        assert!(e.message.contains("secret"), "{e}");
        let e = parse(r#"{"scripts": {"dokku": {"predeploy": "  "}}}"#).expect_err("blank");
        assert!(e.message.contains("empty"), "{e}");
    }

    #[test]
    fn unknown_keys_warn_once_each_with_their_path() {
        let p = ok(
            r#"{"foo": 1, "bar": {"x": 1}, "scripts": {"dokku": {"predeploy": "a", "nope": 1}},
                     "env": {"K": {"value": "v", "secret": true}}, "formation": {"web": {"quantity": 2, "q": 1}}}"#,
        );
        assert_eq!(
            p.warnings,
            vec![
                "app.json: unknown key \"foo\" is ignored",
                "app.json: unknown key \"bar\" is ignored",
                "app.json: unknown key \"scripts.dokku.nope\" is ignored",
                "app.json: unknown key \"env.K.secret\" is ignored",
                "app.json: unknown key \"formation.web.q\" is ignored",
            ]
        );
    }

    #[test]
    fn unsupported_keys_say_so() {
        let p = ok(
            r#"{"addons": ["heroku-postgresql"], "environments": {}, "stack": "heroku-24",
                     "formation": {"web": {"quantity": 1, "size": "standard-1x"}},
                     "scripts": {"test": "npm test"},
                     "healthchecks": {"web": [{"path": "/", "listening": true}]},
                     "buildpacks": [{"url": "heroku/nodejs"}]}"#,
        );
        let all = p.warnings.join("\n");
        for key in [
            "\"addons\"",
            "\"environments\"",
            "\"stack\"",
            "\"formation.web.size\"",
            "\"scripts.test\"",
            "\"healthchecks.web[0].listening\"",
        ] {
            assert!(all.contains(key), "{key} missing in:\n{all}");
        }
        assert!(
            !all.contains("buildpacks"),
            "buildpacks is someone else's key: {all}"
        );
        assert_eq!(p.warnings.len(), 6, "{all}");
    }

    #[test]
    fn comments_are_blanked_keeping_positions() {
        let text = "{\n  // the name\n  \"name\": \"a//b\", /* inline */ \"website\": \"x/*y*/\"\n  /* multi\n     line */\n}";
        let p = ok(text);
        assert_eq!(p.manifest.name.as_deref(), Some("a//b"));
        assert_eq!(p.manifest.website.as_deref(), Some("x/*y*/"));
        let stripped = strip_comments(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        assert!(stripped
            .lines()
            .zip(text.lines())
            .all(|(a, b)| a.len() == b.len()));
        let e = parse("{\n  // c\n  \"env\": 3\n}").expect_err("type");
        assert_eq!((e.line, e.column), (3, 10), "{e}");
        assert_eq!(strip_comments(r#""\"//" // x"#), r#""\"//"     "#);
    }

    #[test]
    fn env_values_objects_and_the_plan() {
        let p = ok(r#"{"env": {
            "PLAIN": "v",
            "DEFAULTED": {"description": "d", "value": "dv"},
            "NEEDED": {"description": "must be set"},
            "OPTIONAL": {"required": false},
            "SECRET_KEY_BASE": {"generator": "secret"},
            "PINNED": {"value": "p", "sync": true}
        }}"#);
        let m = &p.manifest;
        assert_eq!(m.env["PLAIN"].value.as_deref(), Some("v"));
        let current: BTreeMap<String, String> = [("PLAIN", "mine"), ("PINNED", "old")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let plan = m.env_plan(&current);
        assert_eq!(
            plan.defaults,
            BTreeMap::from([("DEFAULTED".to_string(), "dv".to_string())])
        );
        assert_eq!(plan.generate, vec!["SECRET_KEY_BASE".to_string()]);
        assert_eq!(
            plan.sync,
            BTreeMap::from([("PINNED".to_string(), "p".to_string())])
        );
        assert_eq!(plan.missing, vec!["NEEDED".to_string()]);

        // Once everything is set, nothing changes: a secret is never generated again.
        let mut all = current.clone();
        for k in ["DEFAULTED", "NEEDED", "SECRET_KEY_BASE"] {
            all.insert(k.into(), "x".into());
        }
        all.insert("PINNED".into(), "p".into());
        assert_eq!(m.env_plan(&all), EnvPlan::default());
        assert!(parse(r#"{"env": {"K": {"sync": true}}}"#).is_err());
    }

    #[test]
    fn scripts_formation_and_cron() {
        let p = ok(r#"{
            "scripts": {"dokku": {"predeploy": "./migrate", "postdeploy": "./notify"},
                        "postdeploy": {"command": "./seed", "size": "basic"}},
            "formation": {"web": {"quantity": 2}, "worker": {"quantity": 0}, "clock": {}},
            "cron": [{"command": "./tick", "schedule": "*/5 * * * *"}]
        }"#);
        let m = &p.manifest;
        assert_eq!(m.predeploy(), Some("./migrate"));
        assert_eq!(m.postdeploy(), Some("./notify"));
        assert_eq!(m.first_deploy(), Some("./seed"));
        assert_eq!(
            m.quantities(),
            BTreeMap::from([("web".to_string(), 2), ("worker".to_string(), 0)])
        );
        let s = &m.cron[0].schedule;
        assert_eq!(s.as_str(), "*/5 * * * *");
        let at = |h: u32, min: u32| {
            use chrono::TimeZone;
            chrono::Utc
                .with_ymd_and_hms(2024, 5, 6, h, min, 0)
                .single()
                .expect("time")
        };
        assert!(s.fires_at(at(10, 5)));
        assert!(!s.fires_at(at(10, 6)));
        assert_eq!(s.next_after(at(10, 6)), Some(at(10, 10)));

        for bad in ["* * * *", "0 0 * * * *", "61 * * * *", "nonsense"] {
            let text = format!(r#"{{"cron": [{{"command": "x", "schedule": "{bad}"}}]}}"#);
            let e = parse(&text).expect_err(bad);
            assert!(e.message.contains("schedule"), "{bad}: {e}");
            assert_eq!(e.line, 1, "{e}");
        }
        let e = parse(r#"{"cron": [{"command": "x"}]}"#).expect_err("no schedule");
        assert!(e.message.contains("schedule"), "{e}");
    }

    #[test]
    fn dokku_healthchecks_parse_with_every_field() {
        let p = ok(r#"{"healthchecks": {"web": [{
            "type": "startup", "name": "web check", "description": "d", "path": "/health",
            "port": 5000, "attempts": 3, "wait": 2, "timeout": 4, "initialDelay": 1,
            "content": "ok", "uptime": 5
        }]}}"#);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let c = &p.manifest.healthchecks["web"][0];
        assert_eq!(c.name.as_deref(), Some("web check"));
        assert_eq!((c.initial_delay, c.uptime), (Some(1), Some(5)));
    }
}
