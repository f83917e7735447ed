//! The layering rules of ARCHITECTURE.md hold in the code. The rules are the `layers` block
//! there (one line per paasd module: what it may import from paasd, plus the `paas_runtime` and
//! `paas_router` crates); this test reads that block and every `.rs` file under `paasd/src`,
//! and fails on any import the block does not allow, on a module the block does not list, and
//! on a rule for a module that no longer exists. `lib.rs` and `main.rs` wire everything and are
//! exempt. The crates below paasd (paas-runtime, paas-router) cannot import it at all: the
//! compiler enforces that, since they do not depend on paasd.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `module: dep dep ...` lines between the ```layers fence and its end.
fn rules(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let start = architecture
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let body = &architecture[start + "```layers\n".len()..];
    let end = body.find("```").expect("the layers block ends");
    let mut out = BTreeMap::new();
    for line in body[..end].lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (module, deps) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("layers line without ':': {line}"));
        let deps: BTreeSet<String> = deps
            .split_whitespace()
            .filter(|d| *d != "-")
            .map(str::to_string)
            .collect();
        assert!(
            out.insert(module.trim().to_string(), deps).is_none(),
            "{module} is listed twice"
        );
    }
    out
}

/// paasd's top-level modules: `src/NAME.rs` and `src/NAME/`.
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .expect("read paasd/src")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let name = name.strip_suffix(".rs").map(str::to_string).unwrap_or(name);
            (name != "lib" && name != "main").then_some(name)
        })
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("read dir").flatten() {
            rust_files(&e.path(), out);
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Every paasd module and sibling crate a source text refers to: `crate::x`, `crate::{x, y::z}`,
/// `paas_runtime`, `paas_router`. Comment lines do not count.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        for krate in ["paas_runtime", "paas_router"] {
            let mut from = 0;
            while let Some(i) = code[from..].find(krate) {
                let at = from + i;
                let before = code[..at].chars().next_back();
                let after = code[at + krate.len()..].chars().next();
                let word =
                    |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if !word(before) && !word(after) {
                    out.insert(krate.to_string());
                }
                from = at + krate.len();
            }
        }
    }
    out
}

/// The violations in paasd's tree against `rules`, one line each.
fn violations(src: &Path, rules: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    let present = modules(src);
    for m in &present {
        let Some(allowed) = rules.get(m) else {
            found.push(format!(
                "paasd/src/{m}: not in ARCHITECTURE.md's layers block; add it with what it may import"
            ));
            continue;
        };
        let mut files = Vec::new();
        let dir = src.join(m);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{m}.rs")));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read source");
            for r in references(&text) {
                if r != *m && !allowed.contains(&r) {
                    let rel = f.strip_prefix(src).unwrap_or(&f).display().to_string();
                    found.push(format!(
                        "paasd/src/{rel}: `{m}` may not import `{r}` (allowed: {})",
                        allowed.iter().cloned().collect::<Vec<_>>().join(" ")
                    ));
                }
            }
        }
    }
    for m in rules.keys() {
        if !present.contains(m) {
            found.push(format!(
                "ARCHITECTURE.md's layers block lists `{m}`, which paasd/src does not have"
            ));
        }
    }
    found
}

#[test]
fn paasd_modules_import_only_what_architecture_md_allows() {
    let architecture =
        std::fs::read_to_string(repo().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let found = violations(&repo().join("paasd/src"), &rules(&architecture));
    assert!(
        found.is_empty(),
        "layering rules broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_catches_a_forbidden_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir(src.join("store")).expect("mkdir");
    std::fs::write(
        src.join("store/mod.rs"),
        "// crate::supervisor in a comment does not count\nuse crate::{config, supervisor::Supervisor};\n",
    )
    .expect("write");
    std::fs::write(
        src.join("supervisor.rs"),
        "fn f() { let _ = paas_runtime::x(); let _ = my_paas_router_x; }\n",
    )
    .expect("write");
    std::fs::write(src.join("lib.rs"), "use crate::store;\n").expect("write");
    let rules = rules("x\n```layers\nstore: config\nsupervisor: store # why\ngone: -\n```\n");
    let found = violations(src, &rules);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("`store` may not import `supervisor`"));
    assert!(found[1].contains("`supervisor` may not import `paas_runtime`"));
    assert!(found[2].contains("lists `gone`"));
    // A module nobody listed is an error too, so new modules must state their layer.
    std::fs::write(src.join("extra.rs"), "").expect("write");
    assert!(violations(src, &rules)
        .iter()
        .any(|v| v.contains("paasd/src/extra: not in")));
}
