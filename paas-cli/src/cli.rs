//! The command-line grammar (clap derive structs) and the hidden dokku-style `topic:verb`
//! argv rewrite. Owns what the user may type; must not talk to the daemon or print.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::args::UsageError;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  paasd refused the request (API error), or another runtime failure
  2  usage error (bad arguments or flags; nothing was sent)
  3  paasd could not be reached (socket missing, refused, or permission denied)";

/// Deploy and run apps on this host.
#[derive(Debug, Parser)]
#[command(
    name = "paas",
    version,
    about = "Deploy and run apps on this host",
    long_about = "Deploy and run apps on this host.\n\n\
        Talks to paasd over its Unix socket. Data goes to stdout; progress, confirmations \
        and errors go to stderr.",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Path of paasd's Unix socket.
    #[arg(
        long,
        global = true,
        env = "PAAS_SOCKET",
        value_name = "PATH",
        default_value = paas_api::DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Print machine-readable JSON (the daemon's answer) instead of human output.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage apps (lists apps when no subcommand is given).
    Apps(AppsCmd),
    /// Create an app (same as `apps create`).
    Create(CreateArgs),
    /// Show an app (same as `apps info`).
    Info(AppArg),
    /// Destroy an app and everything it owns (same as `apps destroy`).
    Destroy(DestroyArgs),
    /// Show or change an app's config vars (also: `config`, `config:set`, `config:get`...).
    #[command(visible_alias = "config")]
    Env(EnvCmd),
    /// Show or change an app's domains.
    Domains(DomainsCmd),
    /// Show an app's HTTPS certificates, add or remove one, or change its redirect and HSTS.
    Certs(CertsCmd),
    /// Show or change how many instances of each process type run.
    Scale(ScaleArgs),
    /// Build and release an app from a directory or a tarball (like `git push`).
    Deploy(DeployArgs),
    /// List an app's releases, newest first, or show one (`releases info APP v3`).
    Releases(ReleasesCmd),
    /// Show or change the buildpacks an app is built with (detected when none are set).
    Buildpacks(BuildpacksCmd),
    /// Stacks apps run on: list them, or import a root filesystem tarball as a new one.
    Stacks(StacksCmd),
    /// List an app's instances: state, release, uptime, restarts, address and health
    /// (also `ps:report`, `ps:scale`, `ps:restart`).
    Ps(PsCmd),
    /// Restart an app's instances without downtime: replacements get ready before the old
    /// ones are drained and stopped.
    Restart(AppArg),
    /// Roll back: a new release with an earlier release's build and config, rolled out.
    Rollback(RollbackArgs),
    /// Show or set an app's instance limits per process type: memory, CPU, processes and
    /// disk (applied at the next rollout: `paas restart APP`); TYPE `build` sets its builds'.
    Resources(ResourcesArgs),
    /// Show or set health checks per process type (they gate routing and replace stuck
    /// instances).
    Checks(ChecksCmd),
    /// List an app's cron entries (app.json `cron`): schedule, command, next and last run
    /// (also `cron:list`).
    Cron(CronCmd),
    /// Run a one-off command in a fresh container with the app's config (like `heroku run`).
    /// One argument is a shell command line; several are an argv. Exits with the command's status.
    Run(RunArgs),
    /// Show an app's log stream: app output, router access lines, builds and platform events.
    Logs(LogsArgs),
    /// SSH keys allowed to `git push` (run on the server; lists them when no subcommand is
    /// given).
    Keys(KeysCmd),
    /// Back up the whole platform to one archive, or restore one into a fresh install.
    Backup(BackupCmd),
    /// Persistent volumes of an app: disk images mounted read-write into every instance and
    /// one-off, kept across releases (lists them when no subcommand is given).
    Volumes(VolumesCmd),
    /// Add-on services (PostgreSQL, Redis) linked to apps: create, link, query, back up and
    /// restore (lists an app's, or all, when no subcommand is given).
    Addons(AddonsCmd),
}

#[derive(Debug, Args)]
pub struct BackupCmd {
    #[command(subcommand)]
    pub command: BackupSub,
}

#[derive(Debug, Subcommand)]
pub enum BackupSub {
    /// Write one archive: database snapshot, key file, current slugs, git repos, volumes and
    /// add-on backups. It holds the key to every config var: keep it secret.
    Create(BackupCreateArgs),
    /// Restore an archive into this fresh install (no apps, no add-ons) and start the apps.
    Restore(BackupRestoreArgs),
}

