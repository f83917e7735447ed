//! The route table: which app a Host names, and the arithmetic that picks one of its upstreams.
//!
//! Owns host normalisation, custom-domain, default-domain and wildcard matching (most
//! specific first: an exact domain, then `<app>.<base>`, then the nearest `*.parent`), each
//! app's HTTPS behaviour ([`Https`]), and the
//! least-connections/round-robin choice. It is plain data, built by the supervisor and never
//! changed once published. It must not do I/O or hold live counters: in-flight counts and
//! connections belong to the Router, keyed by address, so they outlive any one table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

/// One ready instance of an app, as the supervisor knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// `web.1`: names the instance in access lines.
    pub instance: String,
    pub release: u32,
}

/// What an app's plain-HTTP and HTTPS requests get besides routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Https {
    /// Plain-HTTP requests for a host with a certificate get a 308 to `https://`.
    pub redirect: bool,
    /// HTTPS responses carry `Strict-Transport-Security: max-age=31536000`.
    pub hsts: bool,
}

impl Default for Https {
    fn default() -> Self {
        Https {
            redirect: true,
            hsts: false,
        }
    }
}

/// A [`RouteTable`] as plain data (see [`RouteTable::spec`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSpec {
    pub base_domain: String,
    pub apps: Vec<AppSpec>,
}

/// One app of a [`TableSpec`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// Custom domains, `*.parent` for a wildcard.
    pub domains: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub https: Https,
}

#[derive(Debug, Clone)]
pub(crate) struct AppEntry {
    pub name: String,
    pub upstreams: Vec<Upstream>,
    pub https: Https,
}

/// Host → app → upstreams. Immutable once handed to [`super::Router::publish`].
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Lowercase, without leading or trailing dots; empty means apps have no default domain.
    base_domain: String,
    apps: Vec<AppEntry>,
    by_name: HashMap<String, usize>,
    by_domain: HashMap<String, usize>,
    /// `*.example.com` keyed by `example.com`.
    by_wildcard: HashMap<String, usize>,
}

impl RouteTable {
    pub fn new(base_domain: &str) -> RouteTable {
        RouteTable {
            base_domain: normalize_host(base_domain.trim_start_matches('.'))
                .map(Cow::into_owned)
                .unwrap_or_default(),
            ..RouteTable::default()
        }
    }

    /// An app, its custom domains and its ready upstreams (may be empty => 503).
    ///
    /// Adding an app twice replaces its upstreams and adds the domains; a custom domain given
    /// to two apps goes to the later one (the store keeps domains unique, so that is a
    /// supervisor bug, and the last word is the most recent one).
    pub fn add_app(&mut self, app: &str, domains: &[String], upstreams: Vec<Upstream>) {
        let name = app.to_ascii_lowercase();
        let idx = match self.by_name.get(&name) {
            Some(&idx) => {
                self.apps[idx].upstreams = upstreams;
                idx
            }
            None => {
                self.apps.push(AppEntry {
                    name: name.clone(),
                    upstreams,
                    https: Https::default(),
                });
                self.by_name.insert(name, self.apps.len() - 1);
                self.apps.len() - 1
            }
        };
        for domain in domains {
            let Some(d) = normalize_host(domain) else {
                continue;
            };
            match d.strip_prefix("*.") {
                Some(parent) if !parent.is_empty() => {
                    self.by_wildcard.insert(parent.to_string(), idx);
                }
                _ => {
                    self.by_domain.insert(d.into_owned(), idx);
                }
            }
        }
    }

    /// The table as plain data, to cross a process boundary ([`RouteTable::from_spec`]
    /// rebuilds the same routing).
    pub fn spec(&self) -> TableSpec {
        let mut apps: Vec<AppSpec> = self
            .apps
            .iter()
            .map(|a| AppSpec {
                name: a.name.clone(),
                domains: Vec::new(),
                upstreams: a.upstreams.clone(),
                https: a.https,
            })
            .collect();
        for (domain, &idx) in &self.by_domain {
            apps[idx].domains.push(domain.clone());
        }
        for (parent, &idx) in &self.by_wildcard {
            apps[idx].domains.push(format!("*.{parent}"));
        }
        for a in &mut apps {
            a.domains.sort();
        }
        TableSpec {
            base_domain: self.base_domain.clone(),
            apps,
        }
    }

