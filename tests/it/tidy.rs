//! Tidy: the pure core (`src/core/`, `envelope-spec/src/`) does no I/O — no tokio, sqlx, axum, reqwest, `std::fs`,
//! `std::net`, and no clock reads (time comes in as an argument); outside the core, only `src/clock.rs` reads the
//! wall clock.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "reqwest",
    "std::fs",
    "std::net",
    "SystemTime::now",
    "Instant::now",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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
fn the_pure_core_does_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src/core", "envelope-spec/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() >= 3, "the tidy check found too few files: {files:?}");
    let violations = lines_naming(&files, FORBIDDEN);
    assert!(
        violations.is_empty(),
        "I/O in the pure core:\n{}",
        violations.join("\n")
    );
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
