//! From the YAML syntax tree to the environment language's expressions: literals, `${…}` interpolations and
//! property accesses, lists, objects and `fn::` builtin calls. Malformed constructs give diagnostics and still
//! produce an expression, so that evaluation goes on and reports everything at once.

use std::sync::Arc;

use serde_json::Number;

use super::diag::{Diagnostic, DocPath, Severity, Span};
use super::syntax::{self, Node, NodeKind};

/// One accessor of a property path: `.name`, `["key"]` or `[index]`, with its range.
#[derive(Clone, Debug, PartialEq)]
pub enum Accessor {
    Key(String, Span),
    Index(i64, Span),
}

impl Accessor {
    pub fn span(&self) -> Span {
        match self {
            Accessor::Key(_, s) | Accessor::Index(_, s) => *s,
        }
    }
}

/// One piece of an interpolated string: literal text followed by an optional property access.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub text: String,
    pub access: Option<Vec<Accessor>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub span: Span,
    pub path: DocPath,
    pub kind: ExprKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    /// A string made of text and property accesses.
    Interpolate(Vec<Part>),
    /// A string that is exactly one property access: its value keeps its type.
    Symbol(Vec<Accessor>),
    List(Vec<Expr>),
    /// Keys in document order, duplicates included (evaluation reports and drops them).
    Object(Vec<(String, Span, Expr)>),
    /// Shared: a call keeps the parts of its argument it uses next to the argument itself, and sharing keeps a
    /// nest of calls from doubling in size at every level.
    Builtin(Arc<Builtin>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Builtin {
    pub name: String,
    pub name_span: Span,
    /// The argument as written.
    pub arg: Expr,
    pub call: Call,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `fn::secret: text`; an invalid argument gives an empty secret.
    Plaintext(String),
    /// `fn::secret: {ciphertext: …}`.
    Ciphertext(String),
    /// `fn::open` and `fn::open::<provider>`; `None` parts were missing or invalid (already diagnosed).
    Open {
        provider: Option<String>,
        inputs: Option<Expr>,
    },
    Rotate {
        provider: Option<String>,
        inputs: Option<Expr>,
        state: Option<Expr>,
    },
    Join(Option<(Expr, Expr)>),
    Split(Option<(Expr, Expr)>),
    Concat(Expr),
    ToJson(Expr),
    FromJson(Expr),
    ToBase64(Expr),
    FromBase64(Expr),
    ToString(Expr),
    Final(Expr),
    Validate {
        schema: Option<Expr>,
        value: Option<Expr>,
    },
}

/// An import: `- name` or `- name: {merge: false}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    pub name: String,
    pub merge: bool,
    pub span: Span,
    pub path: DocPath,
}

/// A parsed environment definition.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Decl {
    pub imports: Vec<Import>,
    /// `values`, an object expression (or absent).
    pub values: Option<Expr>,
    pub values_span: Span,
}

