//! Sesame: a self-hostable key-management and secrets service in the style of Pulumi ESC.
//!
//! The crate is laid out as DESIGN.md §2 draws it: a pure [`core`] (no I/O) surrounded by the edges that do I/O —
//! the [`store`], the [`keyring`] that joins the core key rules with the KEK adapters, the HTTP [`server`] and the
//! [`cli`].
#![forbid(unsafe_code)]

pub mod audit;
pub mod audit_sign;
pub mod cli;
pub mod clock;
pub mod core;
pub mod egress;
pub mod instance;
pub mod k8s_webhook;
pub mod kek_reach;
pub mod keyring;
pub mod migrate;
pub mod oidc_issuer;
pub mod server;
pub mod store;
pub mod tls;
pub mod wire;
