//! `sesame env eval`: offline evaluation of a local file with imports from a folder, its output formats, its
//! diagnostics and exit codes.

use std::process::Command;

use crate::support::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_sesame");

fn eval(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("env").arg("eval").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn env_eval_resolves_imports_and_prints_every_format() {
    let dir = temp_dir();
    let d = dir.path();
    std::fs::create_dir_all(d.join("team")).unwrap();
    std::fs::write(
        d.join("base.yaml"),
        "values:\n  region: eu-west-1\n  tags: {owner: ops}\n",
    )
    .unwrap();
    std::fs::write(d.join("team/db.yaml"), "values:\n  port: 5432\n").unwrap();
    std::fs::write(
        d.join("app.yaml"),
        "imports:\n  - base\nvalues:\n  tags: {app: web}\n  url: db:${environments.team.db.port}/${context.currentEnvironment.name}\n  \
         password:\n    fn::secret: \"it's $ecret\"\n  environmentVariables:\n    URL: ${url}\n    PASSWORD: ${password}\n    \
         NOTE: \"line one\\nline 'two'\"\n",
    )
    .unwrap();
    let app = d.join("app.yaml");
    let app = app.to_str().unwrap();

    let (code, out, err) = eval(&[app, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "region": "eu-west-1", "tags": {"owner": "ops", "app": "web"}, "url": "db:5432/app",
            "password": "[secret]",
            "environmentVariables": {"URL": "db:5432/app", "PASSWORD": "[secret]", "NOTE": "line one\nline 'two'"}
        })
    );
    let (_, out, _) = eval(&[app, "--format", "json", "--show-secrets"]);
    assert!(out.contains("it's $ecret"));

    // YAML output reads back (through the evaluator itself) to the same values.
    let (code, yaml, _) = eval(&[app]);
    assert_eq!(code, 0);
    let back = d.join("back.yaml");
    let indented: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
    std::fs::write(&back, format!("values:\n{indented}")).unwrap();
    let (code, out2, err) = eval(&[back.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let mut again: serde_json::Value = serde_json::from_str(&out2).unwrap();
    again["environmentVariables"]["URL"] = v["environmentVariables"]["URL"].clone();
    again["url"] = v["url"].clone();
    assert_eq!(again, v);

    // Shell output: a POSIX shell reads back the exact values; the secret is withheld without --show-secrets.
    let (code, sh, err) = eval(&[app, "--format", "shell"]);
    assert_eq!(code, 0);
    assert!(!sh.contains("PASSWORD"), "{sh}");
    assert!(err.contains("PASSWORD withheld"), "{err}");
    let (_, sh, _) = eval(&[app, "--format", "shell", "--show-secrets"]);
    let script = format!("{sh}\nprintf '%s|%s|%s' \"$URL\" \"$PASSWORD\" \"$NOTE\"");
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "db:5432/app|it's $ecret|line one\nline 'two'"
    );

    let (_, dotenv, _) = eval(&[app, "--format", "dotenv", "--show-secrets"]);
    assert!(dotenv.contains("URL='db:5432/app'\n"), "{dotenv}");
    assert!(dotenv.contains("NOTE=\"line one\\nline 'two'\"\n"), "{dotenv}");
}

#[test]
fn env_eval_reports_errors_with_positions_and_still_prints_values() {
    let dir = temp_dir();
    let f = dir.path().join("broken.yaml");
    std::fs::write(
        &f,
        "imports:\n  - missing\nvalues:\n  a: ${nope}\n  b: fine\n  c:\n    fn::open::aws-login: {}\n",
    )
    .unwrap();
    let (code, out, err) = eval(&[f.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!({"a": "[unknown]", "b": "fine", "c": "[unknown]"}));
    let f_s = f.display().to_string();
    assert!(
        err.contains(&format!("{f_s}:2:5: error: environment \"missing\"")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f_s}:4:8: error: unknown property \"nope\"")),
        "{err}"
    );
    assert!(err.contains("unknown provider \"aws-login\""), "{err}");

    // Malformed YAML: a diagnostic, no panic, exit 1.
    std::fs::write(&f, "values: [1, 2\n").unwrap();
    let (code, _, err) = eval(&[f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("error:"), "{err}");

    // Warnings alone exit 0.
    std::fs::write(&f, "values:\n  a: 1\nextra: 2\n").unwrap();
    let (code, _, err) = eval(&[f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: unknown field \"extra\""), "{err}");

    // Import names cannot climb out of the import folder.
    std::fs::write(&f, "imports:\n  - ../etc/passwd\n").unwrap();
    let (code, _, err) = eval(&[f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid environment name"), "{err}");
}
