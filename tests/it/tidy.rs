//! Tidy: the architecture's arrows, checked on the source text. Each rule of [`RULES`] names the files it covers and
//! what they must not contain:
//!
//! - the pure core (`src/core/`, `envelope-spec/src/`) does no I/O — no tokio, sqlx, axum, reqwest, `std::fs`,
//!   `std::net`, and no clock reads (time comes in as an argument);
//! - `src/core/` imports nothing of the crate outside the core (`crate::server`, `crate::store`, `crate::keyring`, …);
//! - `src/store/` does not reach the server, the CLI or the keyring;
//! - `src/cli/` does not import the server, except `src/cli/serve/`, which starts it;
//! - every library module file starts with a `//!` doc stating what it is for;
//! - outside the core, only `src/clock.rs` reads the wall clock (and only it names the test clock).
//!
//! Comments and string literals are blanked before the checks, so a doc mentioning `crate::server` is no violation,
//! and grouped imports (`use crate::{core, server};`) count like single ones. A violation names file, line and rule.

use std::path::{Path, PathBuf};

/// Words the pure core must not contain.
const IO_WORDS: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "reqwest",
    "std::fs",
    "std::net",
    "SystemTime::now",
    "Instant::now",
];

/// What a rule forbids.
enum Forbid {
    /// Any of these words in the code.
    Words(&'static [&'static str]),
    /// A `crate::NAME` path whose first segment is one of these.
    CrateModules(&'static [&'static str]),
    /// A `crate::NAME` path whose first segment is not one of these.
    CrateModulesOtherThan(&'static [&'static str]),
    /// A file whose first non-blank line is not a `//!` doc.
    MissingModuleDoc,
}

struct Rule {
    name: &'static str,
    /// Path prefixes (relative to the workspace root, `/`-separated) the rule covers.
    under: &'static [&'static str],
    /// Path prefixes exempt from it.
    except: &'static [&'static str],
    forbid: Forbid,
}

const RULES: &[Rule] = &[
    Rule {
        name: "the pure core does no I/O and reads no clock",
        under: &["src/core/", "envelope-spec/src/"],
        except: &[],
        forbid: Forbid::Words(IO_WORDS),
    },
    Rule {
        name: "the core imports nothing outside the core",
        under: &["src/core/"],
        except: &[],
        forbid: Forbid::CrateModulesOtherThan(&["core"]),
    },
    Rule {
        name: "the store does not reach the server, the CLI or the keyring",
        under: &["src/store/"],
        except: &[],
        forbid: Forbid::CrateModules(&["server", "cli", "keyring"]),
    },
    Rule {
        name: "the CLI reaches the server over HTTP only (src/cli/serve/ starts it)",
        under: &["src/cli/"],
        except: &["src/cli/serve/"],
        forbid: Forbid::CrateModules(&["server"]),
    },
    Rule {
        name: "every library module starts with a `//!` doc",
        under: &["src/", "kms-adapters/src/", "envelope-spec/src/"],
        except: &[],
        forbid: Forbid::MissingModuleDoc,
    },
];

/// The directories whose `.rs` files the rules read.
const SOURCE_DIRS: &[&str] = &["src", "kms-adapters/src", "envelope-spec/src"];

/// `text` with comments and the contents of string and character literals replaced by spaces; lines keep their
/// numbers and columns.
fn blank_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            let end = c[i..].iter().position(|&ch| ch == '\n').map_or(c.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some((body, hashes)) = raw_string_at(&c, i).filter(|_| !prev_ident) {
            // A raw string: r"…", r#"…"#, br#"…"#; it ends at a quote followed by as many hashes.
            let mut j = body;
            while j < c.len() && !(c[j] == '"' && c[j + 1..].iter().take_while(|&&ch| ch == '#').count() >= hashes) {
                j += 1;
            }
            blank(&mut out, body, j);
            i = j + 1 + hashes;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}'), else a lifetime or label.
            let end = if c.get(i + 1) == Some(&'\\') {
                c.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == '\''))
                    .map(|n| i + 3 + n)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// If a raw string starts at `i` (`r"`, `r#"`, `br##"`, …): where its body starts and its number of hashes.
