//! The schemas editors read, as Pulumi serves them: `GET /api/esc/providers` (`{"providers": [names]}`),
//! `…/providers/{name}/schema` (`{name, description, inputs, outputs}`), `GET /api/esc/rotators`,
//! `…/rotators/{name}/schema` and `GET /api/esc/context/schema` (`{"schema": …}`). Any authenticated caller may
//! read them: they describe this server, not an org; a name this server does not run answers 404.

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{providers, rotators};
use crate::server::auth::Caller;
use crate::server::error::ApiError;

/// `GET /api/esc/providers`
pub async fn list_providers(Caller(..): Caller) -> Response {
    let names: Vec<&str> = providers::all().iter().map(|p| p.name()).collect();
    Json(json!({ "providers": names })).into_response()
}

/// `GET /api/esc/providers/{name}/schema`
pub async fn provider_schema(Caller(..): Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let p = providers::find(&name).ok_or_else(|| ApiError::not_found(format!("provider {name:?} not found")))?;
    Ok(Json(json!({
        "name": p.name(),
        "description": p.description(),
        "inputs": p.inputs(),
        "outputs": p.outputs(),
    }))
    .into_response())
}

/// `GET /api/esc/rotators`
pub async fn list_rotators(Caller(..): Caller) -> Response {
    let names: Vec<&str> = rotators::all().iter().map(|r| r.name()).collect();
    Json(json!({ "rotators": names })).into_response()
}

/// `GET /api/esc/rotators/{name}/schema`: `{name, description, inputs, outputs}`, where `inputs` is the schema of
/// what `fn::rotate::<name>` takes, as Pulumi publishes it: `{inputs, state}`, `inputs` required.
pub async fn rotator_schema(Caller(..): Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let r = rotators::find(&name).ok_or_else(|| ApiError::not_found(format!("rotator {name:?} not found")))?;
    Ok(Json(json!({
        "name": r.name(),
        "description": r.description(),
        "inputs": {
            "type": "object",
            "properties": {
                "inputs": r.inputs(),
                "state": r.state(),
            },
            "required": ["inputs"],
        },
        "outputs": r.outputs(),
    }))
    .into_response())
}

/// `GET /api/esc/context/schema`
pub async fn context_schema(Caller(..): Caller) -> Response {
    Json(json!({ "schema": &*providers::CONTEXT_SCHEMA })).into_response()
}
