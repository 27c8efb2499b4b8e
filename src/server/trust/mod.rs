//! Token exchange (DESIGN.md §6, issue 14's inbound half): orgs register the OIDC issuers they trust ([`issuers`],
//! with their default-deny claim policies), and CI jobs and Kubernetes pods trade those issuers' tokens for short-lived
//! Sesame tokens ([`exchange`]); the issuers' keys are fetched under the egress policy and cached ([`keys`]).
//!
//! Rules: the decisions are pure (`core::jwt` verifies, `core::trust` matches policies); managing issuers and
//! policies needs `ManageAccess` on the org (its admins); every exchange, minted or refused, is audited on the org's
//! chain (the instance chain when the org is unknown), never with the token; a minted token is confined to the org,
//! capped at the policy's `authorizedPermissions` and expires within the issuer's `maxExpiration`.

pub mod exchange;
pub mod issuers;
pub mod keys;
