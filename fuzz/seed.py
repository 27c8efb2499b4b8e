"""Writes fuzzing seeds: the envelopes of ../envelope-spec/vectors/*.json into corpus/envelope_open/, and into
corpus/env_eval/ the conformance suite's documents (when ../../shared/conformance/esc-eval is there) and documents
built to exhaust the evaluator: chains of references, doubling references, values nested by reference, wide fan-out,
nested calls, deep nesting the YAML parser follows, and long import chains with references across them (the
env_eval target loads `eN` as the input with `{this}` = N and `{next}` = N + 1)."""
import base64, glob, json, os, pathlib

here = pathlib.Path(__file__).parent
out = here / "corpus" / "envelope_open"
out.mkdir(parents=True, exist_ok=True)
for path in glob.glob(str(here.parent / "envelope-spec" / "vectors" / "*.json")):
    for i, v in enumerate(json.load(open(path))["vectors"]):
        if v.get("envelope"):
            (out / f"{pathlib.Path(path).stem}-{i}").write_bytes(bytes.fromhex(v["envelope"]))
        if v.get("text"):
            (out / f"{pathlib.Path(path).stem}-{i}-text").write_bytes(v["text"].encode())
print("seeded", len(list(out.iterdir())), "envelope files")


def lines(name_value_pairs):
    return "values:\n" + "".join(f"  {k}: {v}\n" for k, v in name_value_pairs)


def adversarial():
    docs = {}
    # Chains of references, forwards (the evaluator recurses along them) and backwards.
    for n in (500, 5000):
        docs[f"chain-forward-{n}"] = lines([(f"a{i}", "${a%d}" % (i + 1)) for i in range(n)] + [(f"a{n}", "end")])
        docs[f"chain-backward-{n}"] = lines([("a0", "x")] + [(f"a{i}", "${a%d}" % (i - 1)) for i in range(1, n)])
    for link in ('{fn::toJSON: "${a%d}"}', '{fn::final: "${a%d}"}', '["${a%d}"]', '{k: "${a%d}"}', 'x${a%d}',
                 '{fn::fromJSON: {fn::toJSON: "${a%d}"}}', '{fn::validate: {schema: true, value: "${a%d}"}}'):
        tag = "".join(c for c in link if c.isalnum())[:16]
        docs[f"chain-{tag}"] = lines([(f"a{i}", link % (i + 1)) for i in range(1000)] + [("a1000", "{fn::secret: s}")])
    # Doubling references, through lists, objects, strings and builtins, and walks over the result.
    x = "x" * 64
    for tag, item in (("list", '["${l%d}", "${l%d}"]'), ("object", '{a: "${l%d}", b: "${l%d}"}'),
                      ("string", '"${l%d}${l%d}"'), ("concat", '{fn::concat: [["${l%d}"], ["${l%d}"]]}')):
        body = [("l0", x)] + [(f"l{i}", item % (i - 1, i - 1)) for i in range(1, 31)]
        docs[f"doubling-{tag}"] = lines(body)
        for walk in ('{fn::toJSON: "${l30}"}', '{fn::toString: "${l30}"}', '"${l30}"',
                     '{fn::validate: {schema: {type: array, items: {type: array}}, value: "${l30}"}}',
                     '{fn::validate: {schema: "${l30}", value: 1}}', '{fn::open::p: {k: "${l30}"}}'):
            wtag = "".join(c for c in walk if c.isalnum())[:12]
            docs[f"doubling-{tag}-{wtag}"] = lines(body + [("w", walk)])
    # Values nested by reference.
    docs["nested-by-reference"] = lines([("a0", "1")] + [(f"a{i}", '["${a%d}"]' % (i - 1)) for i in range(1, 3000)])
    # Wide fan-out: many references to one large value, many interpolations of it.
    big = "y" * 20000
    docs["fan-out"] = lines([("s", big)] + [(f"r{i}", "${s}") for i in range(2000)]
                            + [(f"x{i}", '"${s}${s}"') for i in range(500)])
    # Nested calls, nested quoting, deep block nesting the parser follows level by level.
    docs["nested-calls"] = "values:\n  a: " + "{fn::toJSON: " * 120 + "1" + "}" * 120 + "\n"
    docs["nested-quoting"] = "values:\n  a: {fn::toString: " + "[" * 100 + '"\\""' + "]" * 100 + "}\n"
    docs["block-sequences"] = "values:\n  a: " + "- " * 20000 + "x\n"
    docs["block-mappings"] = "values:\n" + "".join(" " * (i + 2) + f"k{i}:\n" for i in range(300))
    # Long import chains with references across them (`{this}`/`{next}` are numbered per environment).
    docs["import-chain"] = ('imports: [e{next}]\nvalues:\n  v{this}: ["${v{next}}", '
                            '"${environments.p.e{next}.v{next}}"]\n  w{this}: ${w{next}}\n')
    docs["environments-chain"] = 'values:\n  x: ["${environments.p.e{next}.x}"]\n'
    docs["merge-doubling"] = ('imports: [e{next}]\n' + lines([("l0", x)] + [(f"l{i}", '{a: "${l%d}", b: "${l%d}"}'
                                                                              % (i - 1, i - 1)) for i in range(1, 41)]))
    return docs


out = here / "corpus" / "env_eval"
out.mkdir(parents=True, exist_ok=True)
suite = here.parent.parent / "shared" / "conformance" / "esc-eval" / "eval"
for d in sorted(suite.glob("*/")) if suite.exists() else []:
    if (d / "env.yaml").exists():
        (out / f"{d.name}.yaml").write_bytes((d / "env.yaml").read_bytes())
for name, text in adversarial().items():
    (out / f"{name}.yaml").write_text(text)
print("seeded", len(list(out.iterdir())), "env_eval files")


# corpus/jwt_verify: tokens of the shapes the verifier must refuse — the right issuer, audience and kid with
# signatures no key here made, alg none/HS256, unknown kid, nested and odd claims — so the fuzzer starts past the
# base64 and JSON layers.
def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(header, claims, sig=b"\0" * 256):
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(sig)])


out = here / "corpus" / "jwt_verify"
out.mkdir(parents=True, exist_ok=True)
claims = {"iss": "https://token.actions.githubusercontent.com", "aud": "urn:pulumi:org:acme",
          "sub": "repo:acme/app:ref:refs/heads/main", "iat": 1_699_999_000, "nbf": 1_699_999_000,
          "exp": 1_700_000_500, "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "app"}}}
seeds = {
    "rs256": jwt({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, claims),
    "es256": jwt({"alg": "ES256", "kid": "ec-1"}, claims, b"\1" * 64),
    "none": jwt({"alg": "none"}, claims, b""),
    "hs256": jwt({"alg": "HS256", "kid": "rsa-1"}, claims, b"\2" * 32),
    "unknown-kid": jwt({"alg": "RS256", "kid": "zzz"}, claims),
    "no-kid": jwt({"alg": "RS256"}, claims),
    "aud-list": jwt({"alg": "RS256", "kid": "rsa-1"}, {**claims, "aud": ["x", "urn:pulumi:org:acme"]}),
    "expired": jwt({"alg": "ES256", "kid": "ec-1"}, {**claims, "exp": 1}, b"\1" * 64),
    "floats": jwt({"alg": "RS256", "kid": "rsa-1"}, {**claims, "exp": 1.7e9, "nbf": -1e300}),
    "jwks": json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "AA", "y": "AA"}]}),
}
for name, text in seeds.items():
    (out / name).write_text(text)
print("seeded", len(seeds), "jwt_verify files")
