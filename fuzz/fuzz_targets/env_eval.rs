//! Load, check and evaluate arbitrary bytes as an environment definition, with importable environments made from
//! the same bytes (`e0`, `e1`, … or `p/e0`, …: the text with `{this}` and `{next}` replaced by the environment's number and the
//! next one, so that one input can describe a long chain of imports referring to each other; other names of even
//! length load the input as it is). Diagnostics are fine; what must not happen: a panic, a stack overflow (each
//! evaluation runs on a thread with a 2 MiB stack, the smallest a server thread has), more work than the evaluation
//! budget, a result that renders larger than its limit or nests deeper than values may, or an input that takes
//! seconds. Run with `-rss_limit_mb=1024` so that growing memory is a crash too.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sesame::core::env::eval::{
    self, Answer, DecryptError, DecryptRequest, EffectError, Effects, Mode, Options, ProviderCall, ProviderSchema, RotatorSchema,
};
use sesame::core::env::{Value, load};

/// The longest any one input may take (generous: fuzzing builds are instrumented).
const MAX_TIME: Duration = Duration::from_secs(5);

fn numbered(text: &str, n: usize) -> String {
    text.replace("{this}", &n.to_string()).replace("{next}", &(n + 1).to_string())
}

struct Same(Arc<str>);

impl Effects for Same {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        let base = name.strip_prefix("p/").unwrap_or(name);
        if let Some(n) = base.strip_prefix('e').and_then(|n| n.parse::<usize>().ok()) {
            return Answer::Ready(Ok(Arc::from(numbered(&self.0, n))));
        }
        Answer::Ready(if name.len() % 2 == 0 { Ok(self.0.clone()) } else { Err(EffectError::NotFound(name.to_owned())) })
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
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        // The inputs back, secret: the evaluator walks them to mark them (a shared, doubled input included).
        let mut out = call.inputs.clone();
        out.secret = call.provider.len() % 2 == 0;
        Answer::Ready(Ok(out))
    }
}

fn check(text: &str) {
    let started = Instant::now();
    let root = numbered(text, 0);
    let loaded = load("fuzz", &root);
    let effects = Same(Arc::from(text));
    for mode in [Mode::Check { show_secrets: false }, Mode::Eval, Mode::Rotate { paths: None }] {
        let out = eval::evaluate(&loaded, &effects, &Options { mode, context: BTreeMap::new() });
        assert!(out.work <= eval::MAX_VALUES, "work {}", out.work);
        assert!(out.text <= eval::MAX_TEXT_BYTES, "text {}", out.text);
        assert!(out.diags.len() <= eval::MAX_DIAGNOSTICS + 1);
        let mut rendered = 0u64;
        for (k, v) in out.properties.iter().flatten() {
            let f = v.facts();
            assert!(f.depth <= eval::MAX_VALUE_DEPTH + 2, "depth {}", f.depth);
            rendered += f.nodes * eval::RENDERED_BYTES_PER_VALUE + f.bytes + k.len() as u64;
            let _ = v.to_json(true);
            let _ = v.to_text_within(eval::MAX_VALUE_BYTES);
            let _ = v.to_json_text_within(eval::MAX_VALUE_BYTES);
        }
        assert!(rendered <= eval::MAX_RENDERED_BYTES, "rendered {rendered}");
    }
    let _ = sesame::core::env::crypt::seal_plaintexts(text, &mut |p| Ok::<_, ()>(p.to_uppercase()));
    assert!(started.elapsed() < MAX_TIME, "took {:?}", started.elapsed());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.to_owned();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(&text))
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
});
