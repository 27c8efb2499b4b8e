//! Kubernetes (issue 17), without a cluster: the injector's decision as a function over AdmissionReview fixtures,
//! its patch applied by a JSON Patch library that is not ours (`json-patch`) and the resulting pod asserted; the
//! webhook over TLS (400 for malformed reviews, certificate reload); `sesame agent` end to end against a running
//! server with ServiceAccount-style tokens from a test issuer (files, quoting, modes, refresh, refusals); External
//! Secrets Operator's Pulumi provider's request sequence, byte for byte as its Go code sends and stores it; and the
//! `deploy/kubernetes/` kustomize base rendered by `kubectl kustomize` and validated by `kubernetes-validate
//! --strict` (found through `SESAME_TEST_KUBECTL` and `SESAME_TEST_KUBE_VALIDATE`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use sesame::core::k8s::{self, InjectorConfig, ReviewError};

use crate::oidc_exchange::keys;
use crate::support::{TestServer, on_both, require_env, run_cli, temp_dir};

const FIXTURE: &str = include_str!("../fixtures/k8s/pod-review.json");
const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";
const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn cfg() -> InjectorConfig {
    InjectorConfig {
        agent_image: "registry.example/sesame:9.9.9".into(),
        server_url: "https://sesame.sesame.svc".into(),
        audience: "https://sesame.example".into(),
        token_expiration_s: 3600,
        ca_pem: None,
    }
}

// ---- the injector as a function ----

/// The fixture with its pod changed by `edit` (and the request's namespace set to the pod's).
fn review_of(edit: impl FnOnce(&mut Value)) -> Value {
    let mut r: Value = serde_json::from_str(FIXTURE).unwrap();
    edit(&mut r["request"]["object"]);
    if let Some(ns) = r["request"]["object"]["metadata"]["namespace"].as_str() {
        r["request"]["namespace"] = json!(ns);
    }
    r
}

