//! YAML to a syntax tree with a source range on every node, on top of `yaml-rust2`'s event parser.
//!
//! Positions follow the Go YAML library the upstream goldens were made with: 1-based lines and columns, a scalar ends
//! at its start plus the byte length of its decoded value, a collection ends where its last child ends. Aliases are
//! refused (they would let a small document expand without bound), and so are documents nested deeper than
//! [`MAX_DEPTH`] or larger than [`MAX_DOCUMENT_BYTES`], and a text holding more than one YAML document (`---`, or
//! `...` followed by more): a definition is one document, and text after it would be stored unexamined. Reading is a
//! loop over the parser's events, never a recursion per level, so no nesting of the input reaches the stack.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diag::{Pos, Span};

/// The deepest nesting of mappings and sequences a document may have.
pub const MAX_DEPTH: usize = 128;
/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A scalar as written: its decoded text, whether it was plain (unquoted, so subject to type resolution) and its
    /// explicit tag, if any.
    Scalar {
        value: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A document the YAML parser could not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Option<Pos>,
}

struct Builder<'s> {
    src: &'s str,
    /// Byte offset of each char index, when the source is not ASCII.
    char_bytes: Option<Vec<usize>>,
    stack: Vec<(Span, Vec<Node>, bool)>,
    /// The root of each document read.
    roots: Vec<Node>,
    /// Whether more than one document is allowed (only to repair text stored by an earlier version).
    multi: bool,
    error: Option<SyntaxError>,
    /// Documents started so far.
    documents: usize,
    /// The byte where the last scalar began, until the next event is seen.
    last_scalar: Option<usize>,
    /// For each scalar, the byte where it begins and the byte of the event that follows it: the scalar's text
    /// (with any trailing comments and blank lines) lies between the two.
    bounds: Vec<(usize, usize)>,
}

impl Builder<'_> {
    fn pos(&self, m: &Marker) -> Pos {
        let byte = match &self.char_bytes {
            Some(t) => t.get(m.index()).copied().unwrap_or(self.src.len()),
            None => m.index(),
        };
        Pos {
            line: m.line(),
            column: m.col() + 1,
            byte,
        }
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some((_, children, _)) => children.push(node),
            None => self.roots.push(node),
        }
    }

    fn fail(&mut self, message: &str, pos: Pos) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                message: message.to_owned(),
                pos: Some(pos),
            });
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = self.pos(&mark);
        if let Some(start) = self.last_scalar.take() {
            self.bounds.push((start, pos.byte.max(start)));
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 && !self.multi {
                    self.fail(
                        &format!(
                            "yaml: line {}: a definition must be a single YAML document; a second one starts here",
                            pos.line
                        ),
                        pos,
                    );
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.last_scalar = Some(pos.byte);
                let _ = anchor;
                let len = value.len();
                let end = Pos {
                    line: pos.line,
                    column: pos.column + len,
                    byte: pos.byte + len,
                };
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                self.push(Node {
                    span: Span { begin: pos, end },
                    kind: NodeKind::Scalar {
                        value,
                        plain: style == TScalarStyle::Plain,
                        tag,
                    },
                });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(&format!("the document nests deeper than {MAX_DEPTH} levels"), pos);
                    return;
                }
                let is_map = matches!(ev, Event::MappingStart(..));
                self.stack.push((Span { begin: pos, end: pos }, Vec::new(), is_map));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((mut span, children, is_map)) = self.stack.pop() else {
                    return;
                };
                if let Some(last) = children.last() {
                    span.end = last.span.end;
                }
                let kind = if is_map {
                    let mut pairs = Vec::with_capacity(children.len() / 2);
                    let mut it = children.into_iter();
                    while let Some(k) = it.next() {
                        let v = it.next().unwrap_or(Node {
                            span: Span {
                                begin: k.span.end,
                                end: k.span.end,
                            },
                            kind: NodeKind::Scalar {
                                value: String::new(),
                                plain: true,
                                tag: None,
                            },
                        });
                        pairs.push((k, v));
                    }
                    NodeKind::Map(pairs)
                } else {
                    NodeKind::Seq(children)
                };
                // A block sequence begins at its first `-`.
                if let NodeKind::Seq(items) = &kind
                    && let Some(first) = items.first()
                {
                    let before = self.src[..first.span.begin.byte.min(self.src.len())].trim_end_matches([' ', '\t']);
                    if before.ends_with('-') && first.span.begin.byte > before.len() {
                        let back = first.span.begin.byte - (before.len() - 1);
                        span.begin = Pos {
                            line: first.span.begin.line,
                            column: first.span.begin.column.saturating_sub(back),
                            byte: before.len() - 1,
                        };
                    }
                }
                // A block mapping's first key is where the mapping begins.
                if let NodeKind::Map(pairs) = &kind
                    && let Some((k, _)) = pairs.first()
                    && !self.src[..k.span.begin.byte.min(self.src.len())]
                        .trim_end()
                        .ends_with('{')
                {
                    span.begin = k.span.begin;
                }
                self.push(Node { span, kind });
            }
            Event::Alias(_) => self.fail("YAML aliases are not supported", pos),
            _ => {}
        }
    }
}

/// Parses one YAML document. `Ok(None)` is an empty document.
pub fn parse(src: &str) -> Result<Option<Node>, SyntaxError> {
    parse_with_bounds(src).map(|(root, _)| root)
}