fn raw_string_at(c: &[char], i: usize) -> Option<(usize, usize)> {
    let after_r = match (c.get(i), c.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b'), Some('r')) => i + 2,
        _ => return None,
    };
    let hashes = c[after_r..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(after_r + hashes) == Some(&'"')).then_some((after_r + hashes + 1, hashes))
}

/// Every `crate::NAME` in `code` (already blanked) as (line number from 1, NAME), grouped imports expanded one level:
/// `crate::{a::b, c}` gives `a` and `c`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    // Tokens: identifiers, `::`, and single punctuation characters, each with its line.
    let mut tokens: Vec<(usize, String)> = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i].is_alphanumeric() || c[i] == '_' || c[i] == '$' {
                let start = i;
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                tokens.push((
                    n + 1,
                    c[start..i]
                        .iter()
                        .collect::<String>()
                        .trim_start_matches('$')
                        .to_owned(),
                ));
            } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
                tokens.push((n + 1, "::".into()));
                i += 2;
            } else {
                if !c[i].is_whitespace() {
                    tokens.push((n + 1, c[i].to_string()));
                }
                i += 1;
            }
        }
    }
    let mut found = Vec::new();
    for i in 0..tokens.len() {
        if tokens[i].1 != "crate" || tokens.get(i + 1).map(|t| t.1.as_str()) != Some("::") {
            continue;
        }
        match tokens.get(i + 2) {
            Some((_, t)) if t == "{" => {
                // The first segment of each item at depth 1 of the group.
                let (mut depth, mut expect_item) = (1, true);
                for (line, t) in &tokens[i + 3..] {
                    match t.as_str() {
                        "{" => depth += 1,
                        "}" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        "," if depth == 1 => expect_item = true,
                        _ if depth == 1 && expect_item => {
                            if t != "self" {
                                found.push((*line, t.clone()));
                            }
                            expect_item = false;
                        }
                        _ => {}
                    }
                }
            }
            Some((line, t)) => found.push((*line, t.clone())),
            None => {}
        }
    }
    found
}

