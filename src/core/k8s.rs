//! The Kubernetes injector's decision, pure: an AdmissionReview v1 request in, an AdmissionReview v1 response out,
//! carrying a JSON Patch (RFC 6902) that adds `sesame agent` as an init container (and, in sidecar mode, as a
//! refreshing sidecar too), an in-memory volume for the files it writes, and a projected ServiceAccount token whose
//! audience is Sesame's public URL.
//!
//! Rules:
//! - opt-in only: a pod is touched only when annotated `sesame.dev/inject: "true"`, never in `kube-system` or
//!   `kube-public`, and never twice (`sesame.dev/inject-status: injected` marks an injected pod, so re-invocation
//!   changes nothing);
//! - the answer carries the request's `uid`; its patch is valid whether or not the pod has `initContainers`,
//!   `volumes`, `volumeMounts` or `annotations` yet (a missing list or map is added whole, an existing one is appended
//!   to; map keys are JSON-Pointer-escaped);
//! - rights are not checked here: a pod asking for an environment its ServiceAccount may not open gets an init
//!   container that fails with a clear message;
//! - a body that is not an AdmissionReview v1 is a [`ReviewError`] (the edge answers 400); a pod that opts in with
//!   bad annotations is refused (`allowed: false`) with the reason.
//!
//! No I/O and no clock.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::env::path::PropertyPath;
use super::keys::Name;

/// Opts a pod in: `"true"`.
pub const ANNOTATION_INJECT: &str = "sesame.dev/inject";
/// The environment to open: `ORG/PROJECT/ENV`.
pub const ANNOTATION_ENV: &str = "sesame.dev/env";
/// `init` (the default: files written once, before the app starts) or `sidecar` (and kept fresh while it runs).
pub const ANNOTATION_MODE: &str = "sesame.dev/mode";
/// Set to [`STATUS_INJECTED`] on every pod the injector changed.
pub const ANNOTATION_STATUS: &str = "sesame.dev/inject-status";
/// The value of [`ANNOTATION_STATUS`] on an injected pod.
pub const STATUS_INJECTED: &str = "injected";
/// `sesame.dev/inject-file-<name>: <value path>` writes one value to `<name>` in the secrets folder.
pub const ANNOTATION_FILE_PREFIX: &str = "sesame.dev/inject-file-";
/// The in-memory volume the agent writes into and the app reads.
pub const SECRETS_VOLUME: &str = "sesame-secrets";
/// The projected ServiceAccount token volume (audience: Sesame).
pub const TOKEN_VOLUME: &str = "sesame-token";
/// Where the secrets volume is mounted, in the agent and in every app container.
pub const SECRETS_DIR: &str = "/sesame";
/// Where the projected token volume is mounted in the agent.
pub const TOKEN_DIR: &str = "/var/run/secrets/sesame.dev/serviceaccount";
/// The projected token file, `sesame agent`'s default `--sa-token-file`.
pub const TOKEN_PATH: &str = "/var/run/secrets/sesame.dev/serviceaccount/token";
/// Namespaces never mutated.
pub const PROTECTED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];
/// The init container's name.
pub const INIT_CONTAINER: &str = "sesame-agent-init";
/// The sidecar's name.
pub const SIDECAR_CONTAINER: &str = "sesame-agent";
/// Size limit of the in-memory secrets volume.
pub const SECRETS_VOLUME_SIZE: &str = "16Mi";
/// Longest file name an `inject-file` annotation may give.
pub const MAX_FILE_NAME: usize = 64;

/// What the injector puts into pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorConfig {
    /// The image that runs `sesame agent`.
    pub agent_image: String,
    /// The Sesame URL the agent talks to (`--url`).
    pub server_url: String,
    /// The audience of the projected ServiceAccount token: Sesame's public URL (`--public-url` of the server).
    pub audience: String,
    /// Lifetime asked for the projected token, seconds (the kubelet refreshes it at 80%).
    pub token_expiration_s: i64,
    /// PEM certificates the agent trusts for Sesame's TLS besides the system roots (a private CA), given to it in
    /// [`CA_ENV`]. Certificates are public: they may sit in the pod spec.
    pub ca_pem: Option<String>,
}