impl Decl {
    /// The ciphertexts of its `fn::secret: {ciphertext: …}` calls, in document order: the edge can open them all
    /// before evaluating, instead of learning of them one round at a time.
    pub fn ciphertexts(&self) -> Vec<&str> {
        fn walk<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
            match &e.kind {
                ExprKind::List(items) => items.iter().for_each(|i| walk(i, out)),
                ExprKind::Object(fields) => fields.iter().for_each(|(_, _, v)| walk(v, out)),
                ExprKind::Builtin(b) => {
                    if let Call::Ciphertext(ct) = &b.call {
                        out.push(ct);
                    }
                    walk(&b.arg, out);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Some(v) = &self.values {
            walk(v, &mut out);
        }
        out
    }
}

/// The result of loading a document: the declaration (absent when the YAML itself is unreadable) and diagnostics.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: Arc<str>,
    pub decl: Option<Decl>,
    pub diags: Vec<Diagnostic>,
}

/// Parses and loads one environment definition named `name`.
pub fn load(name: &str, src: &str) -> Loaded {
    let name: Arc<str> = Arc::from(name);
    let mut p = Loader {
        env: name.clone(),
        diags: Vec::new(),
    };
    let decl = match syntax::parse(src) {
        Err(e) => {
            p.diags.push(Diagnostic {
                severity: Severity::Error,
                summary: e.message,
                subject: None,
                path: String::new(),
            });
            None
        }
        Ok(None) => Some(Decl::default()),
        Ok(Some(node)) => Some(p.decl(&node)),
    };
    Loaded {
        name,
        decl,
        diags: p.diags,
    }
}

struct Loader {
    env: Arc<str>,
    diags: Vec<Diagnostic>,
}

fn scalar(n: &Node) -> Option<&str> {
    match &n.kind {
        NodeKind::Scalar { value, .. } => Some(value),
        _ => None,
    }
}

fn describe(n: &Node) -> &'static str {
    match &n.kind {
        NodeKind::Scalar { .. } => "scalar",
        NodeKind::Seq(_) => "sequence",
        NodeKind::Map(_) => "mapping",
    }
}

impl Loader {
    fn error(&mut self, span: Span, path: &DocPath, summary: impl Into<String>) {
        self.diags.push(Diagnostic::error(&self.env, span, path, summary));
    }

    fn decl(&mut self, node: &Node) -> Decl {
        let root = DocPath::default();
        let NodeKind::Map(pairs) = &node.kind else {
            self.error(
                node.span,
                &root,
                format!("an environment must be a mapping, not a {}", describe(node)),
            );
            return Decl::default();
        };
        let mut decl = Decl::default();
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in pairs {
            let Some(key) = scalar(k) else {
                self.error(k.span, &root, "object keys must be strings");
                continue;
            };
            // A repeated top-level key is a warning and the last one wins, as upstream (nested duplicates are
            // errors, reported by evaluation, and the first one wins there).
            if seen.contains(&key) {
                self.diags.push(Diagnostic::warning(
                    &self.env,
                    k.span,
                    &root.key(key),
                    format!("duplicate key {key:?}"),
                ));
            } else {
                seen.push(key);
            }
            match key {
                "imports" => decl.imports = self.imports(v, &root.key("imports")),
                "values" => {
                    decl.values = None;
                    decl.values_span = v.span;
                    let path = root.key("values");
                    if let NodeKind::Map(vp) = &v.kind
                        && vp.len() == 1
                        && let Some(name) = scalar(&vp[0].0)
                        && name.starts_with("fn::")
                    {
                        self.error(
                            vp[0].0.span,
                            &path.key(name),
                            format!("builtin function call {name:?} not allowed at the top level"),
                        );
                        continue;
                    }
                    match &v.kind {
                        NodeKind::Map(_) => decl.values = Some(self.expr(v, &path)),
                        NodeKind::Scalar { value, plain: true, .. } if is_null(value) => {}
                        _ => self.error(v.span, &path, "values must be an object"),
                    }
                }
                _ => self.diags.push(Diagnostic::warning(
                    &self.env,
                    k.span,
                    &root.key(key),
                    format!("unknown field {key:?}"),
                )),
            }
        }
        decl
    }

