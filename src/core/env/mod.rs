//! The Pulumi ESC environment language, pure: YAML with positions ([`syntax`]), expressions ([`ast`]), values
//! ([`value`]), schemas ([`schema`]) and the evaluator ([`eval`]), which reaches imports, ciphertexts and providers
//! only through [`eval::Effects`]; property paths ([`path`]) and environment references ([`env_ref`]) shared by the
//! evaluator, the server and the CLI. See `docs/ARCHITECTURE.md` ("Environments") for how the edge drives it.

pub mod ast;
pub mod crypt;
pub mod diag;
pub mod env_ref;
pub mod eval;
pub mod path;
pub mod project;
pub mod schema;
pub mod session;
pub mod splice;
pub mod syntax;
pub mod value;

pub use ast::{Loaded, load};
pub use diag::{Diagnostic, Severity};
pub use env_ref::EnvRef;
pub use eval::{Answer, Effects, Evaluated, Mode, Need, Options, evaluate};
pub use path::{PathError, PropertyPath, Seg};
pub use value::Value;
