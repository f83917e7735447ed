//! A real OpenSSH server on a loopback port for the `git push` tests, with its own host key,
//! config and authorized_keys file, and a client key pair. Killed and removed on drop.
//!
//! The tests log in as root with `PermitRootLogin forced-commands-only`: the forced command
//! in authorized_keys is then the only thing a key can run, exactly as for the `paas` user
//! on a server, without creating a system user on the test machine (install.sh's test does
//! that part).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// Who pushes log in as.
    user: String,
}

impl Sshd {
    /// Starts sshd for root; keys paasd writes to [`Sshd::authorized_keys`] take effect at once.
    pub fn start() -> Sshd {
        Sshd::start_as(None)
    }

    /// Starts sshd for `user` (the git user an install created), reading its own
    /// `~/.ssh/authorized_keys` as the system sshd would.
    pub fn start_for_user(user: &str) -> Sshd {
        Sshd::start_as(Some(user))
    }

    fn start_as(user: Option<&str>) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("paas-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"), "host");
        keygen(&d.join("client_key"), "test@paas");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let port = free_port();
        let login = match user {
            None => format!(
                "AuthorizedKeysFile {}\nPermitRootLogin forced-commands-only\nAllowUsers root\n",
                d.join("authorized_keys").display()
            ),
            // As a server's sshd: StrictModes checks the home, ~/.ssh and the file.
            Some(u) => format!(
                "AuthorizedKeysFile .ssh/authorized_keys\nPermitRootLogin no\nAllowUsers {u}\n"
            ),
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n{login}\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes {strict}\nLogLevel VERBOSE\n",
            strict = if user.is_some() { "yes" } else { "no" },
            host = d.join("host_key").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        let log = std::fs::File::create(d.join("sshd.log")).expect("log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (is openssh-server installed?)");
        let s = Sshd {
            child: Some(child),
            dir,
            port,
            user: user.unwrap_or("root").to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {port}:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file paasd must write (`[git] authorized_keys`).
    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.path().join("authorized_keys")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    pub fn client_pub(&self) -> PathBuf {
        self.dir.path().join("client_key.pub")
    }

    /// `GIT_SSH_COMMAND` for git: this server, the client key, no prompts, no known_hosts.
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -p {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            self.port,
            self.client_key().display()
        )
    }

    /// A git remote URL for `app` on this server.
    pub fn remote(&self, app: &str) -> String {
        format!("{}@127.0.0.1:{app}", self.user)
    }

    /// `ssh` to this server with `remote_command`, as a pusher would.
    pub fn ssh(&self, remote_command: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "{} {}@127.0.0.1 \"$1\"",
                self.ssh_command(),
                self.user
            ))
            .arg("sh")
            .arg(remote_command);
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- sshd log ---\n{}", self.log());
        }
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `git` with a fixed identity and no user/system config, in `dir`.
pub fn git(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@paas.invalid"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    c
}
