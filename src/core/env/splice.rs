//! Writing a rotation's new `fn::rotate` states into a definition by byte range, so that everything else the user
//! wrote (comments, order, quoting, flow and block styles, other secrets) survives byte for byte.
//!
//! Rule: only the text of each rotated call's `state` value changes (or, before the first rotation, a `state:` pair
//! is added after the call's last pair). The state is written in block style under a block call and in flow style
//! under a flow call, each entry's value as the flow text the caller rendered (a sealed secret:
//! `{fn::secret: {ciphertext: …}}`). After splicing, the text is parsed again and must be the original tree with
//! exactly those states replaced; a text that does not read back so is refused ([`SpliceError`]), never stored.
//! The byte-range helpers are those of [`super::crypt`], which splices sealed secrets the same way.

use super::crypt::{Edit, apply, block_end, in_flow, raw_end, yaml_string};
use super::path::{PropertyPath, Seg};
use super::syntax::{self, Node, NodeKind, ScalarBounds};

/// One call's new state: the document path of its `state` (`values.…["fn::rotate::…"].state`, as the evaluator's
/// patches name it) and its entries in order, each value as flow YAML text.
#[derive(Clone, Debug)]
pub struct NewState {
    pub doc_path: String,
    pub entries: Vec<(String, String)>,
}

/// Why the states could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The definition is not one YAML document.
    Syntax(String),
    /// No `fn::rotate` mapping at this document path.
    NotFound(String),
    /// The text around this call cannot be rewritten safely.
    Unsplicable(String),
}

impl std::fmt::Display for SpliceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceError::Syntax(m) => write!(f, "invalid YAML: {m}"),
            SpliceError::NotFound(p) => write!(f, "no fn::rotate mapping at {p}"),
            SpliceError::Unsplicable(p) => write!(f, "the text around {p} cannot be rewritten safely"),
        }
    }
}

/// A YAML scalar that reads back as exactly the string `s` (for a state's non-secret strings and keys).
pub fn yaml_text(s: &str) -> String {
    yaml_string(s)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Block,
    Flow,
}

/// Where one state goes.
struct Plan<'s> {
    state: &'s NewState,
    /// Replace `start..end` (after the `state:` colon to the end of its value), or insert at `start == end`.
    start: usize,
    end: usize,
    /// Whether a `state:` pair is inserted (else its value is replaced).
    insert: bool,
    /// Whether the call is a flow mapping (or sits in one).
    flow: bool,
    /// Whether the call's mapping is empty (a flow insert then needs no comma).
    empty: bool,
    /// The 0-based column of the call's keys (the `state` key's column).
    indent: usize,
    /// The segments of the call's path.
    call: Vec<Seg>,
}

/// `src` with each state of `states` written in. `src` must be one YAML document.
pub fn splice_states(src: &str, states: &[NewState]) -> Result<String, SpliceError> {
    let (root, bounds) = syntax::parse_with_bounds(src).map_err(|e| SpliceError::Syntax(e.message))?;
    let root = root.ok_or_else(|| SpliceError::Syntax("the document is empty".into()))?;
    let mut plans = Vec::with_capacity(states.len());
    for s in states {
        plans.push(plan(src, &root, &bounds, s)?);
    }
    let nl = if src.contains("\r\n") { "\r\n" } else { "\n" };
    let mut expected = Canon::of(&root);
    for p in &plans {
        let value = Canon::Map(
            p.state
                .entries
                .iter()
                .map(|(k, v)| {
                    let v = syntax::parse(v)
                        .ok()
                        .flatten()
                        .ok_or_else(|| SpliceError::Unsplicable(p.state.doc_path.clone()))?;
                    Ok((Canon::key(k), Canon::of(&v)))
                })
                .collect::<Result<_, SpliceError>>()?,
        );
        expected
            .set_state(&p.call, value)
            .ok_or_else(|| SpliceError::NotFound(p.state.doc_path.clone()))?;
    }
    for form in [Form::Block, Form::Flow] {
        let edits = plans.iter().map(|p| p.edit(form, nl)).collect();
        let out = apply(src, edits);
        if let Ok(Some(back)) = syntax::parse(&out)
            && Canon::of(&back) == expected
        {
            return Ok(out);
        }
    }
    Err(SpliceError::Unsplicable(
        plans.first().map(|p| p.state.doc_path.clone()).unwrap_or_default(),
    ))
}

