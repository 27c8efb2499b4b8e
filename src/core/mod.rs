//! The pure core: key-hierarchy rules and access tokens (the ESC environment language joins it with issue 4).
//!
//! Nothing under `core` touches tokio, sqlx, axum, reqwest, `std::fs` or `std::net`; time and randomness come in as
//! arguments. `tests/it/tidy.rs` keeps it so.

pub mod audit;
pub mod authz;
pub mod call_tally;
pub mod cron;
pub mod env;
pub mod jwt;
pub mod k8s;
pub mod keys;
pub mod oidc;
pub mod tally;
pub mod text;
pub mod throttle;
pub mod timefmt;
pub mod tokens;
pub mod transit;
pub mod trust;
