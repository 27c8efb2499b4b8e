//! `fn::open::aws-login`, `fn::open::aws-secrets`, `fn::open::aws-parameter-store` and `fn::rotate::aws-iam` (feature
//! `aws`) against a real `moto_server` (`SESAME_TEST_MOTO_SERVER` or on PATH; skipped with a reason when absent,
//! a failure under CI=true), on SQLite and PostgreSQL. Moto does not verify the web-identity token (the issuer's
//! tests verify tokens); everything else is moto's real STS, Secrets Manager, SSM and IAM.
//!
//! The server reaches moto the standard way (`AWS_ENDPOINT_URL`), through a counting relay in this file: every STS
//! request that names a test's session name is counted from the bytes on the wire, so "one STS call per aws-login
//! block per open, none on a session read, none for refused inputs" is measured, not assumed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde_json::{Value, json};

use crate::child::ChildGuard;
use crate::esc::{Esc, Resp};
use crate::support::{TestServer, config, temp_dir, with_postgres_url};

const ROLE: &str = "arn:aws:iam::123456789012:role/esc-test";

/// One moto server for the whole test process (the SDK's configuration is read once per process), behind the
/// counting relay.
struct Moto {
    _child: ChildGuard,
    /// moto itself (for the tests' own setup and checks).
    direct: String,
    /// What clients sent through the relay, one buffer per connection.
    wire: Wire,
}

type Wire = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();

fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(start_moto).as_ref()
}

fn start_moto() -> Option<Moto> {
    let bin = std::env::var("SESAME_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(child) = ChildGuard::spawn(cmd, "moto_server") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "moto_server ({bin}) is required under CI=true"
        );
        eprintln!("skipping: moto_server not found (pip install 'moto[server]' or set SESAME_TEST_MOTO_SERVER)");
        return None;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let wire: Wire = Arc::default();
    let relay = relay(port, wire.clone());
    #[allow(unsafe_code)]
    // SAFETY (invariant): set once, before the first server of this process reads the SDK's configuration; the
    // values are the same for every test that reads them (kms_migrate sets the same credentials).
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{relay}"));
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
    Some(Moto {
        _child: child,
        direct: format!("http://127.0.0.1:{port}"),
        wire,
    })
}

/// A TCP relay on a free port to moto's `port`, on threads of its own (tests come and go with their runtimes),
/// recording what clients send.
fn relay(port: u16, wire: Wire) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut c_read, mut u_write) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let sent: Arc<Mutex<Vec<u8>>> = Arc::default();
            wire.lock().unwrap().push(sent.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = c_read.read(&mut buf) {
                    sent.lock().unwrap().extend_from_slice(&buf[..n]);
                    if u_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = u_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut u_read, mut c_write) = (upstream, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    relay_port
}

impl Moto {
    /// STS AssumeRoleWithWebIdentity requests seen on the wire for `session` (a name unique to one test; only
    /// that action carries `RoleSessionName` here, followed by the request's next parameter).
    fn sts_calls(&self, session: &str) -> usize {
        let needle = format!("RoleSessionName={session}&");
        let conns = self.wire.lock().unwrap().clone();
        conns
            .iter()
            .map(|c| String::from_utf8_lossy(&c.lock().unwrap()).matches(&needle).count())
            .sum()
    }

    async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.direct)
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }
}

async fn start(database_url: Option<&str>) -> (TestServer, tempfile::TempDir) {
    let dir = temp_dir();
    let mut cfg = config(dir.path(), database_url);
    cfg.egress_allow = sesame::egress::EgressPolicy::parse(&["127.0.0.1/32"]).unwrap();
    (TestServer::start(cfg, None).await.unwrap(), dir)
}

fn oidc_login(session: &str, extra: &str) -> String {
    format!(
        "      fn::open::aws-login:\n        oidc:\n          roleArn: {ROLE}\n          sessionName: {session}\n{extra}"
    )
}

async fn open_id(c: &Esc<'_>, env: &str) -> Resp {
    c.call("POST", &format!("{env}/open?duration=1h"), None, &[]).await
}