fn plan<'s>(src: &str, root: &Node, bounds: &ScalarBounds, s: &'s NewState) -> Result<Plan<'s>, SpliceError> {
    let not_found = || SpliceError::NotFound(s.doc_path.clone());
    let unsplicable = || SpliceError::Unsplicable(s.doc_path.clone());
    let path = PropertyPath::parse(&s.doc_path).map_err(|_| not_found())?;
    let (last, call_path) = path.segs().split_last().ok_or_else(not_found)?;
    if *last != Seg::Key("state".into()) {
        return Err(not_found());
    }
    let mut node = root;
    for seg in call_path {
        node = match (seg, &node.kind) {
            (Seg::Key(k), NodeKind::Map(pairs)) => pairs
                .iter()
                .find(|(key, _)| scalar(key) == Some(k.as_str()))
                .map(|(_, v)| v)
                .ok_or_else(not_found)?,
            (Seg::Index(i), NodeKind::Seq(items)) => items.get(*i).ok_or_else(not_found)?,
            _ => return Err(not_found()),
        };
    }
    let NodeKind::Map(pairs) = &node.kind else {
        return Err(not_found());
    };
    let flow = is_flow(src, node) || in_flow(src, node.span.begin.byte);
    let indent = pairs.first().map_or(0, |(k, _)| k.span.begin.column.saturating_sub(1));
    let base = Plan {
        state: s,
        start: 0,
        end: 0,
        insert: false,
        flow,
        empty: pairs.is_empty(),
        indent,
        call: call_path.to_vec(),
    };
    if let Some((k, v)) = pairs.iter().find(|(k, _)| scalar(k) == Some("state")) {
        let col = k.span.begin.column.saturating_sub(1);
        let colon = colon_after(src, k, v, bounds, col).ok_or_else(unsplicable)?;
        let end = node_end(src, v, bounds, col, colon).ok_or_else(unsplicable)?;
        return Ok(Plan {
            start: colon,
            end,
            indent: col,
            ..base
        });
    }
    let at = match pairs.last() {
        Some((k, v)) => {
            let col = k.span.begin.column.saturating_sub(1);
            let colon = colon_after(src, k, v, bounds, col).ok_or_else(unsplicable)?;
            node_end(src, v, bounds, col, colon).ok_or_else(unsplicable)?
        }
        // An empty flow mapping: just after its `{`.
        None if src.as_bytes().get(node.span.begin.byte) == Some(&b'{') => node.span.begin.byte + 1,
        None => return Err(unsplicable()),
    };
    // Under a block call the new pair goes after the rest of the last pair's line (its comment stays with it).
    let at = if flow {
        at
    } else {
        let line_end = src[at..].find('\n').map_or(src.len(), |i| at + i);
        let rest = src[at..line_end].trim_end_matches('\r');
        if rest.trim_start().is_empty() || rest.trim_start().starts_with('#') {
            at + rest.len()
        } else {
            at
        }
    };
    Ok(Plan {
        start: at,
        end: at,
        insert: true,
        ..base
    })
}

