//! `sesame login` and the remote `sesame env` commands as a user runs them: the built binary against an in-process
//! server on 127.0.0.1:0, each test with its own data folder and its own config folder (never `~/.sesame`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::{TestServer, config, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_sesame");

/// What one run of the binary did.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts exit code `code` and returns stderr.
    #[track_caller]
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "expected exit code {code}: {self:#?}");
        &self.stderr
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// The binary pointed at one server with the admin token, the org `acme`, and a private config folder.
struct Sesame {
    url: String,
    token: String,
    config_dir: PathBuf,
}

impl Sesame {
    fn new(srv: &TestServer, config_dir: &Path) -> Sesame {
        Sesame {
            url: srv.base.clone(),
            token: srv.token.clone(),
            config_dir: config_dir.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(BIN);
        c.args(args)
            .env("SESAME_URL", &self.url)
            .env("SESAME_TOKEN", &self.token)
            .env("SESAME_CONFIG_DIR", &self.config_dir)
            .env("SESAME_ORG", "acme")
            .env("SESAME_LOG", "warn")
            .env_remove("EDITOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn output(mut c: tokio::process::Command, stdin: Option<&str>) -> Out {
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().expect("spawn sesame");
        if let Some(text) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut input = child.stdin.take().unwrap();
            input.write_all(text.as_bytes()).await.unwrap();
            drop(input);
        }
        let out = child.wait_with_output().await.expect("wait for sesame");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Out {
        Self::output(self.command(args), None).await
    }

    /// Runs with `EDITOR` set.
    async fn edit(&self, args: &[&str], editor: &Path) -> Out {
        let mut c = self.command(args);
        c.env("EDITOR", editor);
        Self::output(c, None).await
    }
}

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn start() -> (tempfile::TempDir, TestServer) {
    let dir = temp_dir();
    let srv = TestServer::start(config(&dir.path().join("data"), None), None)
        .await
        .unwrap();
    (dir, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_writes_a_private_credentials_file_that_later_commands_use() {
    let (dir, srv) = start().await;
    // A folder that does not exist yet: login makes it, private.
    let config_dir = dir.path().join("home").join(".sesame");
    let cli = Sesame::new(&srv, &config_dir);
    let creds = config_dir.join("credentials.json");

    // A wrong token is refused by the server (exit 3), not echoed, and nothing is saved.
    let bad = format!("sesame_{}", "x".repeat(43));
    let mut c = cli.command(&["login", &srv.base]);
    c.env("SESAME_TOKEN", &bad);
    let out = Sesame::output(c, None).await;
    let err = out.fails(3);
    assert!(err.contains("401") && !err.contains(&bad), "{err}");
    assert!(!creds.exists());

    // The token from standard input (not a terminal), the URL as an argument.
    let mut c = cli.command(&["login", &srv.base]);
    c.env_remove("SESAME_TOKEN").env_remove("SESAME_URL");
    let out = Sesame::output(c, Some(&format!("{}\n", srv.token))).await;
    let said = out.ok();
    assert!(said.contains("Logged in to"), "{said}");
    assert!(
        !said.contains(&srv.token) && !out.stderr.contains(&srv.token),
        "{out:#?}"
    );
    let meta = std::fs::metadata(&creds).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&config_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(saved["token"], json!(srv.token));
    assert!(saved["url"].as_str().unwrap().starts_with(&srv.base));

    // Later commands find the server and the token in the file.
    let mut c = cli.command(&["env", "init", "web/saved"]);
    c.env_remove("SESAME_TOKEN").env_remove("SESAME_URL");
    Sesame::output(c, None).await.ok();
    let mut c = cli.command(&["env", "ls", "--json"]);
    c.env_remove("SESAME_TOKEN").env_remove("SESAME_URL");
    let listed = Sesame::output(c, None).await.json();
    assert_eq!(listed[0]["name"], json!("saved"), "{listed}");

    // The saved token is never sent to another server.
    let mut c = cli.command(&["env", "ls"]);
    c.env_remove("SESAME_TOKEN").env("SESAME_URL", "http://127.0.0.1:9");
    let out = Sesame::output(c, None).await;
    let err = out.fails(1);
    assert!(err.contains("no access token for http://127.0.0.1:9"), "{err}");

    // Logging in again replaces the file and keeps it private; logout removes it.
    let out = cli.run(&["login"]).await;
    out.ok();
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(cli.run(&["logout"]).await.ok().contains("Logged out"));
    assert!(!creds.exists());
    assert!(cli.run(&["logout"]).await.ok().contains("Not logged in"));
    let mut c = cli.command(&["env", "ls"]);
    c.env_remove("SESAME_TOKEN");
    let err = Sesame::output(c, None).await.fails(1).to_owned();
    assert!(err.contains("sesame login"), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_from_init_to_rm() {
    let (dir, srv) = start().await;
    let cli = Sesame::new(&srv, &dir.path().join("config"));

    assert!(
        cli.run(&["env", "init", "web/prod"])
            .await
            .ok()
            .contains("Created acme/web/prod")
    );
    let err = cli.run(&["env", "init", "acme/web/prod"]).await.fails(3).to_owned();
    assert!(err.contains("exists already"), "{err}");

    // Values, a secret, the projections; each `set` is a new revision.
    for args in [
        &["env", "set", "web/prod", "db.host", "db.example"][..],
        &["env", "set", "web/prod", "db.port", "5432"],
        &["env", "set", "web/prod", "db.password", "--secret", "hunter2"],
        &["env", "set", "web/prod", "hosts[0]", "a.example"],
        &["env", "set", "web/prod", "environmentVariables.DB_HOST", "${db.host}"],
        &[
            "env",
            "set",
            "web/prod",
            "environmentVariables.DB_PASSWORD",
            "${db.password}",
        ],
        &["env", "set", "web/prod", "files.PGPASSFILE", "${db.password}"],
    ] {
        let said = cli.run(args).await.ok().to_owned();
        assert!(said.contains("Saved acme/web/prod (revision"), "{said}");
    }

    // The stored definition keeps the secret sealed; --show-secrets opens it.
    let sealed = cli.run(&["env", "get", "web/prod"]).await.ok().to_owned();
    assert!(
        sealed.contains("fn::secret") && sealed.contains("ciphertext") && !sealed.contains("hunter2"),
        "{sealed}"
    );
    let plain = cli
        .run(&["env", "get", "web/prod", "--show-secrets"])
        .await
        .ok()
        .to_owned();
    assert!(plain.contains("fn::secret: hunter2"), "{plain}");
    let port = cli
        .run(&["env", "get", "web/prod", "--value", "db.port", "--format", "json"])
        .await;
    assert_eq!(port.ok().trim(), "5432");
    let whole = cli.run(&["env", "get", "web/prod", "--format", "json"]).await.json();
    assert_eq!(whole["values"]["hosts"], json!(["a.example"]));

    // `set` edits the text in place: a comment added by hand survives the next set.
    let editor = script(
        dir.path(),
        "comment.sh",
        "sed -i 's/^values:$/# kept by hand\\nvalues:/' \"$1\"",
    );
    cli.edit(&["env", "edit", "web/prod"], &editor).await.ok();
    cli.run(&["env", "set", "web/prod", "db.port", "6432"]).await.ok();
    let text = cli.run(&["env", "get", "web/prod"]).await.ok().to_owned();
    assert!(
        text.contains("# kept by hand\nvalues:") && text.contains("port: 6432"),
        "{text}"
    );

    // Open: plain JSON (secrets in plaintext), one property as text, dotenv and shell lines.
    let opened = cli.run(&["env", "open", "web/prod"]).await.json();
    assert_eq!(
        opened["db"],
        json!({"host": "db.example", "port": 6432, "password": "hunter2"})
    );
    assert_eq!(opened["environmentVariables"]["DB_HOST"], json!("db.example"));
    let one = cli
        .run(&[
            "env",
            "open",
            "web/prod",
            "environmentVariables.DB_HOST",
            "--format",
            "string",
        ])
        .await;
    assert_eq!(one.ok(), "db.example\n");
    let dotenv = cli.run(&["env", "open", "web/prod", "--format", "dotenv"]).await;
    assert_eq!(dotenv.ok(), "DB_HOST='db.example'\nDB_PASSWORD='hunter2'\n");
    let shell = cli.run(&["env", "open", "web/prod", "--format", "shell"]).await;
    assert!(shell.ok().contains("export DB_PASSWORD='hunter2'\n"), "{shell:#?}");

    // Run: the child sees the variables and the file (private), the file is gone afterwards, and the exit code is
    // the child's.
    let out = cli
        .run(&[
            "env",
            "run",
            "web/prod",
            "--",
            "sh",
            "-c",
            "echo \"$DB_HOST\"; cat \"$PGPASSFILE\"; echo; stat -c %a \"$PGPASSFILE\"; echo \"$PGPASSFILE\"; exit 7",
        ])
        .await;
    assert_eq!(out.code, Some(7), "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..3], ["db.example", "hunter2", "600"], "{out:#?}");
    let file = Path::new(lines[3]);
    assert!(file.is_absolute(), "{out:#?}");
    assert!(!file.exists(), "the temporary file {} must be removed", file.display());
    let missing = cli.run(&["env", "run", "web/prod", "--", "/nonexistent/program"]).await;
    assert_eq!(missing.code, Some(127), "{missing:#?}");

    // Listing, as a table and as JSON.
    cli.run(&["env", "init", "api/dev"]).await.ok();
    let table = cli.run(&["env", "ls"]).await.ok().to_owned();
    assert!(table.starts_with("NAME") && table.contains("acme/web/prod") && table.contains("acme/api/dev"));
    let only = cli.run(&["env", "ls", "--project", "api", "--json"]).await.json();
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    assert_eq!(only[0]["name"], json!("dev"));

    // Versions: list, tag, read at a tag, diff, roll back.
    let revisions = cli.run(&["env", "version", "ls", "web/prod", "--json"]).await.json();
    let numbers: Vec<u64> = revisions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    let latest = numbers[0];
    assert_eq!(
        numbers,
        (1..=latest).rev().collect::<Vec<_>>(),
        "newest first: {revisions}"
    );
    assert!(latest >= 10, "{revisions}");
    let said = cli
        .run(&["env", "version", "tag", "web/prod", "stable", "3"])
        .await
        .ok()
        .to_owned();
    assert!(said.contains("Tagged revision 3"), "{said}");
    let said = cli
        .run(&["env", "version", "tag", "web/prod", "stable", "4"])
        .await
        .ok()
        .to_owned();
    assert!(
        said.contains("Moved the tag stable") && said.contains("revision 4"),
        "{said}"
    );
    let table = cli.run(&["env", "version", "ls", "web/prod"]).await.ok().to_owned();
    let row4 = table.lines().find(|l| l.starts_with("4 ")).unwrap_or_default();
    assert!(row4.contains("stable"), "{table}");
    let at_stable = cli.run(&["env", "get", "web/prod@stable"]).await.ok().to_owned();
    let at_4 = cli.run(&["env", "get", "web/prod@4"]).await.ok().to_owned();
    assert_eq!(at_stable, at_4);
    assert!(at_4.contains("port: 5432") && !at_4.contains("hosts"), "{at_4}");

    let diff = cli.run(&["env", "diff", "web/prod@stable", "@5"]).await.ok().to_owned();
    assert!(
        diff.starts_with("--- acme/web/prod@stable\n+++ acme/web/prod@5\n"),
        "{diff}"
    );
    assert!(diff.contains("+  hosts:") || diff.contains("+  hosts"), "{diff}");
    let last = cli.run(&["env", "diff", "web/prod"]).await.ok().to_owned();
    assert!(
        last.contains("-    port: 5432") && last.contains("+    port: 6432"),
        "{last}"
    );
    assert_eq!(cli.run(&["env", "diff", "web/prod@3", "web/prod@3"]).await.ok(), "");

    let said = cli
        .run(&["env", "version", "rollback", "web/prod", "stable"])
        .await
        .ok()
        .to_owned();
    assert!(said.contains(&format!("as revision {}", latest + 1)), "{said}");
    assert_eq!(cli.run(&["env", "get", "web/prod"]).await.ok(), at_4);
    let back = cli.run(&["env", "diff", "web/prod@4"]).await.ok().to_owned();
    assert_eq!(back, "", "the latest is revision 4's text again");

    // Removing one value, then the environment.
    cli.run(&["env", "rm", "web/prod", "db.port"]).await.ok();
    let text = cli.run(&["env", "get", "web/prod"]).await.ok().to_owned();
    assert!(!text.contains("port:") && text.contains("host: db.example"), "{text}");
    let err = cli.run(&["env", "rm", "web/prod"]).await.fails(1).to_owned();
    assert!(err.contains("--yes"), "{err}");
    cli.run(&["env", "get", "web/prod"]).await.ok();
    assert!(
        cli.run(&["env", "rm", "web/prod", "--yes"])
            .await
            .ok()
            .contains("Deleted acme/web/prod")
    );
    let err = cli.run(&["env", "get", "web/prod"]).await.fails(3).to_owned();
    assert!(err.contains("environment acme/web/prod was not found"), "{err}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_saves_reopens_on_errors_and_refuses_a_stale_write() {
    let (dir, srv) = start().await;
    let cli = Sesame::new(&srv, &dir.path().join("config"));
    cli.run(&["env", "init", "web/app"]).await.ok();
    cli.run(&["env", "set", "web/app", "greeting", "hello"]).await.ok();

    // An editor that changes the text: saved as a new revision.
    let rewrite = script(
        dir.path(),
        "rewrite.sh",
        "printf 'values:\\n  greeting: bonjour # edited\\n  environmentVariables:\\n    GREETING: ${greeting}\\n' > \"$1\"",
    );
    let said = cli.edit(&["env", "edit", "web/app"], &rewrite).await.ok().to_owned();
    assert!(said.contains("Saved acme/web/app (revision 3)"), "{said}");
    let text = cli.run(&["env", "get", "web/app"]).await.ok().to_owned();
    assert!(text.contains("greeting: bonjour # edited"), "{text}");

    // An editor that changes nothing: nothing is written.
    let untouched = script(dir.path(), "untouched.sh", "true");
    let said = cli.edit(&["env", "edit", "web/app"], &untouched).await.ok().to_owned();
    assert!(said.contains("No changes"), "{said}");
    let revisions = cli.run(&["env", "version", "ls", "web/app", "--json"]).await.json();
    assert_eq!(revisions[0]["number"], json!(3));

    // A definition with an error: the diagnostic is printed as file:line:column, the editor opens again on the
    // user's text (the script sees it the second time), and giving up leaves the environment as it was (exit 3).
    let seen = dir.path().join("seen.txt");
    let broken = script(
        dir.path(),
        "broken.sh",
        &format!(
            "cat \"$1\" >> '{}'\nprintf 'values:\\n  a: ${{nope.x}}\\n' > \"$1\"",
            seen.display()
        ),
    );
    let out = cli.edit(&["env", "edit", "web/app"], &broken).await;
    let err = out.fails(3);
    let diag = err
        .lines()
        .find(|l| l.contains(".yaml:2:"))
        .unwrap_or_else(|| panic!("no file:line:col diagnostic in {err}"));
    assert!(diag.contains("nope"), "{diag}");
    assert!(err.contains("nothing was saved"), "{err}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(
        seen.contains("bonjour") && seen.contains("${nope.x}"),
        "the second round shows the user's own text: {seen}"
    );
    let text = cli.run(&["env", "get", "web/app"]).await.ok().to_owned();
    assert!(text.contains("bonjour") && !text.contains("nope"), "{text}");

    // Someone else writes while the editor is open: 409, nothing saved, and the user's text is kept in a file.
    let racing = script(
        dir.path(),
        "racing.sh",
        &format!("'{BIN}' env set web/app other 1 >/dev/null\nprintf '# my change\\n' >> \"$1\""),
    );
    let out = cli.edit(&["env", "edit", "web/app"], &racing).await;
    let err = out.fails(3).to_owned();
    assert!(err.contains("changed by someone else") && err.contains("409"), "{err}");
    let kept = err
        .split("your text is in ")
        .nth(1)
        .and_then(|r| r.split(" (delete it").next())
        .unwrap_or_else(|| panic!("no kept file named in {err}"));
    let kept_text = std::fs::read_to_string(kept).unwrap();
    assert!(kept_text.contains("# my change"), "{kept_text}");
    assert_eq!(std::fs::metadata(kept).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::remove_file(kept).unwrap();
    let text = cli.run(&["env", "get", "web/app"]).await.ok().to_owned();
    assert!(text.contains("other: 1") && !text.contains("# my change"), "{text}");

    // Editing secrets in plaintext: they are sealed again when saved.
    cli.run(&["env", "set", "web/app", "token", "--secret", "t0p"])
        .await
        .ok();
    let reveal = script(dir.path(), "reveal.sh", "sed -i 's/t0p/t1p/' \"$1\"");
    cli.edit(&["env", "edit", "web/app", "--show-secrets"], &reveal)
        .await
        .ok();
    let sealed = cli.run(&["env", "get", "web/app"]).await.ok().to_owned();
    assert!(!sealed.contains("t1p") && sealed.contains("ciphertext"), "{sealed}");
    let opened = cli
        .run(&["env", "open", "web/app", "token", "--format", "string"])
        .await;
    assert_eq!(opened.ok(), "t1p\n");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_environments_and_bad_names_fail_clearly() {
    let (dir, srv) = start().await;
    let cli = Sesame::new(&srv, &dir.path().join("config"));

    for args in [
        &["env", "get", "web/missing"][..],
        &["env", "open", "web/missing"],
        &["env", "set", "web/missing", "a", "1"],
        &["env", "version", "ls", "web/missing"],
        &["env", "rm", "web/missing", "--yes"],
    ] {
        let out = cli.run(args).await;
        let err = out.fails(3);
        assert!(
            err.contains("environment acme/web/missing was not found") && err.contains("404"),
            "{args:?}: {err}"
        );
    }
    cli.run(&["env", "init", "web/there"]).await.ok();
    let err = cli.run(&["env", "get", "web/there@42"]).await.fails(3).to_owned();
    assert!(err.contains("was not found"), "{err}");

    // Names are checked before any request: exit 1 and a message that names the problem.
    for (name, needle) in [
        ("a/b/c/d", "[ORG/]PROJECT/ENV"),
        ("web/bad name", "invalid environment name"),
        ("web/x@", "invalid version"),
    ] {
        let out = cli.run(&["env", "get", name]).await;
        let err = out.fails(1);
        assert!(err.contains(needle), "{name}: {err}");
    }
    // A bad path, a version where only the latest makes sense (exit 1); the server's refusal of a definition is
    // shown with its position (exit 3).
    for (args, code, needles) in [
        (["env", "set", "web/there", "a..b", "1"], 1, &["property path"][..]),
        (["env", "set", "web/there@1", "a", "1"], 1, &["latest"][..]),
        (
            ["env", "set", "web/there", "x", "${missing.value}"],
            3,
            &["acme/web/there:", "missing"][..],
        ),
    ] {
        let out = cli.run(&args).await;
        let err = out.fails(code);
        assert!(needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
    }
    srv.stop().await;
}

/// The revision texts in the server's SQLite database.
async fn stored_texts(data: &Path) -> Vec<String> {
    let url = format!("sqlite://{}", data.join("sesame.db").display());
    crate::support::revision_yamls(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_every_form_are_sealed_through_the_cli() {
    let (dir, srv) = start().await;
    let cli = Sesame::new(&srv, &dir.path().join("config"));
    let data = dir.path().join("data");
    let markers = ["zqfilex", "zqfoldx", "zqflowx", "zqlistx", "zqdqx", "zqsetx", "zqeditx"];
    let assert_sealed = |texts: Vec<String>| {
        for t in &texts {
            assert!(!sesame::core::env::crypt::has_plaintext_secret(t), "{t}");
            for m in markers {
                assert!(!t.contains(m), "{m} stored in plaintext:\n{t}");
            }
        }
    };

    // `env init -f`: block scalars, flow collections, a multi-line double-quoted string, CRLF line ends.
    let file = dir.path().join("env.yaml");
    let text = "values:\r\n  cert:\r\n    fn::secret: |\r\n      zqfilex line1\r\n      line2\r\n  folded:\r\n    fn::secret: >-\r\n      zqfoldx\r\n      more\r\n  flow: {fn::secret: 'zqflowx'}\r\n  list:\r\n    - {fn::secret: zqlistx}\r\n  dq:\r\n    fn::secret: \"zqdqx\r\n      two\"\r\n";
    std::fs::write(&file, text).unwrap();
    cli.run(&["env", "init", "web/file", "-f", file.to_str().unwrap()])
        .await
        .ok();
    assert_sealed(stored_texts(&data).await);
    let shown = cli.run(&["env", "get", "web/file"]).await.ok().to_owned();
    assert!(markers.iter().all(|m| !shown.contains(m)), "{shown}");
    let opened = cli.run(&["env", "open", "web/file"]).await.json();
    assert_eq!(opened["cert"], json!("zqfilex line1\nline2\n"), "{opened}");
    assert_eq!(opened["folded"], json!("zqfoldx more"));
    assert_eq!(opened["flow"], json!("zqflowx"));
    assert_eq!(opened["list"], json!(["zqlistx"]));
    assert_eq!(opened["dq"], json!("zqdqx two"));

    // `env set --secret` with a value over several lines.
    cli.run(&[
        "env",
        "set",
        "web/file",
        "key",
        "--secret",
        "zqsetx -----BEGIN-----\nAAAA\n-----END-----\n",
    ])
    .await
    .ok();
    assert_sealed(stored_texts(&data).await);
    let opened = cli.run(&["env", "open", "web/file"]).await.json();
    assert_eq!(opened["key"], json!("zqsetx -----BEGIN-----\nAAAA\n-----END-----\n"));

    // `env edit`: an editor that adds a literal block secret.
    let editor = script(
        dir.path(),
        "add-block.sh",
        "printf '  edited:\\n    fn::secret: |+\\n      zqeditx\\n\\n' >> \"$1\"",
    );
    cli.edit(&["env", "edit", "web/file"], &editor).await.ok();
    assert_sealed(stored_texts(&data).await);
    let opened = cli.run(&["env", "open", "web/file"]).await.json();
    assert_eq!(
        opened["edited"],
        json!("zqeditx\n\n"),
        "keep chomping keeps the blank line"
    );

    // A file with a second document is refused: the environment is created, its text is not stored.
    std::fs::write(&file, "values:\n  a: 1\n---\nvalues:\n  b: {fn::secret: zqfilex}\n").unwrap();
    let err = cli.run(&["env", "init", "web/two", "-f", file.to_str().unwrap()]).await;
    assert_ne!(err.code, Some(0), "{err:#?}");
    assert!(err.stderr.contains("single YAML document"), "{err:#?}");
    assert_sealed(stored_texts(&data).await);
    srv.stop().await;
}

/// `sesame login` never picks an org the user did not choose: the only org when there is exactly one, else none
/// (not the first by name, which could be one someone else put the user in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_defaults_to_an_org_only_when_there_is_one() {
    let (dir, srv) = start().await;
    let (status, body) = srv.post("/api/sesame/v1/orgs", &json!({"name": "aaa-first"})).await;
    assert_eq!(status, 201, "{body}");
    let add = |org: &'static str, login: &'static str| {
        let srv = &srv;
        async move {
            let (status, body) = srv
                .post(
                    &format!("/api/sesame/v1/orgs/{org}/members"),
                    &json!({"login": login, "role": "reader"}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["token"].as_str().map(str::to_owned)
        }
    };
    let solo = add("acme", "solo").await.unwrap();
    let multi = add("acme", "multi").await.unwrap();
    assert_eq!(add("aaa-first", "multi").await, None);

    for (token, want, says) in [
        (&solo, json!("acme"), "default to the org acme"),
        (&multi, Value::Null, "--org"),
    ] {
        let config_dir = dir.path().join(format!("cfg-{}", &token[7..12]));
        let mut cli = Sesame::new(&srv, &config_dir);
        cli.token = token.clone();
        let mut c = cli.command(&["login", &srv.base]);
        c.env_remove("SESAME_ORG");
        let out = Sesame::output(c, None).await;
        assert!(out.ok().contains(says), "{out:#?}");
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(config_dir.join("credentials.json")).unwrap()).unwrap();
        assert_eq!(saved["org"], want, "{saved}");
    }
    srv.stop().await;
}
