//! A real ACME server for the HTTPS tests: Let's Encrypt's `pebble` (Debian package `pebble`)
//! on loopback, with `pebble-challtestsrv` as its DNS server so every name resolves to
//! 127.0.0.1. HTTP-01 validations go to 127.0.0.1 on the port the test gives, where the test
//! (or the router under test) answers. Both processes are killed on drop, also on panic.
//!
//! Debian's package ships no test certificates (upstream's `test/certs` with `minica.pem`), so
//! a CA and a certificate for 127.0.0.1/localhost for pebble's own HTTPS are made here with
//! `openssl`; [`Pebble::ca_pem`] is that CA. Certificates pebble issues chain to another root,
//! random per run: [`Pebble::issuing_root_pem`].

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Pebble {
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    issuing_root: String,
}

impl Pebble {
    /// Whether `pebble` and `pebble-challtestsrv` are installed: under CI they must be
    /// (scripts/test.sh installs them), elsewhere a test without them skips loudly.
    pub fn available(test: &str) -> bool {
        let found = ["pebble", "pebble-challtestsrv"]
            .iter()
            .all(|b| Path::new("/usr/bin").join(b).exists());
        if found {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: pebble is not installed (apt-get install pebble); refusing to skip under CI"
        );
        eprintln!("\n!!! SKIPPED {test}: needs pebble (apt-get install pebble) !!!\n");
        false
    }

    /// Starts challtestsrv (DNS only) and pebble, validating HTTP-01 on 127.0.0.1:`http_port`
    /// and TLS-ALPN-01 on 127.0.0.1:`tls_port`; returns once the directory answers.
    pub fn start(http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_with_validity(http_port, tls_port, None)
    }

    /// [`Pebble::start`] issuing certificates valid for `validity_secs` (pebble's default
    /// is five years), for renewal tests.
    pub fn start_with_validity(
        http_port: u16,
        tls_port: u16,
        validity_secs: Option<u64>,
    ) -> Pebble {
        // Its ports are free when chosen but bound only once the servers run: a test running
        // in parallel (or the kernel, for an outgoing connection) can take one in between.
        // Then it starts again on other ports.
        let mut attempt = 1;
        loop {
            match Pebble::try_start(http_port, tls_port, validity_secs) {
                Ok(p) => return p,
                Err(log) if attempt < 3 && log.contains("address already in use") => {
                    eprintln!("pebble: a port was taken meanwhile; again on other ports");
                    attempt += 1;
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    /// One start; if either server exits before the directory answers, what it said.
    fn try_start(
        http_port: u16,
        tls_port: u16,
        validity_secs: Option<u64>,
    ) -> Result<Pebble, String> {
        let dir = tempfile::Builder::new()
            .prefix("paas-pebble-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        make_https_cert(d);

        // Taken together, so that no two are the same (one taken alone and released before
        // its server binds it can be handed out again: pebble once got challtestsrv's port).
        let [dns_port, dns_management_port, port, management_port] = free_ports();
        let challtestsrv = Command::new("/usr/bin/pebble-challtestsrv")
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns_port}"))
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_management_port}"))
            // Its own challenge servers would take fixed ports; the test answers instead.
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            // A and AAAA answers: 127.0.0.1 only, so validations never try [::1].
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log_file(d, "challtestsrv.log"))
            .stderr(log_file(d, "challtestsrv.log"))
            .spawn()
            .expect("start pebble-challtestsrv (apt-get install pebble)");

        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": d.join("pebble-cert.pem"),
                "privateKey": d.join("pebble-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(secs) = validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        std::fs::write(d.join("pebble-config.json"), config.to_string()).expect("config");
        let pebble = Command::new("/usr/bin/pebble")
            .arg("-config")
            .arg(d.join("pebble-config.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            // Validate at once (not after 0-15 s), accept every nonce (no badNonce retries
            // to exercise here), and a fresh authorization per order so each issuance
            // really validates.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log_file(d, "pebble.log"))
            .stderr(log_file(d, "pebble.log"))
            .spawn()
            .expect("start pebble (apt-get install pebble)");

        let mut p = Pebble {
            pebble: Some(pebble),
            challtestsrv: Some(challtestsrv),
            dir,
            port,
            issuing_root: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let dir = p.curl(&p.directory_url());
            if dir.status.success() {
                break;
            }
            if let Some((name, status)) = p.exited() {
                return Err(format!("{name} exited ({status}):\n{}", p.log()));
            }
            assert!(
                Instant::now() < deadline,
                "pebble's directory did not answer: {}\n{}",
                String::from_utf8_lossy(&dir.stderr),
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let root = p.curl(&format!("https://127.0.0.1:{management_port}/roots/0"));
        assert!(
            root.status.success(),
            "pebble's issuing root: {}\n{}",
            String::from_utf8_lossy(&root.stderr),
            p.log()
        );
        p.issuing_root = String::from_utf8(root.stdout).expect("PEM is text");
        assert!(
            p.issuing_root.starts_with("-----BEGIN CERTIFICATE-----"),
            "pebble's issuing root: {}",
            p.issuing_root
        );
        Ok(p)
    }

    /// The ACME directory.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA of pebble's own HTTPS (directory and management), to trust for the ACME
    /// conversation: PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_path()).expect("ca.pem")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root that signs the certificates pebble issues (`curl --cacert`, `openssl verify`):
    /// PEM.
    pub fn issuing_root_pem(&self) -> String {
        self.issuing_root.clone()
    }

    /// Which of the two processes has exited, and how.
    fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        for (name, child) in [
            ("pebble", &mut self.pebble),
            ("challtestsrv", &mut self.challtestsrv),
        ] {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Some((name, status));
            }
        }
        None
    }

    /// pebble's and challtestsrv's output so far.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- pebble log ---\n{}--- challtestsrv log ---\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }

    fn curl(&self, url: &str) -> Output {
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
            .arg(self.ca_path())
            .arg(url)
            .output()
            .expect("run curl")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [self.pebble.take(), self.challtestsrv.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// `N` different ports nothing listens on right now.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("its address").port())
}

/// A port nothing listens on right now (for a server told its port in advance).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("log file")
}

/// `dir/ca.pem` and, signed by it, `dir/pebble-cert.pem` + `pebble-key.pem` for 127.0.0.1 and
/// localhost: ECDSA P-256, valid two days.
fn make_https_cert(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = paas test pebble HTTPS CA\n\
         [ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .expect("ca.cnf");
    std::fs::write(
        dir.join("leaf.cnf"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("leaf.cnf");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "2",
                "-config",
                "ca.cnf",
                "-extensions",
                "ca",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ],
        ],
    );
    openssl(
        dir,
        &[
            &["req"],
            &ec[..],
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "pebble-key.pem",
                "-out",
                "pebble.csr",
            ],
        ],
    );
    openssl(
        dir,
        &[&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "pebble.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-extfile",
            "leaf.cnf",
            "-out",
            "pebble-cert.pem",
        ]],
    );
}

fn openssl(dir: &Path, args: &[&[&str]]) {
    let out = Command::new("openssl")
        .args(args.concat())
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.concat().join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