async fn read(c: &Esc<'_>, env: &str, id: &str) -> Value {
    let r = c.call("GET", &format!("{env}/open/{id}"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    crate::esc::plain(&json!({"value": r.json()["properties"]}))
}

async fn opened(c: &Esc<'_>, env: &str) -> Value {
    let r = open_id(c, env).await;
    assert_eq!(r.status, 200, "{}", r.text);
    read(c, env, r.json()["id"].as_str().unwrap()).await
}

async fn rotate(c: &Esc<'_>, env: &str) -> Resp {
    c.call(
        "POST",
        &format!("{env}/rotate"),
        Some("{}"),
        &[("Content-Type", "application/json")],
    )
    .await
}

/// The access key ids IAM holds for `user`, sorted.
async fn keys_of(iam: &aws_sdk_iam::Client, user: &str) -> Vec<String> {
    let keys = iam.list_access_keys().user_name(user).send().await.unwrap();
    let mut ids: Vec<String> = keys
        .access_key_metadata()
        .iter()
        .filter_map(|k| k.access_key_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn scenario(s: &TestServer, moto: &Moto) {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let sdk = moto.sdk().await;
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let secure = format!("sec-{}", uuid::Uuid::new_v4().simple());
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    sm.create_secret()
        .name(format!("app/db-{tag}"))
        .secret_string(&password)
        .send()
        .await
        .unwrap();
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    for (name, kind, value) in [
        (
            format!("/app-{tag}/plain"),
            aws_sdk_ssm::types::ParameterType::String,
            "hello",
        ),
        (
            format!("/app-{tag}/secure"),
            aws_sdk_ssm::types::ParameterType::SecureString,
            secure.as_str(),
        ),
    ] {
        ssm.put_parameter()
            .name(name)
            .r#type(kind)
            .value(value)
            .send()
            .await
            .unwrap();
    }

    let c = Esc::admin(s);
    let env = "/acme/aws/app";
    assert_eq!(c.create("acme", "aws", "app").await.status, 200);
    let (sa, sb) = (format!("esc-{tag}-a"), format!("esc-{tag}-b"));
    let doc = format!(
        "values:\n  aws:\n    login:\n{}    other:\n{}  secrets:\n    fn::open::aws-secrets:\n      region: us-east-1\n      login: ${{aws.login}}\n      get:\n        db:\n          secretId: app/db-{tag}\n  params:\n    fn::open::aws-parameter-store:\n      region: us-east-1\n      login: ${{aws.login}}\n      get:\n        plain:\n          name: /app-{tag}/plain\n        secure:\n          name: /app-{tag}/secure\n          decrypt: true\n        sealed:\n          name: /app-{tag}/secure\n",
        oidc_login(
            &sa,
            "          duration: 1h\n          policyArns:\n            - arn:aws:iam::aws:policy/ReadOnlyAccess\n          subjectAttributes:\n            - currentEnvironment.name\n"
        ),
        oidc_login(&sb, ""),
    );
    let r = c.patch(env, &doc).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (moto.sts_calls(&sa), moto.sts_calls(&sb)),
        (0, 0),
        "saving calls nothing"
    );

    // Two opens: two sets of credentials, one STS call per aws-login block per open.
    let (r1, r2) = (open_id(&c, env).await, open_id(&c, env).await);
    assert_eq!(r1.status, 200, "{}", r1.text);
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!((moto.sts_calls(&sa), moto.sts_calls(&sb)), (2, 2));
    let (id1, id2) = (
        r1.json()["id"].as_str().unwrap().to_owned(),
        r2.json()["id"].as_str().unwrap().to_owned(),
    );
    let v1 = read(&c, env, &id1).await;
    let v2 = read(&c, env, &id2).await;
    let login1 = &v1["aws"]["login"];
    for k in ["accessKeyId", "secretAccessKey", "sessionToken"] {
        assert!(login1[k].as_str().is_some_and(|v| v.len() >= 16), "{k}: {v1}");
        assert_ne!(login1[k], v2["aws"]["login"][k], "{k}: two opens, two credential sets");
    }
    assert_ne!(v1["aws"]["login"], v1["aws"]["other"]);
    assert_eq!(v1["secrets"], json!({"db": password}));
    assert_eq!(v1["params"]["plain"], json!("hello"));
    assert_eq!(v1["params"]["secure"], json!(secure));
    assert_ne!(v1["params"]["sealed"], json!(secure), "decrypt defaults to false");
    // The session reads what the open got, without calling STS again; credentials are secret.
    let r = c.call("GET", &format!("{env}/open/{id1}"), None, &[]).await;
    let raw = r.json();
    assert_eq!(
        raw["properties"]["aws"]["value"]["login"]["secret"],
        json!(true),
        "{raw}"
    );
    assert_eq!(
        raw["properties"]["aws"]["value"]["login"]["value"]["secretAccessKey"]["secret"],
        json!(true),
        "{raw}"
    );
    assert_eq!(raw["properties"]["secrets"]["secret"], json!(true), "{raw}");
    s.server.state.eval_cache.invalidate_all();
    assert_eq!(read(&c, env, &id1).await, v1);
    assert_eq!(
        (moto.sts_calls(&sa), moto.sts_calls(&sb)),
        (2, 2),
        "a session read calls nothing"
    );
    // The credentials are moto's: they work at STS.
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&sdk)
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                login1["accessKeyId"].as_str().unwrap(),
                login1["secretAccessKey"].as_str().unwrap(),
                login1["sessionToken"].as_str().map(str::to_owned),
                None,
                "test",
            ))
            .build(),
    );
    let me = sts.get_caller_identity().send().await.unwrap();
    assert!(
        me.arn().is_some_and(|a| a.contains("esc-test") && a.contains(&sa)),
        "{me:?}"
    );

    // Every call audited (the login token's mint too, aud aws:acme); never a credential nor a value.
    let audit = s.export("/api/sesame/v1/orgs/acme/audit").await;
    let opens = |p: &str| audit.matches(&format!("provider={p} ")).count();
    assert_eq!(opens("aws-login"), 4, "two blocks, two opens");
    assert_eq!((opens("aws-secrets"), opens("aws-parameter-store")), (2, 2));
    assert!(audit.contains("aud=aws:acme"), "the login token's mint is audited");
    for secret in [
        login1["secretAccessKey"].as_str().unwrap(),
        login1["sessionToken"].as_str().unwrap(),
        &password,
        &secure,
    ] {
        assert!(!audit.contains(secret));
    }

    // Static credentials pass through and read the same stores.
    let stat = format!(
        "values:\n  aws:\n    login:\n      fn::open::aws-login:\n        static:\n          accessKeyId: AKIASTATIC{tag}\n          secretAccessKey:\n            fn::secret: static-secret-{tag}\n  secrets:\n    fn::open::aws-secrets:\n      region: us-east-1\n      login: ${{aws.login}}\n      get:\n        db:\n          secretId: app/db-{tag}\n"
    );
    let r = c.patch(env, &stat).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = opened(&c, env).await;
    assert_eq!(
        v["aws"]["login"],
        json!({"accessKeyId": format!("AKIASTATIC{tag}"), "secretAccessKey": format!("static-secret-{tag}")})
    );
    assert_eq!(v["secrets"]["db"], json!(password));

    // A provider error: a diagnostic at the call naming the secret asked for and AWS's error, nothing secret.
    let missing = stat.replace(&format!("secretId: app/db-{tag}"), &format!("secretId: app/none-{tag}"));
    let r = c.patch(env, &missing).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = open_id(&c, env).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("ResourceNotFoundException") && r.text.contains(&format!("app/none-{tag}")),
        "{}",
        r.text
    );
    assert!(r.text.contains("secrets"), "{}", r.text);
    for secret in [
        format!("static-secret-{tag}"),
        format!("AKIASTATIC{tag}"),
        password.clone(),
    ] {
        assert!(!r.text.contains(&secret), "{}", r.text);
    }

    // Refused inputs: the schema refuses them at save (a diagnostic at the call), or the provider before any
    // call at open; STS is never called for them.
    let sc = format!("esc-{tag}-c");
    let bad_at_save = [
        ("        oidc:\n          sessionName: x-y\n".to_owned(), "roleArn"),
        (
            format!(
                "        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n          duration: 3600\n"
            ),
            "duration",
        ),
        (
            format!(
                "        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n          region: us-east-1\n"
            ),
            "region",
        ),
        (
            format!(
                "        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n          policyArns: arn\n"
            ),
            "policyArns",
        ),
        (
            "        static:\n          accessKeyId: a\n".to_owned(),
            "secretAccessKey",
        ),
        (
            format!("        oidc:\n          roleArn: {ROLE}\n          sessionName: \"a b\"\n"),
            "sessionName",
        ),
    ];
    for (block, want) in &bad_at_save {
        let yaml = format!("values:\n  aws:\n    fn::open::aws-login:\n{block}");
        let r = c.patch(env, &yaml).await;
        assert_eq!(r.status, 400, "{yaml}: {}", r.text);
        assert!(r.text.contains(want) && r.text.contains("aws"), "{want}: {}", r.text);
    }
    let bad_at_open = [
        (
            format!("        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n          duration: 13h\n"),
            "from 15m to 12h",
        ),
        (
            format!("        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n          duration: 5m\n"),
            "from 15m to 12h",
        ),
        (
            format!("        oidc:\n          roleArn: not-an-arn-but-long-enough\n          sessionName: {sc}\n"),
            "must be an ARN",
        ),
        (
            format!(
                "        oidc:\n          roleArn: {ROLE}\n          sessionName: {sc}\n        static:\n          accessKeyId: a\n          secretAccessKey: b\n"
            ),
            "exactly one of oidc and static",
        ),
        ("        {}\n".to_owned(), "exactly one of oidc and static"),
    ];
    for (block, want) in &bad_at_open {
        let yaml = format!("values:\n  aws:\n    fn::open::aws-login:\n{block}");
        let r = c.patch(env, &yaml).await;
        assert_eq!(r.status, 200, "{yaml}: {}", r.text);
        let r = open_id(&c, env).await;
        assert_eq!(r.status, 400, "{yaml}: {}", r.text);
        assert!(r.text.contains(want), "{want}: {}", r.text);
    }
    let bad_store = format!(
        "values:\n  s:\n    fn::open::aws-secrets:\n      region: \"us-east-1.evil.example\"\n      login:\n        accessKeyId: a\n        secretAccessKey: b\n      get:\n        db:\n          secretId: app/db-{tag}\n"
    );
    let r = c.patch(env, &bad_store).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = open_id(&c, env).await;
    assert!(r.status == 400 && r.text.contains("not an AWS region"), "{}", r.text);
    for bad in [
        bad_store.replace("      region: \"us-east-1.evil.example\"\n", ""),
        bad_store.replace("secretId: app", "secretid: app"),
        bad_store.replace(
            "      get:\n        db:\n          secretId: app/db",
            "      get: {}\n      x: app/db",
        ),
    ] {
        let r = c.patch(env, &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    assert_eq!(moto.sts_calls(&sc), 0, "refused inputs call nothing");
    // OIDC names a stored environment: refused in an unsaved document, before any call.
    let r = c
        .post("/acme/yaml/open", &format!("values:\n  aws:\n{}", oidc_login(&sc, "")))
        .await;
    assert!(r.status == 400 && r.text.contains("unsaved document"), "{}", r.text);
    assert_eq!(moto.sts_calls(&sc), 0);

    // aws-iam: the first rotation creates a key; each later one deletes the key that falls off and keeps the
    // previous one valid.
    let iam = aws_sdk_iam::Client::new(&sdk);
    let user = format!("rot-{tag}");
    iam.create_user().user_name(&user).send().await.unwrap();
    let rot = format!(
        "values:\n  keys:\n    fn::rotate::aws-iam:\n      inputs:\n        login:\n          accessKeyId: testing\n          secretAccessKey:\n            fn::secret: testing\n        userArn: arn:aws:iam::123456789012:user/{user}\n"
    );
    let r = c.patch(env, &rot).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(opened(&c, env).await["keys"], json!({}), "before the first rotation");
    let r = rotate(&c, env).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let k1 = opened(&c, env).await["keys"].clone();
    let id1 = k1["current"]["accessKeyId"].as_str().expect("current key").to_owned();
    assert!(
        k1["current"]["secretAccessKey"].as_str().is_some_and(|s| s.len() >= 20),
        "{k1}"
    );
    assert!(
        k1["current"]["createdAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{k1}"
    );
    assert!(k1.get("previous").is_none(), "{k1}");
    assert_eq!(keys_of(&iam, &user).await, vec![id1.clone()]);
    let text = c.call("GET", env, None, &[]).await.text;
    assert!(
        !text.contains(k1["current"]["secretAccessKey"].as_str().unwrap()),
        "sealed in the stored text"
    );

    let r = rotate(&c, env).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let k2 = opened(&c, env).await["keys"].clone();
    let id2 = k2["current"]["accessKeyId"].as_str().unwrap().to_owned();
    assert_ne!(id1, id2);
    assert_eq!(k2["previous"], k1["current"], "the former current stays valid");
    let mut both = vec![id1.clone(), id2.clone()];
    both.sort();
    assert_eq!(keys_of(&iam, &user).await, both);

    let r = rotate(&c, env).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let k3 = opened(&c, env).await["keys"].clone();
    let id3 = k3["current"]["accessKeyId"].as_str().unwrap().to_owned();
    assert_eq!(k3["previous"], k2["current"]);
    let mut now = vec![id2.clone(), id3.clone()];
    now.sort();
    assert_eq!(
        keys_of(&iam, &user).await,
        now,
        "the key before previous ({id1}) is deleted"
    );

    // A user IAM does not know: the rotation fails with IAM's error and writes nothing.
    let r = c.patch(env, &rot.replace(&user, &format!("ghost-{tag}"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = c.call("GET", env, None, &[]).await.text;
    let r = rotate(&c, env).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("NoSuchEntity") && r.text.contains(&format!("ghost-{tag}")),
        "{}",
        r.text
    );
    assert!(!r.text.contains("testing"), "{}", r.text);
    assert_eq!(c.call("GET", env, None, &[]).await.text, before);

    // The schemas editors read.
    let r = c.call("GET", "/api/esc/providers/aws-login/schema", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["inputs"]["properties"]["oidc"]["required"],
        json!(["sessionName", "roleArn"]),
        "{v}"
    );
    assert_eq!(
        v["inputs"]["properties"]["oidc"]["properties"]["duration"]["default"], "2h",
        "{v}"
    );
    assert_eq!(
        v["inputs"]["properties"]["static"]["required"],
        json!(["accessKeyId", "secretAccessKey"])
    );
    assert_eq!(
        v["outputs"]["required"],
        json!(["accessKeyId", "secretAccessKey"]),
        "{v}"
    );
    let r = c
        .call("GET", "/api/esc/providers/aws-parameter-store/schema", None, &[])
        .await;
    let v = r.json();
    assert_eq!(v["inputs"]["required"], json!(["get", "login", "region"]), "{v}");
    assert_eq!(
        v["inputs"]["properties"]["get"]["additionalProperties"]["properties"]["decrypt"]["default"],
        false
    );
    let r = c.call("GET", "/api/esc/rotators/aws-iam/schema", None, &[]).await;
    let v = r.json();
    let (inputs, state) = (
        &v["inputs"]["properties"]["inputs"],
        &v["inputs"]["properties"]["state"],
    );
    assert_eq!(inputs["required"], json!(["login", "userArn"]), "{v}");
    assert_eq!(inputs["properties"]["region"]["default"], "us-east-1", "{v}");
    assert_eq!(state["required"], json!(["current"]), "{v}");
}

#[tokio::test]
async fn aws_providers_on_sqlite() {
    let Some(moto) = moto() else { return };
    let (s, _dir) = start(None).await;
    scenario(&s, moto).await;
    s.stop().await;
}

#[tokio::test]
async fn aws_providers_on_postgres() {
    let Some(moto) = moto() else { return };
    with_postgres_url(async |url| {
        let (s, _dir) = start(url).await;
        scenario(&s, moto).await;
        s.stop().await;
    })
    .await;
}
