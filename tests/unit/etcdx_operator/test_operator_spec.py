"""The EtcdxCluster spec: what is accepted, what it means, and the errors for what is not."""

from __future__ import annotations

import pytest

from etcdx.operator import spec as specs

GOOD = """
apiVersion: etcdx.io/v1alpha1
kind: EtcdxCluster
metadata:
  name: demo
spec:
  size: 3
  version: 0.1.0
  tls: {peer: true, client: true}
  backup: {interval: 1h30m, retention: 5, destination: ./backups}
  member: {heartbeatInterval: 50, electionTimeout: 500, apiWorkers: 0, extraArgs: ["--snapshot-count", "1000"]}
  pod:
    storage: 2Gi
    resources: {requests: {cpu: 500m, memory: 256Mi}, limits: {memory: 1Gi}}
  deletionPolicy: Delete
"""


def write(tmp_path, text: str):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def test_a_full_spec_parses_with_durations_and_paths_resolved(tmp_path):
    spec = specs.load(write(tmp_path, GOOD))
    assert (spec.name, spec.size, spec.version, spec.deletion_policy) == ("demo", 3, "0.1.0", "Delete")
    assert spec.backup.interval == 5400 and spec.backup.retention == 5
    assert spec.backup.destination == str(tmp_path / "backups")
    assert spec.tls.peer and spec.tls.client and spec.pod.requests == {"cpu": "500m", "memory": "256Mi"}
    assert spec.member.flags() == ["--heartbeat-interval", "50", "--election-timeout", "500",
                                   "--api-workers", "0", "--snapshot-count", "1000"]


def test_defaults_of_a_minimal_spec(tmp_path):
    spec = specs.load(write(tmp_path, "apiVersion: etcdx.io/v1alpha1\nkind: EtcdxCluster\nmetadata: {name: a}\n"
                                      "spec: {size: 1, version: 0.1.0}\n"))
    assert spec.backup is None and spec.restore_from is None and not spec.tls.enabled
    assert spec.deletion_policy == "Retain" and spec.token == "a" and spec.member_name(2) == "a-2"


@pytest.mark.parametrize("change, message", [
    ({"size": 0}, "spec.size: must be at least 1 (got 0)"),
    ({"size": "three"}, "spec.size: must be an integer, not str 'three'"),
    ({"sizee": 3}, "spec: unknown field 'sizee'"),
    ({"version": "latest"}, "spec.version: 'latest' is not a version such as 0.1.0"),
    ({"backup": {"interval": "5x", "retention": 1, "destination": "b"}},
     "spec.backup.interval: '5x' is not a duration such as 30s, 5m, 1h or 1h30m"),
    ({"backup": {"interval": "5m", "destination": "b"}}, "spec.backup: missing required field 'retention'"),
    ({"backup": {"interval": "500ms", "retention": 1, "destination": "b"}}, "spec.backup.interval: must be at least 1s"),
    ({"deletionPolicy": "Shred"}, "spec.deletionPolicy: must be one of Retain, Delete (got 'Shred')"),
    ({"member": {"heartbeatInterval": 100, "electionTimeout": 200}},
     "spec.member.electionTimeout: must be at least 5 times heartbeatInterval (500), got 200"),
    ({"tls": {"caCertFile": "ca.crt", "peer": True}}, "spec.tls: caCertFile and caKeyFile go together"),
    ({"pod": {"storage": "lots"}}, "spec.pod.storage: 'lots' is not a Kubernetes quantity"),
])
def test_invalid_specs_name_the_field_and_the_problem(change, message):
    doc = {"apiVersion": specs.API_VERSION, "kind": specs.KIND, "metadata": {"name": "demo"},
           "spec": {"size": 3, "version": "0.1.0", **change}}
    with pytest.raises(specs.SpecError) as err:
        specs.parse(doc)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_every_problem_is_reported_at_once():
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}, "spec": {"size": 10}}
    with pytest.raises(specs.SpecError) as err:
        specs.parse(doc, source="c.yaml")
    text = str(err.value)
    assert text.startswith("c.yaml: invalid EtcdxCluster:")
    for part in ("apiVersion: must be one of etcdx.io/v1alpha1", "kind: must be one of EtcdxCluster",
                 "metadata.name: 'Bad_Name' is not a lower-case DNS label", "spec.size: must be at most 9",
                 "spec: missing required field 'version'"):
        assert part in text


def test_not_yaml_and_not_a_mapping_are_errors(tmp_path):
    with pytest.raises(specs.SpecError, match="not valid YAML"):
        specs.load(write(tmp_path, "spec: [unclosed"))
    with pytest.raises(specs.SpecError, match="must be a mapping"):
        specs.load(write(tmp_path, "- a list"))


def test_durations():
    assert specs.parse_duration("1h30m") == 5400
    assert specs.parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        specs.parse_duration("1d")