    fn imports(&mut self, node: &Node, path: &DocPath) -> Vec<Import> {
        // `imports:` with nothing (null) is not a list either: upstream refuses it too.
        let items = match &node.kind {
            NodeKind::Seq(items) => items,
            _ => {
                self.error(node.span, path, "imports must be a list");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            match &item.kind {
                NodeKind::Scalar { value, plain, .. } if !(*plain && is_null(value)) => out.push(Import {
                    name: value.clone(),
                    merge: true,
                    span: item.span,
                    path: ipath,
                }),
                NodeKind::Map(pairs) if pairs.len() == 1 && scalar(&pairs[0].0).is_some() => {
                    let name = scalar(&pairs[0].0).unwrap_or_default().to_owned();
                    let mut merge = true;
                    if let NodeKind::Map(opts) = &pairs[0].1.kind {
                        for (k, v) in opts {
                            if scalar(k) == Some("merge") {
                                match scalar(v) {
                                    Some("true") => merge = true,
                                    Some("false") => merge = false,
                                    _ => self.error(v.span, &ipath.key(&name).key("merge"), "merge must be a boolean"),
                                }
                            }
                        }
                    }
                    out.push(Import {
                        name,
                        merge,
                        span: item.span,
                        path: ipath,
                    });
                }
                _ => self.error(item.span, &ipath, "import must be a string or an object"),
            }
        }
        out
    }

    fn expr(&mut self, node: &Node, path: &DocPath) -> Expr {
        let kind = match &node.kind {
            NodeKind::Scalar { value, plain, tag } => self.scalar_expr(node, value, *plain, tag.as_deref(), path),
            NodeKind::Seq(items) => ExprKind::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.expr(n, &path.index(i)))
                    .collect(),
            ),
            NodeKind::Map(pairs) => {
                let builtin = pairs
                    .iter()
                    .find_map(|(k, _)| scalar(k).filter(|k| k.starts_with("fn::")));
                match builtin {
                    Some(name) if pairs.len() == 1 => {
                        return self.builtin(node, name, &pairs[0].0, &pairs[0].1, path);
                    }
                    Some(name) => {
                        self.error(
                            node.span,
                            path,
                            format!(
                                "illegal call to builtin function: {name:?} must be the only key within its containing object"
                            ),
                        );
                        self.object(pairs, path)
                    }
                    None => self.object(pairs, path),
                }
            }
        };
        Expr {
            span: node.span,
            path: path.clone(),
            kind,
        }
    }

    fn object(&mut self, pairs: &[(Node, Node)], path: &DocPath) -> ExprKind {
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match &k.kind {
                NodeKind::Scalar { value, .. } if !value.contains("${") => {
                    let child = self.expr(v, &path.key(value));
                    out.push((value.clone(), k.span, child));
                }
                NodeKind::Scalar { value, .. } => self.error(k.span, &path.key(value), "object keys must be strings"),
                _ => self.error(k.span, path, "object keys must be strings"),
            }
        }
        ExprKind::Object(out)
    }

    fn scalar_expr(&mut self, node: &Node, value: &str, plain: bool, tag: Option<&str>, path: &DocPath) -> ExprKind {
        let forced_string = matches!(tag, Some("!!str") | Some("tag:yaml.org,2002:str"));
        if plain
            && !forced_string
            && let Some(k) = resolve_plain(value)
        {
            return k;
        }
        let (mut parts, diags) = parse_interpolation(value, node.span, path, &self.env);
        if !plain {
            // Offsets inside quoted text do not map to columns: accessors point at the whole scalar.
            for p in &mut parts {
                for a in p.access.iter_mut().flatten() {
                    match a {
                        Accessor::Key(_, s) | Accessor::Index(_, s) => *s = node.span,
                    }
                }
            }
        }
        self.diags.extend(diags);
        match parts.as_slice() {
            [] => ExprKind::String(String::new()),
            [Part { text, access: None }] => ExprKind::String(text.clone()),
            [Part { text, access: Some(a) }] if text.is_empty() => ExprKind::Symbol(a.clone()),
            _ => ExprKind::Interpolate(parts),
        }
    }

    fn builtin(&mut self, node: &Node, name: &str, name_node: &Node, arg_node: &Node, path: &DocPath) -> Expr {
        let arg_path = path.key(name);
        let arg = self.expr(arg_node, &arg_path);
        let call = match name {
            "fn::secret" => match &arg.kind {
                ExprKind::String(s) => Call::Plaintext(s.clone()),
                ExprKind::Object(fields)
                    if fields.len() == 1
                        && fields[0].0 == "ciphertext"
                        && matches!(fields[0].2.kind, ExprKind::String(_)) =>
                {
                    let ExprKind::String(ct) = &fields[0].2.kind else {
                        unreachable!()
                    };
                    Call::Ciphertext(ct.clone())
                }
                _ => {
                    self.error(arg.span, &arg_path, "secret values must be string literals");
                    Call::Plaintext(String::new())
                }
            },
            "fn::open" => {
                let (provider, inputs) = self.provider_args(&arg, &arg_path, "fn::open");
                Call::Open { provider, inputs }
            }
            "fn::rotate" => {
                let (provider, inputs) = self.provider_args(&arg, &arg_path, "fn::rotate");
                let state = field(&arg, "state").cloned();
                Call::Rotate {
                    provider,
                    inputs,
                    state,
                }
            }
            _ if name.starts_with("fn::open::") => Call::Open {
                provider: Some(name["fn::open::".len()..].to_owned()),
                inputs: Some(arg.clone()),
            },
            _ if name.starts_with("fn::rotate::") => {
                let inputs = field(&arg, "inputs").cloned();
                if inputs.is_none() {
                    self.error(arg.span, &arg_path, "missing provider inputs ('inputs')");
                }
                Call::Rotate {
                    provider: Some(name["fn::rotate::".len()..].to_owned()),
                    inputs,
                    state: field(&arg, "state").cloned(),
                }
            }
            "fn::join" | "fn::split" => {
                let pair = match &arg.kind {
                    ExprKind::List(items) if items.len() == 2 => Some((items[0].clone(), items[1].clone())),
                    _ => {
                        self.error(
                            arg.span,
                            &arg_path,
                            format!("the argument to {name} must be a two-valued list"),
                        );
                        None
                    }
                };
                if name == "fn::join" {
                    Call::Join(pair)
                } else {
                    Call::Split(pair)
                }
            }
            "fn::concat" => {
                if !matches!(arg.kind, ExprKind::List(_) | ExprKind::Symbol(_) | ExprKind::Builtin(_)) {
                    self.error(
                        arg.span,
                        &arg_path,
                        "the argument to fn::concat must be an array of arrays",
                    );
                }
                Call::Concat(arg.clone())
            }
            "fn::toJSON" => Call::ToJson(arg.clone()),
            "fn::fromJSON" => Call::FromJson(arg.clone()),
            "fn::toBase64" => Call::ToBase64(arg.clone()),
            "fn::fromBase64" => Call::FromBase64(arg.clone()),
            "fn::toString" => Call::ToString(arg.clone()),
            "fn::final" => Call::Final(arg.clone()),
            "fn::validate" => {
                let schema = field(&arg, "schema").cloned();
                let value = field(&arg, "value").cloned();
                if schema.is_none() {
                    self.error(arg.span, &arg_path, "missing schema ('schema')");
                }
                if value.is_none() {
                    self.error(arg.span, &arg_path, "missing value ('value')");
                }
                Call::Validate { schema, value }
            }
            _ => {
                // Not a builtin we know: an ordinary object with one key, as ESC treats it.
                let child = self.expr(arg_node, &path.key(name));
                return Expr {
                    span: node.span,
                    path: path.clone(),
                    kind: ExprKind::Object(vec![(name.to_owned(), name_node.span, child)]),
                };
            }
        };
        Expr {
            span: node.span,
            path: path.clone(),
            kind: ExprKind::Builtin(Arc::new(Builtin {
                name: name.to_owned(),
                name_span: name_node.span,
                arg,
                call,
            })),
        }
    }

    fn provider_args(&mut self, arg: &Expr, arg_path: &DocPath, _name: &str) -> (Option<String>, Option<Expr>) {
        let ExprKind::Object(_) = &arg.kind else {
            self.error(arg.span, arg_path, "the argument must be an object");
            return (None, None);
        };
        let provider = match field(arg, "provider") {
            None => {
                self.error(arg.span, arg_path, "missing provider name ('provider')");
                None
            }
            Some(Expr {
                kind: ExprKind::String(s),
                ..
            }) => Some(s.clone()),
            Some(other) => {
                self.error(other.span, &other.path, "provider name must be a string literal");
                None
            }
        };
        let inputs = field(arg, "inputs").cloned();
        if inputs.is_none() {
            self.error(arg.span, arg_path, "missing provider inputs ('inputs')");
        }
        (provider, inputs)
    }
}