/// The variable that carries [`InjectorConfig::ca_pem`] to the agent (`sesame agent` reads it like `--ca-file`).
pub const CA_ENV: &str = "SESAME_CA_PEM";

/// Why a body is not an AdmissionReview v1 this webhook can answer. The message names what is wrong, never the body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    /// Not JSON (the parser's message: a position, never the input).
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not shaped as an AdmissionReview v1 request.
    #[error("not an AdmissionReview v1 request: {0}")]
    Shape(&'static str),
}

/// What to do with one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Let it through unchanged, for this reason.
    Skip(&'static str),
    /// Let it through with these JSON Patch operations.
    Inject(Vec<Value>),
    /// Refuse it, with this message (the pod opted in with annotations that cannot work).
    Refuse(String),
}

/// The agent's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Init,
    Sidecar,
}

/// Answers one AdmissionReview v1 body: the AdmissionReview v1 response (same `uid`, `allowed`, and a base64
/// `JSONPatch` when the pod is injected).
pub fn review(body: &[u8], cfg: &InjectorConfig) -> Result<Value, ReviewError> {
    let review: Value = serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    let review = review
        .as_object()
        .ok_or(ReviewError::Shape("the body is not an object"))?;
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1") {
        return Err(ReviewError::Shape("apiVersion must be admission.k8s.io/v1"));
    }
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(ReviewError::Shape("kind must be AdmissionReview"));
    }
    let request = review
        .get("request")
        .and_then(Value::as_object)
        .ok_or(ReviewError::Shape("request is missing"))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && u.len() <= 128 && !u.chars().any(char::is_control))
        .ok_or(ReviewError::Shape("request.uid must be a non-empty string"))?;
    let is_pod = request.get("kind").and_then(Value::as_object).is_some_and(|k| {
        k.get("group").and_then(Value::as_str).unwrap_or("").is_empty()
            && k.get("kind").and_then(Value::as_str) == Some("Pod")
    });
    let operation = request.get("operation").and_then(Value::as_str).unwrap_or("");
    let decision = if !is_pod {
        Decision::Skip("not a pod")
    } else if operation != "CREATE" {
        Decision::Skip("not a creation")
    } else {
        let pod = request
            .get("object")
            .filter(|o| o.is_object())
            .ok_or(ReviewError::Shape("request.object must be the pod"))?;
        let namespace = request
            .get("namespace")
            .and_then(Value::as_str)
            .or_else(|| pod.pointer("/metadata/namespace").and_then(Value::as_str))
            .unwrap_or("");
        decide(namespace, pod, cfg)
    };
    Ok(response(uid, &decision))
}

/// The AdmissionReview v1 answer to request `uid`.
pub fn response(uid: &str, decision: &Decision) -> Value {
    let answer = match decision {
        Decision::Skip(_) => json!({"uid": uid, "allowed": true}),
        Decision::Inject(ops) => {
            let patch = serde_json::to_vec(ops).unwrap_or_default();
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch",
                   "patch": base64::engine::general_purpose::STANDARD.encode(patch)})
        }
        Decision::Refuse(message) => json!({"uid": uid, "allowed": false,
                                           "status": {"code": 400, "message": message}}),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer})
}

/// `text` as one JSON Pointer reference token (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn pointer_escape(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// Whether `name` may be an `inject-file` name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.` (so never `.env`).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses `ORG/PROJECT/ENV` (each a [`Name`]); the error says what is wrong.
pub fn parse_env(text: &str) -> Result<(Name, Name, Name), String> {
    let parts: Vec<&str> = text.split('/').collect();
    let [org, project, env] = parts.as_slice() else {
        return Err("must be ORG/PROJECT/ENV".into());
    };
    let name = |what: &str, s: &str| s.parse::<Name>().map_err(|e| format!("{what} {s:?}: {e}"));
    Ok((name("org", org)?, name("project", project)?, name("environment", env)?))
}

