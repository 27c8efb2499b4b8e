//! The upstream ESC evaluator conformance suite (`../shared/conformance/esc-eval`, run as its `HARNESS.md` says),
//! against `sesame::core::env`. Prints, per tier, `values: N passed, M failed` (the plain-JSON renderings and
//! rotation patches), `diagnostics: …` (severity, summary and path, as multisets) and `ranges: …` (diagnostics
//! with their file and start/end line and column), plus the failing cases; fails when a tier drops below the floor
//! recorded in `FLOORS`. The fake providers, rotators and the `escx`/rot128 decrypter in `fakes.rs` are test code.
//!
//! Every case also runs a second time through the deferred driver, where each effect is first answered
//! `Pending` and performed between rounds the way the server does it; both runs must agree.
//!
//! The suite is found through `SESAME_ESC_CONFORMANCE` or at `../shared/conformance/esc-eval` from the package
//! root; when absent the harness skips with a message (and fails under `CI=true`).

mod fakes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use sesame::core::env::diag::Diagnostic;
use sesame::core::env::eval::{self, Evaluated, Mode, Options};
use sesame::core::env::{Value, load};

/// The least each tier must pass; raise these as the evaluator improves, never lower them.
const FLOORS: [(&str, usize); 6] = [
    ("values", 54),
    ("diagnostics", 54),
    ("ranges", 53),
    ("traces", 54),
    ("parse", 7),
    ("crypt", 4),
];

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SESAME_ESC_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/esc-eval"));
    dir.join("HARNESS.md").exists().then_some(dir)
}

fn diag_json(d: &Diagnostic) -> Json {
    json!({
        "Severity": d.severity as u8,
        "Summary": d.summary,
        "Path": d.path,
        "Subject": d.subject.as_ref().map(|(env, s)| json!({
            "Filename": &**env,
            "Start": {"Line": s.begin.line, "Column": s.begin.column},
            "End": {"Line": s.end.line, "Column": s.end.column},
        })),
    })
}

/// Normalises a diagnostic list to a sorted multiset at the given level.
fn normalise(list: &[Json], ranges: bool) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|d| {
            let subject = &d["Subject"];
            let mut summary = d["Summary"].as_str().unwrap_or_default().to_owned();
            if subject.is_null() && summary.starts_with("yaml:") {
                // Raw YAML parser errors differ between libraries: only their presence is compared.
                summary = "<yaml syntax error>".into();
            }
            let mut key = format!(
                "{}|{}|{}",
                d["Severity"],
                summary,
                d["Path"].as_str().unwrap_or_default()
            );
            if ranges && !subject.is_null() {
                key.push_str(&format!(
                    "|{}|{}:{}-{}:{}",
                    subject["Filename"].as_str().unwrap_or_default(),
                    subject["Start"]["Line"],
                    subject["Start"]["Column"],
                    subject["End"]["Line"],
                    subject["End"]["Column"]
                ));
            }
            key
        })
        .collect();
    out.sort();
    out
}

fn traces(e: &Evaluated) -> Json {
    let mut out = Vec::new();
    for (k, v) in e.properties.iter().flatten() {
        defs_of_value(v, k.clone(), &mut out);
    }
    out.sort();
    json!(out)
}

fn props_json(e: &Evaluated, redact: bool) -> Json {
    match &e.properties {
        None => Json::Null,
        Some(p) => Json::Object(p.iter().map(|(k, v)| (k.clone(), v.to_json(redact))).collect()),
    }
}

/// Numbers compare numerically.
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q)),
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Plain JSON of a rotation replacement in the golden `Value` model (revealed, secret flags kept).
fn model_plain(v: &Json) -> Json {
    let inner = match v.get("value") {
        None => Json::Null,
        Some(Json::Array(items)) => Json::Array(items.iter().map(model_plain).collect()),
        Some(Json::Object(m)) => Json::Object(m.iter().map(|(k, v)| (k.clone(), model_plain(v))).collect()),
        Some(other) => other.clone(),
    };
    if v.get("secret") == Some(&Json::Bool(true)) {
        json!({"secret": inner})
    } else {
        inner
    }
}

