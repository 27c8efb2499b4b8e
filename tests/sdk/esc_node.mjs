#!/usr/bin/env node
// Drives a live Sesame server with the official TypeScript ESC SDK (@pulumi/esc-sdk 0.12.4, npm).
//
// Reads SESAME_URL (e.g. http://127.0.0.1:8080), SESAME_TOKEN and SESAME_ORG from the environment. The SDK is
// loaded from SESAME_TEST_ESC_NODE_DIR (default: ./node next to this file, after `npm ci` there).
//
// The same scenario runs twice, each time in a fresh project:
//   1. through the generated client `EscRawApi`, configured with basePath = SESAME_URL + '/api/esc' (the
//      documented way to reach a server on a non-default port); its results are read with this file's own strict
//      readers, so a response the SDK's types do not describe fails here;
//   2. through the `EscApi` wrapper that `DefaultClient()` returns (PULUMI_BACKEND_URL/PULUMI_ACCESS_TOKEN). The
//      wrapper drops the port from the URL (CLIENT-NOTES.md), so its `config.basePath` is put back after it is built;
//      every wrapper method then runs as written, including the HTTP statuses it insists on. Its checks are named
//      `EscApi.<method>`.
// Prints `PASS <check>` or `FAIL <check>: <reason>` per check (a failure names the last HTTP exchange), then
// `node sdk: N of M operations passed`, and exits 1 when any check failed.

import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.SESAME_TEST_ESC_NODE_DIR || path.join(here, "node");
let esc, jsyaml;
try {
  const require = createRequire(path.join(path.resolve(nodeDir), "package.json"));
  esc = require("@pulumi/esc-sdk");
  jsyaml = require("js-yaml");
} catch (e) {
  console.log(`FAIL import: @pulumi/esc-sdk is not installed under ${nodeDir} (${e.message}); run npm ci there`);
  console.log("node sdk: 0 of 1 operations passed");
  process.exit(1);
}

