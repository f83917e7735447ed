//! `paas cron APP`: the app.json `cron` entries of the current release with their next and
//! last run (`/apps/{app}/cron`). Must not judge schedules: paasd parsed them.

use anyhow::Result;
use paas_api::CronList;

use super::{app_path, typed, Ctx};
use crate::output;

const COLUMNS: [&str; 6] = [
    "PROCESS", "SCHEDULE", "COMMAND", "NEXT RUN", "LAST RUN", "STATUS",
];

pub async fn list(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx.get(&app_path(name, "/cron")?).await?;
    if ctx.json {
        return output::json(&value);
    }
    let list: CronList = typed(value)?;
    if list.entries.is_empty() {
        output::status(&format!(
            "{name} has no cron entries (add a \"cron\" list to app.json and deploy)"
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .entries
        .iter()
        .map(|e| {
            let (last, status) = match &e.last_run {
                None => ("never".to_string(), "-".to_string()),
                Some(r) => (
                    format!("{} (v{})", r.started_at, r.release),
                    match (r.outcome.as_str(), r.exit_code) {
                        ("exited", Some(c)) => format!("exit {c}"),
                        (other, _) => other.to_string(),
                    },
                ),
            };
            vec![
                e.process.clone(),
                e.schedule.clone(),
                e.command.clone(),
                e.next_run_at.clone().unwrap_or_else(|| "-".into()),
                last,
                status,
            ]
        })
        .collect();
    output::out(&output::table(&COLUMNS, &rows))
}