    /// Rebuilds a table through [`RouteTable::add_app`], so that whatever the spec says,
    /// the result is consistent.
    pub fn from_spec(spec: &TableSpec) -> RouteTable {
        let mut table = RouteTable::new(&spec.base_domain);
        for a in &spec.apps {
            table.add_app(&a.name, &a.domains, a.upstreams.clone());
            table.set_https(&a.name, a.https);
        }
        table
    }

    /// Sets `app`'s HTTPS behaviour (added already; otherwise nothing happens).
    pub fn set_https(&mut self, app: &str, https: Https) {
        if let Some(&idx) = self.by_name.get(&app.to_ascii_lowercase()) {
            self.apps[idx].https = https;
        }
    }

    /// The app that serves `host` (a Host header value: any case, optional port and trailing
    /// dot), if any.
    pub fn app_for_host(&self, host: &str) -> Option<&str> {
        self.lookup(host).map(|i| self.apps[i].name.as_str())
    }

    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    pub(crate) fn has_app(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub(crate) fn apps(&self) -> &[AppEntry] {
        &self.apps
    }

    /// Index into [`Self::apps`]: exact custom domain first, then `<app>.<base-domain>`,
    /// then the wildcard of the nearest parent (`*.b.example.com` before `*.example.com`).
    pub(crate) fn lookup(&self, host: &str) -> Option<usize> {
        let host = normalize_host(host)?;
        if let Some(&idx) = self.by_domain.get(host.as_ref()) {
            return Some(idx);
        }
        if let Some(idx) = self.default_domain_app(&host) {
            return Some(idx);
        }
        if self.by_wildcard.is_empty() {
            return None;
        }
        let mut rest = host.as_ref();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&idx) = self.by_wildcard.get(parent) {
                return Some(idx);
            }
            rest = parent;
        }
        None
    }

    fn default_domain_app(&self, host: &str) -> Option<usize> {
        if self.base_domain.is_empty() {
            return None;
        }
        let label = host
            .strip_suffix(self.base_domain.as_str())?
            .strip_suffix('.')?;
        if label.is_empty() || label.contains('.') {
            return None;
        }
        self.by_name.get(label).copied()
    }
}

/// Host header value → the name to match: port and trailing dot dropped, ASCII lowercase.
/// Borrows when nothing needs changing, which is the common case on the request path.
pub(crate) fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal keeps its brackets; only what follows `]` can be a port.
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

