//! `sesame serve`'s abuse-limit flags (each also a `SESAME_*` variable): per-source budgets of unauthenticated
//! callers, optional per-token limits, slow clients and the connection cap. Defaults live next to the code that
//! enforces them ([`crate::server::throttle`], [`crate::server::conn`]).

use std::time::Duration;

use clap::Args;

use crate::core::throttle::Rate;
use crate::server::conn::{self, ConnLimits};
use crate::server::throttle::{self, AuthLimits, Limits};

/// Abuse-limit flags.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Failed authentications (no token, or a malformed, unknown, revoked or expired one) one source address
    /// (IPv6: its /64) may make at once; past that they answer 429 with Retry-After instead of 401. A valid token
    /// is never refused by this budget.
    #[arg(long, env = "SESAME_AUTH_FAILURE_BURST", default_value_t = throttle::DEFAULT_AUTH_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst: u32,
    /// How many failed authentications a source address regains per minute.
    #[arg(long, env = "SESAME_AUTH_FAILURE_PER_MINUTE", default_value_t = throttle::DEFAULT_AUTH_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_per_minute: u32,
    /// Failed authentications from one source address are audited as one record per this many seconds, with the
    /// count.
    #[arg(long, env = "SESAME_AUTH_AUDIT_WINDOW_SECS", default_value_t = throttle::DEFAULT_AUDIT_WINDOW.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub auth_audit_window_secs: u64,
    /// Requests one token may make per minute (429 beyond). Off unless given: valid tokens are not limited.
    #[arg(long, env = "SESAME_TOKEN_RATE_PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..))]
    pub token_rate_per_minute: Option<u32>,
    /// With --token-rate-per-minute: requests one token may make at once (default: the per-minute rate).
    #[arg(long, env = "SESAME_TOKEN_BURST", requires = "token_rate_per_minute",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub token_burst: Option<u32>,
    /// Seconds a client has to send a request's headers or finish the TLS handshake; on HTTP/1 also how long a
    /// kept-alive connection may wait for its next request.
    #[arg(long, env = "SESAME_HEADER_READ_TIMEOUT_SECS", default_value_t = conn::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay silent (nothing read or written) while none of its requests is being handled.
    #[arg(long, env = "SESAME_IDLE_TIMEOUT_SECS", default_value_t = conn::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Connections open at once (at least 4096); one more is closed when accepted. Keep the open-files limit
    /// (ulimit -n) above it.
    #[arg(long, env = "SESAME_MAX_CONNECTIONS", default_value_t = conn::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(conn::MIN_MAX_CONNECTIONS as u64..))]
    pub max_connections: u64,
}

impl LimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> Limits {
        Limits {
            auth: AuthLimits {
                per_source: Rate {
                    burst: self.auth_failure_burst,
                    per_minute: self.auth_failure_per_minute,
                },
                audit_window: Duration::from_secs(self.auth_audit_window_secs),
                per_token: self.token_rate_per_minute.map(|per_minute| Rate {
                    burst: self.token_burst.unwrap_or(per_minute),
                    per_minute,
                }),
            },
            connections: ConnLimits {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            },
        }
    }
}