/// Reviews `review`; returns the answer and the pod after its patch (applied with `json-patch`), or the pod
/// unchanged when there is no patch.
fn admit(review: &Value) -> (Value, Value) {
    let answer = k8s::review(review.to_string().as_bytes(), &cfg()).expect("a well-formed review");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(
        response["uid"], review["request"]["uid"],
        "the answer carries the request's uid"
    );
    let mut pod = review["request"]["object"].clone();
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSON Patch");
        json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod");
    }
    (answer, pod)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().map(|i| i["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

#[test]
fn a_pod_without_init_containers_gets_the_agent_volume_token_and_mounts() {
    let review = review_of(|_| {});
    let (answer, pod) = admit(&review);
    assert_eq!(answer["response"]["allowed"], true);
    // The annotation marks the pod; others are kept.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["sesame.dev/inject-status"], "injected");
    assert_eq!(annotations["sesame.dev/env"], "acme/shop/prod");
    assert_eq!(pod["metadata"]["generateName"], "web-7d4b9c8f6d-");
    // Volumes: the pod's own, then an in-memory emptyDir and a projected token for Sesame's audience.
    let volumes = &pod["spec"]["volumes"];
    assert_eq!(
        names(volumes),
        ["kube-api-access-abcde", "sesame-secrets", "sesame-token"]
    );
    assert_eq!(volumes[1]["emptyDir"]["medium"], "Memory");
    let sat = &volumes[2]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(sat["audience"], "https://sesame.example");
    assert_eq!(
        (sat["expirationSeconds"].as_i64(), sat["path"].as_str()),
        (Some(3600), Some("token"))
    );
    // The app container mounts the secrets read-only, after its own mounts; it never sees the Sesame token.
    let mounts = &pod["spec"]["containers"][0]["volumeMounts"];
    assert_eq!(names(mounts), ["kube-api-access-abcde", "sesame-secrets"]);
    assert_eq!(mounts[1]["mountPath"], "/sesame");
    assert_eq!(mounts[1]["readOnly"], true);
    // One init container, running the agent once; no sidecar in init mode.
    assert_eq!(names(&pod["spec"]["containers"]), ["web"]);
    let init = &pod["spec"]["initContainers"];
    assert_eq!(names(init), ["sesame-agent-init"]);
    assert_eq!(init[0]["image"], "registry.example/sesame:9.9.9");
    assert_eq!(
        args(&init[0]),
        [
            "agent",
            "--url",
            "https://sesame.sesame.svc",
            "--env",
            "acme/shop/prod",
            "--out",
            "/sesame",
            "--sa-token-file",
            "/var/run/secrets/sesame.dev/serviceaccount/token",
            "--once",
            "--inject-file",
            "db.pem=db.cert"
        ]
    );
    let agent_mounts = &init[0]["volumeMounts"];
    assert_eq!(names(agent_mounts), ["sesame-secrets", "sesame-token"]);
    assert_eq!(
        agent_mounts[1]["mountPath"],
        "/var/run/secrets/sesame.dev/serviceaccount"
    );
    assert_eq!(init[0]["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(init[0]["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn a_pod_with_nothing_yet_gets_whole_lists_and_maps() {
    // No annotations map but the opt-in… is impossible: so no volumes, no mounts, no initContainers, and only the
    // two opt-in annotations.
    let review = review_of(|pod| {
        pod["metadata"]["annotations"] = json!({"sesame.dev/inject": "true", "sesame.dev/env": "acme/shop/prod"});
        pod["spec"].as_object_mut().unwrap().remove("volumes");
        pod["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("volumeMounts");
    });
    let (answer, pod) = admit(&review);
    let ops = patch_ops(&answer);
    let paths: Vec<&str> = ops.iter().map(|o| o["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations/sesame.dev~1inject-status",
            "/spec/volumes",
            "/spec/containers/0/volumeMounts",
            "/spec/initContainers"
        ],
        "JSON-Pointer-escaped key; whole lists where there were none"
    );
    assert_eq!(names(&pod["spec"]["volumes"]), ["sesame-secrets", "sesame-token"]);
    assert_eq!(names(&pod["spec"]["containers"][0]["volumeMounts"]), ["sesame-secrets"]);
    assert_eq!(names(&pod["spec"]["initContainers"]), ["sesame-agent-init"]);
    assert!(!args(&pod["spec"]["initContainers"][0]).contains(&"--inject-file"));
}

#[test]
fn null_lists_are_replaced_whole() {
    let review = review_of(|pod| {
        pod["spec"]["volumes"] = Value::Null;
        pod["spec"]["initContainers"] = Value::Null;
        pod["spec"]["containers"][0]["volumeMounts"] = Value::Null;
    });
    let (answer, pod) = admit(&review);
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(names(&pod["spec"]["volumes"]), ["sesame-secrets", "sesame-token"]);
    assert_eq!(names(&pod["spec"]["initContainers"]), ["sesame-agent-init"]);
    assert_eq!(names(&pod["spec"]["containers"][0]["volumeMounts"]), ["sesame-secrets"]);
}

#[test]
fn a_private_ca_reaches_both_agent_containers() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let cfg = InjectorConfig {
        ca_pem: Some(pem.into()),
        ..cfg()
    };
    let review = review_of(|pod| pod["metadata"]["annotations"]["sesame.dev/mode"] = json!("sidecar"));
    let pod = &review["request"]["object"];
    let k8s::Decision::Inject(ops) = k8s::decide("shop", pod, &cfg) else {
        panic!("the pod is injected");
    };
    let mut pod = pod.clone();
    json_patch::patch(
        &mut pod,
        &serde_json::from_value::<json_patch::Patch>(json!(ops)).unwrap(),
    )
    .unwrap();
    for c in [&pod["spec"]["initContainers"][0], &pod["spec"]["containers"][1]] {
        assert_eq!(c["env"], json!([{"name": "SESAME_CA_PEM", "value": pem}]), "{c}");
    }
    assert!(
        pod["spec"]["containers"][0].get("env").is_none(),
        "the app's container is not changed"
    );
}

fn patch_ops(answer: &Value) -> Vec<Value> {
    let patch = answer["response"]["patch"].as_str().expect("a patch");
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch).unwrap()).unwrap()
}

#[test]
fn sidecar_mode_keeps_existing_init_containers_and_adds_a_refreshing_sidecar() {
    let review = review_of(|pod| {
        pod["metadata"]["annotations"]["sesame.dev/mode"] = json!("sidecar");
        pod["metadata"]["annotations"]["sesame.dev/inject-file-ca.crt"] = json!(r#"tls["ca.crt"]"#);
        pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "registry.example/migrate:1"}]);
        pod["spec"]["securityContext"] = json!({"fsGroup": 2000});
        pod["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 3000});
        pod["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "metrics", "image": "registry.example/metrics:1"}));
    });
    let (_, pod) = admit(&review);
    assert_eq!(names(&pod["spec"]["initContainers"]), ["migrate", "sesame-agent-init"]);
    assert_eq!(names(&pod["spec"]["containers"]), ["web", "metrics", "sesame-agent"]);
    for c in 0..2 {
        let mounts = names(&pod["spec"]["containers"][c]["volumeMounts"]);
        assert_eq!(
            mounts.last(),
            Some(&"sesame-secrets"),
            "container {c} mounts the secrets"
        );
    }
    let sidecar = &pod["spec"]["containers"][2];
    let a = args(sidecar);
    assert!(!a.contains(&"--once"), "the sidecar keeps refreshing: {a:?}");
    let init = args(&pod["spec"]["initContainers"][1]);
    assert!(init.contains(&"--once"));
    for a in [&a, &init] {
        let joined = a.join(" ");
        assert!(joined.contains("--fs-group 2000"), "{joined}");
        assert!(
            joined.contains(r#"--inject-file ca.crt=tls["ca.crt"] --inject-file db.pem=db.cert"#),
            "{joined}"
        );
    }
    // The agent runs as the app's user, so the 0400/0440 files are the app's to read.
    assert_eq!(sidecar["securityContext"]["runAsUser"], 1000);
    assert_eq!(sidecar["securityContext"]["runAsGroup"], 3000);
}

#[test]
fn re_invocation_protected_namespaces_and_pods_not_opting_in_are_left_alone() {
    let (_, injected) = admit(&review_of(|_| {}));
    let again = review_of(|pod| *pod = injected.clone());
    let (answer, pod) = admit(&again);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "idempotent: {answer}");
    assert_eq!(pod, injected);
    for ns in ["kube-system", "kube-public"] {
        let r = review_of(|pod| pod["metadata"]["namespace"] = json!(ns));
        let (answer, _) = admit(&r);
        assert!(answer["response"].get("patch").is_none(), "{ns}: {answer}");
        assert_eq!(answer["response"]["allowed"], true);
    }
    for opt in [json!("false"), json!("TRUE"), json!(true), Value::Null] {
        let r = review_of(|pod| pod["metadata"]["annotations"]["sesame.dev/inject"] = opt.clone());
        let (answer, _) = admit(&r);
        assert!(answer["response"].get("patch").is_none(), "{opt}: {answer}");
    }
    // Updates, and objects other than pods, pass unchanged.
    let mut update: Value = serde_json::from_str(FIXTURE).unwrap();
    update["request"]["operation"] = json!("UPDATE");
    assert!(admit(&update).0["response"].get("patch").is_none());
    let mut deployment: Value = serde_json::from_str(FIXTURE).unwrap();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    assert!(admit(&deployment).0["response"].get("patch").is_none());
}

/// A change made to a fixture.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn pods_opting_in_with_bad_annotations_are_refused_with_the_reason() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|p| p["metadata"]["annotations"]["sesame.dev/env"] = json!("shop/prod")),
            "ORG/PROJECT/ENV",
        ),
        (
            Box::new(|p| {
                p["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("sesame.dev/env");
            }),
            "sesame.dev/env is required",
        ),
        (
            Box::new(|p| p["metadata"]["annotations"]["sesame.dev/env"] = json!("acme/shop/pr od")),
            "environment",
        ),
        (
            Box::new(|p| p["metadata"]["annotations"]["sesame.dev/mode"] = json!("daemon")),
            "init or sidecar",
        ),
        (
            Box::new(|p| p["metadata"]["annotations"]["sesame.dev/inject-file-.env"] = json!("a")),
            "file name",
        ),
        (
            Box::new(|p| p["metadata"]["annotations"]["sesame.dev/inject-file-x"] = json!("a[")),
            "property path",
        ),
        (
            Box::new(|p| {
                p["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "sesame-secrets", "emptyDir": {}}))
            }),
            "already has a volume named sesame-secrets",
        ),
    ];
    for (edit, why) in cases {
        let r = review_of(|p| edit(p));
        let (answer, pod) = admit(&r);
        let response = &answer["response"];
        assert_eq!(response["allowed"], false, "{answer}");
        assert!(response.get("patch").is_none());
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message:?} should say {why:?}");
        assert_eq!(pod, r["request"]["object"]);
    }
}

#[test]
fn malformed_admission_reviews_are_errors() {
    let good: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"{\"apiVersion\":\"admission.k8s.io/v1\"".to_vec(),
        vec![0xff, 0xfe],
    ];
    let mut edits: Vec<Edit> = vec![
        Box::new(|r| r["apiVersion"] = json!("admission.k8s.io/v1beta1")),
        Box::new(|r| r["kind"] = json!("Pod")),
        Box::new(|r| {
            r.as_object_mut().unwrap().remove("request");
        }),
        Box::new(|r| r["request"]["uid"] = json!(7)),
        Box::new(|r| r["request"]["uid"] = json!("")),
        Box::new(|r| r["request"]["uid"] = json!("a\u{0}b")),
        Box::new(|r| r["request"]["object"] = json!("pod")),
        Box::new(|r| r["request"] = json!([])),
    ];
    for edit in edits.drain(..) {
        let mut r = good.clone();
        edit(&mut r);
        bodies.push(r.to_string().into_bytes());
    }
    for body in bodies {
        let e = k8s::review(&body, &cfg()).expect_err(&String::from_utf8_lossy(&body));
        assert!(matches!(e, ReviewError::NotJson(_) | ReviewError::Shape(_)));
        // The message names the problem, never the body.
        assert!(!e.to_string().contains("705ab4f5"), "{e}");
    }
}

