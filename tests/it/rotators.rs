//! Rotators (`fn::rotate::password`, `fn::rotate::passphrase`) and `POST …/rotate`, on SQLite and PostgreSQL: the
//! value before the first rotation is `{}`; a rotation writes a new revision whose state is `{current}` the first
//! time and `{current, previous}` (previous: the former current) after, each secret sealed in the stored text;
//! only editors may rotate; bad inputs and paths are diagnosed and write nothing; the CLI rotates; the rotators and
//! their schemas are served.

use serde_json::{Value, json};

use crate::esc::{Esc, plain};
use crate::support::{self, TestServer, on_both};

const ENV: &str = "/acme/p/app";

const DOC: &str = "values:\n  db:\n    password:\n      fn::rotate::password:\n        inputs:\n          length: 20\n          special: false\n  phrase:\n    fn::rotate::passphrase:\n      inputs:\n        length: 5\n        separator: \" \"\n  user: admin\n";

async fn rotate(c: &Esc<'_>, body: &str) -> crate::esc::Resp {
    c.call(
        "POST",
        &format!("{ENV}/rotate"),
        Some(body),
        &[("Content-Type", "application/json")],
    )
    .await
}

async fn opened(c: &Esc<'_>) -> Value {
    let v = c.open(ENV).await;
    let props = v["properties"].as_object().expect("properties").clone();
    Value::Object(props.into_iter().map(|(k, v)| (k, plain(&v))).collect())
}

