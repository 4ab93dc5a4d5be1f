"""The runner's pure mapping from a rendered Deployment to the program it runs."""

from localinfra.runner import image_kind, program_for, with_port

from tspipe.render import render_deployments


def sample_resource(**router):
    return {
        "apiVersion": "tspipe.io/v1alpha1",
        "kind": "TimestampPipeline",
        "metadata": {"name": "ts", "namespace": "demo", "uid": "u-1", "generation": 1},
        "spec": {"kafka": {"brokers": ["127.0.0.1:9092"]}, "router": router},
    }


def test_image_kind_picks_spring_jars_by_name_and_version_by_tag():
    assert image_kind("springcloudstream/time-source-kafka:5.1.1") == ("time-source-kafka", "5.1.1")
    assert image_kind("docker.io/springcloudstream/log-sink-kafka:5.0.0") == ("log-sink-kafka", "5.0.0")
    assert image_kind("ghcr.io/tspipe/router:0.1.0") == ("router", "0.1.0")
    assert image_kind("registry:5000/router") == ("router", "latest")


def test_program_carries_exactly_the_deployment_args_and_env():
    deployments = {d["metadata"]["name"]: d for d in render_deployments(sample_resource())}
    router = program_for(deployments["ts-router"], lambda ns, ref: None)
    container = deployments["ts-router"]["spec"]["template"]["spec"]["containers"][0]
    assert router.kind == "router" and router.key == "demo/ts-router"
    assert list(router.args) == container["args"]
    plain_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert dict(router.env) == plain_env
    time_prog = program_for(deployments["ts-time"], lambda ns, ref: None)
    assert (time_prog.kind, time_prog.version) == ("time-source-kafka", "5.1.1")


def test_changed_template_changes_the_fingerprint_and_secret_refs_resolve():
    a = program_for(render_deployments(sample_resource())[1], lambda ns, ref: None)
    b = program_for(render_deployments(sample_resource(evenPrefix="EVEN:"))[1], lambda ns, ref: None)
    assert a.fingerprint != b.fingerprint
    d = render_deployments(sample_resource())[1]
    d["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
    )
    seen = []
    prog = program_for(d, lambda ns, ref: seen.append((ns, ref)) or "s3cret")
    assert ("PASSWORD", "s3cret") in prog.env and seen[0][0] == "demo"


def test_server_port_is_replaced_not_duplicated():
    assert with_port(("--a=1", "--server.port=8080"), 4242) == ["--a=1", "--server.port=4242"]


def test_demo_shows_only_the_sinks_payload_lines():
    from localinfra.demo import logger_line

    payload = (
        "2026-11-27T22:50:55.550Z  INFO 30346 --- [log-sink] [container-0-C-1] "
        "log-sink                                 : Even timestamp:11/27/26 22:50:55"
    )
    startup = (
        "2026-11-27T23:31:20.129Z  INFO 25168 --- [log-sink] [           main] "
        "o.s.c.s.a.l.s.k.LogSinkKafkaApplication  : No active profile set"
    )
    assert logger_line("ns/ts-evenlogger", payload).endswith("log-sink : Even timestamp:11/27/26 22:50:55")
    assert logger_line("ns/ts-evenlogger", startup) is None
    assert logger_line("ns/ts-router", payload) is None


def test_dollar_references_expand_like_the_kubelet():
    from localinfra.runner import expand_refs

    env = {"USER": "alice", "PW": "p$w)"}
    assert expand_refs('username="$(USER)" password="$(PW)";', env) == 'username="alice" password="p$w)";'
    assert expand_refs("$(MISSING)-$(USER)", env) == "$(MISSING)-alice"
    assert expand_refs("$$(USER) $$ $x $( $", env) == "$(USER) $ $x $( $"
    assert expand_refs("", env) == ""


def test_env_values_see_only_earlier_variables_and_secret_values_are_not_expanded():
    d = render_deployments(sample_resource())[1]
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["env"] += [
        {"name": "LATE_REF", "value": "x=$(PW)"},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "JAAS", "value": 'password="$(PW)"'},
    ]
    c["args"].append("--pw=$(PW)")
    prog = program_for(d, lambda ns, ref: "$(LATE_REF)")
    env = dict(prog.env)
    assert env["LATE_REF"] == "x=$(PW)"  # PW was not defined yet
    assert env["PW"] == "$(LATE_REF)"  # a Secret's value is taken literally
    assert env["JAAS"] == 'password="$(LATE_REF)"'
    assert "--pw=$(LATE_REF)" in prog.args
