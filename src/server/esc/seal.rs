//! The `fn::secret` values of stored definitions: sealed under the environment's DEK (associated data: org id and
//! environment id) before a definition is stored, opened back for `decrypt`, clones and evaluation, spliced by
//! byte range so the user's text survives; and the one-time repair of plaintexts stored by earlier versions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::env_scope;
use crate::core::env::crypt::{self, CryptError};
use crate::core::env::eval::{DecryptError, DecryptRequest};
use crate::core::keys::env_secret_aad;
use crate::keyring::KeyringError;
use crate::server::AppState;
use crate::server::error::ApiError;

pub(super) async fn decrypt_one(
    app: &AppState,
    org_id: &str,
    env_id: Option<&str>,
    req: &DecryptRequest,
) -> Result<Result<String, DecryptError>, ApiError> {
    let Ok(bytes) = STANDARD.decode(req.ciphertext.trim()) else {
        return Ok(Err(DecryptError::Invalid("not base64".into())));
    };
    let Some(env_id) = env_id else {
        return Ok(Err(DecryptError::Failed(
            "ciphertexts can only be opened in the environment that sealed them".into(),
        )));
    };
    match app
        .keyring
        .open(&env_scope(org_id, env_id), &env_secret_aad(org_id, env_id), &bytes)
        .await
    {
        Ok(plain) => {
            if req.validate_only {
                return Ok(Ok(String::new()));
            }
            match std::str::from_utf8(plain.as_ref()) {
                Ok(s) => Ok(Ok(s.to_owned())),
                Err(_) => Ok(Err(DecryptError::Failed("the secret is not UTF-8 text".into()))),
            }
        }
        Err(KeyringError::Undecryptable) => Ok(Err(DecryptError::Failed(
            "the ciphertext was altered or belongs to another environment".into(),
        ))),
        Err(e) => Err(e.into()),
    }
}

fn crypt_error(e: CryptError<ApiError>) -> ApiError {
    match e {
        CryptError::Syntax(s) => ApiError::bad_request(format!("invalid YAML: {}", s.message)),
        CryptError::Unsealable { line } => ApiError::bad_request(format!(
            "line {line}: this fn::secret is written in a form that cannot be sealed safely; write its value as a \
             quoted string or a block scalar (| or >) on its own lines"
        )),
        CryptError::Crypto { line, error } => error.at_line(line),
    }
}

/// Seals every plaintext `fn::secret` of `yaml` under the environment's DEK; the rest of the text is untouched. A
/// text that is not one YAML document, or whose secrets cannot be rewritten safely, is refused (400).
pub async fn seal_secrets(app: &AppState, org_id: &str, env_id: &str, yaml: &str) -> Result<String, ApiError> {
    seal_with(app, org_id, env_id, yaml, crypt::seal_plaintexts::<ApiError>).await
}

/// Seals `plaintexts` under the environment's DEK (one DEK lookup for all), as the base64 text `fn::secret:
/// {ciphertext: …}` holds, in order.
pub(crate) async fn seal_env_plaintexts(
    app: &AppState,
    org_id: &str,
    env_id: &str,
    plaintexts: &[zeroize::Zeroizing<String>],
) -> Result<Vec<String>, ApiError> {
    let sealed = app
        .keyring
        .seal_many(
            &env_scope(org_id, env_id),
            &env_secret_aad(org_id, env_id),
            plaintexts.iter().map(|p| p.as_bytes()),
        )
        .await?;
    Ok(sealed.into_iter().map(|ct| STANDARD.encode(ct)).collect())
}

type Sealer = fn(&str, &mut dyn FnMut(&str) -> Result<String, ApiError>) -> Result<String, CryptError<ApiError>>;

async fn seal_with(app: &AppState, org_id: &str, env_id: &str, yaml: &str, seal: Sealer) -> Result<String, ApiError> {
    // First pass: collect the plaintexts in document order; then seal them under one DEK lookup; then splice.
    let mut plaintexts: Vec<zeroize::Zeroizing<String>> = Vec::new();
    seal(yaml, &mut |p| {
        plaintexts.push(zeroize::Zeroizing::new(p.to_owned()));
        Ok(String::new())
    })
    .map_err(crypt_error)?;
    if plaintexts.is_empty() {
        return Ok(yaml.to_owned());
    }
    let mut next = seal_env_plaintexts(app, org_id, env_id, &plaintexts).await?.into_iter();
    seal(yaml, &mut |_| {
        next.next()
            .ok_or_else(|| ApiError::bad_request("the document changed while it was sealed"))
    })
    .map_err(crypt_error)
}