#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    /// Where to write it (default: paas-backup-TIMESTAMP.tar.gz here); never overwritten.
    pub file: Option<std::path::PathBuf>,
    /// Encrypt it with the passphrase on this file's first line (argon2id +
    /// XChaCha20-Poly1305); also `$PAAS_BACKUP_PASSPHRASE`. paasd never sees it.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupRestoreArgs {
    pub file: std::path::PathBuf,
    /// The passphrase of an encrypted archive, on this file's first line (or
    /// `$PAAS_BACKUP_PASSPHRASE`).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct VolumesCmd {
    #[command(subcommand)]
    pub command: Option<VolumesSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum VolumesSub {
    /// List the app's volumes: path, size, use.
    List(AppArg),
    /// Add a volume (the app restarts to mount it).
    Add(VolumeAddArgs),
    /// Remove a volume and delete its data (the app restarts without it).
    Remove(VolumeRemoveArgs),
    /// Write a tarball of a volume's files (kept under the state dir).
    Backup(VolumeNameArgs),
    /// List a volume's backups, oldest first.
    Backups(VolumeNameArgs),
    /// Replace a volume's files with a backup's (the app restarts).
    Restore(VolumeRestoreArgs),
}

#[derive(Debug, Args)]
pub struct VolumeNameArgs {
    pub app: String,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct VolumeRestoreArgs {
    pub app: String,
    pub name: String,
    /// The backup's name, as `paas volumes backups APP NAME` lists it.
    pub backup: String,
}

#[derive(Debug, Args)]
pub struct VolumeAddArgs {
    /// App name.
    pub app: String,
    /// The volume's name.
    pub name: String,
    /// Where it is mounted in the app's containers (under /data, /mnt, /srv or /storage).
    pub path: String,
    /// Size in MB (default 1024): writes beyond it fail with "No space left on device".
    #[arg(long, value_name = "MB")]
    pub size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VolumeRemoveArgs {
    pub app: String,
    pub name: String,
    /// Repeat the volume's name to confirm; its data is deleted.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AddonsCmd {
    #[command(subcommand)]
    pub command: Option<AddonsSub>,
    /// List only the add-ons linked to this app.
    pub app: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AddonsSub {
    /// List add-ons (an app's, or all).
    List(AddonsListArgs),
    /// Create a service and link it to APP: its URL lands in DATABASE_URL / REDIS_URL (or
    /// NAME_URL when that is taken) with a new release and a rolling restart.
    Create(AddonCreateArgs),
    /// Show a service: state, address, links, schedule, latest output.
    Info(AddonNameArg),
    /// Stop a service and delete its data (its backups are kept).
    Destroy(AddonDestroyArgs),
    /// Share a service with another app (sets the URL there, restarts it).
    Link(AddonLinkArgs),
    /// Take a service away from an app (unsets its URL there, restarts it).
    Unlink(AddonLinkArgs),
    /// Run SQL against a PostgreSQL service: `paas addons psql NAME -c 'SELECT 1'`.
    Psql(AddonPsqlArgs),
    /// Run a Redis command against a Redis service: `paas addons redis-cli NAME GET k`.
    #[command(name = "redis-cli")]
    RedisCli(AddonRedisArgs),
    /// Back a service up now (pg_dump custom format / Redis RDB).
    Backup(AddonNameArg),
    /// List a service's backups, oldest first.
    Backups(AddonNameArg),
    /// Replace a service's data with a backup's.
    Restore(AddonRestoreArgs),
    /// Back a service up on a schedule and keep the newest N: `--every 1h --keep 24`, or `--off`.
    #[command(name = "backup-schedule")]
    BackupSchedule(AddonScheduleArgs),
}

#[derive(Debug, Args)]
pub struct AddonsListArgs {
    /// Only the add-ons linked to this app.
    pub app: Option<String>,
}

#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct AddonCreateArgs {
    /// App the new service is linked to.
    pub app: String,
    /// `postgres` or `redis`.
    pub kind: String,
    /// The service's name (default APP-KIND).
    #[arg(long = "as", value_name = "NAME")]
    pub name: Option<String>,
    /// A major version installed on the host (default: the newest).
    #[arg(long)]
    pub version: Option<String>,
    /// Memory limit in MB (default 512).
    #[arg(long, value_name = "MB")]
    pub memory: Option<u64>,
    /// Size of its data disk in MB (default 1024).
    #[arg(long, value_name = "MB")]
    pub disk: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AddonNameArg {
    /// The add-on's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AddonDestroyArgs {
    pub name: String,
    /// Repeat the add-on's name to confirm; nothing happens without it.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddonLinkArgs {
    pub name: String,
    pub app: String,
}

#[derive(Debug, Args)]
pub struct AddonPsqlArgs {
    pub name: String,
    /// The SQL to run.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: String,
}

#[derive(Debug, Args)]
pub struct AddonRedisArgs {
    pub name: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AddonRestoreArgs {
    pub name: String,
    /// The backup's name (`paas addons backups NAME` lists them), or OTHER/BACKUP for one of
    /// another service, destroyed or not.
    pub backup: String,
}

#[derive(Debug, Args)]
pub struct AddonScheduleArgs {
    pub name: String,
    /// How often, e.g. 1h, 30m, 1d.
    #[arg(long, value_parser = humantime::parse_duration, required_unless_present = "off")]
    pub every: Option<std::time::Duration>,
    /// How many scheduled backups to keep (manual ones are never pruned).
    #[arg(long, default_value_t = 24)]
    pub keep: u32,
    /// Turn the schedule off (its backups stay).
    #[arg(long, conflicts_with = "every")]
    pub off: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "A key added here may push to any app: `git remote add paas paas@HOST:APP`, then `git push paas main`. It can run nothing else over SSH."
)]
pub struct KeysCmd {
    #[command(subcommand)]
    pub command: Option<KeysSub>,
}

#[derive(Debug, Subcommand)]
pub enum KeysSub {
    /// List the keys: name, type, fingerprint, when added.
    List,
    /// Allow a public key to push (the .pub file, or - for standard input).
    Add(KeyAddArgs),
    /// Stop accepting a key (its pushes are refused from now on).
    Remove(KeyNameArg),
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// A name for the key, e.g. alice or ci.
    pub name: String,
    /// The public key file (e.g. ~/.ssh/id_ed25519.pub), or - to read it from stdin.
    #[arg(value_name = "PUBKEY-FILE|-")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeyNameArg {
    /// The key's name.
    pub name: String,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Lines look like `2026-11-23T10:00:00.123Z app[web.1] v12: listening`: the time (UTC), where \
the line came from (app[INSTANCE], router, build or paasd) and the release it belongs to. \
With --json, stdout gets paasd's NDJSON events as they arrive. When --follow reads too \
slowly, paasd skips lines for it and a note on stderr says how many.")]
pub struct LogsArgs {
    /// App whose logs to show.
    pub name: String,
    /// How many of the newest lines to show (default 100; with --follow, before the new ones).
    /// The older spelling `--tail N` still works.
    #[arg(long, short = 'n', value_name = "N")]
    pub num: Option<u64>,
    /// Only lines since then: a duration back from now (2h, 30m) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines of this release (v12).
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// Keep going: print new lines as they come, until interrupted (`--tail`, `-t`: Heroku's
    /// spelling).
    #[arg(long, short = 'f', visible_alias = "tail", visible_short_alias = 't')]
    pub follow: bool,
    /// Only a process type (web) or one instance (web.1).
    #[arg(long, value_name = "TYPE|INSTANCE")]
    pub ps: Option<String>,
    /// Only lines from this source: app, router, build, platform or cron.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
A directory is packed as a gzipped tarball while it is uploaded. Files matched by a \
.gitignore or .paasignore (same syntax; .paasignore wins, so `!dist/` ships a directory git \
ignores) in the directory or below are left out, and so is .git/. Symlinks are sent as \
symlinks. A .tar.gz/.tgz file is uploaded as it is.

Build output goes to stderr; the release (`Released v3 of APP`) and the app's URLs go to \
stdout; with --json, stdout gets paasd's NDJSON deploy events as they arrive. Exit 1 when \
paasd refuses the source or the build or release fails.")]
pub struct DeployArgs {
    /// App to deploy.
    pub name: String,
    /// Directory or gzipped tarball (.tar.gz/.tgz) to deploy.
    #[arg(long, value_name = "DIR|TARBALL", default_value = ".")]
    pub source: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// App whose release and config the container gets.
    pub name: String,
    /// Memory limit in MiB (default 512); exceeding it kills the command (exit 137).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// CPU quota in percent of one CPU (default 100).
    #[arg(long, value_name = "PERCENT")]
    pub cpu: Option<u32>,
    /// Maximum number of processes and threads (default 512).
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// The command, after `--` if it has options of its own: `paas run web -- ls -la`.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AppsCmd {
    #[command(subcommand)]
    pub command: Option<AppsSub>,
}

#[derive(Debug, Subcommand)]
pub enum AppsSub {
    /// List apps.
    List,
    /// Create an app.
    Create(CreateArgs),
    /// Show an app.
    Info(AppArg),
    /// Destroy an app and everything it owns.
    Destroy(DestroyArgs),
}

#[derive(Debug, Args)]
pub struct AppArg {
    /// App name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new app.
    pub name: String,
    /// Buildpack to build the app with (default: detected).
    #[arg(long, value_name = "BUILDPACK")]
    pub buildpack: Option<String>,
    /// Stack to run the app on (default: the platform's).
    #[arg(long, value_name = "STACK")]
    pub stack: Option<String>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// App to destroy.
    pub name: String,
    /// Repeat the app name to confirm; nothing happens without it.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    /// Also delete the app's volumes and their data (refused without it when it has any).
    #[arg(long)]
    pub delete_volumes: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EnvCmd {
    #[command(subcommand)]
    pub command: Option<EnvSub>,
    #[command(flatten)]
    pub list: EnvListArgs,
}

#[derive(Debug, Subcommand)]
pub enum EnvSub {
    /// List config vars as KEY=value lines.
    List(EnvListArgs),
    /// Set config vars (creates a release).
    Set(EnvSetArgs),
    /// Remove config vars (creates a release).
    Unset(EnvUnsetArgs),
    /// Print one var's value, unredacted, for scripts (fails if it is not set).
    Get(EnvGetArgs),
}

#[derive(Debug, Args)]
pub struct EnvGetArgs {
    /// App name.
    pub name: String,
    /// The variable.
    #[arg(value_name = "KEY")]
    pub key: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PsCmd {
    #[command(subcommand)]
    pub command: Option<PsSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PsSub {
    /// List the app's instances (same as `ps APP`).
    Report(AppArg),
    /// Change how many instances of each process type run (same as `scale`).
    Scale(ScaleArgs),
    /// Restart the app's instances without downtime (same as `restart`).
    Restart(AppArg),
}

#[derive(Debug, Args)]
pub struct EnvListArgs {
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Show secret-looking values (and passwords in URLs) instead of [REDACTED].
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Debug, Args)]
pub struct EnvSetArgs {
    /// App name.
    pub name: String,
    /// Variables to set; the value is everything after the first '='.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub pairs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnvUnsetArgs {
    /// App name.
    pub name: String,
    /// Variables to remove.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DomainsCmd {
    #[command(subcommand)]
    pub command: Option<DomainsSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DomainsSub {
    /// List domains, one per line.
    List(AppArg),
    /// Route a domain to the app.
    Add(DomainArgs),
    /// Stop routing a domain to the app.
    Remove(DomainArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CertsCmd {
    #[command(subcommand)]
    pub command: Option<CertsSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
    /// Whether plain-HTTP requests for a name with a certificate get a redirect to HTTPS.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub redirect: Option<bool>,
    /// Whether HTTPS responses carry Strict-Transport-Security (max-age one year).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub hsts: Option<bool>,
    /// Get the app's ACME certificates issued again now.
    #[arg(long, conflicts_with_all = ["redirect", "hsts"])]
    pub renew: bool,
}

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{v}' is not on or off")),
    }
}

#[derive(Debug, Subcommand)]
pub enum CertsSub {
    /// Serve a certificate (PEM chain, leaf first) with its private key (PEM) for every
    /// domain of the app it covers.
    Add(CertAddArgs),
    /// Stop serving the certificate of one domain.
    Remove(DomainArgs),
    /// List the platform-wide certificates (a wildcard for the base domain).
    Base,
    /// Serve a wildcard certificate for the base domain (*.BASE) for every APP.BASE without
    /// a certificate of its own.
    AddBase(CertFiles),
    /// Stop serving a platform-wide certificate.
    RemoveBase(BaseDomainArg),
}

#[derive(Debug, Args)]
pub struct CertFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key, PEM.
    pub key: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct BaseDomainArg {
    /// The certificate's name, e.g. *.apps.example.com.
    pub domain: String,
}

#[derive(Debug, Args)]
pub struct CertAddArgs {
    /// App name.
    pub name: String,
    /// The certificate chain, PEM, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key, PEM.
    pub key: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct DomainArgs {
    /// App name.
    pub name: String,
    /// Domain name, e.g. www.example.com.
    pub domain: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// App name.
    pub name: String,
    /// Release to go back to (e.g. v3); default: the one before the current release.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Entries come from the app.json of the current release; each runs at the \
minutes its schedule names (UTC) as a one-off on that release. Their output is in \
`paas logs APP --source cron`."
)]
pub struct CronCmd {
    #[command(subcommand)]
    pub command: Option<CronSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CronSub {
    /// List the entries with their next and last run.
    List(AppArg),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ChecksCmd {
    #[command(subcommand)]
    pub command: Option<ChecksSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChecksSub {
    /// Show the checks in force per process type and where they come from.
    List(AppArg),
    /// Set the check of a process type (over app.json's); used from the next rollout.
    Set(ChecksSetArgs),
    /// Remove a check set here: app.json's or the default applies again.
    Clear(ChecksClearArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "\
Without --path the check is a TCP connect to the port. startup and readiness checks must \
pass before an instance gets traffic (a deploy fails if they never do, and the old release \
keeps serving); liveness checks keep running and replace an instance that fails them \
--attempts times in a row. Default for web: a TCP connect to $PORT within 60 s.")]
pub struct ChecksSetArgs {
    /// App name.
    pub name: String,
    /// Process type, e.g. web.
    pub process_type: String,
    /// HTTP path to GET (2xx or 3xx passes).
    #[arg(long)]
    pub path: Option<String>,
    /// startup, readiness or liveness.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Port inside the instance (default: $PORT, 5000).
    #[arg(long)]
    pub port: Option<u16>,
    /// Seconds one attempt may take (default 5).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Attempts before the check fails (default 60; liveness 3).
    #[arg(long)]
    pub attempts: Option<u32>,
    /// Seconds between attempts (default 1; liveness 10).
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Seconds before the first attempt.
    #[arg(long, value_name = "SECS")]
    pub initial_delay: Option<u64>,
    /// Text the response body must contain.
    #[arg(long)]
    pub content: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Without a limit flag or --reset, shows the limits each process type gets and where each \
comes from: `default` (paasd's [instances] config), `app` (set without a type: every type) \
or `process type` (set for that type, which wins field by field). Memory and disk are in MB, \
CPU in % of one CPU (200 = two CPUs), pids counts processes and threads. `default` as a \
value (--memory default) or --reset returns limits to the default. Nothing restarts: the \
limits apply to instances started from then on (the next deploy, restart, rollback or \
config change; `paas restart APP` applies them now).")]
pub struct ResourcesArgs {
    /// App name.
    pub name: String,
    /// Process type, e.g. web (default: every process type of the app).
    #[arg(value_name = "TYPE")]
    pub process_type: Option<String>,
    /// Memory limit in MB (no swap), or `default`.
    #[arg(long, value_name = "MB|default", allow_negative_numbers = true)]
    pub memory: Option<String>,
    /// CPU quota in % of one CPU, or `default`.
    #[arg(long, value_name = "PERCENT|default", allow_negative_numbers = true)]
    pub cpu: Option<String>,
    /// Most processes and threads, or `default`.
    #[arg(long, value_name = "N|default", allow_negative_numbers = true)]
    pub pids: Option<String>,
    /// Size of the writable layer (/app, /tmp, ...) in MB, or `default`.
    #[arg(long, value_name = "MB|default", allow_negative_numbers = true)]
    pub disk: Option<String>,
    /// Return every limit of TYPE (or, without a type, of the app) to its default.
    #[arg(long, conflicts_with_all = ["memory", "cpu", "pids", "disk"])]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct ChecksClearArgs {
    /// App name.
    pub name: String,
    /// Process type, e.g. web.
    pub process_type: String,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name.
    pub name: String,
    /// New instance counts, e.g. web=2 worker=1. Without any, shows the current formation.
    #[arg(value_name = "TYPE=N")]
    pub counts: Vec<String>,
    /// Number of web instances (same as web=N).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub instances: Option<i64>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleasesCmd {
    #[command(subcommand)]
    pub command: Option<ReleasesSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReleasesSub {
    /// List releases, newest first.
    List(AppArg),
    /// Show one release: what it was built from, how, by whom, and how long each phase took.
    Info(ReleaseInfoArgs),
    /// Roll back to a release (default: the one before the current); same as `rollback`.
    Rollback(ReleasesRollbackArgs),
}

#[derive(Debug, Args)]
pub struct ReleasesRollbackArgs {
    /// App name.
    pub name: String,
    /// Release to go back to, e.g. v3 (default: the one before the current release).
    #[arg(value_name = "VERSION")]
    pub release: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseInfoArgs {
    /// App name.
    pub name: String,
    /// Release version, e.g. v3 or 3.
    #[arg(value_name = "VERSION")]
    pub release: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BuildpacksCmd {
    #[command(subcommand)]
    pub command: Option<BuildpacksSub>,
    /// App name.
    #[arg(required = true)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BuildpacksSub {
    /// List the app's buildpacks in the order they run, one per line.
    List(AppArg),
    /// Replace the app's buildpacks (built-in names, directories or git URLs), run in order.
    Set(BuildpacksSetArgs),
    /// Remove the app's buildpacks: the next deploy detects one again.
    Clear(AppArg),
}

#[derive(Debug, Args)]
pub struct BuildpacksSetArgs {
    /// App name.
    pub name: String,
    /// Buildpacks, in the order they run.
    #[arg(required = true, value_name = "BUILDPACK")]
    pub buildpacks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StacksCmd {
    #[command(subcommand)]
    pub command: Option<StacksSub>,
}

#[derive(Debug, Subcommand)]
pub enum StacksSub {
    /// List the stacks, one per line.
    List,
    /// Import a gzipped root filesystem tarball (e.g. from debootstrap) as stack NAME.
    Import(StackImportArgs),
}

#[derive(Debug, Args)]
pub struct StackImportArgs {
    /// Name of the new stack (like an app name).
    pub name: String,
    /// The .tar.gz of a root filesystem.
    #[arg(value_name = "TARBALL")]
    pub tarball: PathBuf,
}

/// Global flags that take a separate value; their value is never a `topic:verb`.
const FLAGS_WITH_VALUE: &[&str] = &["--socket"];

/// Everything done to argv before clap sees it: [`rewrite_colon_alias`] (refusing a
/// `topic:verb` whose topic has no such verb, listing the ones it has) and the older
/// `logs --tail N` spelling of `--num N` (`--tail` alone is Heroku's follow).
pub fn rewrite(args: Vec<OsString>) -> Result<Vec<OsString>, UsageError> {
    if let Some(i) = command_position(&args) {
        if let Some((topic, verb)) = args[i].to_str().and_then(split_topic_verb) {
            check_verb(topic, verb)?;
        }
    }
    let mut args = rewrite_colon_alias(args);
    if let Some(i) = command_position(&args) {
        if args[i] == "logs" {
            old_logs_tail(&mut args[i + 1..]);
        }
    }
    Ok(args)
}

/// Rewrites dokku-style `topic:verb` (the first non-flag argument) into `topic verb`.
/// Everything else is passed through untouched for clap to judge.
pub fn rewrite_colon_alias(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(i) = command_position(&args) else {
        return args;
    };
    let split = args[i]
        .to_str()
        .and_then(split_topic_verb)
        .map(|(t, v)| (OsString::from(t), OsString::from(v)));
    if let Some((topic, verb)) = split {
        args[i] = topic;
        args.insert(i + 1, verb);
    }
    args
}

/// Index of the first argument after argv[0] that is neither a global flag nor its value;
/// `None` when there is none, or `--` or a non-UTF-8 argument comes first.
fn command_position(args: &[OsString]) -> Option<usize> {
    let mut skip_value = false;
    for (i, arg) in args.iter().enumerate().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        let s = arg.to_str()?;
        if s == "--" {
            return None;
        } else if s.starts_with('-') {
            skip_value = FLAGS_WITH_VALUE.contains(&s);
        } else {
            return Some(i);
        }
    }
    None
}

fn split_topic_verb(s: &str) -> Option<(&str, &str)> {
    s.split_once(':')
        .filter(|(topic, verb)| !topic.is_empty() && !verb.is_empty())
}

/// `topic:verb` where `topic` is a command (or its alias) without a subcommand `verb`: says
/// which ones it has. Unknown topics are left to clap.
fn check_verb(topic: &str, verb: &str) -> Result<(), UsageError> {
    let cli = Cli::command();
    let Some(cmd) = cli.find_subcommand(topic) else {
        return Ok(());
    };
    if cmd.find_subcommand(verb).is_some() {
        return Ok(());
    }
    let verbs: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name())
        .filter(|v| *v != "help")
        .map(|v| format!("{topic}:{v}"))
        .collect();
    Err(UsageError(if verbs.is_empty() {
        format!("unknown command '{topic}:{verb}': `paas {topic}` has no subcommands (see `paas {topic} --help`)")
    } else {
        format!(
            "unknown command '{topic}:{verb}'; the {topic} commands are {} (see `paas {topic} --help`)",
            verbs.join(", ")
        )
    }))
}

/// `logs ... --tail N` / `--tail=N` (a count, the older spelling) becomes `--num N`; any other
/// `--tail` stays, and clap reads it as `--follow` (Heroku). Stops at `--`.
fn old_logs_tail(args: &mut [OsString]) {
    let is_count = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for i in 0..args.len() {
        let Some(s) = args[i].to_str() else { continue };
        if s == "--" {
            return;
        }
        if s == "--tail"
            && args
                .get(i + 1)
                .and_then(|n| n.to_str())
                .is_some_and(is_count)
        {
            args[i] = OsString::from("--num");
        } else if let Some(n) = s.strip_prefix("--tail=") {
            if is_count(n) {
                args[i] = OsString::from(format!("--num={n}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_colon_alias(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn colon_alias_is_split() {
        assert_eq!(
            rw(&["paas", "apps:create", "x"]),
            ["paas", "apps", "create", "x"]
        );
        assert_eq!(
            rw(&["paas", "env:set", "x", "A=b:c"]),
            ["paas", "env", "set", "x", "A=b:c"]
        );
    }

    #[test]
    fn colon_alias_skips_leading_flags() {
        assert_eq!(
            rw(&["paas", "--json", "domains:add", "x", "d.com"]),
            ["paas", "--json", "domains", "add", "x", "d.com"]
        );
        assert_eq!(
            rw(&["paas", "--socket", "/tmp/a:b.sock", "apps:list"]),
            ["paas", "--socket", "/tmp/a:b.sock", "apps", "list"]
        );
        assert_eq!(
            rw(&["paas", "--socket=/tmp/s", "apps:info", "x"]),
            ["paas", "--socket=/tmp/s", "apps", "info", "x"]
        );
    }

    #[test]
    fn only_the_first_non_flag_argument_is_rewritten() {
        assert_eq!(
            rw(&["paas", "env", "set", "x", "URL=http://a:1"]),
            ["paas", "env", "set", "x", "URL=http://a:1"]
        );
        assert_eq!(
            rw(&["paas", "apps:destroy", "x", "--confirm", "x"]),
            ["paas", "apps", "destroy", "x", "--confirm", "x"]
        );
    }

    #[test]
    fn degenerate_colons_and_double_dash_are_left_alone() {
        assert_eq!(rw(&["paas", ":create"]), ["paas", ":create"]);
        assert_eq!(rw(&["paas", "apps:"]), ["paas", "apps:"]);
        assert_eq!(
            rw(&["paas", "--", "apps:list"]),
            ["paas", "--", "apps:list"]
        );
        assert_eq!(rw(&["paas"]), ["paas"]);
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            rewrite(args.iter().map(OsString::from).collect()).expect("a known topic:verb"),
        )
    }

    #[test]
    fn heroku_and_dokku_names_parse_to_the_same_commands() {
        match parse(&["paas", "config", "x"]).expect("parses").command {
            Command::Env(EnvCmd {
                command: None,
                list,
            }) => assert_eq!(list.name.as_deref(), Some("x")),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "config:set", "x", "A=1", "B=2"])
            .expect("parses")
            .command
        {
            Command::Env(EnvCmd {
                command: Some(EnvSub::Set(a)),
                ..
            }) => assert_eq!((a.name.as_str(), a.pairs.len()), ("x", 2)),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "config:unset", "x", "A"])
            .expect("parses")
            .command
        {
            Command::Env(EnvCmd {
                command: Some(EnvSub::Unset(a)),
                ..
            }) => assert_eq!(a.keys, ["A"]),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "config:get", "x", "A"])
            .expect("parses")
            .command
        {
            Command::Env(EnvCmd {
                command: Some(EnvSub::Get(a)),
                ..
            }) => assert_eq!((a.name.as_str(), a.key.as_str()), ("x", "A")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            parse(&["paas", "config:get", "x"]).is_err(),
            "the key is required"
        );
        match parse(&["paas", "ps:scale", "x", "web=2"])
            .expect("parses")
            .command
        {
            Command::Ps(PsCmd {
                command: Some(PsSub::Scale(a)),
                ..
            }) => assert_eq!(
                (a.name.as_str(), a.counts.as_slice()),
                ("x", &["web=2".to_owned()][..])
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(&["paas", "ps:restart", "x"]).expect("parses").command,
            Command::Ps(PsCmd {
                command: Some(PsSub::Restart(AppArg { .. })),
                ..
            })
        ));
        assert!(matches!(
            parse(&["paas", "ps:report", "x"]).expect("parses").command,
            Command::Ps(PsCmd {
                command: Some(PsSub::Report(AppArg { .. })),
                ..
            })
        ));
        match parse(&["paas", "ps", "x"]).expect("parses").command {
            Command::Ps(PsCmd {
                command: None,
                name,
            }) => assert_eq!(name.as_deref(), Some("x")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "ps"]).is_err());
        assert!(matches!(
            parse(&["paas", "apps:info", "x"]).expect("parses").command,
            Command::Apps(AppsCmd {
                command: Some(AppsSub::Info(_))
            })
        ));
        assert!(matches!(
            parse(&["paas", "domains:add", "x", "a.example.com"])
                .expect("parses")
                .command,
            Command::Domains(DomainsCmd {
                command: Some(DomainsSub::Add(_)),
                ..
            })
        ));
        for (args, want) in [
            (&["paas", "releases:rollback", "x", "v3"][..], Some("v3")),
            (&["paas", "releases:rollback", "x"][..], None),
        ] {
            match parse(args).expect("parses").command {
                Command::Releases(ReleasesCmd {
                    command: Some(ReleasesSub::Rollback(a)),
                    ..
                }) => assert_eq!((a.name.as_str(), a.release.as_deref()), ("x", want)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn logs_of(args: &[&str]) -> LogsArgs {
        match parse(args).expect("parses").command {
            Command::Logs(a) => a,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn logs_tail_follows_like_heroku_and_tail_n_still_counts() {
        for args in [
            &["paas", "logs", "x", "--tail"][..],
            &["paas", "logs", "x", "-t"],
            &["paas", "logs", "--tail", "x"],
            &["paas", "logs", "x", "-f"],
        ] {
            let a = logs_of(args);
            assert!(
                a.follow && a.num.is_none() && a.name == "x",
                "{args:?}: {a:?}"
            );
        }
        for args in [
            &["paas", "logs", "x", "--tail", "5"][..],
            &["paas", "logs", "x", "--tail=5"],
            &["paas", "logs", "x", "--num", "5"],
            &["paas", "logs", "x", "-n", "5"],
        ] {
            let a = logs_of(args);
            assert!(!a.follow && a.num == Some(5), "{args:?}: {a:?}");
        }
        let a = logs_of(&["paas", "logs", "x", "--tail", "--num", "7"]);
        assert!(a.follow && a.num == Some(7), "{a:?}");
        let a = logs_of(&["paas", "logs", "x", "-t", "-n", "7"]);
        assert!(a.follow && a.num == Some(7), "{a:?}");
        // Only `logs` gets this reading.
        assert_eq!(
            rw(&["paas", "run", "x", "--", "tail", "--tail", "5"]),
            ["paas", "run", "x", "--", "tail", "--tail", "5"]
        );
        let kept: Vec<String> = rewrite(
            ["paas", "run", "x", "cmd", "--tail", "5"]
                .iter()
                .map(OsString::from)
                .collect(),
        )
        .expect("rewrite")
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        assert_eq!(kept, ["paas", "run", "x", "cmd", "--tail", "5"]);
    }

    fn unknown(args: &[&str]) -> String {
        rewrite(args.iter().map(OsString::from).collect())
            .expect_err("refused")
            .0
    }

    #[test]
    fn an_unknown_verb_of_a_known_topic_lists_the_verbs() {
        let m = unknown(&["paas", "config:foo", "x"]);
        assert!(
            m.contains("unknown command 'config:foo'")
                && m.contains("config:set")
                && m.contains("config:unset")
                && m.contains("config:get"),
            "{m}"
        );
        let m = unknown(&["paas", "ps:nosuch", "x"]);
        assert!(
            m.contains("ps:scale") && m.contains("ps:restart") && m.contains("ps:report"),
            "{m}"
        );
        let m = unknown(&["paas", "--json", "apps:nope"]);
        assert!(
            m.contains("apps:create") && m.contains("apps:info") && m.contains("apps:destroy"),
            "{m}"
        );
        let m = unknown(&["paas", "logs:drains", "x"]);
        assert!(m.contains("`paas logs` has no subcommands"), "{m}");
        // Unknown topics are clap's to refuse; known verbs pass.
        assert!(rewrite(vec!["paas".into(), "nosuch:thing".into()]).is_ok());
        assert!(rewrite(vec!["paas".into(), "env:set".into()]).is_ok());
        assert!(rewrite(vec!["paas".into(), "config:unset".into()]).is_ok());
    }

    #[test]
    fn bare_topics_take_an_app_name() {
        let cli = parse(&["paas", "env", "x", "--reveal"]).expect("parses");
        match cli.command {
            Command::Env(EnvCmd {
                command: None,
                list,
            }) => {
                assert_eq!(list.name.as_deref(), Some("x"));
                assert!(list.reveal);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["paas", "env:set", "x", "A=1"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Env(EnvCmd {
                command: Some(EnvSub::Set(_)),
                ..
            })
        ));
        assert!(parse(&["paas", "env"]).is_err());
        assert!(parse(&["paas", "domains"]).is_err());
        assert!(parse(&["paas", "releases"]).is_err());
        assert!(parse(&["paas", "apps"]).is_ok());
    }

    #[test]
    fn deploy_source_defaults_to_the_current_directory() {
        match parse(&["paas", "deploy", "x"]).expect("parses").command {
            Command::Deploy(d) => {
                assert_eq!(d.name, "x");
                assert_eq!(d.source, PathBuf::from("."));
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "deploy", "x", "--source", "app.tgz"])
            .expect("parses")
            .command
        {
            Command::Deploy(d) => assert_eq!(d.source, PathBuf::from("app.tgz")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "deploy"]).is_err());
    }

    #[test]
    fn buildpacks_and_releases_verbs() {
        match parse(&["paas", "buildpacks", "x"]).expect("parses").command {
            Command::Buildpacks(BuildpacksCmd {
                command: None,
                name,
            }) => assert_eq!(name.as_deref(), Some("x")),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "buildpacks:set", "x", "nodejs", "/opt/bp"])
            .expect("parses")
            .command
        {
            Command::Buildpacks(BuildpacksCmd {
                command: Some(BuildpacksSub::Set(a)),
                ..
            }) => assert_eq!(a.buildpacks, ["nodejs", "/opt/bp"]),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "buildpacks", "set", "x"]).is_err());
        assert!(matches!(
            parse(&["paas", "buildpacks:clear", "x"])
                .expect("parses")
                .command,
            Command::Buildpacks(BuildpacksCmd {
                command: Some(BuildpacksSub::Clear(_)),
                ..
            })
        ));
        assert!(parse(&["paas", "buildpacks"]).is_err());
        match parse(&["paas", "releases:info", "x", "v3"])
            .expect("parses")
            .command
        {
            Command::Releases(ReleasesCmd {
                command: Some(ReleasesSub::Info(a)),
                ..
            }) => assert_eq!((a.name.as_str(), a.release.as_str()), ("x", "v3")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "releases", "info", "x"]).is_err());
    }

    #[test]
    fn logs_flags() {
        match parse(&[
            "paas", "logs", "x", "-f", "-n", "5", "--since", "2h", "--ps", "web",
        ])
        .expect("parses")
        .command
        {
            Command::Logs(a) => {
                assert_eq!(a.name, "x");
                assert!(a.follow);
                assert_eq!(a.num, Some(5));
                assert_eq!(a.since.as_deref(), Some("2h"));
                assert_eq!(a.ps.as_deref(), Some("web"));
                assert_eq!((a.release, a.source), (None, None));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "logs"]).is_err());
        assert!(parse(&["paas", "logs", "x", "--tail", "many"]).is_err());
    }

    #[test]
    fn resources_flags() {
        match parse(&[
            "paas",
            "resources",
            "x",
            "web",
            "--memory",
            "64",
            "--pids",
            "-1",
        ])
        .expect("parses")
        .command
        {
            Command::Resources(a) => {
                assert_eq!(
                    (a.name.as_str(), a.process_type.as_deref()),
                    ("x", Some("web"))
                );
                assert_eq!(a.memory.as_deref(), Some("64"));
                assert_eq!(a.pids.as_deref(), Some("-1"));
                assert!(a.cpu.is_none() && a.disk.is_none() && !a.reset);
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["paas", "resources", "x", "--reset"])
            .expect("parses")
            .command
        {
            Command::Resources(a) => assert!(a.reset && a.process_type.is_none()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["paas", "resources", "x", "--reset", "--memory", "64"]).is_err());
        assert!(parse(&["paas", "resources"]).is_err());
    }

    #[test]
    fn scale_accepts_negative_instances() {
        let cli = parse(&["paas", "scale", "x", "--instances", "-1"]).expect("parses");
        match cli.command {
            Command::Scale(s) => assert_eq!(s.instances, Some(-1)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