// ---- the webhook over TLS ----

struct Pair {
    cert: String,
    key: String,
}

fn pair() -> Pair {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Pair {
        cert: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
    }
}

fn trusting(p: &Pair, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.cert.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_webhook_answers_over_tls_refuses_malformed_bodies_and_reloads_its_certificate() {
    sesame::tls::install_crypto_provider();
    let dir = temp_dir();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = pair();
    std::fs::write(&cert, &first.cert).unwrap();
    std::fs::write(&key, &first.key).unwrap();
    let webhook = sesame::k8s_webhook::start(sesame::k8s_webhook::WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: cert.clone(),
        key: key.clone(),
        reload_every: Duration::from_millis(50),
        injector: cfg(),
    })
    .await
    .unwrap();
    let addr = webhook.local_addr();
    let url = format!("https://localhost:{}/mutate", addr.port());
    let client = trusting(&first, addr);
    let resp = client.post(&url).body(FIXTURE).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    for bad in [
        "",
        "{",
        "[1]",
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    ] {
        let resp = client.post(&url).body(bad).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let oversize = vec![b' '; sesame::k8s_webhook::MAX_BODY + 1];
    let status = client.post(&url).body(oversize).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 413);
    let health = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // A new pair, swapped in as a Secret volume does (new files renamed over the old): served without a restart.
    let second = pair();
    let (tmp_cert, tmp_key) = (dir.path().join("new.crt"), dir.path().join("new.key"));
    std::fs::write(&tmp_key, &second.key).unwrap();
    std::fs::write(&tmp_cert, &second.cert).unwrap();
    std::fs::rename(&tmp_key, &key).unwrap();
    std::fs::rename(&tmp_cert, &cert).unwrap();
    let fresh = trusting(&second, addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match fresh.post(&url).body(FIXTURE).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("the new certificate was never served: {other:?}"),
        }
    }
    webhook.shutdown().await.unwrap();
}

// ---- sesame agent, end to end ----

