#!/usr/bin/env python3
"""Drives a live Sesame server with the official Python ESC SDK (pulumi-esc-sdk 0.14.0, PyPI).

Reads SESAME_URL (e.g. http://127.0.0.1:8080), SESAME_TOKEN and SESAME_ORG from the environment, and runs every
operation the SDK's EscClient offers (plus the raw HEAD etag call it does not wrap) against one fresh project, each
as a named check with assertions on what the server answers. Prints `PASS <check>` or `FAIL <check>: <reason>` per
check (a failure names the last HTTP exchange), then `python sdk: N of M operations passed`, and exits 1 when any
check failed. Environments are made under a project with a random suffix and deleted at the end.
"""

import os
import socket
import sys
import traceback
import uuid

try:
    from pulumi_esc_sdk import esc_client, models
    from pulumi_esc_sdk.exceptions import ApiException
except ImportError as e:  # pragma: no cover - reported, not hidden
    print(f"FAIL import: pulumi_esc_sdk is not importable ({e}); pip install pulumi-esc-sdk==0.14.0")
    print("python sdk: 0 of 1 operations passed")
    sys.exit(1)

SDK_VERSION = "0.14.0"


def require(var):
    value = os.environ.get(var, "")
    if not value:
        print(f"FAIL setup: {var} is not set")
        print("python sdk: 0 of 1 operations passed")
        sys.exit(1)
    return value


def clip(value, limit=700):
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    text = str(value)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[:limit] + "…"


