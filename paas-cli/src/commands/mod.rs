//! Dispatch from parsed arguments to one command per topic, plus the request helpers every
//! command shares. Owns talking to the daemon through `paas_api::Client`; must not parse argv
//! or format tables itself (that is `cli`/`args` and `output`).

pub mod addons;
pub mod apps;
pub mod backup;
pub mod buildpacks;
pub mod certs;
pub mod checks;
pub mod cron;
pub mod deploy;
pub mod domains;
pub mod env;
pub mod keys;
pub mod logs;
pub mod ps;
pub mod releases;
pub mod resources;
pub mod run;
pub mod scale;
pub mod stacks;
pub mod volumes;

use anyhow::{Context as _, Result};
use paas_api::client::segment;
use paas_api::{Client, Method, API_PREFIX};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::args::UsageError;
use crate::cli::{
    AddonsSub, AppsSub, BackupSub, BuildpacksSub, CertsSub, ChecksSub, Cli, Command, CronSub,
    DomainsSub, EnvSub, KeysSub, PsSub, ReleasesSub, RollbackArgs, StacksSub, VolumesSub,
};

/// What every command needs: the daemon handle and the output mode.
pub struct Ctx {
    pub client: Client,
    pub json: bool,
}

/// Runs the parsed command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        client: Client::new(cli.socket),
        json: cli.json,
    };
    match cli.command {
        Command::Apps(apps) => match apps.command {
            None | Some(AppsSub::List) => apps::list(&ctx).await,
            Some(AppsSub::Create(a)) => apps::create(&ctx, a).await,
            Some(AppsSub::Info(a)) => apps::info(&ctx, &a.name).await,
            Some(AppsSub::Destroy(a)) => apps::destroy(&ctx, a).await,
        },
        Command::Create(a) => apps::create(&ctx, a).await,
        Command::Info(a) => apps::info(&ctx, &a.name).await,
        Command::Destroy(a) => apps::destroy(&ctx, a).await,
        Command::Env(env) => match env.command {
            None => env::list(&ctx, env.list).await,
            Some(EnvSub::List(a)) => env::list(&ctx, a).await,
            Some(EnvSub::Set(a)) => env::set(&ctx, a).await,
            Some(EnvSub::Unset(a)) => env::unset(&ctx, a).await,
            Some(EnvSub::Get(a)) => env::get(&ctx, a).await,
        },
        Command::Domains(d) => match d.command {
            None => domains::list(&ctx, &required(d.name)?).await,
            Some(DomainsSub::List(a)) => domains::list(&ctx, &a.name).await,
            Some(DomainsSub::Add(a)) => domains::add(&ctx, a).await,
            Some(DomainsSub::Remove(a)) => domains::remove(&ctx, a).await,
        },
        Command::Certs(c) => match c.command {
            None if c.renew => certs::renew(&ctx, &required(c.name)?).await,
            None if c.redirect.is_some() || c.hsts.is_some() => {
                certs::settings(&ctx, &required(c.name)?, c.redirect, c.hsts).await
            }
            None => certs::list(&ctx, &required(c.name)?).await,
            Some(CertsSub::Add(a)) => certs::add(&ctx, a).await,
            Some(CertsSub::Remove(a)) => certs::remove(&ctx, a).await,
            Some(CertsSub::Base) => certs::list_base(&ctx).await,
            Some(CertsSub::AddBase(a)) => certs::add_base(&ctx, a).await,
            Some(CertsSub::RemoveBase(a)) => certs::remove_base(&ctx, &a.domain).await,
        },
        Command::Scale(a) => scale::scale(&ctx, a).await,
        Command::Run(a) => run::run(&ctx, a).await,
        Command::Ps(p) => match p.command {
            None => ps::ps(&ctx, &required(p.name)?).await,
            Some(PsSub::Report(a)) => ps::ps(&ctx, &a.name).await,
            Some(PsSub::Restart(a)) => ps::restart(&ctx, &a.name).await,
            Some(PsSub::Scale(a)) => scale::scale(&ctx, a).await,
        },
        Command::Restart(a) => ps::restart(&ctx, &a.name).await,
        Command::Rollback(a) => ps::rollback(&ctx, a).await,
        Command::Resources(a) => resources::resources(&ctx, a).await,
        Command::Checks(c) => match c.command {
            None => checks::list(&ctx, &required(c.name)?).await,
            Some(ChecksSub::List(a)) => checks::list(&ctx, &a.name).await,
            Some(ChecksSub::Set(a)) => checks::set(&ctx, a).await,
            Some(ChecksSub::Clear(a)) => checks::clear(&ctx, a).await,
        },
        Command::Cron(c) => match c.command {
            None => cron::list(&ctx, &required(c.name)?).await,
            Some(CronSub::List(a)) => cron::list(&ctx, &a.name).await,
        },
        Command::Logs(a) => logs::logs(&ctx, a).await,
        Command::Releases(r) => match r.command {
            None => releases::list(&ctx, &required(r.name)?).await,
            Some(ReleasesSub::List(a)) => releases::list(&ctx, &a.name).await,
            Some(ReleasesSub::Info(a)) => releases::info(&ctx, a).await,
            Some(ReleasesSub::Rollback(a)) => {
                let args = RollbackArgs {
                    name: a.name,
                    to: a.release,
                };
                ps::rollback(&ctx, args).await
            }
        },
        Command::Deploy(a) => deploy::deploy(&ctx, a).await,
        Command::Buildpacks(b) => match b.command {
            None => buildpacks::list(&ctx, &required(b.name)?).await,
            Some(BuildpacksSub::List(a)) => buildpacks::list(&ctx, &a.name).await,
            Some(BuildpacksSub::Set(a)) => buildpacks::set(&ctx, a).await,
            Some(BuildpacksSub::Clear(a)) => buildpacks::clear(&ctx, &a.name).await,
        },
        Command::Keys(k) => match k.command {
            None | Some(KeysSub::List) => keys::list(&ctx).await,
            Some(KeysSub::Add(a)) => keys::add(&ctx, a).await,
            Some(KeysSub::Remove(a)) => keys::remove(&ctx, &a.name).await,
        },
        Command::Backup(b) => match b.command {
            BackupSub::Create(a) => backup::create(&ctx, a).await,
            BackupSub::Restore(a) => backup::restore(&ctx, a).await,
        },
        Command::Volumes(v) => match v.command {
            None => volumes::list(&ctx, &required(v.name)?).await,
            Some(VolumesSub::List(a)) => volumes::list(&ctx, &a.name).await,
            Some(VolumesSub::Add(a)) => volumes::add(&ctx, a).await,
            Some(VolumesSub::Remove(a)) => volumes::remove(&ctx, a).await,
            Some(VolumesSub::Backup(a)) => volumes::backup(&ctx, a).await,
            Some(VolumesSub::Backups(a)) => volumes::backups(&ctx, a).await,
            Some(VolumesSub::Restore(a)) => volumes::restore(&ctx, a).await,
        },
        Command::Addons(a) => match a.command {
            None => addons::list(&ctx, a.app.as_deref()).await,
            Some(AddonsSub::List(l)) => addons::list(&ctx, l.app.as_deref()).await,
            Some(AddonsSub::Create(c)) => addons::create(&ctx, c).await,
            Some(AddonsSub::Info(i)) => addons::info(&ctx, &i.name).await,
            Some(AddonsSub::Destroy(d)) => addons::destroy(&ctx, d).await,
            Some(AddonsSub::Link(l)) => addons::link(&ctx, l).await,
            Some(AddonsSub::Unlink(l)) => addons::unlink(&ctx, l).await,
            Some(AddonsSub::Psql(p)) => addons::query(&ctx, &p.name, vec![p.command]).await,
            Some(AddonsSub::RedisCli(r)) => addons::query(&ctx, &r.name, r.args).await,
            Some(AddonsSub::Backup(b)) => addons::backup(&ctx, &b.name).await,
            Some(AddonsSub::Backups(b)) => addons::backups(&ctx, &b.name).await,
            Some(AddonsSub::Restore(r)) => addons::restore(&ctx, r).await,
            Some(AddonsSub::BackupSchedule(s)) => addons::schedule(&ctx, s).await,
        },
        Command::Stacks(s) => match s.command {
            None | Some(StacksSub::List) => stacks::list(&ctx).await,
            Some(StacksSub::Import(a)) => stacks::import(&ctx, a).await,
        },
    }
}