/// The violations of every rule in one file, `rel` being its path from the workspace root (`/`-separated).
fn check(rel: &str, text: &str) -> Vec<String> {
    let code = blank_comments_and_strings(text);
    let mut violations = Vec::new();
    let source_line = |n: usize| text.lines().nth(n - 1).unwrap_or("").trim().to_owned();
    for rule in RULES {
        if !rule.under.iter().any(|p| rel.starts_with(p)) || rule.except.iter().any(|p| rel.starts_with(p)) {
            continue;
        }
        let mut report = |n: usize, what: &str| {
            violations.push(format!("{rel}:{n}: {}: {what}: {}", rule.name, source_line(n)));
        };
        match &rule.forbid {
            Forbid::Words(words) => {
                for (n, line) in code.lines().enumerate() {
                    for word in *words {
                        if line.contains(word) {
                            report(n + 1, word);
                        }
                    }
                }
            }
            Forbid::CrateModules(names) => {
                for (n, name) in crate_paths(&code) {
                    if names.contains(&name.as_str()) {
                        report(n, &format!("crate::{name}"));
                    }
                }
            }
            Forbid::CrateModulesOtherThan(names) => {
                for (n, name) in crate_paths(&code) {
                    if !names.contains(&name.as_str()) {
                        report(n, &format!("crate::{name}"));
                    }
                }
            }
            Forbid::MissingModuleDoc => {
                let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
                if !first.is_some_and(|(_, l)| l.trim_start().starts_with("//!")) {
                    report(first.map_or(1, |(n, _)| n + 1), "no `//!` module doc at the top");
                }
            }
        }
    }
    violations
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `file:line: word: text` where a line's code (before any `//`) names one of `words`.
fn lines_naming<'a>(files: impl IntoIterator<Item = &'a std::path::PathBuf>, words: &[&str]) -> Vec<String> {
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in words {
                if code.contains(word) {
                    violations.push(format!("{}:{}: {word}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    violations
}

#[test]
fn the_arrows_hold_and_every_module_has_a_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() >= 50, "the tidy check found too few files: {files:?}");
    let mut violations = Vec::new();
    let mut covered = vec![0usize; RULES.len()];
    for file in &files {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        for (i, rule) in RULES.iter().enumerate() {
            if rule.under.iter().any(|p| rel.starts_with(p)) {
                covered[i] += 1;
            }
        }
        violations.extend(check(&rel, &std::fs::read_to_string(file).unwrap()));
    }
    for (rule, n) in RULES.iter().zip(&covered) {
        assert!(
            *n >= 3,
            "the rule `{}` covers only {n} files: its paths are wrong",
            rule.name
        );
    }
    assert!(
        violations.is_empty(),
        "{} tidy violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn reports_a_server_import_in_the_store() {
    let fake = "//! A store module.\n\nuse crate::core::keys::Scope;\nuse crate::server::AppState;\n";
    let found = check("src/store/fake.rs", fake);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/store/fake.rs:4: the store does not reach the server")
            && found[0].contains("crate::server"),
        "{found:?}"
    );
    // Grouped, spread over lines, or called by path: still found, at the line of the name.
    let grouped =
        "//! Doc.\nuse crate::{\n    core::keys,\n    keyring::Keyring,\n};\nfn f() { crate::server::x(); }\n";
    let found = check("src/store/fake.rs", grouped);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("src/store/fake.rs:4: ") && found[0].contains("crate::keyring"));
    assert!(found[1].starts_with("src/store/fake.rs:6: ") && found[1].contains("crate::server"));
    // In a comment or a string it is not an import.
    let quiet = "//! Not [`crate::server`].\n// use crate::server;\nconst S: &str = \"crate::server\";\n\
                 const R: &str = r#\"crate::server \"quoted\"\"#;\n\
                 const Q: [char; 2] = ['\\'', '\"']; const T: &str = \"crate::server\";\n/* crate::keyring /* nested */ crate::cli */\n";
    assert_eq!(check("src/store/fake.rs", quiet), Vec::<String>::new());
    // The same import is allowed where the rule does not apply.
    assert_eq!(check("src/cli/serve/fake.rs", fake), Vec::<String>::new());
    assert_eq!(check("src/cli/other.rs", fake).len(), 1);
}

#[test]
fn reports_edge_imports_io_and_missing_docs_in_the_core() {
    let fake = "use std::fs;\nuse crate::core::text;\nuse crate::{core::keys, audit::Audit};\n\
                fn now() -> u64 { crate::keyring::now_ms() }\nfn label<'a>(x: &'a str) -> char { 'x' }\n";
    let found = check("src/core/fake.rs", fake);
    let lines: Vec<&str> = found.iter().map(|v| v.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "src/core/fake.rs:1",
            "src/core/fake.rs:3",
            "src/core/fake.rs:4",
            "src/core/fake.rs:1"
        ],
        "{found:?}"
    );
    assert!(found[0].contains("does no I/O") && found[0].contains("std::fs"));
    assert!(found[1].contains("crate::audit") && found[2].contains("crate::keyring"));
    assert!(found[3].contains("`//!` module doc"));
    // A doc after blank lines counts; a `///` item doc does not.
    assert!(check("envelope-spec/src/x.rs", "\n//! Doc.\n").is_empty());
    assert_eq!(check("kms-adapters/src/x.rs", "/// Item doc.\nfn f() {}\n").len(), 1);
}

/// Time is injected: only `src/clock.rs` reads the wall clock or names the test clock, so the binary's flags and
/// variables cannot select it. (Tokio's `Instant` for connection deadlines and UUID v7 ids are not time of day.)
#[test]
fn only_the_clock_module_reads_the_wall_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() >= 20, "the tidy check found too few files: {files:?}");
    let clock = root.join("src/clock.rs");
    assert!(files.contains(&clock), "src/clock.rs is missing");
    let words = ["SystemTime", "UNIX_EPOCH", "ManualClock", "keyring::now_ms"];
    let violations = lines_naming(files.iter().filter(|f| **f != clock), &words);
    assert!(
        violations.is_empty(),
        "time read outside src/clock.rs (take a `Clock` instead):\n{}",
        violations.join("\n")
    );
}