fn field<'e>(obj: &'e Expr, name: &str) -> Option<&'e Expr> {
    match &obj.kind {
        ExprKind::Object(fields) => fields.iter().find(|(k, _, _)| k == name).map(|(_, _, e)| e),
        _ => None,
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// YAML 1.2 core-schema resolution of a plain scalar (as Go's YAML library does it); `None` means a string.
fn resolve_plain(s: &str) -> Option<ExprKind> {
    if is_null(s) {
        return Some(ExprKind::Null);
    }
    match s {
        "true" | "True" | "TRUE" => return Some(ExprKind::Bool(true)),
        "false" | "False" | "FALSE" => return Some(ExprKind::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    let first = s.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    let clean: String = s.chars().filter(|c| *c != '_').collect();
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = if let Some(h) = digits.strip_prefix("0x") {
        Some((h, 16))
    } else if let Some(o) = digits.strip_prefix("0o") {
        Some((o, 8))
    } else {
        digits.strip_prefix("0b").map(|b| (b, 2))
    };
    if let Some((d, r)) = radix {
        let v = i64::from_str_radix(d, r).ok()?;
        return Some(ExprKind::Number(Number::from(if neg { -v } else { v })));
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = clean.parse::<i64>() {
            return Some(ExprKind::Number(Number::from(v)));
        }
        if let Ok(v) = clean.parse::<u64>() {
            return Some(ExprKind::Number(Number::from(v)));
        }
    }
    let looks_float = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float && let Ok(f) = clean.parse::<f64>() {
        return Number::from_f64(f).map(ExprKind::Number);
    }
    None
}

/// Splits a string into text and `${…}` property accesses; `$$` is a literal `$`.
pub fn parse_interpolation(s: &str, span: Span, path: &DocPath, env: &Arc<str>) -> (Vec<Part>, Vec<Diagnostic>) {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut diags = Vec::new();
    let mut text = Vec::<u8>::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') {
            text.push(b'$');
            i += 2;
        } else if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let (next, access) = parse_access(s, i + 2, span, path, env, &mut diags);
            parts.push(Part {
                text: String::from_utf8_lossy(&text).into_owned(),
                access: Some(access),
            });
            text.clear();
            i = next;
        } else {
            text.push(bytes[i]);
            i += 1;
        }
    }
    if !text.is_empty() {
        parts.push(Part {
            text: String::from_utf8_lossy(&text).into_owned(),
            access: None,
        });
    }
    (parts, diags)
}

