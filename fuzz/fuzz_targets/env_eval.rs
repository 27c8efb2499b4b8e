//! Load, check and evaluate arbitrary bytes as an environment definition (with one importable environment that is
//! the same bytes, to reach the import paths): diagnostics are fine, panics, hangs and unbounded memory are not.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sesame::core::env::eval::{
    self, Answer, DecryptError, DecryptRequest, Effects, Mode, Options, ProviderCall, ProviderSchema, RotatorSchema,
};
use sesame::core::env::{Value, load};

struct Same(Arc<str>);

impl Effects for Same {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, String>> {
        Answer::Ready(if name.len() % 2 == 0 { Ok(self.0.clone()) } else { Err("missing".into()) })
    }
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        Answer::Ready(if req.ciphertext.len() % 2 == 0 {
            Ok(req.ciphertext.chars().rev().collect())
        } else {
            Err(DecryptError::Invalid("odd".into()))
        })
    }
    fn provider(&self, _name: &str) -> Option<ProviderSchema> {
        Some(ProviderSchema { inputs: serde_json::Value::Bool(true), outputs: serde_json::Value::Bool(true) })
    }
    fn rotator(&self, _name: &str) -> Option<RotatorSchema> {
        let t = serde_json::Value::Bool(true);
        Some(RotatorSchema { inputs: t.clone(), state: t.clone(), outputs: t })
    }
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, String>> {
        Answer::Ready(Ok(call.inputs.clone()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = load("fuzz", text);
    let effects = Same(Arc::from(text));
    for mode in [Mode::Check { show_secrets: false }, Mode::Eval, Mode::Rotate { paths: None }] {
        let out = eval::evaluate(&loaded, &effects, &Options { mode, context: BTreeMap::new() });
        if let Some(props) = &out.properties {
            for v in props.values() {
                let _ = v.to_json(true);
                let _ = v.to_text();
            }
        }
    }
    let _ = sesame::core::env::crypt::seal_plaintexts(text, &mut |p| Ok::<_, ()>(p.to_uppercase()));
});