class Recorder:
    """Keeps the last request and answer of one ApiClient, to say what the server did when a check fails."""

    def __init__(self, api_client):
        self.last = None
        call_api = api_client.call_api
        response_deserialize = api_client.response_deserialize

        def recording_call_api(method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
            self.last = {"method": method, "url": url, "body": body}
            return call_api(method, url, header_params=header_params, body=body, post_params=post_params,
                            _request_timeout=_request_timeout)

        def recording_response_deserialize(response_data, response_types_map=None):
            if self.last is not None:
                self.last["status"] = response_data.status
                self.last["content_type"] = response_data.getheader("content-type")
                self.last["answer"] = response_data.data
            return response_deserialize(response_data=response_data, response_types_map=response_types_map)

        api_client.call_api = recording_call_api
        api_client.response_deserialize = recording_response_deserialize

    def describe(self):
        if self.last is None:
            return ""
        x = self.last
        text = f" [last exchange: {x['method']} {x['url']}"
        if x.get("body") not in (None, ""):
            text += f" body={clip(x['body'], 300)!r}"
        if "status" in x:
            text += f" -> {x['status']} content-type={x.get('content_type')!r} body={clip(x.get('answer', b''))!r}"
        else:
            text += " -> no answer read"
        return text + "]"


class Checks:
    def __init__(self, recorder, state):
        self.recorder = recorder
        self.state = state
        self.results = []  # (name, ok)

    def check(self, name, needs=()):
        """Runs the decorated function now as the check `name`; it passes unless it raises. `needs` are keys of
        the shared state that earlier checks must have filled in (a session id, revision numbers)."""

        def run(fn):
            missing = [n for n in needs if n not in self.state]
            if missing:
                self.fail(name, f"not run: no {', '.join(missing)} from an earlier check")
                return fn
            self.recorder.last = None
            try:
                fn()
            except ApiException as e:
                self.fail(name, f"HTTP {e.status} {e.reason}: {clip(e.body)!r}" + self.recorder.describe())
            except AssertionError as e:
                self.fail(name, f"{e}" + self.recorder.describe())
            except Exception as e:  # noqa: BLE001 - every failure is reported per check
                where = traceback.extract_tb(e.__traceback__)[-1]
                self.fail(name, f"{type(e).__name__}: {clip(e)} (at {os.path.basename(where.filename)}:"
                                f"{where.lineno})" + self.recorder.describe())
            else:
                self.results.append((name, True))
                print(f"PASS {name}", flush=True)
            return fn

        return run

    def fail(self, name, reason):
        self.results.append((name, False))
        print(f"FAIL {name}: {reason}", flush=True)


def expect_status(status, fn, *args):
    """Calls fn(*args) and asserts that the SDK raises ApiException with the given HTTP status."""
    try:
        fn(*args)
    except ApiException as e:
        assert e.status == status, f"expected HTTP {status}, got {e.status}: {clip(e.body)!r}"
        return e
    raise AssertionError(f"expected HTTP {status}, but the call succeeded")


def diagnostics_of(result):
    if result is None:
        return []
    return list(result.diagnostics or [])


def header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def main():
    url = require("SESAME_URL").rstrip("/")
    token = require("SESAME_TOKEN")
    org = require("SESAME_ORG")
    socket.setdefaulttimeout(60)

    # The SDK's documented configuration: PULUMI_BACKEND_URL (path dropped, /api/esc appended) and the token.
    os.environ["PULUMI_BACKEND_URL"] = url
    os.environ["PULUMI_ACCESS_TOKEN"] = token
    client = esc_client.default_client()
    assert client.esc_api.api_client.configuration.host == url + "/api/esc", client.esc_api.api_client.configuration.host
    recorder = Recorder(client.esc_api.api_client)

    run = uuid.uuid4().hex[:10]
    proj = f"sdk-py-{run}"
    base, app, copy = "base", "app", "copy"
    missing_env = f"missing-{run}"
    greeting1 = f"hello-{uuid.uuid4().hex[:8]}"
    greeting2 = f"bonjour-{uuid.uuid4().hex[:8]}"
    region = f"region-{uuid.uuid4().hex[:6]}"
    secret = f"s3cret-{uuid.uuid4().hex}"
    count = int(uuid.uuid4().int % 1000) + 1
    items = [f"one-{run}", f"two-{run}"]
    st = {"greeting": greeting1}
    c = Checks(recorder, st)

    def base_yaml(greeting):
        return (
            "values:\n"
            f"  greeting: {greeting}\n"
            f"  count: {count}\n"
            "  enabled: true\n"
            "  items:\n"
            f"    - {items[0]}\n"
            f"    - {items[1]}\n"
            "  nested:\n"
            "    empty: null\n"
            f"    inner: {greeting}\n"
            "  password:\n"
            f"    fn::secret: {secret}\n"
        )

    print(f"python sdk {SDK_VERSION} against {url}/api/esc, org {org}, project {proj}", flush=True)

    # --- create ---------------------------------------------------------------------------------------------
    @c.check("create_environment")
    def _():
        for name in (base, app):
            client.create_environment(org, proj, name)

    @c.check("create_environment: a duplicate is 409")
    def _():
        expect_status(409, client.create_environment, org, proj, base)

    @c.check("open_and_read_environment: a new environment is empty")
    def _():
        definition, raw = client.get_environment(org, proj, app)
        assert definition is None or not (definition.imports or (definition.values and definition.values.to_dict())), \
            f"a new environment's definition is {clip(raw)!r}"
        _env, values, _raw = client.open_and_read_environment(org, proj, app)
        assert not values, f"a new environment opens with values {values!r}"

    # --- update ---------------------------------------------------------------------------------------------
    @c.check("update_environment_yaml")
    def _():
        result = client.update_environment_yaml(org, proj, base, base_yaml(greeting1))
        assert isinstance(result, models.EnvironmentDiagnostics), f"answer is {type(result).__name__}, not EnvironmentDiagnostics"
        assert diagnostics_of(result) == [], f"diagnostics on a valid definition: {result}"

    @c.check("update_environment_yaml: an invalid definition is 400 with diagnostics")
    def _():
        bad = f"values:\n  broken: ${{undefined_{run}}}\n"
        e = expect_status(400, client.update_environment_yaml, org, proj, app, bad)
        assert isinstance(e.data, models.EnvironmentDiagnostics), f"400 body not parsed as EnvironmentDiagnostics: {clip(e.body)!r}"
        assert diagnostics_of(e.data), f"400 without diagnostics: {clip(e.body)!r}"

    @c.check("update_environment")
    def _():
        definition = models.EnvironmentDefinition(
            imports=[f"{proj}/{base}"],
            values=models.EnvironmentDefinitionValues.from_dict({
                "region": region,
                "environmentVariables": {"GREETING": "${greeting}", "REGION": "${region}"},
                "pulumiConfig": {"region": "${region}", "password": "${password}"},
            }),
        )
        result = client.update_environment(org, proj, app, definition)
        assert diagnostics_of(result) == [], f"diagnostics on a valid definition: {result}"

    # --- read definitions -----------------------------------------------------------------------------------
    @c.check("get_environment")
    def _():
        definition, raw = client.get_environment(org, proj, base)
        text = raw.decode("utf-8")
        assert secret not in text, f"the fn::secret plaintext is in the stored definition: {clip(text)!r}"
        assert isinstance(definition, models.EnvironmentDefinition), type(definition).__name__
        values = definition.values.to_dict() if definition.values else {}
        assert values.get("greeting") == greeting1, f"greeting is {values.get('greeting')!r}, wrote {greeting1!r}"
        assert values.get("count") == count and values.get("items") == items, f"values read back as {values}"
        sealed = values.get("password")
        assert isinstance(sealed, dict) and set(sealed) == {"fn::secret"}, f"password is {sealed!r}, not a fn::secret"
        inner = sealed["fn::secret"]
        assert isinstance(inner, dict) and isinstance(inner.get("ciphertext"), str) and inner["ciphertext"], \
            f"fn::secret holds {inner!r}, not {{ciphertext: …}}"
        assert inner["ciphertext"] != secret

    @c.check("get_environment: a missing environment is 404")
    def _():
        expect_status(404, client.get_environment, org, proj, missing_env)

    @c.check("get_environment_e_tag")
    def _():
        resp = client.esc_api.get_environment_e_tag_with_http_info(org, proj, base)
        assert resp.status_code == 200, resp.status_code
        etag = header(resp.headers, "ETag")
        assert etag, f"no ETag header in {dict(resp.headers or {})}"
        expect_status(404, client.esc_api.get_environment_e_tag, org, proj, missing_env)

    @c.check("check_environment_yaml")
    def _():
        ok = client.check_environment_yaml(org, f"values:\n  probe: {greeting1}\n  shout: ${{probe}}-!\n")
        assert isinstance(ok, models.CheckEnvironment), f"answer is {type(ok).__name__}"
        assert diagnostics_of(ok) == [], f"diagnostics on a valid definition: {ok.diagnostics}"
        props = ok.properties or {}
        assert "shout" in props and props["shout"].value == f"{greeting1}-!", f"properties are {props}"
        bad = client.check_environment_yaml(org, f"values:\n  broken: ${{undefined_{run}}}\n")
        assert isinstance(bad, models.CheckEnvironment), f"400 answer parsed as {type(bad).__name__}: {bad!r}"
        assert diagnostics_of(bad), "an undefined reference gave no diagnostics"

    @c.check("check_environment")
    def _():
        definition = models.EnvironmentDefinition(
            values=models.EnvironmentDefinitionValues.from_dict({
                "probe": region,
                "environmentVariables": {"PROBE": "${probe}"},
            }))
        result = client.check_environment(org, definition)
        assert isinstance(result, models.CheckEnvironment), f"answer is {type(result).__name__}"
        assert diagnostics_of(result) == [], f"diagnostics on a valid definition: {result.diagnostics}"
        env_vars = (result.properties or {}).get("environmentVariables")
        assert env_vars is not None and esc_client.convertPropertyToValue(env_vars.value) == {"PROBE": region}, \
            f"environmentVariables evaluated to {env_vars}"

    @c.check("decrypt_environment")
    def _():
        definition, raw = client.decrypt_environment(org, proj, base)
        values = definition.values.to_dict() if definition.values else {}
        assert values.get("password") == {"fn::secret": secret}, f"password decrypts to {values.get('password')!r}"
        assert values.get("greeting") == greeting1, f"greeting is {values.get('greeting')!r}"
        assert secret in raw

    @c.check("list_environments")
    def _():
        seen = {}
        token, pages = None, 0
        while True:
            page = client.list_environments(org, token)
            pages += 1
            for env in page.environments or []:
                seen[(env.project, env.name)] = env
            token = page.next_token
            if not token or pages >= 100:
                break
        for name in (base, app):
            env = seen.get((proj, name))
            assert env is not None, f"{proj}/{name} not listed ({len(seen)} environments over {pages} pages)"
            assert env.created and env.modified, f"{proj}/{name}: created={env.created!r} modified={env.modified!r}"
            assert env.organization in (None, org), f"{proj}/{name} listed under organization {env.organization!r}"

    # --- open -----------------------------------------------------------------------------------------------
    def assert_app_values(values, environment):
        assert values.get("greeting") == st["greeting"], f"imported greeting is {values.get('greeting')!r}"
        assert values.get("region") == region, f"region is {values.get('region')!r}"
        assert values.get("password") == secret, f"imported secret opens as {values.get('password')!r}"
        assert values.get("environmentVariables") == {"GREETING": st["greeting"], "REGION": region}, \
            f"environmentVariables are {values.get('environmentVariables')!r}"
        assert values.get("pulumiConfig") == {"region": region, "password": secret}, \
            f"pulumiConfig is {values.get('pulumiConfig')!r}"
        assert values.get("count") == count and values.get("enabled") is True and values.get("items") == items, \
            f"imported scalars/list read back as {values}"
        assert values.get("nested") == {"empty": None, "inner": st["greeting"]}, f"nested is {values.get('nested')!r}"
        props = environment.properties or {}
        assert props["password"].secret is True, f"password property is not marked secret: {props['password']}"
        assert not props["greeting"].secret, "a plain value is marked secret"

    @c.check("open_environment")
    def _():
        opened = client.open_environment(org, proj, app)
        assert isinstance(opened.id, str) and opened.id, f"open answered id {opened.id!r}"
        st["session"] = opened.id

    @c.check("read_open_environment", needs=["session"])
    def _():
        environment, values, raw = client.read_open_environment(org, proj, app, st["session"])
        assert_app_values(values, environment)
        assert isinstance(raw, str) and secret in raw

    @c.check("read_open_environment: an unknown session is 404")
    def _():
        expect_status(404, client.read_open_environment, org, proj, app, f"no-such-session-{run}")

    @c.check("read_open_environment_property", needs=["session"])
    def _():
        prop, value = client.read_open_environment_property(org, proj, app, st["session"], "greeting")
        assert value == st["greeting"], f"greeting property is {value!r}"
        prop, value = client.read_open_environment_property(org, proj, app, st["session"], "environmentVariables.REGION")
        assert value == region, f"environmentVariables.REGION is {value!r}"
        prop, value = client.read_open_environment_property(org, proj, app, st["session"], "password")
        assert value == secret and prop.secret is True, f"password property is {prop}"
        prop, value = client.read_open_environment_property(org, proj, app, st["session"], "items[1]")
        assert value == items[1], f"items[1] is {value!r}"

    @c.check("open_and_read_environment")
    def _():
        environment, values, _raw = client.open_and_read_environment(org, proj, app)
        assert_app_values(values, environment)

    # --- revisions ------------------------------------------------------------------------------------------
    @c.check("list_environment_revisions")
    def _():
        before = client.list_environment_revisions(org, proj, base)
        numbers = [r.number for r in before]
        assert numbers, "no revisions after create and update"
        assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers), \
            f"revisions not newest-first: {numbers}"
        result = client.update_environment_yaml(org, proj, base, base_yaml(greeting2))
        assert diagnostics_of(result) == [], f"diagnostics: {result}"
        st["greeting"] = greeting2
        after = client.list_environment_revisions(org, proj, base)
        after_numbers = [r.number for r in after]
        assert after_numbers[0] > numbers[0], f"an update made no newer revision: {numbers} then {after_numbers}"
        assert after_numbers[1:] == numbers, f"revisions before {numbers}, after one update {after_numbers}"
        st["rev1"], st["rev2"] = numbers[0], after_numbers[0]

    @c.check("list_environment_revisions: before and count page", needs=["rev1", "rev2"])
    def _():
        # `before` is exclusive and 0 means "from the newest": the esc CLI pages from before=0 with before = the
        # last number it got, and reads one revision R with before=R+1&count=1.
        page = [r.number for r in client.list_environment_revisions(org, proj, base, before=st["rev2"], count=1)]
        assert page == [st["rev1"]], f"before={st['rev2']}&count=1 gave {page}, expected [{st['rev1']}]"
        one = [r.number for r in client.list_environment_revisions(org, proj, base, before=st["rev1"] + 1, count=1)]
        assert one == [st["rev1"]], f"before={st['rev1'] + 1}&count=1 gave {one}, expected [{st['rev1']}]"
        newest = [r.number for r in client.list_environment_revisions(org, proj, base, before=0, count=1)]
        assert newest == [st["rev2"]], f"before=0&count=1 gave {newest}, expected [{st['rev2']}]"

    @c.check("get_environment_at_version", needs=["rev1", "rev2"])
    def _():
        old, _raw = client.get_environment_at_version(org, proj, base, str(st["rev1"]))
        new, _raw = client.get_environment_at_version(org, proj, base, str(st["rev2"]))
        old_greeting = old.values.to_dict().get("greeting") if old.values else None
        new_greeting = new.values.to_dict().get("greeting") if new.values else None
        assert old_greeting == greeting1, f"revision {st['rev1']} has greeting {old_greeting!r}, wrote {greeting1!r}"
        assert new_greeting == greeting2, f"revision {st['rev2']} has greeting {new_greeting!r}, wrote {greeting2!r}"
        current, _raw = client.get_environment(org, proj, base)
        assert current.values.to_dict().get("greeting") == greeting2, "the current definition is not the newest"

    @c.check("open_environment_at_version", needs=["rev1", "rev2"])
    def _():
        opened = client.open_environment_at_version(org, proj, base, str(st["rev1"]))
        assert opened.id, f"open answered id {opened.id!r}"
        _env, values, _raw = client.read_open_environment(org, proj, base, opened.id)
        assert values.get("greeting") == greeting1, f"revision {st['rev1']} opens with greeting {values.get('greeting')!r}"

    @c.check("open_and_read_environment_at_version", needs=["rev1", "rev2"])
    def _():
        _env, values, _raw = client.open_and_read_environment_at_version(org, proj, base, str(st["rev2"]))
        assert values.get("greeting") == greeting2, f"revision {st['rev2']} opens with greeting {values.get('greeting')!r}"
        assert values.get("password") == secret, f"secret opens as {values.get('password')!r}"

    # --- revision tags --------------------------------------------------------------------------------------
    rtag = f"stable-{run}"

    @c.check("create_environment_revision_tag", needs=["rev1", "rev2"])
    def _():
        client.create_environment_revision_tag(org, proj, base, rtag, st["rev1"])

    @c.check("create_environment_revision_tag: a duplicate is 409", needs=["rev1", "rev2"])
    def _():
        expect_status(409, client.create_environment_revision_tag, org, proj, base, rtag, st["rev1"])

    @c.check("get_environment_revision_tag", needs=["rev1", "rev2"])
    def _():
        tag = client.get_environment_revision_tag(org, proj, base, rtag)
        assert tag.name == rtag and tag.revision == st["rev1"], f"tag reads back as {tag}"

    @c.check("list_environment_revision_tags", needs=["rev1", "rev2"])
    def _():
        listed = client.list_environment_revision_tags(org, proj, base)
        tags = {t.name: t.revision for t in listed.tags or []}
        assert tags.get(rtag) == st["rev1"], f"listed revision tags are {tags}"

    @c.check("get_environment_at_version: by revision tag", needs=["rev1", "rev2"])
    def _():
        definition, _raw = client.get_environment_at_version(org, proj, base, rtag)
        got = definition.values.to_dict().get("greeting") if definition.values else None
        assert got == greeting1, f"version {rtag} has greeting {got!r}, tagged revision has {greeting1!r}"

    @c.check("update_environment_revision_tag", needs=["rev1", "rev2"])
    def _():
        client.update_environment_revision_tag(org, proj, base, rtag, st["rev2"])
        tag = client.get_environment_revision_tag(org, proj, base, rtag)
        assert tag.revision == st["rev2"], f"tag moved to {st['rev2']} reads back as {tag.revision}"
        _env, values, _raw = client.open_and_read_environment_at_version(org, proj, base, rtag)
        assert values.get("greeting") == greeting2, f"version {rtag} opens with greeting {values.get('greeting')!r}"

    @c.check("delete_environment_revision_tag")
    def _():
        client.delete_environment_revision_tag(org, proj, base, rtag)
        expect_status(404, client.get_environment_revision_tag, org, proj, base, rtag)
        listed = client.list_environment_revision_tags(org, proj, base)
        assert rtag not in [t.name for t in listed.tags or []], "a deleted revision tag is still listed"

    # --- environment tags -----------------------------------------------------------------------------------
    etag_name, value1, value2 = f"team-{run}", f"core-{run}", f"platform-{run}"

    @c.check("create_environment_tag")
    def _():
        tag = client.create_environment_tag(org, proj, base, etag_name, value1)
        assert tag.name == etag_name and tag.value == value1, f"created tag answered {tag}"

    @c.check("get_environment_tag")
    def _():
        tag = client.get_environment_tag(org, proj, base, etag_name)
        assert tag.name == etag_name and tag.value == value1, f"tag reads back as {tag}"

    @c.check("list_environment_tags")
    def _():
        listed = client.list_environment_tags(org, proj, base)
        tag = listed.tags.get(etag_name)
        assert tag is not None and tag.value == value1, f"listed tags are {listed.tags}"

    @c.check("update_environment_tag")
    def _():
        tag = client.update_environment_tag(org, proj, base, etag_name, value1, etag_name, value2)
        assert tag.name == etag_name and tag.value == value2, f"updated tag answered {tag}"
        again = client.get_environment_tag(org, proj, base, etag_name)
        assert again.value == value2, f"updated tag reads back as {again}"

    @c.check("delete_environment_tag")
    def _():
        client.delete_environment_tag(org, proj, base, etag_name)
        expect_status(404, client.get_environment_tag, org, proj, base, etag_name)
        listed = client.list_environment_tags(org, proj, base)
        assert etag_name not in listed.tags, f"a deleted tag is still listed: {listed.tags}"

    # --- clone and delete -----------------------------------------------------------------------------------
    @c.check("clone_environment", needs=["rev1", "rev2"])
    def _():
        client.clone_environment(org, proj, base, proj, copy, {"preserve_history": True})
        definition, raw = client.get_environment(org, proj, copy)
        assert definition.values.to_dict().get("greeting") == greeting2, f"the clone reads {clip(raw)!r}"
        assert secret not in raw.decode("utf-8"), "the clone's definition shows the secret in plaintext"
        _env, values, _raw = client.open_and_read_environment(org, proj, copy)
        assert values.get("password") == secret, f"the clone's secret opens as {values.get('password')!r}"
        old, _raw = client.get_environment_at_version(org, proj, copy, str(st["rev1"]))
        got = old.values.to_dict().get("greeting") if old.values else None
        assert got == greeting1, f"preserveHistory: the clone's revision {st['rev1']} has greeting {got!r}"

    @c.check("delete_environment")
    def _():
        client.delete_environment(org, proj, copy)
        expect_status(404, client.get_environment, org, proj, copy)
        listed = client.list_environments(org)
        assert (proj, copy) not in {(e.project, e.name) for e in listed.environments or []}, \
            "a deleted environment is still listed"

    # --- authentication -------------------------------------------------------------------------------------
    @c.check("authentication: a wrong token is 401")
    def _():
        stranger = esc_client.default_client(host=url, access_token=f"sesame_wrong{run}")
        expect_status(401, stranger.list_environments, org)

    # --- clean up (not counted) -----------------------------------------------------------------------------
    for name in (copy, app, base):
        try:
            client.delete_environment(org, proj, name)
        except ApiException as e:
            if e.status != 404:
                print(f"note: cleanup of {proj}/{name}: HTTP {e.status}", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"note: cleanup of {proj}/{name}: {e}", flush=True)

    passed = sum(1 for _, ok in c.results if ok)
    print(f"python sdk: {passed} of {len(c.results)} operations passed", flush=True)
    return 0 if passed == len(c.results) else 1


if __name__ == "__main__":
    sys.exit(main())