/// An app name clap already made required when no subcommand is given.
pub fn required(name: Option<String>) -> Result<String> {
    name.ok_or_else(|| UsageError("an app name is required".to_owned()).into())
}

/// `/api/v1/apps/{name}` followed by `rest`, which must already be encoded (see [`seg`]).
pub fn app_path(name: &str, rest: &str) -> Result<String> {
    Ok(format!(
        "{API_PREFIX}/apps/{}{rest}",
        seg(name, "app name")?
    ))
}

/// Percent-encodes one path segment; an empty one would address a different resource.
pub fn seg(value: &str, what: &str) -> Result<String> {
    if value.is_empty() {
        return Err(UsageError(format!("the {what} must not be empty")).into());
    }
    Ok(segment(value))
}

impl Ctx {
    /// Sends a request and returns the daemon's JSON answer as-is (for `--json`).
    pub async fn request<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value> {
        Ok(self.client.json(method, path, body).await?)
    }

    /// Streams a gzipped tarball (with a progress bar on a terminal) and decodes the answer.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        source: crate::source::Source,
    ) -> Result<T> {
        use http_body_util::BodyExt;
        use std::io::IsTerminal;
        let upload = crate::upload::Upload::start(source, std::io::stderr().is_terminal());
        let progress = upload.progress.clone();
        let headers = crate::upload::gzip_headers();
        let sent = self
            .client
            .send_upload(method, path, headers, upload.body)
            .await;
        progress.finish_and_clear();
        let resp = sent?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(paas_api::client::api_error(status, &bytes).into());
        }
        Ok(paas_api::client::decode(status, &bytes)?)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        Ok(self.client.get(path).await?)
    }

    /// Sends a request whose successful answer has no body (204).
    pub async fn call(&self, method: Method, path: &str) -> Result<()> {
        self.client
            .call::<()>(method, path, None)
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

/// Adds where to look to an error that names an instance which exited, was killed or failed
/// its check (a rollout that never got ready): `paas logs APP --ps web.1` ends the message.
pub fn with_logs_hint(app: &str, e: anyhow::Error) -> anyhow::Error {
    let message = match e.downcast_ref::<paas_api::ClientError>() {
        Some(c) if c.is_unreachable() => return e,
        Some(c) => c.to_string(),
        None => format!("{e:#}"),
    };
    match failed_instance(&message) {
        Some(instance) => {
            anyhow::anyhow!("{message}\nsee its output with: paas logs {app} --ps {instance}")
        }
        None => e,
    }
}

/// The instance (`web.1`) a failure message is about, if it names one the way paasd does.
fn failed_instance(message: &str) -> Option<&str> {
    const ENDINGS: [&str; 3] = [
        " exited with code ",
        " was killed",
        " failed its health check",
    ];
    ENDINGS.iter().find_map(|ending| {
        let before = &message[..message.find(ending)?];
        let word = before.rsplit([' ', ':', '(']).next()?;
        let (kind, n) = word.split_once('.')?;
        let ok = !kind.is_empty()
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit());
        ok.then_some(word)
    })
}

/// Reads the daemon's JSON as a wire type for human output.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).context(
        "paasd sent a response this client does not understand (is paas older than paasd?)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_instance_gets_a_logs_hint() {
        let e = anyhow::anyhow!(
            "v3 did not get ready: web.1 exited with code 1; the previous release keeps serving"
        );
        let hinted = format!("{:#}", with_logs_hint("shop", e));
        assert!(
            hinted.ends_with("\nsee its output with: paas logs shop --ps web.1"),
            "{hinted}"
        );
        assert_eq!(
            failed_instance("v2 did not get ready: my_worker.12 was killed by signal 9"),
            Some("my_worker.12")
        );
        assert_eq!(
            failed_instance(
                "v2 did not get ready: web.2 failed its health check (timeout); replaced"
            ),
            Some("web.2")
        );
        for other in [
            "app 'x' does not exist",
            "the process exited with code 1",
            "web. exited with code 1",
            ".1 exited with code 1",
        ] {
            assert_eq!(failed_instance(other), None, "{other}");
            let kept = format!("{:#}", with_logs_hint("x", anyhow::anyhow!("{other}")));
            assert_eq!(kept, other);
        }
    }
}
