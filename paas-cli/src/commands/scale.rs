//! `paas scale NAME [TYPE=N ...] [--instances N]`: the formation (`/apps/{app}/scale`, and
//! `/apps/{app}` to show it). Owns building the `ScaleRequest`; must not judge counts or
//! process types (the daemon does, e.g. it rejects `web=-1` with its own message).

use std::collections::BTreeMap;

use anyhow::Result;
use paas_api::{App, Formation, Method, ScaleRequest};
use serde_json::{json, Value};

use super::{app_path, typed, with_logs_hint, Ctx};
use crate::args::{parse_type_counts, UsageError};
use crate::cli::ScaleArgs;
use crate::output;

/// Changes the formation, or shows it when no count is given.
pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    let request = build_request(&args.counts, args.instances)?;
    if request.is_empty() {
        return show(ctx, &args.name).await;
    }
    let value = ctx
        .request(
            Method::POST,
            &app_path(&args.name, "/scale")?,
            Some(&request),
        )
        .await
        .map_err(|e| with_logs_hint(&args.name, e))?;
    let formation: Formation = typed(value.clone())?;
    let now = output::formation(&formation.formation);
    output::status(&format!(
        "Scaling {}... done, now {}",
        args.name,
        if now.is_empty() { "none" } else { &now }
    ));
    if ctx.json {
        return output::json(&value);
    }
    print_formation(&formation.formation)
}

/// `GET /apps/{app}`, printing only its formation (`{"formation": ...}` with `--json`).
async fn show(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "")?).await?;
    if ctx.json {
        let formation = value.get("formation").cloned().unwrap_or(Value::Null);
        return output::json(&json!({ "formation": formation }));
    }
    let app: App = typed(value)?;
    print_formation(&app.formation)
}

fn print_formation(formation: &BTreeMap<String, u32>) -> Result<()> {
    if formation.is_empty() {
        output::status("no process types");
        return Ok(());
    }
    output::line(&output::formation(formation))
}

/// Each `TYPE=N` becomes `"TYPE": N`, `--instances N` becomes `"instances": N`.
fn build_request(counts: &[String], instances: Option<i64>) -> Result<ScaleRequest, UsageError> {
    let mut request: ScaleRequest = parse_type_counts(counts)?
        .into_iter()
        .map(|(kind, n)| (kind, Value::from(n)))
        .collect();
    if let Some(n) = instances {
        if request.contains_key("instances") {
            return Err(UsageError(
                "instances is given both as --instances and as instances=N".to_owned(),
            ));
        }
        request.insert("instances".to_owned(), Value::from(n));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn request_keeps_numbers_as_json_numbers() {
        let req = build_request(&strings(&["web=-1", "worker=2"]), Some(3)).expect("valid");
        assert_eq!(
            serde_json::to_value(&req).expect("serializes"),
            json!({"web": -1, "worker": 2, "instances": 3})
        );
    }

    #[test]
    fn request_is_empty_without_counts() {
        assert!(build_request(&[], None).expect("valid").is_empty());
    }

    #[test]
    fn request_rejects_non_numbers_and_double_instances() {
        assert!(build_request(&strings(&["web=abc"]), None).is_err());
        assert!(build_request(&strings(&["instances=1"]), Some(2)).is_err());
    }
}
