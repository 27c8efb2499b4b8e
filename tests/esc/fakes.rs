//! Test-only effects for the conformance suite, as HARNESS.md §1.2–1.5 describe them: a loader rooted at the case
//! folder, the `escx` envelope with the rot128 "cipher", the providers `test`, `error`, `secret-wrapper`, `schema`
//! and `bench`, and the rotators `swap` and `echo`. None of this is Sesame's real crypto or a real provider.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};
use sesame::core::env::eval::{
    self, Answer, CallKind, DecryptError, DecryptRequest, EffectError, Effects, Evaluated, Need, Options, ProviderCall,
    ProviderSchema, RotatorSchema,
};
use sesame::core::env::value::Repr;
use sesame::core::env::{Loaded, Value};

pub const SCHEMA_PROVIDER: &str = r##"{"$defs":{"defRecord":{"properties":{"baz":{"type":"string","const":"qux"}},"type":"object","required":["baz"]}},
 "properties":{
  "always":true,
  "anyOf":{"anyOf":[{"type":"string"},{"type":"number"}],"type":""},
  "array":{"items":true,"type":"array"},
  "boolean":{"type":"boolean"},
  "const-array":{"type":"array","const":["hello",42]},
  "const-object":{"type":"object","const":{"hello":"world"}},
  "dependentReq":{"properties":{"bar":{"type":"number"},"foo":{"type":"string"}},"type":"object","dependentRequired":{"foo":["bar"]}},
  "double":{"prefixItems":[{"type":"string"},{"type":"number"}],"items":false,"type":"array"},
  "enum":{"type":"string","enum":["foo","bar"]},
  "exclusiveMaximum":{"type":"number","exclusiveMaximum":1},
  "exclusiveMinimum":{"type":"number","exclusiveMinimum":1},
  "false":{"type":"boolean","const":false},
  "hello":{"type":"string","const":"hello"},
  "map":{"additionalProperties":true,"type":"object"},
  "maxItems":{"type":"array","maxItems":2},
  "maxLength":{"type":"string","maxLength":1},
  "maxProperties":{"type":"object","maxProperties":1},
  "maximum":{"type":"number","maximum":1},
  "minItems":{"type":"array","minItems":3},
  "minLength":{"type":"string","minLength":1},
  "minProperties":{"type":"object","minProperties":1},
  "minimum":{"type":"number","minimum":1},
  "multiple":{"type":"number","multipleOf":2},
  "never":false,
  "null":{"type":"null"},
  "number":{"type":"number"},
  "oneOf":{"oneOf":[{"type":"string"},{"type":"number"}],"type":""},
  "pattern":{"type":"string","pattern":"^foo[0-9]+$"},
  "pi":{"type":"number","const":3.14},
  "record":{"properties":{"foo":{"type":"string"}},"type":"object","required":["foo"]},
  "ref":{"$ref":"#/$defs/defRecord","type":""},
  "string":{"type":"string"},
  "triple":{"prefixItems":[{"type":"string"},{"type":"number"},{"type":"boolean"}],"items":false,"type":"array"},
  "true":{"type":"boolean","const":true},
  "tuple":{"prefixItems":[{"type":"string","const":"hello"},{"type":"string","const":"world"}],"items":false,"type":"array"}},
 "type":"object"}"##;

pub struct Fakes {
    dir: PathBuf,
    case: String,
}

impl Fakes {
    pub fn new(dir: &Path, case: &str) -> Fakes {
        Fakes {
            dir: dir.to_path_buf(),
            case: case.to_owned(),
        }
    }
}

/// rot128: adds 128 to every byte; its own inverse.
pub fn rot128(b: &[u8]) -> Vec<u8> {
    b.iter().map(|x| x.wrapping_add(128)).collect()
}

/// The suite's `escx` envelope around rot128.
pub fn escx_seal(plaintext: &str) -> String {
    let mut b = b"escx".to_vec();
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend(rot128(plaintext.as_bytes()));
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    STANDARD.encode(b)
}

pub fn escx_open(ciphertext: &str) -> Result<String, DecryptError> {
    let b = STANDARD
        .decode(ciphertext)
        .map_err(|e| DecryptError::Invalid(e.to_string()))?;
    if b.len() < 16 {
        return Err(DecryptError::Invalid("EOF".into()));
    }
    if &b[..4] != b"escx" {
        return Err(DecryptError::Invalid("invalid header".into()));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(DecryptError::Invalid("invalid checksum".into()));
    }
    if body[4..8] != 1u32.to_be_bytes() {
        return Err(DecryptError::Invalid("unsupported version".into()));
    }
    String::from_utf8(rot128(&body[8..])).map_err(|_| DecryptError::Failed("not UTF-8".into()))
}