fn value_plain(v: &Value) -> Json {
    let j = v.to_json(false);
    let inner = match &v.repr {
        sesame::core::env::value::Repr::Array(items) => Json::Array(items.iter().map(value_plain).collect()),
        sesame::core::env::value::Repr::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), value_plain(v))).collect())
        }
        _ => j,
    };
    if v.secret { json!({"secret": inner}) } else { inner }
}

/// `path → environment@begin-end` of every value's `trace.def` (no source: `-`).
fn defs_of_model(v: &Json, path: String, out: &mut Vec<String>) {
    let def = &v["trace"]["def"];
    let text = if def.is_null() || def["begin"]["line"] == 0 {
        "-".to_string()
    } else {
        format!(
            "{}@{}:{}-{}:{}",
            def["environment"].as_str().unwrap_or(""),
            def["begin"]["line"],
            def["begin"]["column"],
            def["end"]["line"],
            def["end"]["column"]
        )
    };
    out.push(format!("{path} {text}"));
    match v.get("value") {
        Some(Json::Object(m)) => m.iter().for_each(|(k, c)| defs_of_model(c, format!("{path}.{k}"), out)),
        Some(Json::Array(a)) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| defs_of_model(c, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

fn defs_of_value(v: &Value, path: String, out: &mut Vec<String>) {
    let text = match &v.def {
        Some(d) if d.span.begin.line > 0 => format!(
            "{}@{}:{}-{}:{}",
            d.env, d.span.begin.line, d.span.begin.column, d.span.end.line, d.span.end.column
        ),
        _ => "-".to_string(),
    };
    out.push(format!("{path} {text}"));
    if v.unknown {
        return;
    }
    match &v.repr {
        sesame::core::env::value::Repr::Object(m) => {
            m.iter().for_each(|(k, c)| defs_of_value(c, format!("{path}.{k}"), out))
        }
        sesame::core::env::value::Repr::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| defs_of_value(c, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

struct Outcome {
    traces: Vec<String>,
    values: Vec<String>,
    diags: Vec<String>,
    ranges: Vec<String>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            traces: Vec::new(),
            values: Vec::new(),
            diags: Vec::new(),
            ranges: Vec::new(),
        }
    }
}

fn run_case(dir: &Path, case: &str, deferred: bool) -> (BTreeMap<&'static str, Json>, Vec<String>) {
    let overrides: Json = std::fs::read_to_string(dir.join("overrides.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(json!({}));
    let name = overrides["rootEnvironment"].as_str().unwrap_or(case).to_owned();
    let src = std::fs::read_to_string(dir.join("env.yaml")).unwrap();
    let loaded = load(&name, &src);
    let mut got: BTreeMap<&'static str, Json> = BTreeMap::new();
    let mut notes = Vec::new();
    got.insert("loadDiags", Json::Array(loaded.diags.iter().map(diag_json).collect()));
    if loaded.decl.is_none() {
        return (got, notes);
    }
    let fakes = fakes::Fakes::new(dir, case);
    let context = BTreeMap::from([(
        "pulumi".to_string(),
        Value::from_json(&json!({"user": {"id": "USER_123"}})),
    )]);
    let run = |mode: Mode| -> Evaluated {
        let opts = Options {
            mode,
            context: context.clone(),
        };
        if deferred {
            fakes::drive_deferred(&loaded, &fakes, &opts)
        } else {
            let e = eval::evaluate(&loaded, &fakes, &opts);
            assert!(e.pending.is_empty(), "the immediate fakes left requests pending");
            e
        }
    };
    let check = run(Mode::Check {
        show_secrets: overrides["showSecrets"].as_bool().unwrap_or(false),
    });
    got.insert("checkDiags", Json::Array(check.diags.iter().map(diag_json).collect()));
    got.insert("checkJson", props_json(&check, true));
    got.insert("checkTraces", traces(&check));
    let ev = run(Mode::Eval);
    got.insert("evalDiags", Json::Array(ev.diags.iter().map(diag_json).collect()));
    got.insert("evalJsonRedacted", props_json(&ev, true));
    got.insert("evalTraces", traces(&ev));
    got.insert("evalJSONRevealed", props_json(&ev, false));
    if overrides["rotate"].as_bool() == Some(true) {
        let paths = overrides["rotatePaths"].as_array().map(|ps| {
            ps.iter()
                .filter_map(|p| p.as_str().and_then(eval::values_doc_path))
                .collect::<Vec<_>>()
        });
        let rot = run(Mode::Rotate { paths });
        got.insert("rotateDiags", Json::Array(rot.diags.iter().map(diag_json).collect()));
        got.insert("rotateJson", props_json(&rot, true));
        let mut patches: Vec<Json> = rot
            .patches
            .iter()
            .map(|p| json!({"DocPath": p.doc_path, "Replacement": value_plain(&p.replacement)}))
            .collect();
        patches.sort_by_key(|p| p["DocPath"].to_string());
        got.insert("rotatePatches", Json::Array(patches));
        notes.push(String::new());
    }
    (got, notes)
}

fn compare(dir: &Path, case: &str, got: &BTreeMap<&'static str, Json>, out: &mut Outcome) {
    let expected: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut values_ok = true;
    for key in ["checkJson", "evalJsonRedacted", "evalJSONRevealed", "rotateJson"] {
        let want = expected.get(key).cloned().unwrap_or(Json::Null);
        let have = got.get(key).cloned().unwrap_or(Json::Null);
        let have = if have == json!({}) && want.is_null() {
            Json::Null
        } else {
            have
        };
        if !same_json(&want, &have) {
            values_ok = false;
            if std::env::var_os("ESC_VERBOSE").is_some() {
                eprintln!("  {case} {key}:\n    want {want}\n    have {have}");
            }
        }
    }
    if let Some(want) = expected.get("rotatePatches").and_then(Json::as_array) {
        let mut want: Vec<Json> = want
            .iter()
            .map(|p| json!({"DocPath": p["DocPath"], "Replacement": model_plain(&p["Replacement"])}))
            .collect();
        want.sort_by_key(|p| p["DocPath"].to_string());
        let have = got.get("rotatePatches").cloned().unwrap_or(json!([]));
        if !same_json(&Json::Array(want.clone()), &have) {
            values_ok = false;
            if std::env::var_os("ESC_VERBOSE").is_some() {
                eprintln!(
                    "  {case} rotatePatches:\n    want {}\n    have {have}",
                    Json::Array(want)
                );
            }
        }
    }
    let mut traces_ok = true;
    for (key, model) in [("checkTraces", "check"), ("evalTraces", "eval")] {
        let mut want = Vec::new();
        if let Some(props) = expected
            .get(model)
            .and_then(|m| m.get("properties"))
            .and_then(Json::as_object)
        {
            for (k, v) in props {
                defs_of_model(v, k.clone(), &mut want);
            }
        }
        want.sort();
        let have = got.get(key).cloned().unwrap_or(json!([]));
        if json!(want) != have {
            traces_ok = false;
            if std::env::var_os("ESC_TRACES").is_some() {
                let have: Vec<String> = serde_json::from_value(have).unwrap_or_default();
                let w: Vec<&String> = want.iter().filter(|x| !have.contains(x)).collect();
                let h: Vec<&String> = have.iter().filter(|x| !want.contains(x)).collect();
                eprintln!("  {case} {key}:\n    want-only {w:?}\n    have-only {h:?}");
            }
        }
    }
    if !traces_ok {
        out.traces.push(case.to_owned());
    }
    let (mut diags_ok, mut ranges_ok) = (true, true);
    for key in ["loadDiags", "checkDiags", "evalDiags", "rotateDiags"] {
        let want = expected.get(key).and_then(Json::as_array).cloned().unwrap_or_default();
        let have = got.get(key).and_then(Json::as_array).cloned().unwrap_or_default();
        let (w, h) = (normalise(&want, false), normalise(&have, false));
        if w != h {
            diags_ok = false;
            if std::env::var_os("ESC_VERBOSE").is_some() {
                eprintln!("  {case} {key}:\n    want {w:?}\n    have {h:?}");
            }
        }
        if normalise(&want, true) != normalise(&have, true) {
            ranges_ok = false;
            if std::env::var_os("ESC_RANGES").is_some() {
                eprintln!(
                    "  {case} {key} ranges:\n    want {:?}\n    have {:?}",
                    normalise(&want, true),
                    normalise(&have, true)
                );
            }
        }
    }
    if !values_ok {
        out.values.push(case.to_owned());
    }
    if !diags_ok {
        out.diags.push(case.to_owned());
    }
    if !ranges_ok {
        out.ranges.push(case.to_owned());
    }
}

fn parse_cases(root: &Path) -> (usize, Vec<String>) {
    let mut failed = Vec::new();
    let mut n = 0;
    for case in sorted_dirs(&root.join("parse")) {
        n += 1;
        let dir = root.join("parse").join(&case);
        let src = std::fs::read_to_string(dir.join("env.yaml")).unwrap();
        let expected: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let loaded = load(&case, &src);
        let have: Vec<Json> = loaded.diags.iter().map(diag_json).collect();
        let want = expected["diags"].as_array().cloned().unwrap_or_default();
        // The top-level keys of `values` that won (a repeated top-level key: the last one), where upstream found no
        // error (an erroneous `values` is kept by upstream's parser and dropped by ours).
        let clean = want.iter().all(|d| d["Severity"] != 1);
        let want_keys: Option<Vec<String>> =
            expected["decl"]["Values"]["Entries"]
                .as_array()
                .filter(|_| clean)
                .map(|entries| {
                    entries
                        .iter()
                        .filter_map(|e| e["Key"]["Value"].as_str().map(str::to_owned))
                        .collect()
                });
        let have_keys: Vec<String> = match loaded.decl.as_ref().and_then(|d| d.values.as_ref()).map(|v| &v.kind) {
            Some(sesame::core::env::ast::ExprKind::Object(fields)) => {
                fields.iter().map(|(k, _, _)| k.clone()).collect()
            }
            _ => Vec::new(),
        };
        let keys_ok = want_keys.is_none_or(|w| w == have_keys);
        if normalise(&want, false) != normalise(&have, false) || !keys_ok {
            if std::env::var_os("ESC_VERBOSE").is_some() {
                eprintln!(
                    "  parse/{case}:\n    want {:?}\n    have {:?}",
                    normalise(&want, false),
                    normalise(&have, false)
                );
            }
            failed.push(case);
        }
    }
    (n, failed)
}

fn sorted_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn line(tier: &str, total: usize, failed: &[String]) -> usize {
    let passed = total - failed.len();
    println!("{tier}: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        println!("  failing: {}", failed.join(", "));
    }
    passed
}

fn main() {
    let Some(root) = suite_dir() else {
        let msg =
            "esc conformance: skipped: the suite is not at ../shared/conformance/esc-eval (set SESAME_ESC_CONFORMANCE)";
        if std::env::var("CI").as_deref() == Ok("true") {
            eprintln!("{msg} — and CI=true, so this is a failure");
            std::process::exit(1);
        }
        println!("{msg}");
        return;
    };
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut out = Outcome::new();
    let mut total = 0;
    let mut disagreements = Vec::new();
    for case in sorted_dirs(&root.join("eval")) {
        if case == "bench" || filter.as_deref().is_some_and(|f| !case.contains(f)) {
            continue;
        }
        total += 1;
        let dir = root.join("eval").join(&case);
        let (got, _) = run_case(&dir, &case, false);
        compare(&dir, &case, &got, &mut out);
        let (deferred, _) = run_case(&dir, &case, true);
        if deferred != got {
            disagreements.push(case.clone());
        }
    }
    let mut passed = BTreeMap::new();
    passed.insert("values", line("values", total, &out.values));
    passed.insert("diagnostics", line("diagnostics", total, &out.diags));
    passed.insert("ranges", line("ranges", total, &out.ranges));
    passed.insert("traces", line("traces", total, &out.traces));
    let (n, failed) = parse_cases(&root);
    passed.insert("parse", line("parse", n, &failed));
    let (n, failed) = fakes::crypt_cases(&root.join("crypt"));
    passed.insert("crypt", line("crypt", n, &failed));
    let mut bad = false;
    if !disagreements.is_empty() {
        println!(
            "deferred driver disagrees with the immediate one on: {}",
            disagreements.join(", ")
        );
        bad = true;
    }
    if filter.is_none() {
        for (tier, floor) in FLOORS {
            if passed[tier] < floor {
                println!("REGRESSION: {tier} passed {} < floor {floor}", passed[tier]);
                bad = true;
            }
        }
    }
    if bad {
        std::process::exit(1);
    }
}