/// Least connections, ties broken round-robin: looks at every candidate once, starting at
/// `start`, and keeps the first with the fewest requests in flight. Candidates for which
/// `skip` says yes (already tried for this request) are passed over.
pub(crate) fn pick_least_loaded(
    n: usize,
    start: usize,
    load: impl Fn(usize) -> usize,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if skip(i) {
            continue;
        }
        let l = load(i);
        if best.is_none_or(|(_, bl)| l < bl) {
            best = Some((i, l));
            if l == 0 {
                // Nothing beats an idle upstream, and the rotation already made it fair.
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(port: u16, name: &str) -> Upstream {
        Upstream {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            instance: name.to_string(),
            release: 1,
        }
    }

    fn table() -> RouteTable {
        let mut t = RouteTable::new("Paas.Test.");
        t.add_app("web", &["www.Example.com".into()], vec![up(1, "web.1")]);
        t.add_app("api", &[], vec![]);
        // A custom domain that looks like another app's default domain: exact wins.
        t.add_app("shop", &["api2.paas.test".into()], vec![up(2, "web.1")]);
        t
    }

    #[test]
    fn wildcards_route_subdomains_without_their_own_route_and_the_nearest_wins() {
        let mut t = table();
        t.add_app("any", &["*.Example.com".into()], vec![]);
        t.add_app("deep", &["*.b.example.com".into()], vec![]);
        t.add_app("catch", &["*.paas.test".into()], vec![]);
        let app = |h: &str| t.app_for_host(h).map(str::to_string);
        assert_eq!(app("www.example.com").as_deref(), Some("web"), "exact wins");
        assert_eq!(app("x.example.com:8443").as_deref(), Some("any"));
        assert_eq!(app("x.y.example.com").as_deref(), Some("any"));
        assert_eq!(
            app("x.b.example.com").as_deref(),
            Some("deep"),
            "nearest wins"
        );
        assert_eq!(
            app("example.com"),
            None,
            "a wildcard does not cover its parent"
        );
        assert_eq!(
            app("api.paas.test").as_deref(),
            Some("api"),
            "an app's own domain wins"
        );
        assert_eq!(app("nope.paas.test").as_deref(), Some("catch"));
    }

    #[test]
    fn a_table_crosses_as_a_spec_and_routes_the_same() {
        let mut t = table();
        t.add_app("any", &["*.Example.com".into()], vec![]);
        t.set_https(
            "any",
            Https {
                redirect: false,
                hsts: true,
            },
        );
        let spec = t.spec();
        let json = serde_json::to_string(&spec).expect("json");
        let back: TableSpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);
        let u = RouteTable::from_spec(&back);
        for h in [
            "www.example.com",
            "x.example.com",
            "api.paas.test",
            "api2.paas.test",
            "nope",
        ] {
            assert_eq!(u.app_for_host(h), t.app_for_host(h), "{h}");
        }
        assert_eq!(u.spec(), spec);
        assert_eq!(u.apps().len(), t.apps().len());
        let any = u.apps().iter().find(|a| a.name == "any").expect("any");
        assert!(any.https.hsts && !any.https.redirect);
    }

    #[test]
    fn router_table_default_domain_any_case_port_and_trailing_dot() {
        let t = table();
        assert_eq!(t.base_domain(), "paas.test");
        for h in [
            "web.paas.test",
            "WEB.PAAS.TEST",
            "web.paas.test:8080",
            "web.paas.test.",
            "web.paas.test.:80",
        ] {
            assert_eq!(t.app_for_host(h), Some("web"), "{h}");
        }
        assert_eq!(t.app_for_host("api.paas.test"), Some("api"));
    }

    #[test]
    fn router_table_custom_domain_first() {
        let t = table();
        assert_eq!(t.app_for_host("www.example.com"), Some("web"));
        assert_eq!(t.app_for_host("WWW.EXAMPLE.COM:443"), Some("web"));
        assert_eq!(t.app_for_host("api2.paas.test"), Some("shop"));
    }

    #[test]
    fn router_table_unknown_hosts() {
        let t = table();
        for h in [
            "",
            ":80",
            "paas.test",
            ".paas.test",
            "nope.paas.test",
            "x.web.paas.test",
            "webpaas.test",
            "web.paas.test.evil",
            "example.com",
            "[::1]:80",
        ] {
            assert_eq!(t.app_for_host(h), None, "{h:?}");
        }
        // No base domain: only custom domains route.
        let mut t = RouteTable::new("");
        t.add_app("web", &["a.example".into()], vec![]);
        assert_eq!(t.app_for_host("web"), None);
        assert_eq!(t.app_for_host("a.example"), Some("web"));
    }

    #[test]
    fn router_table_readding_replaces_upstreams() {
        let mut t = table();
        t.add_app("web", &[], vec![up(3, "web.2"), up(4, "web.3")]);
        assert_eq!(t.len(), 3);
        let i = t.lookup("web.paas.test").expect("web routes");
        assert_eq!(t.apps()[i].upstreams.len(), 2);
        assert_eq!(t.app_for_host("www.example.com"), Some("web"));
    }

    #[test]
    fn router_table_normalize_host() {
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1").as_deref(), None);
        assert!(matches!(normalize_host("a.b"), Some(Cow::Borrowed("a.b"))));
        assert_eq!(normalize_host(" A.b ").as_deref(), Some("a.b"));
    }

    #[test]
    fn router_pick_round_robin_when_equal() {
        let loads = [0usize; 3];
        let picks: Vec<_> = (0..6)
            .map(|s| pick_least_loaded(3, s, |i| loads[i], |_| false).expect("a pick"))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn router_pick_least_connections_with_rotating_ties() {
        let loads = [2usize, 1, 5, 1];
        assert_eq!(pick_least_loaded(4, 0, |i| loads[i], |_| false), Some(1));
        assert_eq!(pick_least_loaded(4, 2, |i| loads[i], |_| false), Some(3));
        assert_eq!(pick_least_loaded(4, 3, |i| loads[i], |_| false), Some(3));
        assert_eq!(pick_least_loaded(4, 0, |i| loads[i], |i| i == 1), Some(3));
        assert_eq!(pick_least_loaded(4, 0, |i| loads[i], |_| true), None);
        assert_eq!(pick_least_loaded(0, 7, |_| 0, |_| false), None);
    }
}
