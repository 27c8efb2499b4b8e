//! Diagnostics of the environment language: severity, summary, the source range they point at, and the document
//! path (`values.a["b c"][0]`, a [`PropertyPath`]) of the node they concern.

use std::fmt;
use std::sync::Arc;

pub use super::path::{PropertyPath, Seg};

/// A position in a document: 1-based line and column, 0-based byte offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub byte: usize,
}

/// A range of source text in one document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub begin: Pos,
    pub end: Pos,
}

impl Span {
    /// The range `len` bytes long starting `offset` bytes into a single-line scalar that begins at `self.begin`.
    pub fn within(&self, offset: usize, len: usize) -> Span {
        let begin = Pos {
            line: self.begin.line,
            column: self.begin.column + offset,
            byte: self.begin.byte + offset,
        };
        Span {
            begin,
            end: Pos {
                line: begin.line,
                column: begin.column + len,
                byte: begin.byte + len,
            },
        }
    }
}

/// A path from the root of a document to one of its nodes: the one property-path type, [`super::path`].
pub type DocPath = PropertyPath;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error = 1,
    Warning = 2,
}

/// One diagnostic. `subject` is `None` only for a document the YAML parser could not read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    /// The environment (document) the diagnostic belongs to and the range in it.
    pub subject: Option<(Arc<str>, Span)>,
    pub path: String,
}

impl Diagnostic {
    pub fn error(env: &Arc<str>, span: Span, path: &DocPath, summary: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            subject: Some((env.clone(), span)),
            path: path.to_string(),
        }
    }
    pub fn warning(env: &Arc<str>, span: Span, path: &DocPath, summary: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(env, span, path, summary)
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: error: summary` — the form the CLI prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.subject {
            Some((env, span)) => write!(
                f,
                "{env}:{}:{}: {level}: {}",
                span.begin.line, span.begin.column, self.summary
            ),
            None => write!(f, "{level}: {}", self.summary),
        }
    }
}

/// Sorts diagnostics into the order they are shown: by document, then position, then summary.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            (
                d.subject.is_some(),
                d.subject.as_ref().map(|(e, s)| (e.clone(), s.begin)),
                d.summary.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_esc() {
        let p = DocPath::default()
            .key("values")
            .key("examples")
            .key("deeply")
            .index(0)
            .key("quoted \"property\"")
            .key("fn::rotate::swap")
            .key("state");
        assert_eq!(
            p.to_string(),
            r#"values.examples.deeply[0]["quoted \"property\""]["fn::rotate::swap"].state"#
        );
        assert_eq!(
            DocPath::default().key("0lead").key("_x1").to_string(),
            r#"["0lead"]._x1"#
        );
    }
}
