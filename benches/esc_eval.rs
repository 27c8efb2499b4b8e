//! Evaluation speed of the ESC language: the upstream suite's `omnibus` case (every builtin, an import, a provider)
//! and its `bench` case (26 imports each with a ciphertext, `environmentVariables`, `pulumiConfig`, and a provider
//! call), with the harness's in-memory fakes (no provider delay). Load+eval and eval alone. And the documents
//! built to exhaust the evaluator — a 5,000-link chain of references, 30 levels of doubling references, 3,000 levels
//! of values nested by reference — which must answer (with diagnostics) in bounded time.
//!
//! Run: `cargo bench --bench esc_eval` (needs `../shared/conformance/esc-eval`, or SESAME_ESC_CONFORMANCE).

#[path = "../tests/esc/fakes.rs"]
#[allow(dead_code)]
mod fakes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sesame::core::env::eval::{
    self, Answer, DecryptError, DecryptRequest, EffectError, Effects, Mode, Options, ProviderCall, ProviderSchema,
    RotatorSchema,
};
use sesame::core::env::{Value, load};

fn suite() -> Option<PathBuf> {
    let dir = std::env::var_os("SESAME_ESC_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/esc-eval"));
    dir.join("eval").exists().then_some(dir)
}

/// The harness fakes with every importable document read into memory first, so that the loop measures evaluation.
struct InMemory {
    fakes: fakes::Fakes,
    docs: HashMap<String, Arc<str>>,
}

impl InMemory {
    fn new(dir: &Path, case: &str) -> InMemory {
        let mut docs = HashMap::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".yaml") {
                docs.insert(stem.to_owned(), Arc::from(std::fs::read_to_string(e.path()).unwrap()));
            }
        }
        InMemory {
            fakes: fakes::Fakes::new(dir, case),
            docs,
        }
    }
}

impl Effects for InMemory {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        match self.docs.get(name) {
            Some(d) => Answer::Ready(Ok(d.clone())),
            None => self.fakes.load(name),
        }
    }
    fn decrypt(&self, req: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        self.fakes.decrypt(req)
    }
    fn provider(&self, name: &str) -> Option<ProviderSchema> {
        self.fakes.provider(name)
    }
    fn rotator(&self, name: &str) -> Option<RotatorSchema> {
        self.fakes.rotator(name)
    }
    fn call(&self, call: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        self.fakes.call(call)
    }
}

/// Fakes that load nothing.
struct Nothing;

impl Effects for Nothing {
    fn load(&self, name: &str) -> Answer<Result<Arc<str>, EffectError>> {
        Answer::Ready(Err(EffectError::NotFound(name.to_owned())))
    }
    fn decrypt(&self, _: &DecryptRequest) -> Answer<Result<String, DecryptError>> {
        Answer::Ready(Err(DecryptError::Failed("no keys".into())))
    }
    fn provider(&self, _: &str) -> Option<ProviderSchema> {
        None
    }
    fn rotator(&self, _: &str) -> Option<RotatorSchema> {
        None
    }
    fn call(&self, _: &ProviderCall) -> Answer<Result<Value, EffectError>> {
        Answer::Ready(Err(EffectError::NoProviders))
    }
}

fn adversarial(c: &mut Criterion) {
    let opts = Options {
        mode: Mode::Check { show_secrets: false },
        context: BTreeMap::new(),
    };
    let mut chain = String::from("values:\n");
    for i in 0..5_000 {
        chain.push_str(&format!("  a{i}: ${{a{}}}\n", i + 1));
    }
    chain.push_str("  a5000: end\n");
    let mut doubling = format!("values:\n  l0: {}\n", "x".repeat(64));
    for i in 1..=30 {
        doubling.push_str(&format!("  l{i}: [\"${{l{p}}}\", \"${{l{p}}}\"]\n", p = i - 1));
    }
    let mut walked = doubling.clone();
    walked.push_str("  w: {fn::toJSON: \"${l30}\"}\n");
    let mut nested = String::from("values:\n  a0: 1\n");
    for i in 1..3_000 {
        nested.push_str(&format!("  a{i}: [\"${{a{}}}\"]\n", i - 1));
    }
    for (name, src) in [
        ("chain-5000", chain),
        ("doubling-30", doubling),
        ("doubling-30-toJSON", walked),
        ("nested-3000", nested),
    ] {
        let out = eval::evaluate(&load(name, &src), &Nothing, &opts);
        assert!(out.has_errors(), "{name}: expected a diagnostic");
        eprintln!(
            "esc/bounds/{name}: {} values of work, {} bytes of text, {} diagnostics",
            out.work,
            out.text,
            out.diags.len()
        );
        c.bench_function(&format!("esc/bounds/{name}"), |b| {
            b.iter(|| eval::evaluate(&load(name, &src), &Nothing, &opts))
        });
    }
}

fn bench(c: &mut Criterion) {
    adversarial(c);
    let Some(root) = suite() else {
        eprintln!("esc_eval bench: skipped: the conformance suite is not present");
        return;
    };
    let opts = Options {
        mode: Mode::Eval,
        context: BTreeMap::from([(
            "pulumi".to_string(),
            Value::from_json(&serde_json::json!({"user": {"id": "USER_123"}})),
        )]),
    };
    for case in ["omnibus", "bench"] {
        let dir = root.join("eval").join(case);
        let src = std::fs::read_to_string(dir.join("env.yaml")).unwrap();
        let fakes = InMemory::new(&dir, case);
        let loaded = load(case, &src);
        let check = eval::evaluate(&loaded, &fakes, &opts);
        assert!(check.diags.is_empty(), "{case}: {:?}", check.diags);
        c.bench_function(&format!("esc/{case}/load+eval"), |b| {
            b.iter(|| {
                let loaded = load(case, &src);
                eval::evaluate(&loaded, &fakes, &opts)
            })
        });
        c.bench_function(&format!("esc/{case}/eval"), |b| {
            b.iter(|| eval::evaluate(&loaded, &fakes, &opts))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
