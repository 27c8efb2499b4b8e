//! Rotation schedules in Pulumi's shapes (pulumi/esc `cmd/esc/cli/client/apitype.go`: `ScheduledAction`,
//! `CreateEnvironmentScheduleRequest`, `UpdateEnvironmentScheduleRequest`, `ScheduleHistoryEvent`), served under
//! `/api/esc/environments/{org}/{project}/{env}/schedules`.

use serde::{Deserialize, Serialize};

/// A schedule as listed and returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledAction {
    pub id: String,
    #[serde(rename = "orgID")]
    pub org_id: String,
    /// Always `environment_rotation`.
    pub kind: String,
    pub paused: bool,
    pub created: String,
    pub modified: String,
    /// RFC 3339; empty before the first run.
    pub last_executed: String,
    /// RFC 3339; empty when it will not run again.
    pub next_execution: String,
    /// `{"environmentPath": "…"}` (empty: every `fn::rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule_cron: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule_once: String,
}

/// `GET …/schedules`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListScheduledActions {
    pub schedules: Vec<ScheduledAction>,
}

/// What a rotation schedule rotates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRotationRequest {
    /// A property path under `values`; empty: the whole environment.
    #[serde(default)]
    pub environment_path: String,
}

/// `POST …/schedules` (exactly one of `scheduleCron` and `scheduleOnce`) and `PATCH …/schedules/{id}` (only what is
/// set changes; setting one timing clears the other).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_once: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_rotation_request: Option<SecretRotationRequest>,
    /// Sesame's addition: pause or resume a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// One run of a schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleHistoryEvent {
    pub id: String,
    #[serde(rename = "scheduledActionID")]
    pub scheduled_action_id: String,
    pub executed: String,
    /// The revision the run wrote (0: none).
    pub version: i64,
    /// `succeeded`, or `failed: <why>`.
    pub result: String,
}

/// `GET …/schedules/{id}/history`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListScheduleHistory {
    pub schedule_history_events: Vec<ScheduleHistoryEvent>,
}
