//! The layering of this crate, checked on its source (a test, so CI and a
//! fresh clone run it with `cargo test`):
//!
//! 1. **Base** modules (configuration, database, ids, clock, mail, bus, …)
//!    import no domain and nothing of the application layer.
//! 2. **Domains** (`auth`, `orgs`, `knowledge`, `avatars`, `personas`,
//!    `chat`, …) import each other without a circle: each is built and
//!    tested on the ones below it, and a cross-domain effect that would
//!    point upward goes through a port implemented in `adapters`.
//! 3. A domain's use cases, stores, models and errors (`service.rs`,
//!    `store.rs`, `model.rs`, `error.rs`) know nothing of HTTP or of the
//!    application state: handlers (`routes.rs`, the WebSocket transport)
//!    receive `AppState` and call services.
//! 4. The **application** layer (`state`, `startup`, `adapters`, `http`,
//!    `error`, `ops`) joins the domains.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BASE: &[&str] = &[
    "clock",
    "config",
    "db",
    "ids",
    "infra",
    "llm",
    "mail",
    "metrics",
    "pagination",
    "audit",
    "storage",
    "telemetry",
    "validation",
    "work",
];
const APP: &[&str] = &["adapters", "error", "http", "ops", "startup", "state"];
/// Files of a domain that must stay free of HTTP and of `AppState`.
const SERVICE_FILES: &[&str] = &["service.rs", "store.rs", "model.rs", "error.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/chat/ws.rs` → `chat`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The top-level modules a source text names as `crate::X`, outside
/// comments and its `#[cfg(test)]` tail.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        // `use crate::{a, b}` groups.
        if let Some(i) = line.find("crate::{") {
            let group = &line[i + "crate::{".len()..];
            for part in group.split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

struct Crate {
    /// module → (file, modules it imports)
    files: Vec<(String, PathBuf, BTreeSet<String>)>,
    domains: BTreeSet<String>,
}

fn read_crate() -> Crate {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    let mut files = Vec::new();
    let mut modules = BTreeSet::new();
    for p in paths {
        let Some(m) = module_of(&p) else { continue };
        // Tests may build anything they like.
        if p.file_name().is_some_and(|n| n == "tests.rs") || m == "testkit" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        modules.insert(m.clone());
        files.push((m, p, imports(&text)));
    }
    let known: BTreeSet<&str> = BASE
        .iter()
        .chain(APP)
        .copied()
        .chain(["lib", "main", "architecture"])
        .collect();
    let domains = modules
        .into_iter()
        .filter(|m| !known.contains(m.as_str()))
        .collect();
    Crate { files, domains }
}

/// A circle in `graph`, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn domains_import_each_other_without_a_circle() {
    let c = read_crate();
    assert!(
        c.domains.len() >= 6,
        "expected the domain modules, found {:?}",
        c.domains
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, _, imports) in &c.files {
        if !c.domains.contains(m) {
            continue;
        }
        let entry = graph.entry(m.clone()).or_default();
        for i in imports {
            if i != m && c.domains.contains(i) {
                entry.insert(i.clone());
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "domain modules import each other in a circle: {} (graph: {graph:?})",
            cycle.join(" → ")
        );
    }
}

#[test]
fn base_modules_import_no_domain_and_no_application_module() {
    let c = read_crate();
    for (m, file, imports) in &c.files {
        if !BASE.contains(&m.as_str()) {
            continue;
        }
        for i in imports {
            assert!(
                !c.domains.contains(i) && !APP.contains(&i.as_str()),
                "{} (a base module) imports crate::{i}",
                file.display()
            );
        }
    }
}

#[test]
fn services_stores_models_and_errors_know_no_http_and_no_app_state() {
    let c = read_crate();
    for (m, file, imports) in &c.files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !c.domains.contains(m) || !SERVICE_FILES.contains(&name) {
            continue;
        }
        for forbidden in ["state", "startup", "http", "error", "adapters", "ops"] {
            assert!(
                !imports.contains(forbidden),
                "{} imports crate::{forbidden}: a service must not know HTTP or AppState",
                file.display()
            );
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        assert!(
            !code.contains("actix_web::"),
            "{} uses actix_web",
            file.display()
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        imports("use crate::{auth::X, db::Db};\n// crate::chat\nlet x = crate::orgs::f();"),
        ["auth", "db", "orgs"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