impl Plan<'_> {
    fn edit(&self, form: Form, nl: &str) -> Edit {
        let flow_text = || {
            let inner: Vec<String> = self
                .state
                .entries
                .iter()
                .map(|(k, v)| format!("{}: {v}", yaml_string(k)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        };
        let block_text = |indent: usize| {
            self.state
                .entries
                .iter()
                .map(|(k, v)| format!("{nl}{}{}: {v}", " ".repeat(indent), yaml_string(k)))
                .collect::<String>()
        };
        let block = form == Form::Block && !self.flow;
        let text = match (self.insert, block) {
            (false, true) => block_text(self.indent + 2),
            (false, false) => format!(" {}", flow_text()),
            (true, true) => format!("{nl}{}state:{}", " ".repeat(self.indent), block_text(self.indent + 2)),
            (true, false) if self.flow && self.empty => format!("state: {}", flow_text()),
            (true, false) if self.flow => format!(", state: {}", flow_text()),
            (true, false) => format!("{nl}{}state: {}", " ".repeat(self.indent), flow_text()),
        };
        Edit {
            start: self.start,
            end: self.end,
            text,
        }
    }
}

fn scalar(n: &Node) -> Option<&str> {
    match &n.kind {
        NodeKind::Scalar { value, .. } => Some(value),
        _ => None,
    }
}

fn is_flow(src: &str, n: &Node) -> bool {
    matches!(src.as_bytes().get(n.span.begin.byte), Some(b'{' | b'['))
}

/// Just after the colon that follows key `k` (whose value is `v`).
fn colon_after(src: &str, k: &Node, v: &Node, bounds: &ScalarBounds, col: usize) -> Option<usize> {
    let key_end = raw_end(src, k, bounds, col)?;
    let between = src.get(key_end..v.span.begin.byte.max(key_end))?;
    between.find(':').map(|i| key_end + i + 1)
}

/// Where the source text of value `v` ends: a scalar by its style; a flow collection at its closing bracket; a
/// block collection where its last child ends. `col` is the 0-based column of the key holding it, `from` just after
/// that key's colon (a block scalar's header lies between).
fn node_end(src: &str, v: &Node, bounds: &ScalarBounds, col: usize, from: usize) -> Option<usize> {
    match &v.kind {
        NodeKind::Scalar { .. } => {
            let lead = src.get(from..v.span.begin.byte.max(from))?;
            match lead.find(['|', '>']) {
                Some(i) => {
                    let bound = (*bounds.get(&v.span.begin.byte)?).min(src.len());
                    block_end(src, from + i, bound, col)
                }
                None => raw_end(src, v, bounds, col),
            }
        }
        NodeKind::Map(pairs) => {
            let last_end = match pairs.last() {
                Some((k, lv)) => {
                    let kcol = k.span.begin.column.saturating_sub(1);
                    let colon = colon_after(src, k, lv, bounds, kcol)?;
                    Some(node_end(src, lv, bounds, kcol, colon)?)
                }
                None => None,
            };
            close(src, v, last_end, b'}')
        }
        NodeKind::Seq(items) => {
            let last_end = match items.last() {
                Some(item) => {
                    let icol = item.span.begin.column.saturating_sub(1);
                    let from = src[..item.span.begin.byte].rfind(['-', '[', ',']).map_or(0, |i| i + 1);
                    Some(node_end(src, item, bounds, icol, from)?)
                }
                None => None,
            };
            close(src, v, last_end, b']')
        }
    }
}

/// The end of a collection whose last child ends at `last_end`: after its closing bracket when it is a flow
/// collection (skipping blanks, commas and line breaks), else `last_end`.
fn close(src: &str, v: &Node, last_end: Option<usize>, bracket: u8) -> Option<usize> {
    if !is_flow(src, v) {
        return last_end;
    }
    let bytes = src.as_bytes();
    let mut i = last_end.unwrap_or(v.span.begin.byte + 1);
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | b',' => i += 1,
            _ if b == bracket => return Some(i + 1),
            _ => return None,
        }
    }
    None
}

/// A node without its position, for comparing trees.
#[derive(Clone, Debug, PartialEq)]
enum Canon {
    Scalar(String, bool, Option<String>),
    Seq(Vec<Canon>),
    Map(Vec<(Canon, Canon)>),
}

impl Canon {
    fn of(n: &Node) -> Canon {
        match &n.kind {
            NodeKind::Scalar { value, plain, tag } => Canon::Scalar(value.clone(), *plain, tag.clone()),
            NodeKind::Seq(items) => Canon::Seq(items.iter().map(Canon::of).collect()),
            NodeKind::Map(pairs) => Canon::Map(pairs.iter().map(|(k, v)| (Canon::of(k), Canon::of(v))).collect()),
        }
    }

    fn key(k: &str) -> Canon {
        syntax::parse(&yaml_string(k))
            .ok()
            .flatten()
            .map_or_else(|| Canon::Scalar(k.to_owned(), true, None), |n| Canon::of(&n))
    }

    fn name(&self) -> Option<&str> {
        match self {
            Canon::Scalar(v, ..) => Some(v),
            _ => None,
        }
    }

