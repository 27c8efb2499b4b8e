//! Black-box tests of the `sesame` package, in one test binary to keep link time down: the store suite on SQLite
//! and PostgreSQL, the HTTP API on 127.0.0.1:0, the `sesame` binary, and the tidy check on the pure core.

mod abuse;
mod admin;
mod api;
mod audit;
#[cfg(feature = "aws")]
mod aws_providers;
mod bao;
#[path = "../support/child.rs"]
mod child;
mod children;
mod cli;
mod cli_env;
mod cloud_login;
mod crash;
mod env_eval;
mod esc;
mod esc_authz;
mod k8s;
mod keks;
#[cfg(feature = "aws")]
mod kms_migrate;
mod migrate;
mod oidc_exchange;
mod oidc_issuer;
mod providers;
mod rotators;
mod schedules;
mod sdk;
mod sessions;
mod store;
mod support;
mod tidy;
mod transit;
mod vault;