/// Registers the cluster's issuer in acme (inline JWKS) with `policies`.
async fn trust_cluster(srv: &TestServer, policies: Value) {
    let (status, issuer) = srv
        .post(
            "/api/orgs/acme/oidc/issuers",
            &json!({"name": "cluster", "url": CLUSTER, "jwks": keys().jwks()}),
        )
        .await;
    assert_eq!(status, 201, "{issuer}");
    let id = issuer["id"].as_str().unwrap();
    let (status, policy) = srv
        .get_json(&format!("/api/orgs/acme/auth/policies/oidcissuers/{id}"))
        .await;
    assert_eq!(status, 200, "{policy}");
    let path = format!("/api/orgs/acme/auth/policies/{}", policy["id"].as_str().unwrap());
    let resp = srv
        .admin(Method::PATCH, &path)
        .json(&json!({"policies": policies}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// A projected ServiceAccount token of the test cluster: `aud` as given, for `namespace:account`.
fn sa_token(aud: &str, namespace: &str, account: &str) -> String {
    let now = sesame::clock::Clock::system().now_ms() / 1000;
    keys().sign_es256(
        &json!({"alg": "ES256", "kid": "ec-1", "typ": "JWT"}),
        &json!({"iss": CLUSTER, "aud": [aud], "sub": format!("system:serviceaccount:{namespace}:{account}"),
                "kubernetes.io": {"namespace": namespace,
                                  "pod": {"name": "web-7d4b9c8f6d-x2x9z", "uid": "0b4a0b6e-1d0c-4a5e-9d65-5d1f5e1f0a01"},
                                  "serviceaccount": {"name": account, "uid": "6f0e7f4c-93f0-4b8e-8a57-3a4a9f1c2b11"}},
                "iat": now, "nbf": now, "exp": now + 3600}),
    )
}

/// Creates `acme/{project}/{name}` if needed and saves `yaml` as its definition.
async fn put_env(srv: &TestServer, project: &str, name: &str, yaml: &str) {
    let (status, body) = srv
        .post("/api/esc/environments/acme", &json!({"project": project, "name": name}))
        .await;
    assert!(status == 200 || status == 409, "{status} {body}");
    let resp = srv
        .admin(Method::PATCH, &format!("/api/esc/environments/acme/{project}/{name}"))
        .header("Content-Type", "application/x-yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
}

const SHOP_PROD: &str = r#"values:
  db:
    cert: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
    port: 5432
  environmentVariables:
    DB_USER: app
    DB_PASS:
      fn::secret: "it's $ecret \"quoted\""
    GREETING: "line one\nline two"
  files:
    APP_CONFIG: '{"feature": true}'
"#;

/// Web pods of `shop` may open (opener); any other account of `shop` only reads (no open).
fn shop_policies() -> Value {
    json!([
        {"decision": "allow", "tokenType": "organization", "authorizedPermissions": ["opener"],
         "rules": {"sub": "system:serviceaccount:shop:web", "/kubernetes.io/namespace": "shop"}},
        {"decision": "allow", "tokenType": "organization", "authorizedPermissions": ["reader"],
         "rules": {"sub": "system:serviceaccount:shop:*", "/kubernetes.io/namespace": "shop"}}
    ])
}

/// Runs `sesame agent ARGS`; returns exit code, stdout, stderr and how long it took.
async fn agent(args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("agent")
        .args(args)
        .env_remove("SESAME_URL")
        .env_remove("SESAME_TOKEN")
        .output()
        .await
        .expect("run sesame agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn the_agent_writes_an_environment_with_a_service_account_token(srv: &TestServer) {
    trust_cluster(srv, shop_policies()).await;
    put_env(srv, "shop", "prod", SHOP_PROD).await;
    let dir = temp_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, sa_token(&srv.base, "shop", "web")).unwrap();
    let out = dir.path().join("out");
    let (code, _, stderr, took) = agent(&[
        "--url",
        &srv.base,
        "--env",
        "acme/shop/prod",
        "--out",
        out.to_str().unwrap(),
        "--once",
        "--sa-token-file",
        token_file.to_str().unwrap(),
        "--inject-file",
        "db.pem=db.cert",
        "--inject-file",
        "port=db.port",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    eprintln!(
        "figure: sesame agent --once, start to files written: {} ms",
        took.as_millis()
    );
    assert_eq!(
        listing(&out),
        [".env", "APP_CONFIG", "db.pem", "port"],
        "no temporary file is left"
    );
    // .env is exactly what `sesame env open --format dotenv` prints.
    let dotenv = std::fs::read_to_string(out.join(".env")).unwrap();
    assert_eq!(
        dotenv,
        "DB_PASS=\"it's \\$ecret \\\"quoted\\\"\"\nDB_USER='app'\nGREETING=\"line one\\nline two\"\n"
    );
    let (code, printed, stderr) =
        run_cli(srv, &srv.token, ["env", "open", "acme/shop/prod", "--format", "dotenv"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(printed, dotenv);
    assert_eq!(
        std::fs::read_to_string(out.join("db.pem")).unwrap(),
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(std::fs::read_to_string(out.join("port")).unwrap(), "5432");
    assert_eq!(
        std::fs::read_to_string(out.join("APP_CONFIG")).unwrap(),
        r#"{"feature": true}"#
    );
    for f in listing(&out) {
        assert_eq!(mode(&out.join(&f)), 0o400, "{f} is readable by its owner only");
    }

    // With the pod's fsGroup: 0440 and that group.
    let gid = std::fs::metadata(dir.path()).unwrap().gid();
    let grouped = dir.path().join("grouped");
    let (code, _, stderr, _) = agent(&[
        "--url",
        &srv.base,
        "--env",
        "acme/shop/prod",
        "--out",
        grouped.to_str().unwrap(),
        "--once",
        "--sa-token-file",
        token_file.to_str().unwrap(),
        "--fs-group",
        &gid.to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    for f in listing(&grouped) {
        let meta = std::fs::metadata(grouped.join(&f)).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o440, gid), "{f}");
    }

    // Outside Kubernetes: a Sesame token file instead.
    let admin_token = dir.path().join("admin.token");
    std::fs::write(&admin_token, &srv.token).unwrap();
    let plain = dir.path().join("plain");
    let (code, _, stderr, _) = agent(&[
        "--url",
        &srv.base,
        "--env",
        "acme/shop/prod",
        "--out",
        plain.to_str().unwrap(),
        "--once",
        "--token-file",
        admin_token.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(plain.join(".env")).unwrap(), dotenv);
}

on_both!(
    the_agent_writes_an_environment_with_a_service_account_token,
    agent_writes_files_with_a_service_account_token_sqlite,
    agent_writes_files_with_a_service_account_token_postgres
);

async fn the_agent_fails_clearly_when_it_may_not_open_or_its_token_is_not_for_sesame(srv: &TestServer) {
    trust_cluster(srv, shop_policies()).await;
    put_env(srv, "shop", "prod", SHOP_PROD).await;
    let dir = temp_dir();
    let run = async |token: String, env: &str| {
        let file = dir.path().join("token");
        std::fs::write(&file, token).unwrap();
        let out = dir.path().join("out");
        let result = agent(&[
            "--url",
            &srv.base,
            "--env",
            env,
            "--out",
            out.to_str().unwrap(),
            "--once",
            "--sa-token-file",
            file.to_str().unwrap(),
        ])
        .await;
        let written = if out.exists() { listing(&out) } else { Vec::new() };
        (result, written)
    };
    // The batch account's policy reads but does not open: the init container fails, naming the environment.
    let ((code, _, stderr, _), written) = run(sa_token(&srv.base, "shop", "batch"), "acme/shop/prod").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("may not open environment acme/shop/prod"), "{stderr}");
    assert!(written.is_empty(), "nothing is written: {written:?}");
    // An environment that does not exist answers like one it may not see.
    let ((code, _, stderr, _), _) = run(sa_token(&srv.base, "shop", "web"), "acme/shop/nope").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("acme/shop/nope was not found, or this identity may not open it"),
        "{stderr}"
    );
    // The pod's default token (audience: the API server) is refused at the exchange.
    let ((code, _, stderr, _), written) = run(sa_token(CLUSTER, "shop", "web"), "acme/shop/prod").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("refused to exchange the ServiceAccount token"),
        "{stderr}"
    );
    assert!(stderr.contains("audience"), "{stderr}");
    assert!(written.is_empty());
    // Another namespace matches no policy.
    let ((code, _, stderr, _), _) = run(sa_token(&srv.base, "other", "web"), "acme/shop/prod").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("unauthorized_client"), "{stderr}");
    // Another org: its issuer is not trusted there.
    let ((code, _, stderr, _), _) = run(sa_token(&srv.base, "shop", "web"), "other/shop/prod").await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    // No token file at all.
    let (code, _, stderr, _) = agent(&[
        "--url",
        &srv.base,
        "--env",
        "acme/shop/prod",
        "--out",
        dir.path().join("o").to_str().unwrap(),
        "--once",
        "--sa-token-file",
        "/nonexistent/token",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("reading the ServiceAccount token /nonexistent/token"),
        "{stderr}"
    );
    // Bad flags.
    for bad in [
        vec!["--env", "shop/prod"],
        vec!["--env", "acme/shop/prod", "--inject-file", "x"],
        vec!["--env", "acme/shop/prod", "--inject-file", ".env=a"],
        vec!["--env", "acme/shop/prod", "--inject-file", "x=a["],
    ] {
        let mut args = vec!["--url", srv.base.as_str(), "--out", "/nonexistent/out", "--once"];
        args.extend(bad.iter().copied());
        let (code, _, stderr, _) = agent(&args).await;
        assert_eq!(code, 1, "{bad:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

on_both!(
    the_agent_fails_clearly_when_it_may_not_open_or_its_token_is_not_for_sesame,
    agent_fails_clearly_on_refusals_sqlite,
    agent_fails_clearly_on_refusals_postgres
);

#[tokio::test]
async fn the_agent_sidecar_rewrites_files_when_the_environment_changes() {
    crate::support::on_sqlite(async |srv: &TestServer| {
        trust_cluster(srv, shop_policies()).await;
        put_env(srv, "shop", "prod", SHOP_PROD).await;
        let dir = temp_dir();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, sa_token(&srv.base, "shop", "web")).unwrap();
        let out = dir.path().join("out");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"));
        cmd.args([
            "agent",
            "--url",
            &srv.base,
            "--env",
            "acme/shop/prod",
            "--out",
            out.to_str().unwrap(),
            "--sa-token-file",
            token_file.to_str().unwrap(),
            "--refresh",
            "1",
        ])
        .env_remove("SESAME_URL")
        .env_remove("SESAME_TOKEN");
        let guard = crate::child::ChildGuard::spawn(cmd, "sesame agent").unwrap();
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
        let wait_for = async |what: &str, ok: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !ok() {
                assert!(Instant::now() < deadline, "the sidecar never {what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        wait_for("wrote .env", &|| read(".env").contains("DB_USER='app'")).await;
        assert!(out.join("APP_CONFIG").exists());
        // A new revision: the next refresh rewrites .env, and a file that left the environment goes.
        put_env(
            srv,
            "shop",
            "prod",
            "values:\n  environmentVariables:\n    DB_USER: app2\n",
        )
        .await;
        wait_for("rewrote .env", &|| read(".env") == "DB_USER='app2'\n").await;
        wait_for("removed APP_CONFIG", &|| !out.join("APP_CONFIG").exists()).await;
        assert_eq!(listing(&out), [".env"]);
        assert_eq!(mode(&out.join(".env")), 0o400);
        guard.stop();
    })
    .await;
}

#[tokio::test]
async fn the_agent_trusts_a_private_ca_only_when_given_it() {
    let dir = temp_dir();
    let mut c = crate::support::config(dir.path(), None);
    let cert = crate::support::SelfSigned::install(dir.path(), &mut c);
    let srv = TestServer::start(c, None).await.unwrap();
    let url = format!("https://localhost:{}", srv.server.local_addr().port());
    put_env_tls(&srv, &cert, &url).await;
    let token = dir.path().join("token");
    std::fs::write(&token, &srv.token).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let out = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let base = [
        "--url",
        url.as_str(),
        "--env",
        "acme/shop/prod",
        "--once",
        "--token-file",
    ];
    let run = |extra: Vec<String>, pem: Option<&str>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sesame"));
        cmd.arg("agent")
            .args(base)
            .arg(&token)
            .args(extra)
            .env_remove("SESAME_CA_PEM");
        if let Some(p) = pem {
            cmd.env("SESAME_CA_PEM", p);
        }
        async move {
            let o = cmd.output().await.unwrap();
            (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
        }
    };
    let (code, stderr) = run(vec!["--out".into(), out("a")], None).await;
    assert_eq!(code, Some(1), "an unknown CA is not trusted: {stderr}");
    assert!(stderr.contains("could not reach Sesame"), "{stderr}");
    let (code, stderr) = run(
        vec![
            "--out".into(),
            out("b"),
            "--ca-file".into(),
            ca.to_str().unwrap().into(),
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b/.env")).unwrap(),
        "DB_USER='tls'\n"
    );
    let (code, stderr) = run(vec!["--out".into(), out("c")], Some(&cert.pem)).await;
    assert_eq!(code, Some(0), "as the injector passes it: {stderr}");
    let (code, stderr) = run(vec!["--out".into(), out("d")], Some("not a certificate")).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("PEM"), "{stderr}");
    srv.stop().await;
}

/// `put_env` over HTTPS to a server with a self-signed certificate.
async fn put_env_tls(srv: &TestServer, cert: &crate::support::SelfSigned, url: &str) {
    let client = cert.client(srv.server.local_addr());
    let auth = format!("token {}", srv.token);
    let resp = client
        .post(format!("{url}/api/esc/environments/acme"))
        .header("Authorization", &auth)
        .json(&json!({"project": "shop", "name": "prod"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .patch(format!("{url}/api/esc/environments/acme/shop/prod"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/x-yaml")
        .body("values:\n  environmentVariables:\n    DB_USER: tls\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

// ---- External Secrets Operator's Pulumi provider, request by request ----
//
// From external-secrets `providers/v1/pulumi` (pulumi.go, auth_oidc.go, runtime/oidc) and the Go ESC SDK
// (`sdk/go`): OIDC posts RFC 8693 JSON to `/api/oauth/token` with a ServiceAccount token whose audience is `apiUrl`
// without `/api/esc`; GetSecret opens without a duration and reads `open//{id}?property=KEY`; GetSecretMap reads an
// object the same way and stores each member as Go's `json.Marshal` of the decoded `Value` (trace included) unless
// it is a string, number or bool; PushSecret opens and reads everything, deep-merges the new value at a dotted key
// under the old values (mergo: the new value wins, old keys fill in), and PATCHes the YAML of `{values: …}` (ghodss
// yaml: keys sorted) without an ETag.

/// Go's `encoding/json` `Marshal` of a value decoded into `interface{}`: maps with sorted keys, compact, HTML
/// characters and U+2028/2029 escaped, numbers as float64 (whole numbers here).
fn go_marshal(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            assert!(
                f.fract() == 0.0 && f.abs() < 1e21,
                "only whole numbers in these fixtures"
            );
            format!("{f:.0}")
        }
        Value::String(s) => go_string(s),
        Value::Array(a) => format!("[{}]", a.iter().map(go_marshal).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", go_string(k), go_marshal(&m[k.as_str()])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

fn go_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `esutils.GetByteValue` of a decoded value.
fn get_byte_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => go_marshal(v),
        Value::Number(_) => go_marshal(v),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
    }
}

/// Checks `v` against the Go SDK's `Value.UnmarshalJSON`: `value` and `trace` required, no other field than
/// `secret` and `unknown`; a trace of `def` (a strict `Range`) and `base` (a `Value`).
fn go_sdk_value(v: &Value) -> Result<(), String> {
    let m = v.as_object().ok_or("a Value is an object")?;
    for k in m.keys() {
        if !["value", "secret", "unknown", "trace"].contains(&k.as_str()) {
            return Err(format!("unknown field {k:?} in a Value"));
        }
    }
    if !m.contains_key("value") || !m.contains_key("trace") {
        return Err(format!("a Value needs value and trace: {v}"));
    }
    for flag in ["secret", "unknown"] {
        if m.get(flag).is_some_and(|f| !f.is_boolean()) {
            return Err(format!("{flag} must be a bool"));
        }
    }
    let trace = m["trace"].as_object().ok_or("trace is an object")?;
    for (k, t) in trace {
        match k.as_str() {
            "def" => {
                let r = t.as_object().ok_or("def is an object")?;
                let keys: std::collections::BTreeSet<&str> = r.keys().map(String::as_str).collect();
                if keys != std::collections::BTreeSet::from(["begin", "end", "environment"]) {
                    return Err(format!("a Range has exactly environment, begin, end: {t}"));
                }
                if !r["environment"].is_string() {
                    return Err("environment is a string".into());
                }
                for p in [&r["begin"], &r["end"]] {
                    let keys: std::collections::BTreeSet<&str> = p
                        .as_object()
                        .ok_or("a Pos is an object")?
                        .keys()
                        .map(String::as_str)
                        .collect();
                    if keys != std::collections::BTreeSet::from(["byte", "column", "line"]) || !p["line"].is_i64() {
                        return Err(format!("a Pos has exactly line, column, byte: {p}"));
                    }
                }
            }
            "base" => go_sdk_value(t)?,
            other => return Err(format!("unknown field {other:?} in a Trace")),
        }
    }
    Ok(())
}

const ESO_ENV: &str = "values:
  app:
    user: admin
    password:
      fn::secret: hunter2
    port: 5432
    note: <b>&co
    nested:
      k: v
";

/// `{"def": …}` of the span of `needle` (first occurrence after `after`) in `source`, the definition as stored
/// (sealed secrets move what follows them), in Go's key order.
fn go_trace(source: &str, needle: &str, after: &str) -> String {
    let pos = |byte: usize| {
        let before = &source[..byte];
        let line = before.matches('\n').count() + 1;
        let column = byte - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(r#"{{"byte":{byte},"column":{column},"line":{line}}}"#)
    };
    let from = source.find(after).unwrap();
    let begin = from + source[from..].find(needle).unwrap();
    format!(
        r#"{{"def":{{"begin":{},"end":{},"environment":"eso/prod"}}}}"#,
        pos(begin),
        pos(begin + needle.len())
    )
}

/// ESO's HTTP calls: an ESC SDK client (`Authorization: token …`, `Accept: application/json`).
struct Eso<'a> {
    srv: &'a TestServer,
    token: String,
}

impl Eso<'_> {
    fn esc(&self, method: Method, tail: &str) -> reqwest::RequestBuilder {
        self.srv
            .http
            .request(
                method,
                format!("{}/api/esc/environments/acme/eso/prod{tail}", self.srv.base),
            )
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/json")
            .header("User-Agent", "external-secrets-operator")
    }

    /// `OpenEnvironment`: POST …/open, no duration, no body; the answer decoded as the SDK's `OpenEnvironment`.
    async fn open(&self) -> String {
        let resp = self.esc(Method::POST, "/open").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| *k == "id" || *k == "diagnostics"), "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// `ReadEnvironmentProperty`: GET …/open//{id}?property=KEY (the SDK's double slash, Go's query escaping).
    async fn property(&self, id: &str, key: &str) -> Value {
        let query: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let resp = self
            .esc(Method::GET, &format!("/open//{id}?property={query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{key}");
        let v: Value = resp.json().await.unwrap();
        go_sdk_value(&v).unwrap_or_else(|e| panic!("{key}: the Go SDK would refuse this Value: {e}"));
        v
    }

    /// `GetSecret`: the bytes ESO writes into the Secret.
    async fn get_secret(&self, key: &str) -> String {
        let id = self.open().await;
        get_byte_value(&self.property(&id, key).await["value"])
    }

    /// `GetSecretMap` (`dataFrom.extract`): the Secret's data.
    async fn get_secret_map(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        let id = self.open().await;
        let v = self.property(&id, key).await;
        let mut data = std::collections::BTreeMap::new();
        for (k, member) in v["value"].as_object().expect("an object") {
            let bytes = get_byte_value(member);
            let reparsed: Value = serde_json::from_str(&bytes).unwrap();
            go_sdk_value(&reparsed).unwrap_or_else(|e| panic!("{k}: {e}"));
            data.insert(k.clone(), get_byte_value(&reparsed["value"]));
        }
        data
    }
}

/// Deep merge as `mergo.Merge(&dst, src)`: keys missing in `dst` come from `src`, maps merge, `dst` wins.
fn mergo(dst: &mut Value, src: &Value) {
    if let (Value::Object(d), Value::Object(s)) = (dst, src) {
        for (k, v) in s {
            match d.get_mut(k) {
                Some(existing) if existing.is_object() && v.is_object() => mergo(existing, v),
                Some(_) => {}
                None => {
                    d.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// YAML as ghodss/yaml (JSON → yaml.v2) writes these simple values: block maps, sorted keys, 2 spaces.
fn ghodss_yaml(v: &Value, indent: usize, out: &mut String) {
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    for k in keys {
        let child = &v[k.as_str()];
        out.push_str(&" ".repeat(indent));
        out.push_str(k);
        out.push(':');
        match child {
            Value::Object(_) => {
                out.push('\n');
                ghodss_yaml(child, indent + 2, out);
            }
            Value::String(s) => {
                // yaml.v2 writes these plain: no leading indicator, no `: ` or ` #`, not a number or a bool.
                assert!(!s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c)) && s.parse::<f64>().is_err());
                out.push_str(&format!(" {s}\n"));
            }
            other => out.push_str(&format!(" {other}\n")),
        }
    }
}

/// Every Value's plain value (`mapValuesPrimitive` after `mapValues`): secrets in plaintext.
fn primitive(v: &Value) -> Value {
    match &v["value"] {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), primitive(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(primitive).collect()),
        other => other.clone(),
    }
}

async fn external_secrets_operator_runs_unchanged(srv: &TestServer) {
    trust_cluster(
        srv,
        json!([{"decision": "allow", "tokenType": "organization", "authorizedPermissions": ["editor"],
                "rules": {"sub": "system:serviceaccount:external-secrets:eso",
                          "/kubernetes.io/namespace": "external-secrets"}}]),
    )
    .await;
    put_env(srv, "eso", "prod", ESO_ENV).await;
    let (status, stored) = srv.get_text("/api/esc/environments/acme/eso/prod").await;
    assert_eq!(status, 200);

    // OIDC: the token manager's exchange, body as Go marshals its map (sorted keys), SA token for `apiUrl` minus
    // `/api/esc`.
    let api_url = format!("{}/api/esc", srv.base);
    let base_url = api_url.trim_end_matches('/').trim_end_matches("/api/esc");
    let exchange = |sa: String| {
        format!(
            r#"{{"audience":"urn:pulumi:org:acme","expiration":600,"grant_type":"urn:ietf:params:oauth:grant-type:token-exchange","requested_token_type":"urn:pulumi:token-type:access_token:organization","scope":"","subject_token":"{sa}","subject_token_type":"urn:ietf:params:oauth:token-type:id_token"}}"#
        )
    };
    let post = async |body: String| {
        let resp = srv
            .http
            .post(format!("{base_url}/api/oauth/token"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (status, minted) = post(exchange(sa_token(base_url, "external-secrets", "eso"))).await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["expires_in"], 600, "the requested expiration");
    let token = minted["access_token"].as_str().unwrap().to_owned();
    // A token for another audience (the API server's) is refused.
    let (status, refused) = post(exchange(sa_token(CLUSTER, "external-secrets", "eso"))).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{refused}"
    );
    let eso = Eso { srv, token };

    // ExternalSecret `data`: one key each.
    assert_eq!(eso.get_secret("app.password").await, "hunter2");
    assert_eq!(eso.get_secret("app.port").await, "5432");
    assert_eq!(eso.get_secret(r#"app["user"]"#).await, "admin");
    assert_eq!(eso.get_secret("app.nested.k").await, "v");
    // A whole object: Go's json.Marshal of the decoded Values, trace included, HTML escaped.
    let k = format!(r#"{{"k":{{"trace":{},"value":"v"}}}}"#, go_trace(&stored, "v", "k: "));
    assert_eq!(eso.get_secret("app.nested").await, k);

    // ExternalSecret `dataFrom.extract`: the byte-exact Secret data.
    let data = eso.get_secret_map("app").await;
    let want: std::collections::BTreeMap<String, String> = [
        ("nested", k.clone()),
        ("note", "<b>&co".to_owned()),
        ("password", "hunter2".to_owned()),
        ("port", "5432".to_owned()),
        ("user", "admin".to_owned()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect();
    assert_eq!(data, want);
    // And the Value JSON itself, as the SDK read it, for the object member: value and trace only.
    let id = eso.open().await;
    let nested = eso.property(&id, "app.nested").await;
    assert_eq!(
        go_marshal(&nested),
        format!(r#"{{"trace":{},"value":{k}}}"#, go_trace(&stored, "k: v", "nested:"))
    );
    let secret = eso.property(&id, "app.password").await;
    assert_eq!(secret["secret"], true);

    // PushSecret of Secret key `token` to remote key `app.token`: open and read all, merge, PATCH YAML, no ETag.
    let id = eso.open().await;
    let resp = eso.esc(Method::GET, &format!("/open/{id}")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let env: Value = resp.json().await.unwrap();
    // `ReadOpenEnvironment` decodes each property as a strict `Value`.
    for (k, v) in env["properties"].as_object().unwrap() {
        go_sdk_value(v).unwrap_or_else(|e| panic!("property {k}: {e}"));
    }
    let old = Value::Object(
        env["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), primitive(v)))
            .collect(),
    );
    let mut values = json!({"app": {"token": "t0k3n"}});
    mergo(&mut values, &old);
    let mut yaml = String::from("values:\n");
    ghodss_yaml(&values, 2, &mut yaml);
    assert_eq!(
        yaml,
        "values:\n  app:\n    nested:\n      k: v\n    note: <b>&co\n    password: hunter2\n    port: 5432\n    token: t0k3n\n    user: admin\n"
    );
    let resp = eso
        .esc(Method::PATCH, "")
        .header("Content-Type", "application/x-yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(eso.get_secret("app.token").await, "t0k3n");
    assert_eq!(eso.get_secret("app.password").await, "hunter2");

    // The definition-based variant (read the YAML, put `fn::secret` at the path, write it back without an ETag):
    // the existing `fn::secret: {ciphertext: …}` nodes come back unchanged and are accepted.
    put_env(srv, "eso", "prod", ESO_ENV).await;
    let resp = eso.esc(Method::GET, "").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let stored = resp.text().await.unwrap();
    assert!(stored.contains("ciphertext:"), "{stored}");
    assert!(!stored.contains("hunter2"));
    let pushed = format!("{stored}    token:\n      fn::secret: t0k3n\n");
    let resp = eso
        .esc(Method::PATCH, "")
        .header("Content-Type", "application/x-yaml")
        .body(pushed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(eso.get_secret("app.token").await, "t0k3n");
    assert_eq!(eso.get_secret("app.password").await, "hunter2");
    let id = eso.open().await;
    assert_eq!(eso.property(&id, "app.token").await["secret"], true);
}

on_both!(
    external_secrets_operator_runs_unchanged,
    external_secrets_operator_sequence_sqlite,
    external_secrets_operator_sequence_postgres
);

// ---- deploy/kubernetes ----

#[test]
fn the_kustomize_base_renders_and_validates_strictly() {
    let Some(kubectl) = require_env("SESAME_TEST_KUBECTL", "kubectl (to render deploy/kubernetes)") else {
        return;
    };
    let Some(validate) = require_env("SESAME_TEST_KUBE_VALIDATE", "kubernetes-validate (PyPI)") else {
        return;
    };
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let out = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("run kubectl kustomize");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&rendered).expect("rendered YAML");
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name} in:\n{rendered}"))
    };
    let hook = &find("MutatingWebhookConfiguration", "sesame-injector")["webhooks"][0];
    assert_eq!(hook["failurePolicy"].as_str(), Some("Fail"));
    assert_eq!(hook["sideEffects"].as_str(), Some("None"));
    assert_eq!(hook["admissionReviewVersions"][0].as_str(), Some("v1"));
    assert_eq!(hook["clientConfig"]["service"]["path"].as_str(), Some("/mutate"));
    let excluded = format!("{:?}", hook["namespaceSelector"]);
    assert!(
        excluded.contains("kube-system") && excluded.contains("kube-public"),
        "{excluded}"
    );
    let server = find("Deployment", "sesame");
    assert_eq!(server["metadata"]["namespace"].as_str(), Some("sesame"));
    let container = &server["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"].as_str(), Some("ghcr.io/sesame-kms/sesame:0.1.0"));
    let env = format!("{:?}", container["env"]);
    assert!(
        env.contains("SESAME_DATABASE_URL") && env.contains("sesame-database"),
        "PostgreSQL store: {env}"
    );
    let injector = find("Deployment", "sesame-injector");
    let args = format!("{:?}", injector["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains("webhook") && args.contains("--tls-cert"), "{args}");
    for (kind, name) in [
        ("Service", "sesame"),
        ("Service", "sesame-injector"),
        ("ServiceAccount", "sesame"),
        ("PodDisruptionBudget", "sesame"),
        ("PodDisruptionBudget", "sesame-injector"),
        ("RoleBinding", "sesame"),
        ("ClusterRoleBinding", "sesame-service-account-issuer-discovery"),
    ] {
        find(kind, name);
    }

    // Offline schema validation, strict (unknown fields refused) — and it does refuse them.
    let dir = temp_dir();
    let check = |text: &str| {
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(&validate)
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, report) = check(&rendered);
    assert!(ok, "kubernetes-validate --strict:\n{report}");
    let broken = rendered.replacen("  replicas: 2\n", "  replicas: 2\n  replicaz: 2\n", 1);
    assert_ne!(broken, rendered);
    let (ok, report) = check(&broken);
    assert!(!ok, "an unknown field must fail strict validation:\n{report}");
}