/// The decision for `pod` (its JSON) in `namespace`.
pub fn decide(namespace: &str, pod: &Value, cfg: &InjectorConfig) -> Decision {
    let empty = Map::new();
    let annotations = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let annotation = |k: &str| annotations.get(k).and_then(Value::as_str);
    if annotation(ANNOTATION_INJECT) != Some("true") {
        return Decision::Skip("not opted in");
    }
    if annotation(ANNOTATION_STATUS) == Some(STATUS_INJECTED) {
        return Decision::Skip("already injected");
    }
    if PROTECTED_NAMESPACES.contains(&namespace) {
        return Decision::Skip("a protected namespace");
    }
    let env = match annotation(ANNOTATION_ENV) {
        None => return Decision::Refuse(format!("{ANNOTATION_ENV} is required with {ANNOTATION_INJECT}")),
        Some(text) => match parse_env(text) {
            Ok(_) => text.to_owned(),
            Err(e) => return Decision::Refuse(format!("{ANNOTATION_ENV}: {e}")),
        },
    };
    let mode = match annotation(ANNOTATION_MODE) {
        None | Some("init") => Mode::Init,
        Some("sidecar") => Mode::Sidecar,
        Some(_) => return Decision::Refuse(format!("{ANNOTATION_MODE} must be init or sidecar")),
    };
    let mut files = BTreeMap::new();
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_FILE_PREFIX) else {
            continue;
        };
        if !valid_file_name(name) {
            return Decision::Refuse(format!(
                "{key}: a file name is 1-{MAX_FILE_NAME} of letters, digits, '.', '_' and '-', not starting with '.'"
            ));
        }
        let Some(path) = value.as_str() else {
            return Decision::Refuse(format!("{key} must be a value path"));
        };
        match PropertyPath::parse(path) {
            Ok(p) if !p.0.is_empty() => files.insert(name.to_owned(), path.to_owned()),
            Ok(_) => return Decision::Refuse(format!("{key}: the value path is empty")),
            Err(e) => return Decision::Refuse(format!("{key}: {e}")),
        };
    }
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Decision::Refuse("the pod has no spec".into());
    };
    let Some(containers) = spec
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return Decision::Refuse("the pod has no containers".into());
    };
    let volumes = spec.get("volumes").and_then(Value::as_array);
    let taken =
        |name: &str| volumes.is_some_and(|v| v.iter().any(|v| v.get("name").and_then(Value::as_str) == Some(name)));
    for name in [SECRETS_VOLUME, TOKEN_VOLUME] {
        if taken(name) {
            return Decision::Refuse(format!("the pod already has a volume named {name}"));
        }
    }
    let all_containers = containers.iter().chain(
        spec.get("initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    for c in all_containers {
        if let Some(name @ (INIT_CONTAINER | SIDECAR_CONTAINER)) = c.get("name").and_then(Value::as_str) {
            return Decision::Refuse(format!("the pod already has a container named {name}"));
        }
    }
    for c in containers {
        let mounts = c.get("volumeMounts").and_then(Value::as_array);
        if mounts.is_some_and(|m| {
            m.iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SECRETS_DIR))
        }) {
            return Decision::Refuse(format!("a container already mounts something at {SECRETS_DIR}"));
        }
    }

    let fs_group = spec
        .get("securityContext")
        .and_then(|s| s.get("fsGroup"))
        .and_then(Value::as_i64);
    // The agent runs as the app's user, so that the files it writes (0400) are the app's to read.
    let app_security = containers[0].get("securityContext");
    let run_as_user = app_security.and_then(|s| s.get("runAsUser")).and_then(Value::as_i64);
    let run_as_group = app_security.and_then(|s| s.get("runAsGroup")).and_then(Value::as_i64);
    let agent = |name: &str, once: bool| {
        let mut args = vec![
            "agent".to_owned(),
            "--url".to_owned(),
            cfg.server_url.clone(),
            "--env".to_owned(),
            env.clone(),
            "--out".to_owned(),
            SECRETS_DIR.to_owned(),
            "--sa-token-file".to_owned(),
            TOKEN_PATH.to_owned(),
        ];
        if once {
            args.push("--once".into());
        }
        if let Some(g) = fs_group {
            args.push("--fs-group".into());
            args.push(g.to_string());
        }
        for (file, path) in &files {
            args.push("--inject-file".into());
            args.push(format!("{file}={path}"));
        }
        let mut security = json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                  "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}});
        if let Some(u) = run_as_user {
            security["runAsUser"] = json!(u);
        }
        if let Some(g) = run_as_group {
            security["runAsGroup"] = json!(g);
        }
        let mut container = json!({
            "name": name,
            "image": cfg.agent_image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "volumeMounts": [
                {"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR},
                {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true}
            ],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": security
        });
        if let Some(pem) = &cfg.ca_pem {
            container["env"] = json!([{"name": CA_ENV, "value": pem}]);
        }
        container
    };

    let mut ops = Vec::new();
    let add = |ops: &mut Vec<Value>, path: String, value: Value| {
        ops.push(json!({"op": "add", "path": path, "value": value}));
    };
    match pod.get("metadata") {
        Some(Value::Object(m)) if m.get("annotations").is_some_and(Value::is_object) => add(
            &mut ops,
            format!("/metadata/annotations/{}", pointer_escape(ANNOTATION_STATUS)),
            json!(STATUS_INJECTED),
        ),
        Some(Value::Object(_)) => add(
            &mut ops,
            "/metadata/annotations".into(),
            json!({ANNOTATION_STATUS: STATUS_INJECTED}),
        ),
        _ => add(
            &mut ops,
            "/metadata".into(),
            json!({"annotations": {ANNOTATION_STATUS: STATUS_INJECTED}}),
        ),
    }
    let new_volumes = [
        json!({"name": SECRETS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SECRETS_VOLUME_SIZE}}),
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": cfg.audience, "expirationSeconds": cfg.token_expiration_s, "path": "token"}}]}}),
    ];
    if volumes.is_some() {
        for v in new_volumes {
            add(&mut ops, "/spec/volumes/-".into(), v);
        }
    } else {
        add(&mut ops, "/spec/volumes".into(), Value::Array(new_volumes.to_vec()));
    }
    let mount = json!({"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": true});
    for (i, c) in containers.iter().enumerate() {
        if c.get("volumeMounts").is_some_and(Value::is_array) {
            add(&mut ops, format!("/spec/containers/{i}/volumeMounts/-"), mount.clone());
        } else {
            add(&mut ops, format!("/spec/containers/{i}/volumeMounts"), json!([mount]));
        }
    }
    if spec.get("initContainers").is_some_and(Value::is_array) {
        add(&mut ops, "/spec/initContainers/-".into(), agent(INIT_CONTAINER, true));
    } else {
        add(
            &mut ops,
            "/spec/initContainers".into(),
            json!([agent(INIT_CONTAINER, true)]),
        );
    }
    if mode == Mode::Sidecar {
        add(&mut ops, "/spec/containers/-".into(), agent(SIDECAR_CONTAINER, false));
    }
    Decision::Inject(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> InjectorConfig {
        InjectorConfig {
            agent_image: "sesame:test".into(),
            server_url: "https://sesame.example".into(),
            audience: "https://sesame.example".into(),
            token_expiration_s: 3600,
            ca_pem: None,
        }
    }

    #[test]
    fn pointers_escape_tilde_then_slash() {
        assert_eq!(pointer_escape("sesame.dev/inject-status"), "sesame.dev~1inject-status");
        assert_eq!(pointer_escape("a~/b"), "a~0~1b");
    }

    #[test]
    fn env_names_need_three_parts() {
        assert!(parse_env("acme/app/prod").is_ok());
        for bad in ["app/prod", "a/b/c/d", "a//c", "a/b/.c", "a/b/c d", ""] {
            assert!(parse_env(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_are_plain() {
        assert!(valid_file_name("db.pem"));
        for bad in ["", ".env", "a/b", "..", "x y", &"a".repeat(65)] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn pods_that_do_not_opt_in_are_skipped() {
        let pod = json!({"metadata": {}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(decide("default", &pod, &cfg()), Decision::Skip("not opted in"));
        let pod = json!({"metadata": {"annotations": {"sesame.dev/inject": "yes"}}, "spec": {}});
        assert_eq!(decide("default", &pod, &cfg()), Decision::Skip("not opted in"));
    }
}