fn field<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
    match &v.repr {
        Repr::Object(m) => m.get(k),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v.map(|v| (&v.repr, v.unknown)) {
        Some((Repr::String(s), false)) => Some(&**s),
        _ => None,
    }
}

impl Effects for Fakes {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        let path = self.dir.join(format!("{name}.yaml"));
        Answer::Ready(std::fs::read_to_string(&path).map(Arc::from).map_err(|_| {
            EffectError::Failed(format!(
                "open testdata/eval/{}/{name}.yaml: no such file or directory",
                self.case
            ))
        }))
    }

    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        Answer::Ready(escx_open(&req.ciphertext))
    }

    fn provider(&self, name: &str) -> Option<ProviderSchema> {
        let any = Json::Bool(true);
        match name {
            "test" | "secret-wrapper" | "bench" => Some(ProviderSchema {
                inputs: any.clone(),
                outputs: any,
            }),
            "error" => Some(ProviderSchema {
                inputs: json!({"type":"object","properties":{"why":{"type":"string"}},"required":["why"]}),
                outputs: any,
            }),
            "schema" => {
                let s: Json = serde_json::from_str(SCHEMA_PROVIDER).unwrap();
                Some(ProviderSchema {
                    inputs: s.clone(),
                    outputs: s,
                })
            }
            _ => None,
        }
    }

    fn rotator(&self, name: &str) -> Option<RotatorSchema> {
        match name {
            "swap" => {
                let ab = json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["a","b"]});
                Some(RotatorSchema {
                    inputs: Json::Bool(true),
                    state: ab.clone(),
                    outputs: ab,
                })
            }
            "echo" => {
                let st = json!({"type":"object","properties":{"current":{"type":"string"},"previous":{"type":"string"}},"required":["current"]});
                Some(RotatorSchema {
                    inputs: json!({"type":"object","properties":{"next":{"type":"string"}},"required":["next"],"rotateOnly":["next"]}),
                    state: st.clone(),
                    outputs: st,
                })
            }
            _ => None,
        }
    }

    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        let inputs = &call.inputs;
        let state = call.state.clone().unwrap_or_else(|| Value::object(BTreeMap::new()));
        let r = match (call.kind, call.provider.as_str()) {
            (CallKind::Open, "test" | "schema") => Ok(inputs.clone()),
            (CallKind::Open, "secret-wrapper") => Ok(Value {
                secret: true,
                ..inputs.clone()
            }),
            (CallKind::Open, "error") => Err(EffectError::Failed(
                text(field(inputs, "why")).unwrap_or_default().to_owned(),
            )),
            (CallKind::Open, "bench") => Ok(Value::string("0s")),
            (CallKind::RotatorOpen, "swap") => Ok(state),
            (CallKind::Rotate, "swap") => {
                let mut m = BTreeMap::new();
                m.insert("a".to_string(), field(&state, "b").cloned().unwrap_or_else(Value::null));
                m.insert("b".to_string(), field(&state, "a").cloned().unwrap_or_else(Value::null));
                Ok(Value::object(m))
            }
            (CallKind::RotatorOpen, "echo") => {
                let next = field(inputs, "next");
                match next {
                    Some(n) if !n.unknown && text(Some(n)) != text(field(&state, "current")) => Err(
                        EffectError::Failed("oh no! inputs were evaluated outside of rotation".into()),
                    ),
                    _ => Ok(state),
                }
            }
            (CallKind::Rotate, "echo") => match field(inputs, "next") {
                Some(n) if !n.unknown => {
                    let mut m = BTreeMap::new();
                    m.insert("current".to_string(), n.clone());
                    m.insert(
                        "previous".to_string(),
                        field(&state, "current").cloned().unwrap_or_else(Value::null),
                    );
                    Ok(Value::object(m))
                }
                _ => Err(EffectError::Failed(
                    "oh no! rotateOnly inputs were not evaluated during rotation".into(),
                )),
            },
            (_, p) => Err(EffectError::Failed(format!("unknown provider {p:?}"))),
        };
        Answer::Ready(r)
    }
}