/// Where each scalar begins (byte) mapped to the byte of the event after it: an upper bound of the scalar's source
/// text, which `crypt` needs to splice a value whatever its style.
pub type ScalarBounds = std::collections::HashMap<usize, usize>;

/// [`parse`], with the [`ScalarBounds`] of the document.
pub fn parse_with_bounds(src: &str) -> Result<(Option<Node>, ScalarBounds), SyntaxError> {
    parse_inner(src, false).map(|(roots, bounds)| (roots.into_iter().next(), bounds))
}

/// Every document of a text that may hold several (a text stored by an earlier version, which did not refuse
/// them), with the [`ScalarBounds`] of all.
pub fn parse_documents(src: &str) -> Result<(Vec<Node>, ScalarBounds), SyntaxError> {
    parse_inner(src, true)
}

fn parse_inner(src: &str, multi: bool) -> Result<(Vec<Node>, ScalarBounds), SyntaxError> {
    if src.len() > MAX_DOCUMENT_BYTES {
        return Err(SyntaxError {
            message: format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
            pos: None,
        });
    }
    // YAML allows no C0 control characters but tab and line breaks (and the parser would stop at a NUL).
    if let Some((at, c)) = src
        .char_indices()
        .find(|(_, c)| (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}')) || *c == '\u{FFFE}')
    {
        let line = src[..at].matches('\n').count() + 1;
        let column = at - src[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
        return Err(SyntaxError {
            message: format!(
                "yaml: line {line}: control characters are not allowed (U+{:04X})",
                c as u32
            ),
            pos: Some(Pos { line, column, byte: at }),
        });
    }
    let char_bytes = (!src.is_ascii()).then(|| src.char_indices().map(|(b, _)| b).collect());
    let mut builder = Builder {
        src,
        char_bytes,
        stack: Vec::new(),
        roots: Vec::new(),
        multi,
        error: None,
        documents: 0,
        last_scalar: None,
        bounds: Vec::new(),
    };
    // The parser's own `load` recurses once per level of nesting, and block sequences nest two bytes a level
    // (`- - - x`): its events are read here in a loop instead, up to the end of the stream or the first error (the
    // builder's depth limit and a second document included).
    let mut parser = Parser::new_from_str(src);
    // Every document is read, so that a second one is seen (and refused) rather than silently ignored.
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) => {
                let m = e.marker();
                return Err(SyntaxError {
                    message: format!("yaml: line {}: {}", m.line(), e.info()),
                    pos: Some(builder.pos(m)),
                });
            }
        };
        let done = matches!(ev, Event::StreamEnd);
        builder.on_event(ev, mark);
        if done || builder.error.is_some() {
            break;
        }
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    if let Some(start) = builder.last_scalar.take() {
        builder.bounds.push((start, src.len()));
    }
    Ok((builder.roots, builder.bounds.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_shapes() {
        let n = parse("values:\n  a: [1, \"x\"]\n  é: b\n").unwrap().unwrap();
        let NodeKind::Map(top) = &n.kind else { panic!() };
        let NodeKind::Map(values) = &top[0].1.kind else {
            panic!()
        };
        assert_eq!(
            values[0].0.span.begin,
            Pos {
                line: 2,
                column: 3,
                byte: 10
            }
        );
        let NodeKind::Seq(items) = &values[0].1.kind else {
            panic!()
        };
        assert!(matches!(&items[1].kind, NodeKind::Scalar { plain: false, .. }));
        assert_eq!(values[1].1.span.begin.byte, 28);
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        assert!(parse("values: [1, 2").is_err());
        assert!(parse("a: &x [1]\nb: *x\n").is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
        assert!(parse(&format!("{}1\n", "[".repeat(MAX_DEPTH))).is_err());
        assert_eq!(parse("").unwrap(), None);
    }

    /// Nesting the parser itself would follow level by level: block sequences on one line (two bytes a level) and
    /// block mappings, far deeper than the limit, are refused on a thread with a 2 MiB stack, the smallest a server
    /// thread has.
    #[test]
    fn deep_block_nesting_is_refused_without_recursion() {
        let docs = [
            format!("{}x\n", "- ".repeat(1_000_000)),
            (0..2_000)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>(),
            format!("{}x{}", "[".repeat(200_000), "]".repeat(200_000)),
        ];
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for doc in &docs {
                    let e = parse(doc).unwrap_err();
                    assert!(
                        e.message.contains("nests deeper") || e.message.contains("recursion limit"),
                        "{}",
                        e.message
                    );
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_second_document_is_refused() {
        for src in [
            "values:\n  a: 1\n---\nvalues:\n  b: {fn::secret: hunter2}\n",
            "values: {a: 1}\n...\n---\nx: 1\n",
            "---\na: 1\n--- b\n",
            "a: 1\n...\nb: 2\n",
            "a: 1\r\n---\r\nb: 2\r\n",
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.message.contains("single YAML document"), "{src:?}: {}", e.message);
        }
        // One document, with explicit start and end markers, is fine.
        for src in [
            "---\na: 1\n",
            "a: 1\n...\n",
            "---\na: 1\n...\n# trailing comment\n",
            "---\n",
        ] {
            assert!(parse(src).is_ok(), "{src:?}");
        }
    }
}