    /// Sets (or appends) the `state` pair of the mapping at `call`.
    fn set_state(&mut self, call: &[Seg], value: Canon) -> Option<()> {
        let mut node = self;
        for seg in call {
            node = match (seg, node) {
                (Seg::Key(k), Canon::Map(pairs)) => pairs
                    .iter_mut()
                    .find(|(key, _)| key.name() == Some(k))
                    .map(|(_, v)| v)?,
                (Seg::Index(i), Canon::Seq(items)) => items.get_mut(*i)?,
                _ => return None,
            };
        }
        let Canon::Map(pairs) = node else { return None };
        match pairs.iter_mut().find(|(k, _)| k.name() == Some("state")) {
            Some((_, v)) => *v = value,
            None => pairs.push((Canon::key("state"), value)),
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(path: &str, cur: &str, prev: Option<&str>) -> NewState {
        let mut entries = vec![("current".to_owned(), format!("{{fn::secret: {{ciphertext: {cur}}}}}"))];
        if let Some(p) = prev {
            entries.push(("previous".to_owned(), format!("{{fn::secret: {{ciphertext: {p}}}}}")));
        }
        NewState {
            doc_path: path.to_owned(),
            entries,
        }
    }

    #[test]
    fn a_first_rotation_adds_a_state_under_a_block_call() {
        let src = "# head\nvalues:\n  db:\n    pw:\n      fn::rotate::password:\n        inputs: {length: 12} # keep\n  other: 1 # tail\n";
        let out = splice_states(
            src,
            &[state(r#"values.db.pw["fn::rotate::password"].state"#, "CT1", None)],
        )
        .unwrap();
        assert_eq!(
            out,
            "# head\nvalues:\n  db:\n    pw:\n      fn::rotate::password:\n        inputs: {length: 12} # keep\n        state:\n          current: {fn::secret: {ciphertext: CT1}}\n  other: 1 # tail\n"
        );
    }

    #[test]
    fn a_second_rotation_replaces_only_the_state() {
        let src = "values:\n  pw:\n    fn::rotate::password:\n      inputs:\n        length: 12\n      state:\n        current:\n          fn::secret:\n            ciphertext: OLD\n  # a comment after\n  x: [1, 2]\n";
        let out = splice_states(
            src,
            &[state(r#"values.pw["fn::rotate::password"].state"#, "NEW", Some("OLD"))],
        )
        .unwrap();
        assert_eq!(
            out,
            "values:\n  pw:\n    fn::rotate::password:\n      inputs:\n        length: 12\n      state:\n        current: {fn::secret: {ciphertext: NEW}}\n        previous: {fn::secret: {ciphertext: OLD}}\n  # a comment after\n  x: [1, 2]\n"
        );
    }

    #[test]
    fn flow_calls_stay_flow() {
        let src = "values: {a: {fn::rotate::passphrase: {inputs: {}}}, b: \"x\"} # c\n";
        let out = splice_states(src, &[state(r#"values.a["fn::rotate::passphrase"].state"#, "C", None)]).unwrap();
        assert_eq!(
            out,
            "values: {a: {fn::rotate::passphrase: {inputs: {}, state: {current: {fn::secret: {ciphertext: C}}}}}, b: \"x\"} # c\n"
        );
        let again = splice_states(
            &out,
            &[state(r#"values.a["fn::rotate::passphrase"].state"#, "D", Some("C"))],
        )
        .unwrap();
        assert_eq!(
            again,
            "values: {a: {fn::rotate::passphrase: {inputs: {}, state: {current: {fn::secret: {ciphertext: D}}, previous: {fn::secret: {ciphertext: C}}}}}, b: \"x\"} # c\n"
        );
    }

    #[test]
    fn odd_layouts_keep_their_bytes() {
        // CRLF line ends, a quoted call key, a call in a list, comments between state entries.
        let src = "values:\r\n  l:\r\n    - \"fn::rotate::password\": {inputs: {}}\r\n    - x\r\n";
        let out = splice_states(src, &[state(r#"values.l[0]["fn::rotate::password"].state"#, "C", None)]).unwrap();
        assert_eq!(
            out,
            "values:\r\n  l:\r\n    - \"fn::rotate::password\": {inputs: {}, state: {current: {fn::secret: {ciphertext: C}}}}\r\n    - x\r\n"
        );
        let src = "values:\n  a:\n    fn::rotate::password:\n      inputs: {}\n      state:\n        # old\n        current: {fn::secret: {ciphertext: A}}\n        # between\n        previous: {fn::secret: {ciphertext: Z}}\n      # after the state\n  b: 2\n";
        let out = splice_states(
            src,
            &[state(r#"values.a["fn::rotate::password"].state"#, "B", Some("A"))],
        )
        .unwrap();
        assert_eq!(
            out,
            "values:\n  a:\n    fn::rotate::password:\n      inputs: {}\n      state:\n        current: {fn::secret: {ciphertext: B}}\n        previous: {fn::secret: {ciphertext: A}}\n      # after the state\n  b: 2\n"
        );
    }

    #[test]
    fn missing_calls_and_bad_text_are_refused() {
        let s = state(r#"values.nope["fn::rotate::password"].state"#, "C", None);
        assert!(matches!(
            splice_states("values: {a: 1}\n", &[s]),
            Err(SpliceError::NotFound(_))
        ));
        let s = state(r#"values.a["fn::rotate::password"].state"#, "C", None);
        assert!(matches!(
            splice_states("values: [\n", &[s]),
            Err(SpliceError::Syntax(_))
        ));
    }
}