async fn head(c: &Esc<'_>) -> i64 {
    let r = c.call("GET", &format!("{ENV}/versions"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
        .as_array()
        .expect("revisions")
        .iter()
        .filter_map(|x| x["number"].as_i64())
        .max()
        .unwrap()
}

async fn rotations(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    let r = c.patch(ENV, DOC).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Before the first rotation each value is `{}`.
    let v = opened(&c).await;
    assert_eq!(v["db"]["password"], json!({}), "{v}");
    assert_eq!(v["phrase"], json!({}), "{v}");
    let before = head(&c).await;

    // First rotation: all calls; `{current}` only.
    let r = rotate(&c, r#"{"paths": null}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ev = &r.json()["secretRotationEvent"];
    assert_eq!(ev["status"], json!("succeeded"), "{ev}");
    assert_eq!(ev["preRotationRevision"], json!(before));
    assert_eq!(ev["postRotationRevision"], json!(before + 1));
    let mut paths: Vec<&str> = support::each_str(&ev["rotations"], "environmentPath");
    paths.sort();
    assert_eq!(paths, vec!["db.password", "phrase"]);
    assert_eq!(head(&c).await, before + 1);
    let v1 = opened(&c).await;
    let p1 = v1["db"]["password"]["current"].as_str().expect("current").to_owned();
    assert_eq!(p1.len(), 20);
    assert!(p1.bytes().all(|b| b.is_ascii_alphanumeric()), "{p1}");
    assert!(v1["db"]["password"].get("previous").is_none(), "{v1}");
    let ph1 = v1["phrase"]["current"].as_str().expect("current").to_owned();
    assert_eq!(ph1.split(' ').count(), 5, "{ph1}");
    assert_eq!(v1["user"], json!("admin"));
    let raw = c.open(ENV).await;
    assert_eq!(
        raw["properties"]["db"]["value"]["password"]["value"]["current"]["secret"],
        json!(true),
        "{raw}"
    );

    // The stored text holds no rotated plaintext; decrypt shows it under the editor role.
    let stored = c.call("GET", ENV, None, &[]).await;
    assert_eq!(stored.status, 200);
    assert!(
        !stored.text.contains(&p1) && !stored.text.contains(&ph1),
        "{}",
        stored.text
    );
    assert!(stored.text.contains("ciphertext"), "{}", stored.text);
    let dec = c.call("GET", &format!("{ENV}/decrypt"), None, &[]).await;
    assert!(dec.text.contains(&p1), "{}", dec.text);

    // Second rotation of one path (Pulumi's client spelling): previous = the former current; the other stays.
    let r = rotate(&c, r#"{"Paths": ["db.password"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v2 = opened(&c).await;
    assert_eq!(v2["db"]["password"]["previous"], json!(p1), "{v2}");
    let p2 = v2["db"]["password"]["current"].as_str().unwrap();
    assert_ne!(p2, p1);
    assert_eq!(v2["phrase"]["current"], json!(ph1));
    assert!(v2["phrase"].get("previous").is_none());
    let stored = c.call("GET", ENV, None, &[]).await;
    assert!(
        !stored.text.contains(&p1) && !stored.text.contains(p2),
        "{}",
        stored.text
    );

    // Every rotation is audited, without any value.
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    let rot: Vec<&str> = audit.lines().filter(|l| l.contains("env.rotate")).collect();
    assert_eq!(rot.len(), 2, "{audit}");
    assert!(
        rot.iter()
            .all(|l| !l.contains(&p1) && !l.contains(p2) && !l.contains(&ph1))
    );

    // The CLI rotates one path.
    let (code, out, err) = support::run_cli(s, &s.token, ["env", "rotate", "acme/p/app", "phrase"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("phrase") && !out.contains(&ph1), "{out}");
    let v3 = opened(&c).await;
    assert_eq!(v3["phrase"]["previous"], json!(ph1), "{v3}");
    assert_eq!(v3["db"]["password"]["current"], json!(p2));
}

on_both!(rotations, rotations_sqlite, rotations_postgres);

async fn refusals(s: &TestServer) {
    let c = Esc::admin(s);
    assert_eq!(c.create("acme", "p", "app").await.status, 200);
    assert_eq!(c.patch(ENV, DOC).await.status, 200);
    let before = head(&c).await;

    for role in ["reader", "opener"] {
        let (status, body) = s.add_member("acme", role, role).await;
        assert!(status == 200 || status == 201, "{body}");
        let m = Esc {
            s,
            token: body["token"].as_str().unwrap().to_owned(),
        };
        let r = rotate(&m, "{}").await;
        assert!(r.status == 403 || r.status == 404, "{role}: {} {}", r.status, r.text);
        let (code, _, err) = support::run_cli(s, &m.token, ["env", "rotate", "acme/p/app"]).await;
        assert_ne!(code, 0, "{err}");
    }

    // Bad requests: wrong types, unknown fields, malformed JSON, bad or unknown paths.
    for body in [
        r#"{"paths": "db.password"}"#,
        r#"{"paths": [1]}"#,
        r#"{"other": true}"#,
        "not json",
        r#"{"paths": ["db..password"]}"#,
        r#"{"paths": ["user"]}"#,
        r#"{"paths": ["nowhere"]}"#,
    ] {
        let r = rotate(&c, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    assert_eq!(head(&c).await, before, "nothing written");

    // Bad rotator inputs are diagnosed at the call, and nothing is written.
    for (doc, word) in [
        (
            "values:\n  x:\n    fn::rotate::password:\n      inputs:\n        length: 4\n",
            "length",
        ),
        (
            "values:\n  x:\n    fn::rotate::password:\n      inputs:\n        length: \"12\"\n",
            "length",
        ),
        (
            "values:\n  x:\n    fn::rotate::passphrase:\n      inputs:\n        colour: red\n",
            "colour",
        ),
        (
            "values:\n  x:\n    fn::rotate::password:\n      inputs:\n        lower: false\n        upper: false\n        numeric: false\n        special: false\n",
            "at least one",
        ),
    ] {
        let r = c.patch(ENV, doc).await;
        let h = head(&c).await;
        let r = if r.status == 200 {
            let rr = rotate(&c, "{}").await;
            assert_eq!(head(&c).await, h, "{doc}: nothing written");
            rr
        } else {
            r
        };
        assert_eq!(r.status, 400, "{doc}: {}", r.text);
        assert!(
            r.text.contains(word) || r.text.contains("diagnostics"),
            "{doc}: {}",
            r.text
        );
    }
    let r = c
        .patch(ENV, "values:\n  x:\n    fn::rotate::nonesuch:\n      inputs: {}\n")
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("unknown rotator"), "{}", r.text);
    let r = c.patch(ENV, "values:\n  x: 1\n").await;
    assert_eq!(r.status, 200);
    let r = rotate(&c, "{}").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("no fn::rotate"), "{}", r.text);
    // A missing environment answers like one the caller may not see.
    let r = c
        .call(
            "POST",
            "/acme/p/nonesuch/rotate",
            Some("{}"),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

on_both!(refusals, refusals_sqlite, refusals_postgres);

async fn schemas(s: &TestServer) {
    let c = Esc::admin(s);
    let r = c.call("GET", "/api/esc/rotators", None, &[]).await;
    assert_eq!(r.status, 200);
    let names = if cfg!(feature = "aws") {
        json!(["aws-iam", "passphrase", "password"])
    } else {
        json!(["passphrase", "password"])
    };
    assert_eq!(r.json()["rotators"], names);
    for name in ["password", "passphrase"] {
        let r = c
            .call("GET", &format!("/api/esc/rotators/{name}/schema"), None, &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["name"], json!(name));
        assert_eq!(v["inputs"]["type"], json!("object"));
        assert_eq!(v["inputs"]["required"], json!(["inputs"]));
        assert_eq!(v["inputs"]["properties"]["inputs"]["type"], json!("object"));
        assert_eq!(
            v["inputs"]["properties"]["state"]["properties"]["current"]["type"],
            json!("string")
        );
        assert!(v["outputs"].is_object());
    }
    let r = c.call("GET", "/api/esc/rotators/aws-iam/schema", None, &[]).await;
    assert_eq!(r.status, if cfg!(feature = "aws") { 200 } else { 404 });
}

on_both!(schemas, schemas_sqlite, schemas_postgres);