/// The repair of stores written by earlier versions, which kept some `fn::secret` values in plaintext (block
/// scalars, multi-line strings, secrets in a second YAML document): every revision whose text still holds one is
/// sealed in place under its environment's DEK, with one `env.revision.reseal` audit record per revision on the
/// org's chain, and the database is then asked to drop the old pages. Idempotent: a second run finds nothing.
/// Returns how many revisions were sealed; a revision that cannot be sealed is logged (by name and revision, never
/// content) and left for the next start.
pub async fn reseal_stored_plaintexts(app: &AppState) -> Result<usize, ApiError> {
    const PAGE: i64 = 200;
    let mut after: Option<(String, i64)> = None;
    let mut repaired = 0;
    loop {
        let page = app
            .store
            .revisions_mentioning_secrets(after.as_ref().map(|(e, r)| (e.as_str(), *r)), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.env_id.clone(), last.revision));
        let full = page.len() as i64 == PAGE;
        // The texts may hold plaintext secrets: wiped once looked at.
        let page: Vec<_> = page
            .into_iter()
            .map(|mut r| (zeroize::Zeroizing::new(std::mem::take(&mut r.yaml)), r))
            .collect();
        for (yaml, rev) in &page {
            let yaml: &str = yaml;
            if !crypt::has_plaintext_secret(yaml) {
                continue;
            }
            let org = app
                .store
                .org_by_id(&rev.org_id)
                .await?
                .map(|o| o.name)
                .unwrap_or_else(|| rev.org_id.clone());
            let target = format!("{org}/{}/{}", rev.project, rev.name);
            let sealed = match seal_with(app, &rev.org_id, &rev.env_id, yaml, crypt::seal_stored::<ApiError>).await {
                Ok(s) if !crypt::has_plaintext_secret(&s) => s,
                Ok(_) | Err(_) => {
                    tracing::error!(
                        environment = %target,
                        revision = rev.revision,
                        "a stored revision holds a plaintext fn::secret that could not be sealed; retract it and \
                         rotate the secret"
                    );
                    continue;
                }
            };
            let event = crate::store::AuditEvent::new(
                rev.org_id.clone(),
                app.clock.now_ms(),
                "system:upgrade",
                "internal",
                crate::core::audit::AuditAction::EnvRevisionReseal,
                target.clone(),
            )
            .detail(format!(
                "revision {}: plaintext fn::secret values stored by an earlier version sealed in place",
                rev.revision
            ));
            if app
                .store
                .reseal_revision_in_place(&rev.env_id, rev.revision, yaml, &sealed, &event)
                .await?
            {
                tracing::warn!(
                    environment = %target,
                    revision = rev.revision,
                    "sealed plaintext fn::secret values an earlier version had stored; backups made before hold them"
                );
                repaired += 1;
            }
        }
        if !full {
            break;
        }
    }
    if repaired > 0 {
        app.doc_cache.invalidate_all();
        app.eval_cache.invalidate_all();
        app.store.purge_freed_revision_pages().await?;
    }
    Ok(repaired)
}

/// Opens every sealed `fn::secret` under `values` back to plaintext (for `decrypt` and clones); the text is wiped
/// when dropped.
pub async fn open_secrets(
    app: &AppState,
    org_id: &str,
    env_id: &str,
    yaml: &str,
) -> Result<zeroize::Zeroizing<String>, ApiError> {
    let mut ciphertexts = Vec::new();
    crypt::open_ciphertexts::<ApiError>(yaml, &mut |ct| {
        ciphertexts.push(ct.to_owned());
        Ok(String::new())
    })
    .map_err(crypt_error)?;
    if ciphertexts.is_empty() {
        return Ok(zeroize::Zeroizing::new(yaml.to_owned()));
    }
    let mut plain = Vec::with_capacity(ciphertexts.len());
    for ct in &ciphertexts {
        let req = DecryptRequest {
            env: String::new(),
            ciphertext: ct.clone(),
            validate_only: false,
        };
        let text = match decrypt_one(app, org_id, Some(env_id), &req).await? {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(DecryptError::Invalid(why) | DecryptError::Failed(why)) => {
                return Err(ApiError::bad_request(format!(
                    "a stored secret could not be opened: {why}"
                )));
            }
        };
        plain.push(text);
    }
    let mut next = plain.iter();
    crypt::open_ciphertexts::<ApiError>(yaml, &mut |_| {
        next.next()
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| ApiError::bad_request("the document changed while it was opened"))
    })
    .map(zeroize::Zeroizing::new)
    .map_err(crypt_error)
}