/// Effects that answer `Pending` until the driver has performed the request, as the server's edge does.
struct Deferred<'f> {
    inner: &'f Fakes,
    loads: Mutex<BTreeMap<String, Result<Arc<str>, EffectError>>>,
    decrypts: Mutex<Vec<(DecryptRequest, Result<String, DecryptError>)>>,
    calls: Mutex<Vec<(ProviderCall, Result<Value, EffectError>)>>,
}

impl Effects for Deferred<'_> {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        match self.loads.lock().unwrap().get(name) {
            Some(r) => Answer::Ready(r.clone()),
            None => Answer::Pending,
        }
    }
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        match self.decrypts.lock().unwrap().iter().find(|(r, _)| r == req) {
            Some((_, a)) => Answer::Ready(a.clone()),
            None => Answer::Pending,
        }
    }
    fn provider(&self, name: &str) -> Option<ProviderSchema> {
        self.inner.provider(name)
    }
    fn rotator(&self, name: &str) -> Option<RotatorSchema> {
        self.inner.rotator(name)
    }
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        match self.calls.lock().unwrap().iter().find(|(c, _)| c == call) {
            Some((_, a)) => Answer::Ready(a.clone()),
            None => Answer::Pending,
        }
    }
}

/// Evaluates in rounds: every pending request is performed between rounds, until none is left.
pub fn drive_deferred(loaded: &Loaded, fakes: &Fakes, opts: &Options) -> Evaluated {
    let d = Deferred {
        inner: fakes,
        loads: Mutex::new(BTreeMap::new()),
        decrypts: Mutex::new(Vec::new()),
        calls: Mutex::new(Vec::new()),
    };
    for _round in 0..64 {
        let e = eval::evaluate(loaded, &d, opts);
        if e.pending.is_empty() {
            return e;
        }
        for need in e.pending {
            match need {
                Need::Load(name) => {
                    let Answer::Ready(r) = fakes.load(&name) else {
                        unreachable!()
                    };
                    d.loads.lock().unwrap().insert(name, r);
                }
                Need::Decrypt(req) => {
                    let Answer::Ready(r) = fakes.decrypt(&req) else {
                        unreachable!()
                    };
                    d.decrypts.lock().unwrap().push((req, r));
                }
                Need::Call(call) => {
                    let Answer::Ready(r) = fakes.call(&call) else {
                        unreachable!()
                    };
                    d.calls.lock().unwrap().push((*call, r));
                }
            }
        }
    }
    panic!("the deferred driver did not converge in 64 rounds");
}

/// The `crypt/` rewrite fixtures: sealing plaintext `fn::secret`s with the escx envelope and back.
pub fn crypt_cases(dir: &Path) -> (usize, Vec<String>) {
    let mut failed = Vec::new();
    let mut n = 0;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".plaintext.yaml")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    for name in names {
        n += 1;
        let plain = std::fs::read_to_string(dir.join(format!("{name}.plaintext.yaml"))).unwrap();
        let cipher = std::fs::read_to_string(dir.join(format!("{name}.ciphertext.yaml"))).unwrap();
        let sealed = sesame::core::env::crypt::seal_plaintexts(&plain, &mut |p| Ok::<_, String>(escx_seal(p)));
        let opened =
            sesame::core::env::crypt::open_ciphertexts(&cipher, &mut |c| escx_open(c).map_err(|e| format!("{e:?}")));
        let same = |a: &str, b: &str| -> bool {
            match (yaml_tree(a), yaml_tree(b)) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            }
        };
        let ok = matches!(&sealed, Ok(s) if same(s, &cipher)) && matches!(&opened, Ok(o) if same(o, &plain));
        if !ok {
            if std::env::var_os("ESC_VERBOSE").is_some() {
                eprintln!("  crypt/{name}: sealed {sealed:?}\n  opened {opened:?}");
            }
            failed.push(name);
        }
    }
    (n, failed)
}

/// A YAML document as a comparable tree (values only: no positions, no comments).
fn yaml_tree(src: &str) -> Option<Json> {
    let loaded = sesame::core::env::syntax::parse(src).ok()?;
    fn conv(n: &sesame::core::env::syntax::Node) -> Json {
        use sesame::core::env::syntax::NodeKind;
        match &n.kind {
            NodeKind::Scalar { value, plain, .. } => json!([value, plain]),
            NodeKind::Seq(items) => Json::Array(items.iter().map(conv).collect()),
            NodeKind::Map(pairs) => {
                Json::Array(pairs.iter().map(|(k, v)| json!({"k": conv(k), "v": conv(v)})).collect())
            }
        }
    }
    Some(loaded.as_ref().map(conv).unwrap_or(Json::Null))
}