function requireEnv(name) {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL setup: ${name} is not set`);
    console.log("node sdk: 0 of 1 operations passed");
    process.exit(1);
  }
  return v;
}

const url = requireEnv("SESAME_URL").replace(/\/+$/, "");
const token = requireEnv("SESAME_TOKEN");
const org = requireEnv("SESAME_ORG");
const basePath = `${url}/api/esc`;
const TIMEOUT_MS = 60000;

function clip(v, limit = 700) {
  let s = typeof v === "string" ? v : JSON.stringify(v);
  if (s === undefined) s = String(v);
  s = s.replace(/\s+/g, " ");
  return s.length <= limit ? s : `${s.slice(0, limit)}…`;
}

function fmt(v) {
  return clip(v, 400);
}

class AssertionFailure extends Error {}

function assert(cond, msg) {
  if (!cond) throw new AssertionFailure(typeof msg === "function" ? msg() : msg);
}

function deepEqual(a, b) {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
  }
  return v;
}

// --- the last HTTP exchange, from axios interceptors on the instance the SDK uses ---------------------------------
const recorder = { last: null };

function describeExchange() {
  const x = recorder.last;
  if (!x) return "";
  let s = ` [last exchange: ${x.method} ${x.url}`;
  if (x.body !== undefined && x.body !== "" && x.body !== null) s += ` body=${JSON.stringify(clip(x.body, 300))}`;
  if (x.status !== undefined) {
    s += ` -> ${x.status} content-type=${JSON.stringify(x.contentType ?? null)} body=${JSON.stringify(clip(x.answer ?? ""))}`;
  } else if (x.error) {
    s += ` -> ${x.error}`;
  } else {
    s += " -> no answer";
  }
  return `${s}]`;
}

function record(axios) {
  axios.interceptors.request.use((config) => {
    recorder.last = {
      method: (config.method || "get").toUpperCase(),
      url: (config.baseURL || "") + config.url,
      body: config.data,
    };
    return config;
  });
  axios.interceptors.response.use(
    (resp) => {
      if (recorder.last) {
        recorder.last.status = resp.status;
        recorder.last.contentType = resp.headers?.["content-type"];
        recorder.last.answer = resp.data;
      }
      return resp;
    },
    (err) => {
      if (recorder.last) {
        if (err.response) {
          recorder.last.status = err.response.status;
          recorder.last.contentType = err.response.headers?.["content-type"];
          recorder.last.answer = err.response.data;
        } else {
          recorder.last.error = `${err.code || ""} ${err.message}`.trim();
        }
      }
      return Promise.reject(err);
    },
  );
}

function httpStatusOf(err) {
  return err && err.response ? err.response.status : undefined;
}

function describeError(err) {
  if (err instanceof AssertionFailure) return err.message;
  if (err && err.isAxiosError && err.response) {
    return `HTTP ${err.response.status} ${err.response.statusText || ""}: ${JSON.stringify(clip(err.response.data ?? ""))}`;
  }
  const where = (err && err.stack ? err.stack.split("\n").find((l) => l.includes("esc_node.mjs")) : "") || "";
  return `${err && err.name ? err.name : "Error"}: ${err && err.message ? err.message : String(err)}${where ? ` (${where.trim()})` : ""}`;
}

// --- checks ------------------------------------------------------------------------------------------------------
const results = [];

// Runs fn as the check `name`; `needs` are keys of `st` that earlier checks must have filled in.
async function check(name, st, needs, fn) {
  const missing = needs.filter((k) => st[k] === undefined);
  if (missing.length) {
    fail(name, `not run: no ${missing.join(", ")} from an earlier check`);
    return;
  }
  recorder.last = null;
  try {
    await fn();
    results.push([name, true]);
    console.log(`PASS ${name}`);
  } catch (err) {
    fail(name, describeError(err) + describeExchange());
  }
}

function fail(name, reason) {
  results.push([name, false]);
  console.log(`FAIL ${name}: ${reason}`);
}

async function expectStatus(status, fn) {
  let value;
  try {
    value = await fn();
  } catch (err) {
    const got = httpStatusOf(err);
    assert(got === status, () => `expected HTTP ${status}, got ${got === undefined ? describeError(err) : `HTTP ${got}: ${clip(err.response.data ?? "")}`}`);
    return err;
  }
  throw new AssertionFailure(`expected HTTP ${status}, but the call succeeded with ${fmt(value ?? null)}`);
}

// --- reading Values strictly (the raw client's own reader) ----------------------------------------------------------
// A Value is {value, secret?, unknown?, trace}; objects and arrays hold Values. A nested value without a `value`
// key (e.g. a null sent as an absent key) is an error here, because the SDKs' readers turn it into garbage.
function plainValue(v, where) {
  assert(v !== null && typeof v === "object" && !Array.isArray(v), `${where}: ${fmt(v)} is not a Value object`);
  assert("value" in v, `${where}: Value without a "value" key: ${fmt(v)}`);
  assert(v.trace !== null && typeof v.trace === "object", `${where}: Value without a "trace" object: ${fmt(v)}`);
  const inner = v.value;
  if (Array.isArray(inner)) return inner.map((e, i) => plainValue(e, `${where}[${i}]`));
  if (inner !== null && typeof inner === "object") {
    return Object.fromEntries(Object.entries(inner).map(([k, e]) => [k, plainValue(e, `${where}.${k}`)]));
  }
  return inner;
}

function plainProperties(properties) {
  assert(properties && typeof properties === "object", `no properties object: ${fmt(properties)}`);
  return Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, plainValue(v, k)]));
}

function parseYamlBody(data, what) {
  assert(typeof data === "string", () => `${what}: expected a YAML document, got ${typeof data} ${fmt(data)}`);
  const doc = jsyaml.load(data);
  assert(doc === undefined || doc === null || (typeof doc === "object" && !Array.isArray(doc)),
    `${what}: YAML ${fmt(data)} is not a mapping`);
  return { definition: doc, yaml: data };
}

// --- the two clients behind one interface ---------------------------------------------------------------------------
function rawClient(accessToken) {
  const api = new esc.EscRawApi(new esc.Configuration({ basePath, accessToken, baseOptions: { timeout: TIMEOUT_MS } }));
  const data = async (p) => (await p).data;
  const self = {
    api,
    createEnvironment: (p, e) => api.createEnvironment(org, { project: p, name: e }),
    updateEnvironmentYaml: (p, e, text) => data(api.updateEnvironmentYaml(org, p, e, text)),
    updateEnvironment: (p, e, def) => data(api.updateEnvironmentYaml(org, p, e, jsyaml.dump(def))),
    getEnvironment: async (p, e) => parseYamlBody((await api.getEnvironment(org, p, e)).data, "getEnvironment"),
    getEnvironmentAtVersion: async (p, e, v) =>
      parseYamlBody((await api.getEnvironmentAtVersion(org, p, e, v)).data, "getEnvironmentAtVersion"),
    decryptEnvironment: async (p, e) => parseYamlBody((await api.decryptEnvironment(org, p, e)).data, "decryptEnvironment"),
    checkEnvironmentYaml: async (text) => {
      try {
        return (await api.checkEnvironmentYaml(org, text)).data;
      } catch (err) {
        if (httpStatusOf(err) === 400) return err.response.data; // the contract's CheckBadRequest body
        throw err;
      }
    },
    checkEnvironment: (def) => self.checkEnvironmentYaml(jsyaml.dump(def)),
    listEnvironments: (next) => data(api.listEnvironments(org, next)),
    openEnvironment: (p, e) => data(api.openEnvironment(org, p, e)),
    openEnvironmentAtVersion: (p, e, v) => data(api.openEnvironmentAtVersion(org, p, e, v)),
    readOpenEnvironment: async (p, e, id) => {
      const environment = (await api.readOpenEnvironment(org, p, e, id)).data;
      assert(environment && typeof environment === "object", `readOpenEnvironment answered ${fmt(environment)}`);
      return { environment, values: plainProperties(environment.properties) };
    },
    readOpenEnvironmentProperty: async (p, e, id, prop) => {
      const property = (await api.readOpenEnvironmentProperty(org, p, e, id, prop)).data;
      return { property, value: plainValue(property, prop) };
    },
    openAndReadEnvironment: async (p, e) => {
      const opened = await self.openEnvironment(p, e);
      return self.readOpenEnvironment(p, e, opened.id);
    },
    openAndReadEnvironmentAtVersion: async (p, e, v) => {
      const opened = await self.openEnvironmentAtVersion(p, e, v);
      return self.readOpenEnvironment(p, e, opened.id);
    },
    listEnvironmentRevisions: (p, e, before, count) => data(api.listEnvironmentRevisions(org, p, e, before, count)),
    createEnvironmentRevisionTag: (p, e, name, revision) =>
      api.createEnvironmentRevisionTag(org, p, e, { name, revision }),
    getEnvironmentRevisionTag: (p, e, name) => data(api.getEnvironmentRevisionTag(org, p, e, name)),
    listEnvironmentRevisionTags: (p, e) => data(api.listEnvironmentRevisionTags(org, p, e)),
    updateEnvironmentRevisionTag: (p, e, name, revision) => api.updateEnvironmentRevisionTag(org, p, e, name, { revision }),
    deleteEnvironmentRevisionTag: (p, e, name) => api.deleteEnvironmentRevisionTag(org, p, e, name),
    createEnvironmentTag: (p, e, name, value) => data(api.createEnvironmentTag(org, p, e, { name, value })),
    getEnvironmentTag: (p, e, name) => data(api.getEnvironmentTag(org, p, e, name)),
    listEnvironmentTags: (p, e) => data(api.listEnvironmentTags(org, p, e)),
    updateEnvironmentTag: (p, e, name, current, newName, newValue) =>
      data(api.updateEnvironmentTag(org, p, e, name, { currentTag: { value: current }, newTag: { name: newName, value: newValue } })),
    deleteEnvironmentTag: (p, e, name) => api.deleteEnvironmentTag(org, p, e, name),
    cloneEnvironment: (p, e, dp, de, opts) => api.cloneEnvironment(org, p, e, { project: dp, name: de, ...opts }),
    deleteEnvironment: (p, e) => api.deleteEnvironment(org, p, e),
  };
  return self;
}

function wrapperClient(accessToken) {
  const saved = { url: process.env.PULUMI_BACKEND_URL, token: process.env.PULUMI_ACCESS_TOKEN };
  process.env.PULUMI_BACKEND_URL = url;
  process.env.PULUMI_ACCESS_TOKEN = accessToken;
  let w;
  try {
    w = esc.DefaultClient(new esc.Configuration({ baseOptions: { timeout: TIMEOUT_MS } }));
  } finally {
    for (const [k, v] of [["PULUMI_BACKEND_URL", saved.url], ["PULUMI_ACCESS_TOKEN", saved.token]]) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const rebuilt = w.config.basePath;
  w.config.basePath = basePath; // the wrapper's rebuilt URL has no port; every raw call reads config.basePath
  const self = {
    api: w.rawApi,
    rebuilt,
    createEnvironment: (p, e) => w.createEnvironment(org, p, e),
    updateEnvironmentYaml: (p, e, text) => w.updateEnvironmentYaml(org, p, e, text),
    updateEnvironment: (p, e, def) => w.updateEnvironment(org, p, e, def),
    getEnvironment: (p, e) => w.getEnvironment(org, p, e),
    getEnvironmentAtVersion: (p, e, v) => w.getEnvironmentAtVersion(org, p, e, v),
    decryptEnvironment: (p, e) => w.decryptEnvironment(org, p, e),
    checkEnvironmentYaml: (text) => w.checkEnvironmentYaml(org, text),
    checkEnvironment: (def) => w.checkEnvironment(org, def),
    listEnvironments: (next) => w.listEnvironments(org, next),
    openEnvironment: (p, e) => w.openEnvironment(org, p, e),
    openEnvironmentAtVersion: (p, e, v) => w.openEnvironmentAtVersion(org, p, e, v),
    readOpenEnvironment: (p, e, id) => w.readOpenEnvironment(org, p, e, id),
    readOpenEnvironmentProperty: (p, e, id, prop) => w.readOpenEnvironmentProperty(org, p, e, id, prop),
    openAndReadEnvironment: (p, e) => w.openAndReadEnvironment(org, p, e),
    openAndReadEnvironmentAtVersion: (p, e, v) => w.openAndReadEnvironmentAtVersion(org, p, e, v),
    listEnvironmentRevisions: (p, e, before, count) => w.listEnvironmentRevisions(org, p, e, before, count),
    createEnvironmentRevisionTag: (p, e, name, revision) => w.createEnvironmentRevisionTag(org, p, e, name, revision),
    getEnvironmentRevisionTag: (p, e, name) => w.getEnvironmentRevisionTag(org, p, e, name),
    listEnvironmentRevisionTags: (p, e) => w.listEnvironmentRevisionTags(org, p, e),
    updateEnvironmentRevisionTag: (p, e, name, revision) => w.updateEnvironmentRevisionTag(org, p, e, name, revision),
    deleteEnvironmentRevisionTag: (p, e, name) => w.deleteEnvironmentRevisionTag(org, p, e, name),
    createEnvironmentTag: (p, e, name, value) => w.createEnvironmentTag(org, p, e, name, value),
    getEnvironmentTag: (p, e, name) => w.getEnvironmentTag(org, p, e, name),
    listEnvironmentTags: (p, e) => w.listEnvironmentTags(org, p, e),
    updateEnvironmentTag: (p, e, name, current, newName, newValue) =>
      w.updateEnvironmentTag(org, p, e, name, current, newName, newValue),
    deleteEnvironmentTag: (p, e, name) => w.deleteEnvironmentTag(org, p, e, name),
    cloneEnvironment: (p, e, dp, de, opts) => w.cloneEnvironment(org, p, e, dp, de, opts),
    deleteEnvironment: (p, e) => w.deleteEnvironment(org, p, e),
  };
  return self;
}

// --- the scenario ------------------------------------------------------------------------------------------------
const rand = (n) => randomUUID().replace(/-/g, "").slice(0, n);

function diagnosticsOf(result) {
  if (result === undefined || result === null || result === "") return [];
  assert(typeof result === "object", `diagnostics answer is ${fmt(result)}`);
  return result.diagnostics || [];
}

function valuesOf(definition) {
  return (definition && definition.values) || {};
}

async function scenario(prefix, client, makeStranger) {
  const n = (op) => `${prefix}${op}`;
  const run = rand(10);
  const proj = `sdk-node-${prefix ? "w" : "r"}-${run}`;
  const [base, app, copy] = ["base", "app", "copy"];
  const missingEnv = `missing-${run}`;
  const greeting1 = `hello-${rand(8)}`;
  const greeting2 = `bonjour-${rand(8)}`;
  const region = `region-${rand(6)}`;
  const secret = `s3cret-${rand(32)}`;
  const count = (parseInt(rand(6), 16) % 1000) + 1;
  const items = [`one-${run}`, `two-${run}`];
  const st = { greeting: greeting1 };
  const baseYaml = (greeting) =>
    [
      "values:",
      `  greeting: ${greeting}`,
      `  count: ${count}`,
      "  enabled: true",
      "  items:",
      `    - ${items[0]}`,
      `    - ${items[1]}`,
      "  nested:",
      "    empty: null",
      `    inner: ${greeting}`,
      "  password:",
      `    fn::secret: ${secret}`,
      "",
    ].join("\n");

  console.log(`${prefix ? "EscApi wrapper" : "EscRawApi"} suite: ${basePath}, org ${org}, project ${proj}`);

  // --- create ---
  await check(n("createEnvironment"), st, [], async () => {
    for (const e of [base, app]) await client.createEnvironment(proj, e);
  });
  await check(n("createEnvironment: a duplicate is 409"), st, [], async () => {
    await expectStatus(409, () => client.createEnvironment(proj, base));
  });

  await check(n("openAndReadEnvironment: a new environment is empty"), st, [], async () => {
    const { definition, yaml } = await client.getEnvironment(proj, app);
    assert(!definition || (!(definition.imports || []).length && !Object.keys(definition.values || {}).length),
      `a new environment's definition is ${fmt(yaml)}`);
    const { values } = await client.openAndReadEnvironment(proj, app);
    assert(!values || Object.keys(values).length === 0, `a new environment opens with values ${fmt(values)}`);
  });

  // --- update ---
  await check(n("updateEnvironmentYaml"), st, [], async () => {
    const result = await client.updateEnvironmentYaml(proj, base, baseYaml(greeting1));
    assert(result && typeof result === "object", `a successful PATCH answered ${fmt(result ?? null)}, not a JSON object`);
    assert(diagnosticsOf(result).length === 0, `diagnostics on a valid definition: ${fmt(result)}`);
  });
  await check(n("updateEnvironmentYaml: an invalid definition is 400 with diagnostics"), st, [], async () => {
    const err = await expectStatus(400, () =>
      client.updateEnvironmentYaml(proj, app, `values:\n  broken: \${undefined_${run}}\n`),
    );
    const body = err.response.data;
    assert(body && Array.isArray(body.diagnostics) && body.diagnostics.length > 0, `400 without diagnostics: ${fmt(body)}`);
    for (const d of body.diagnostics) assert(typeof d.summary === "string" && d.summary, `diagnostic without summary: ${fmt(d)}`);
  });
  await check(n("updateEnvironment"), st, [], async () => {
    const result = await client.updateEnvironment(proj, app, {
      imports: [`${proj}/${base}`],
      values: {
        region,
        environmentVariables: { GREETING: "${greeting}", REGION: "${region}" },
        pulumiConfig: { region: "${region}", password: "${password}" },
      },
    });
    assert(diagnosticsOf(result).length === 0, `diagnostics on a valid definition: ${fmt(result)}`);
  });

  // --- read definitions ---
  await check(n("getEnvironment"), st, [], async () => {
    const { definition, yaml } = await client.getEnvironment(proj, base);
    assert(!yaml.includes(secret), `the fn::secret plaintext is in the stored definition: ${fmt(yaml)}`);
    const v = valuesOf(definition);
    assert(v.greeting === greeting1, `greeting is ${fmt(v.greeting)}, wrote ${greeting1}`);
    assert(v.count === count && deepEqual(v.items, items) && v.enabled === true, `values read back as ${fmt(v)}`);
    const sealed = v.password;
    assert(sealed && typeof sealed === "object" && deepEqual(Object.keys(sealed), ["fn::secret"]), `password is ${fmt(sealed)}, not a fn::secret`);
    const inner = sealed["fn::secret"];
    assert(inner && typeof inner.ciphertext === "string" && inner.ciphertext && inner.ciphertext !== secret,
      `fn::secret holds ${fmt(inner)}, not {ciphertext: …}`);
  });
  await check(n("getEnvironment: a missing environment is 404"), st, [], async () => {
    await expectStatus(404, () => client.getEnvironment(proj, missingEnv));
  });
  await check(n("getEnvironmentETag"), st, [], async () => {
    const resp = await client.api.getEnvironmentETag(org, proj, base);
    assert(resp.status === 200, `HEAD answered ${resp.status}`);
    assert(resp.headers.etag, () => `no ETag header in ${fmt(resp.headers)}`);
    await expectStatus(404, () => client.api.getEnvironmentETag(org, proj, missingEnv));
  });
  await check(n("checkEnvironmentYaml"), st, [], async () => {
    const ok = await client.checkEnvironmentYaml(`values:\n  probe: ${greeting1}\n  shout: \${probe}-!\n`);
    assert(diagnosticsOf(ok).length === 0, `diagnostics on a valid definition: ${fmt(ok)}`);
    const shout = ok && ok.properties && ok.properties.shout;
    assert(shout && shout.value === `${greeting1}-!`, `properties are ${fmt(ok && ok.properties)}`);
    const bad = await client.checkEnvironmentYaml(`values:\n  broken: \${undefined_${run}}\n`);
    assert(diagnosticsOf(bad).length > 0, `an undefined reference gave no diagnostics: ${fmt(bad)}`);
  });
  await check(n("checkEnvironment"), st, [], async () => {
    const result = await client.checkEnvironment({ values: { probe: region, environmentVariables: { PROBE: "${probe}" } } });
    assert(diagnosticsOf(result).length === 0, `diagnostics on a valid definition: ${fmt(result)}`);
    const vars = result && result.properties && result.properties.environmentVariables;
    assert(vars && deepEqual(plainValue(vars, "environmentVariables"), { PROBE: region }), `environmentVariables evaluated to ${fmt(vars)}`);
  });
  await check(n("decryptEnvironment"), st, [], async () => {
    const { definition, yaml } = await client.decryptEnvironment(proj, base);
    const v = valuesOf(definition);
    assert(deepEqual(v.password, { "fn::secret": secret }), `password decrypts to ${fmt(v.password)}`);
    assert(v.greeting === greeting1, `greeting is ${fmt(v.greeting)}`);
    assert(yaml.includes(secret), "the decrypted YAML lacks the plaintext");
  });
  await check(n("listEnvironments"), st, [], async () => {
    const seen = new Map();
    let next;
    let pages = 0;
    do {
      const page = await client.listEnvironments(next);
      pages += 1;
      assert(page && typeof page === "object", `listEnvironments answered ${fmt(page)}`);
      for (const env of page.environments || []) seen.set(`${env.project}/${env.name}`, env);
      next = page.nextToken;
    } while (next && pages < 100);
    for (const e of [base, app]) {
      const env = seen.get(`${proj}/${e}`);
      assert(env, `${proj}/${e} not listed (${seen.size} environments over ${pages} pages)`);
      assert(typeof env.created === "string" && env.created && typeof env.modified === "string" && env.modified,
        `${proj}/${e}: created=${fmt(env.created ?? null)} modified=${fmt(env.modified ?? null)}`);
      assert(env.organization === undefined || env.organization === org, `${proj}/${e} listed under organization ${fmt(env.organization)}`);
    }
  });

  // --- open ---
  const assertAppValues = (values, environment) => {
    assert(values.greeting === st.greeting, `imported greeting is ${fmt(values.greeting ?? null)}`);
    assert(values.region === region, `region is ${fmt(values.region ?? null)}`);
    assert(values.password === secret, `imported secret opens as ${fmt(values.password ?? null)}`);
    assert(deepEqual(values.environmentVariables, { GREETING: st.greeting, REGION: region }),
      `environmentVariables are ${fmt(values.environmentVariables ?? null)}`);
    assert(deepEqual(values.pulumiConfig, { region, password: secret }), `pulumiConfig is ${fmt(values.pulumiConfig ?? null)}`);
    assert(values.count === count && values.enabled === true && deepEqual(values.items, items), `scalars/list read back as ${fmt(values)}`);
    assert(deepEqual(values.nested, { empty: null, inner: st.greeting }), `nested is ${fmt(values.nested ?? null)}`);
    const props = environment.properties || {};
    assert(props.password && props.password.secret === true, `password property is not marked secret: ${fmt(props.password ?? null)}`);
    assert(props.greeting && !props.greeting.secret, "a plain value is marked secret");
  };
  await check(n("openEnvironment"), st, [], async () => {
    const opened = await client.openEnvironment(proj, app);
    assert(opened && typeof opened.id === "string" && opened.id, `open answered ${fmt(opened ?? null)}`);
    st.session = opened.id;
  });
  await check(n("readOpenEnvironment"), st, ["session"], async () => {
    const { environment, values } = await client.readOpenEnvironment(proj, app, st.session);
    assertAppValues(values, environment);
  });
  await check(n("readOpenEnvironment: an unknown session is 404"), st, [], async () => {
    await expectStatus(404, () => client.readOpenEnvironment(proj, app, `no-such-session-${run}`));
  });
  await check(n("readOpenEnvironmentProperty"), st, ["session"], async () => {
    let r = await client.readOpenEnvironmentProperty(proj, app, st.session, "greeting");
    assert(r.value === st.greeting, `greeting property is ${fmt(r.value ?? null)}`);
    r = await client.readOpenEnvironmentProperty(proj, app, st.session, "environmentVariables.REGION");
    assert(r.value === region, `environmentVariables.REGION is ${fmt(r.value ?? null)}`);
    r = await client.readOpenEnvironmentProperty(proj, app, st.session, "password");
    assert(r.value === secret && r.property.secret === true, `password property is ${fmt(r.property)}`);
    r = await client.readOpenEnvironmentProperty(proj, app, st.session, "items[1]");
    assert(r.value === items[1], `items[1] is ${fmt(r.value ?? null)}`);
  });
  await check(n("openAndReadEnvironment"), st, [], async () => {
    const { environment, values } = await client.openAndReadEnvironment(proj, app);
    assertAppValues(values, environment);
  });

  // --- revisions ---
  await check(n("listEnvironmentRevisions"), st, [], async () => {
    const before = await client.listEnvironmentRevisions(proj, base);
    assert(Array.isArray(before) && before.length > 0, `revisions after create and update: ${fmt(before ?? null)}`);
    const numbers = before.map((r) => r.number);
    assert(numbers.every(Number.isInteger), `revision numbers ${fmt(numbers)}`);
    assert(deepEqual(numbers, [...numbers].sort((a, b) => b - a)) && new Set(numbers).size === numbers.length,
      `revisions not newest-first: ${fmt(numbers)}`);
    const result = await client.updateEnvironmentYaml(proj, base, baseYaml(greeting2));
    assert(diagnosticsOf(result).length === 0, `diagnostics: ${fmt(result)}`);
    st.greeting = greeting2;
    const after = (await client.listEnvironmentRevisions(proj, base)).map((r) => r.number);
    assert(after[0] > numbers[0], `an update made no newer revision: ${fmt(numbers)} then ${fmt(after)}`);
    assert(deepEqual(after.slice(1), numbers), `revisions before ${fmt(numbers)}, after one update ${fmt(after)}`);
    st.rev1 = numbers[0];
    st.rev2 = after[0];
  });
  await check(n("listEnvironmentRevisions: before and count page"), st, ["rev1", "rev2"], async () => {
    // `before` is exclusive and 0 means "from the newest": the esc CLI pages from before=0 with before = the last
    // number it got, and reads one revision R with before=R+1&count=1.
    const page = (await client.listEnvironmentRevisions(proj, base, st.rev2, 1)).map((r) => r.number);
    assert(deepEqual(page, [st.rev1]), `before=${st.rev2}&count=1 gave ${fmt(page)}, expected [${st.rev1}]`);
    const one = (await client.listEnvironmentRevisions(proj, base, st.rev1 + 1, 1)).map((r) => r.number);
    assert(deepEqual(one, [st.rev1]), `before=${st.rev1 + 1}&count=1 gave ${fmt(one)}, expected [${st.rev1}]`);
    const newest = (await client.listEnvironmentRevisions(proj, base, 0, 1)).map((r) => r.number);
    assert(deepEqual(newest, [st.rev2]), `before=0&count=1 gave ${fmt(newest)}, expected [${st.rev2}]`);
  });
  await check(n("getEnvironmentAtVersion"), st, ["rev1", "rev2"], async () => {
    const old = valuesOf((await client.getEnvironmentAtVersion(proj, base, String(st.rev1))).definition);
    const cur = valuesOf((await client.getEnvironmentAtVersion(proj, base, String(st.rev2))).definition);
    assert(old.greeting === greeting1, `revision ${st.rev1} has greeting ${fmt(old.greeting ?? null)}, wrote ${greeting1}`);
    assert(cur.greeting === greeting2, `revision ${st.rev2} has greeting ${fmt(cur.greeting ?? null)}, wrote ${greeting2}`);
    const now = valuesOf((await client.getEnvironment(proj, base)).definition);
    assert(now.greeting === greeting2, "the current definition is not the newest");
  });
  await check(n("openEnvironmentAtVersion"), st, ["rev1"], async () => {
    const opened = await client.openEnvironmentAtVersion(proj, base, String(st.rev1));
    assert(opened && opened.id, `open answered ${fmt(opened ?? null)}`);
    const { values } = await client.readOpenEnvironment(proj, base, opened.id);
    assert(values.greeting === greeting1, `revision ${st.rev1} opens with greeting ${fmt(values.greeting ?? null)}`);
  });
  await check(n("openAndReadEnvironmentAtVersion"), st, ["rev2"], async () => {
    const { values } = await client.openAndReadEnvironmentAtVersion(proj, base, String(st.rev2));
    assert(values.greeting === greeting2, `revision ${st.rev2} opens with greeting ${fmt(values.greeting ?? null)}`);
    assert(values.password === secret, `secret opens as ${fmt(values.password ?? null)}`);
  });

  // --- revision tags ---
  const rtag = `stable-${run}`;
  await check(n("createEnvironmentRevisionTag"), st, ["rev1"], async () => {
    await client.createEnvironmentRevisionTag(proj, base, rtag, st.rev1);
  });
  await check(n("createEnvironmentRevisionTag: a duplicate is 409"), st, ["rev1"], async () => {
    await expectStatus(409, () => client.createEnvironmentRevisionTag(proj, base, rtag, st.rev1));
  });
  await check(n("getEnvironmentRevisionTag"), st, ["rev1"], async () => {
    const tag = await client.getEnvironmentRevisionTag(proj, base, rtag);
    assert(tag && tag.name === rtag && tag.revision === st.rev1, `tag reads back as ${fmt(tag ?? null)}`);
  });
  await check(n("listEnvironmentRevisionTags"), st, ["rev1"], async () => {
    const listed = await client.listEnvironmentRevisionTags(proj, base);
    const tags = Object.fromEntries(((listed && listed.tags) || []).map((t) => [t.name, t.revision]));
    assert(tags[rtag] === st.rev1, `listed revision tags are ${fmt(listed ?? null)}`);
  });
  await check(n("getEnvironmentAtVersion: by revision tag"), st, ["rev1"], async () => {
    const v = valuesOf((await client.getEnvironmentAtVersion(proj, base, rtag)).definition);
    assert(v.greeting === greeting1, `version ${rtag} has greeting ${fmt(v.greeting ?? null)}, tagged revision has ${greeting1}`);
  });
  await check(n("updateEnvironmentRevisionTag"), st, ["rev2"], async () => {
    await client.updateEnvironmentRevisionTag(proj, base, rtag, st.rev2);
    const tag = await client.getEnvironmentRevisionTag(proj, base, rtag);
    assert(tag && tag.revision === st.rev2, `tag moved to ${st.rev2} reads back as ${fmt(tag ?? null)}`);
    const { values } = await client.openAndReadEnvironmentAtVersion(proj, base, rtag);
    assert(values.greeting === greeting2, `version ${rtag} opens with greeting ${fmt(values.greeting ?? null)}`);
  });
  await check(n("deleteEnvironmentRevisionTag"), st, [], async () => {
    await client.deleteEnvironmentRevisionTag(proj, base, rtag);
    await expectStatus(404, () => client.getEnvironmentRevisionTag(proj, base, rtag));
    const listed = await client.listEnvironmentRevisionTags(proj, base);
    assert(!((listed && listed.tags) || []).some((t) => t.name === rtag), "a deleted revision tag is still listed");
  });

  // --- environment tags ---
  const [tagName, value1, value2] = [`team-${run}`, `core-${run}`, `platform-${run}`];
  await check(n("createEnvironmentTag"), st, [], async () => {
    const tag = await client.createEnvironmentTag(proj, base, tagName, value1);
    if (tag !== undefined) assert(tag.name === tagName && tag.value === value1, `created tag answered ${fmt(tag)}`);
  });
  await check(n("getEnvironmentTag"), st, [], async () => {
    const tag = await client.getEnvironmentTag(proj, base, tagName);
    assert(tag && tag.name === tagName && tag.value === value1, `tag reads back as ${fmt(tag ?? null)}`);
    for (const k of ["created", "modified", "editorLogin", "editorName"]) {
      assert(typeof tag[k] === "string", `tag lacks ${k}: ${fmt(tag)}`);
    }
  });
  await check(n("listEnvironmentTags"), st, [], async () => {
    const listed = await client.listEnvironmentTags(proj, base);
    const tag = listed && listed.tags && listed.tags[tagName];
    assert(tag && tag.value === value1, `listed tags are ${fmt(listed ?? null)}`);
    assert(typeof listed.nextToken === "string", `tag list without nextToken: ${fmt(listed)}`);
  });
  await check(n("updateEnvironmentTag"), st, [], async () => {
    const tag = await client.updateEnvironmentTag(proj, base, tagName, value1, tagName, value2);
    if (tag !== undefined) assert(tag.name === tagName && tag.value === value2, `updated tag answered ${fmt(tag)}`);
    const again = await client.getEnvironmentTag(proj, base, tagName);
    assert(again && again.value === value2, `updated tag reads back as ${fmt(again ?? null)}`);
  });
  await check(n("deleteEnvironmentTag"), st, [], async () => {
    await client.deleteEnvironmentTag(proj, base, tagName);
    await expectStatus(404, () => client.getEnvironmentTag(proj, base, tagName));
    const listed = await client.listEnvironmentTags(proj, base);
    assert(!(listed && listed.tags && listed.tags[tagName]), `a deleted tag is still listed: ${fmt(listed ?? null)}`);
  });

  // --- clone and delete ---
  await check(n("cloneEnvironment"), st, ["rev1"], async () => {
    await client.cloneEnvironment(proj, base, proj, copy, { preserveHistory: true });
    const { definition, yaml } = await client.getEnvironment(proj, copy);
    assert(valuesOf(definition).greeting === greeting2, `the clone reads ${fmt(yaml)}`);
    assert(!yaml.includes(secret), "the clone's definition shows the secret in plaintext");
    const { values } = await client.openAndReadEnvironment(proj, copy);
    assert(values.password === secret, `the clone's secret opens as ${fmt(values.password ?? null)}`);
    const old = valuesOf((await client.getEnvironmentAtVersion(proj, copy, String(st.rev1))).definition);
    assert(old.greeting === greeting1, `preserveHistory: the clone's revision ${st.rev1} has greeting ${fmt(old.greeting ?? null)}`);
  });
  await check(n("deleteEnvironment"), st, [], async () => {
    await client.deleteEnvironment(proj, copy);
    await expectStatus(404, () => client.getEnvironment(proj, copy));
    const listed = await client.listEnvironments();
    assert(!((listed && listed.environments) || []).some((e) => e.project === proj && e.name === copy),
      "a deleted environment is still listed");
  });

  // --- authentication ---
  await check(n("authentication: a wrong token is 401"), st, [], async () => {
    const stranger = makeStranger(`sesame_wrong${run}`);
    await expectStatus(401, () => stranger.listEnvironments());
  });

  // --- clean up (not counted) ---
  for (const e of [copy, app, base]) {
    try {
      await client.api.deleteEnvironment(org, proj, e);
    } catch (err) {
      if (httpStatusOf(err) !== 404) console.log(`note: cleanup of ${proj}/${e}: ${describeError(err)}`);
    }
  }
}

async function main() {
  const raw = rawClient(token);
  record(raw.api.axios);
  await scenario("", raw, (t) => rawClient(t));

  const wrapper = wrapperClient(token);
  if (wrapper.rebuilt !== basePath) {
    console.log(`note: EscApi rebuilt ${url} as ${wrapper.rebuilt}; basePath restored to ${basePath}`);
  }
  if (wrapper.api.axios !== raw.api.axios) record(wrapper.api.axios);
  await scenario("EscApi.", wrapper, (t) => wrapperClient(t));

  const passed = results.filter(([, ok]) => ok).length;
  console.log(`node sdk: ${passed} of ${results.length} operations passed`);
  return passed === results.length ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`FAIL harness: ${err && err.stack ? err.stack : err}`);
    const passed = results.filter(([, ok]) => ok).length;
    console.log(`node sdk: ${passed} of ${results.length + 1} operations passed`);
    process.exit(1);
  },
);