fn parse_access(
    s: &str,
    mut i: usize,
    span: Span,
    path: &DocPath,
    env: &Arc<str>,
    diags: &mut Vec<Diagnostic>,
) -> (usize, Vec<Accessor>) {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut err =
        |at: usize, len: usize, msg: &str| diags.push(Diagnostic::error(env, span.within(at, len), path, msg));
    let start_at = i;
    let empty = |out: &mut Vec<Accessor>| {
        if out.is_empty() {
            out.push(Accessor::Key(
                String::new(),
                span.within(start_at, (b.len() - start_at).min(1)),
            ));
        }
    };
    let name_end = |from: usize| {
        let mut j = from;
        while j < b.len() && !matches!(b[j], b'.' | b'[' | b'}') {
            j += 1;
        }
        j
    };
    loop {
        if i >= b.len() {
            err(b.len(), 0, "missing closing brace '}' in interpolation");
            empty(&mut out);
            return (b.len(), out);
        }
        match b[i] {
            b'}' => {
                empty(&mut out);
                return (i + 1, out);
            }
            b'[' => {
                let start = i;
                if b.get(i + 1) == Some(&b'"') {
                    let mut key = Vec::new();
                    let mut j = i + 2;
                    let mut closed = false;
                    while j < b.len() {
                        match b[j] {
                            b'"' => {
                                closed = true;
                                j += 1;
                                break;
                            }
                            b'\\' if j + 1 < b.len() => {
                                key.push(b[j + 1]);
                                j += 2;
                            }
                            c => {
                                key.push(c);
                                j += 1;
                            }
                        }
                    }
                    if !closed {
                        err(i + 1, j - (i + 1), "key subscript is missing closing quote '\"'");
                    }
                    if j < b.len() && b[j] == b']' {
                        j += 1;
                    } else {
                        err(start, j - start, "subscript is missing closing bracket ']'");
                    }
                    out.push(Accessor::Key(
                        String::from_utf8_lossy(&key).into_owned(),
                        span.within(start, j - start),
                    ));
                    i = j;
                } else {
                    let mut j = i + 1;
                    while j < b.len() && !matches!(b[j], b']' | b'}') {
                        j += 1;
                    }
                    let digits = &s[i + 1..j];
                    let digits_end = j;
                    let index = match digits.parse::<i64>() {
                        Ok(n) => n,
                        Err(_) => {
                            err(
                                i + 1,
                                digits.len(),
                                "numeric subscript must be a positive base-10 integer",
                            );
                            0
                        }
                    };
                    if j < b.len() && b[j] == b']' {
                        j += 1;
                    } else {
                        err(start, j - start, "subscript is missing closing bracket ']'");
                    }
                    if out.is_empty() {
                        err(
                            start,
                            digits_end - start,
                            "the first accessor must be a property name or key subscript, not a numeric subscript",
                        );
                    }
                    out.push(Accessor::Index(index, span.within(start, j - start)));
                    i = j;
                }
            }
            b'.' => {
                let start = i;
                let end = name_end(i + 1);
                if end == i + 1 {
                    err(start, 1, "property name must not be empty");
                } else {
                    out.push(Accessor::Key(s[i + 1..end].to_owned(), span.within(start, end - start)));
                }
                i = end;
            }
            _ => {
                let end = name_end(i);
                out.push(Accessor::Key(s[i..end].to_owned(), span.within(i, end - i)));
                i = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (Vec<Part>, Vec<String>) {
        let (p, d) = parse_interpolation(s, Span::default(), &DocPath::default(), &Arc::from("t"));
        (p, d.into_iter().map(|d| d.summary).collect())
    }

    #[test]
    fn ciphertexts_are_found_wherever_they_sit() {
        let src = "values:\n  a:\n    fn::secret: {ciphertext: one}\n  b:\n    - x: {fn::secret: {ciphertext: two}}\n  c:\n    fn::secret: plain\n  d:\n    fn::toJSON:\n      fn::secret:\n        ciphertext: three\n";
        let loaded = load("t", src);
        assert!(loaded.diags.is_empty(), "{:?}", loaded.diags);
        assert_eq!(loaded.decl.unwrap().ciphertexts(), vec!["one", "two", "three"]);
    }

    fn keys(d: &Decl) -> Vec<String> {
        match d.values.as_ref().map(|v| &v.kind) {
            Some(ExprKind::Object(f)) => f.iter().map(|(k, _, _)| k.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_repeated_top_level_key_warns_and_the_last_one_wins() {
        let loaded = load("t", "values:\n  foo: 1\nvalues:\n  bar: 2\n");
        let summaries: Vec<_> = loaded.diags.iter().map(|d| (d.severity, d.summary.as_str())).collect();
        assert_eq!(summaries, [(Severity::Warning, "duplicate key \"values\"")]);
        assert_eq!(loaded.diags[0].subject.as_ref().map(|(_, s)| s.begin.line), Some(3));
        assert_eq!(keys(loaded.decl.as_ref().unwrap()), ["bar"]);
        // Last wins for imports too, and a last `values:` with nothing clears the earlier one.
        let loaded = load("t", "imports: [a]\nimports: [b, c]\nvalues: {x: 1}\nvalues:\n");
        let d = loaded.decl.unwrap();
        assert_eq!(
            d.imports.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert!(d.values.is_none());
        // Nested duplicates are left to evaluation (an error there, the first one kept).
        let loaded = load("t", "values:\n  a: 1\n  a: 2\n");
        assert!(loaded.diags.is_empty());
    }

    #[test]
    fn imports_must_be_a_list_even_when_empty() {
        for src in [
            "imports:\nvalues: {a: 1}\n",
            "imports: null\n",
            "imports: ~\n",
            "imports: {}\n",
            "imports: x\n",
        ] {
            let loaded = load("t", src);
            let errors: Vec<_> = loaded
                .diags
                .iter()
                .filter(|d| d.is_error())
                .map(|d| (d.summary.as_str(), d.path.as_str()))
                .collect();
            assert_eq!(errors, [("imports must be a list", "imports")], "{src:?}");
        }
        assert!(load("t", "imports: []\n").diags.is_empty());
    }

    #[test]
    fn interpolation_parses_accessors_and_escapes() {
        let (p, d) = parts(r#"a $${x} ${b.c[0]["d\"e"]} z"#);
        assert!(d.is_empty());
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].text, "a ${x} ");
        let acc = p[0].access.as_ref().unwrap();
        assert!(matches!(&acc[0], Accessor::Key(k, _) if k == "b"));
        assert!(matches!(&acc[2], Accessor::Index(0, _)));
        assert!(matches!(&acc[3], Accessor::Key(k, _) if k == "d\"e"));
        assert_eq!(p[1].text, " z");
    }

    #[test]
    fn malformed_interpolations_are_diagnosed() {
        assert_eq!(parts("${").1, ["missing closing brace '}' in interpolation"]);
        assert_eq!(
            parts("${a[x]}").1,
            ["numeric subscript must be a positive base-10 integer"]
        );
        assert_eq!(parts("${a.}").1, ["property name must not be empty"]);
    }

    /// Each call keeps its argument and the parts it uses: nested calls share them instead of copying, so a nest
    /// of a hundred calls (a few hundred bytes) loads at once in a few hundred expressions.
    #[test]
    fn nested_calls_load_in_linear_size() {
        fn count(e: &Expr) -> usize {
            1 + match &e.kind {
                ExprKind::List(items) => items.iter().map(count).sum(),
                ExprKind::Object(fields) => fields.iter().map(|(_, _, v)| count(v)).sum(),
                ExprKind::Builtin(b) => count(&b.arg),
                _ => 0,
            }
        }
        for call in ["fn::toJSON", "fn::final", "fn::open::p", "fn::toString"] {
            let src = format!(
                "values:\n  a: {}1{}\n",
                format!("{{{call}: ").repeat(100),
                "}".repeat(100)
            );
            let loaded = load("t", &src);
            assert!(loaded.diags.iter().all(|d| !d.is_error()), "{:?}", loaded.diags);
            let values = loaded.decl.unwrap().values.unwrap();
            assert!(count(&values) < 300, "{call}");
        }
        let join = format!(
            "values:\n  a: {}[x, [y]]{}\n",
            "{fn::join: [s, ".repeat(60),
            "]}".repeat(60)
        );
        let loaded = load("t", &join);
        assert!(loaded.decl.is_some());
    }

    #[test]
    fn plain_scalars_resolve_like_yaml() {
        assert_eq!(resolve_plain("42"), Some(ExprKind::Number(42.into())));
        assert_eq!(resolve_plain("true"), Some(ExprKind::Bool(true)));
        assert_eq!(resolve_plain("~"), Some(ExprKind::Null));
        assert!(matches!(resolve_plain("3.14"), Some(ExprKind::Number(_))));
        assert_eq!(resolve_plain("1.2.3"), None);
        assert_eq!(resolve_plain("yes"), None);
    }
}
