"""Shipping an image: chain IDs, which layers a host lacks, the archive sent (pure)."""

import hashlib
import io
import json
import tarfile

import pytest

from support.archives import saved_archive
from tasks.connection.step_shell import StepResult
from tasks.errors import Failure
from tasks.flows.check import build_here_rows
from tasks.shipping import ship
from tasks.shipping.image_archive import write_archive
from tasks.shipping.ship import (Shipped, chain_ids, layers_to_send, load_failed, parse_host_layers,
                                 place_script, source_note, stream_load)


A, B, C = ("sha256:" + c * 64 for c in "abc")


def step(values=None, blocks=None):
    return StepResult(code=0, stdout="", stderr="", values=values or {}, blocks=blocks or {})


def test_chain_ids_follow_the_oci_image_spec():
    ab = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {C}".encode()).hexdigest()
    assert chain_ids([A, B, C]) == [A, ab, abc]
    assert chain_ids([]) == []


def host(layer_lists, driver="overlay2", status='[["Backing Filesystem","extfs"]]',
         tags=None, tag="bluegreen-app:c0ffee"):
    """HostLayers parsed from what host_facts_script prints: one image per
    layer list, the n-th with tags[n] (default: untagged)."""
    tags = tags or [None] * len(layer_lists)
    lines = [json.dumps({"id": f"sha256:{n:064x}", "tags": image_tags, "layers": layers})
             for n, (layers, image_tags) in enumerate(zip(layer_lists, tags))]
    return parse_host_layers(step(
        {"driver": driver},
        {"images": "\n".join(lines) + "\nnot json\n[]\n", "driver_status": status}), tag)


def test_the_host_facts_are_the_chains_of_every_image():
    facts = host([[A], [A, B]])
    assert facts.chains == frozenset(chain_ids([A, B]))
    assert not facts.containerd and facts.store == "overlay2 layer store"


def test_the_release_already_on_the_host_is_found_by_its_tag():
    facts = host([[A], [A, B]], tags=[["other:1"], ["x:2", "bluegreen-app:c0ffee"]])
    assert facts.has_image == f"sha256:{1:064x}"
    assert host([[A]], tags=[["bluegreen-app:c0ffe"]]).has_image == ""


def test_the_facts_script_asks_docker_three_times():
    # docker info once (driver and its status), the listing, one inspect of all.
    script = ship.host_facts_script("bluegreen-app:c0ffee")
    assert script.count("docker ") == 3


def test_the_containerd_image_store_is_told_apart():
    facts = host([[A]], driver="overlayfs",
                 status='[["driver-type","io.containerd.snapshotter.v1"]]')
    assert facts.containerd and facts.store == "containerd image store"
    assert layers_to_send(["a/layer.tar"], [A], facts) == (set(), 1, 0)


def test_only_the_layers_the_host_lacks_are_sent():
    facts = host([[A, B]])
    drop, sent, skipped = layers_to_send(["a.tar", "b.tar", "c.tar"], [A, B, C], facts)
    assert (drop, sent, skipped) == ({"a.tar", "b.tar"}, 1, 2)


def test_a_layer_on_another_stack_is_not_the_same_layer():
    # The host has B only on top of C: B on top of A is another chain.
    facts = host([[C, B]])
    assert layers_to_send(["a", "b"], [A, B], facts) == (set(), 2, 0)


def test_a_file_that_stands_for_a_sent_layer_stays():
    facts = host([[A]])
    # An empty layer, twice: one file for both, and the second is sent.
    drop, sent, skipped = layers_to_send(["e.tar", "e.tar"], [A, A], facts)
    assert (drop, sent, skipped) == (set(), 1, 1)


def test_the_archive_sent_leaves_out_what_the_host_has_and_names_the_release(tmp_path):
    archive = saved_archive(tmp_path)
    assert archive.layer_paths == ("l1/layer.tar", "l2/layer.tar")
    assert archive.config_digest == "sha256:cfg"
    out = io.BytesIO()
    write_archive(archive, out, {"l1/layer.tar"}, "bluegreen-shop:abc")
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert "l1/layer.tar" not in names and "l2/layer.tar" in names
    assert manifest[0]["RepoTags"] == ["bluegreen-shop:abc"]
    assert manifest[0]["Layers"] == ["l1/layer.tar", "l2/layer.tar"]  # unchanged


def test_the_shipped_figures_say_what_travelled():
    shipped = Shipped(bytes=2048, layers_sent=1, layers_skipped=4, seconds=1.25,
                           store="overlay2 layer store")
    assert shipped.describe() == "2.0 KB sent, 1 layers sent, 4 skipped, in 1.2s"
    assert shipped.to_json() == {"bytes": 2048, "layers_sent": 1, "layers_skipped": 4,
                                 "seconds": 1.25, "store": "overlay2 layer store"}


def test_placing_tags_the_shipped_image_for_the_colour(settings):
    script = place_script(settings(APP_NAME="shop"), "green", "abc123", "name: shop\n",
                               previous=("0ld", "sha256:1d"))
    assert "docker tag bluegreen-shop:abc123 bluegreen-shop:green" in script
    assert "docker tag sha256:1d bluegreen-shop:0ld" in script
    assert "git" not in script and "build" not in script


def test_check_with_build_on_local_names_the_local_docker_and_the_layer_store():

    rows = build_here_rows({"local_docker": "ok Docker 20.10, overlay2 at x", "driver": "overlay2"},
                           {"driver_status": '[["Backing Filesystem","extfs"]]'})
    assert rows == [("local Docker", "ok", "Docker 20.10, overlay2 at x"),
                    ("layer store", "ok", "the host's Docker uses overlay2: only the layers "
                                          "it lacks are shipped")]
    rows = build_here_rows({"local_docker": "fail no Docker daemon answers"},
                           {"driver_status": '[["driver-type","io.containerd.snapshotter.v1"]]'})
    assert rows[0][1] == "FAIL" and "no Docker daemon answers" in rows[0][2]
    assert rows[1][1] == "warn" and "containerd image store" in rows[1][2]


def test_the_summary_line_says_where_the_image_came_from():
    assert source_note({}, "main") == "main"
    assert source_note({"build": "local", "ship": {"bytes": 3 << 20}}, "main") == \
        "main, built here, 3.0 MB shipped"
    assert source_note({"build": "image", "image": "ci:7", "ship": {"bytes": 10}},
                            "main") == "image ci:7, 10 B shipped"


class FakeChannel:
    """What `docker load` on the host answers: its output and exit status."""

    def __init__(self, answers, code):
        self.answer, self.code, self.received = answers.encode(), code, bytearray()
        self.closed = False

    def sendall(self, data):
        self.received += data

    def shutdown_write(self):
        pass

    def recv(self, n):
        data, self.answer = self.answer, b""
        return data

    def recv_exit_status(self):
        return self.code

    def close(self):
        self.closed = True


class FakeHost:
    def __init__(self, *answers):
        self.answers, self.commands = list(answers), []
        self.connection = type("C", (), {"transport": type("T", (), {
            "is_active": lambda self: True})()})()

    def exec_channel(self, command):
        self.commands.append(command)
        return FakeChannel(*self.answers.pop(0))


class FakeSession:
    name = "prod"

    def __init__(self, host):
        self.host = host


def test_a_host_with_a_full_disk_fails_the_ship_with_exit_1(tmp_path):
    archive = saved_archive(tmp_path)
    session = FakeSession(FakeHost(("Error processing tar file(exit status 1): write "
                                    "/x: no space left on device\n", 1)))
    with pytest.raises(Failure) as err:
        stream_load(session, archive, set(), "bluegreen-shop:abc")
    assert err.value.code == 1 and "no space left on device" in err.value.message
    assert err.value.message.startswith("the disk of prod is full")
    assert "nothing live changed" in err.value.message
    assert "free space where the host's Docker keeps images" in err.value.hint


def test_another_load_failure_is_not_called_a_full_disk():
    err = load_failed("prod", 1, "Error response from daemon: unexpected EOF\n")
    assert err.code == 1 and err.message == ("`docker load` failed on prod (exit 1): Error "
                                             "response from daemon: unexpected EOF; "
                                             "nothing live changed")
    assert "full" not in err.message and "fab check" in err.hint


def test_a_layer_gone_from_the_host_meanwhile_sends_the_whole_image(tmp_path):
    archive = saved_archive(tmp_path)
    host = FakeHost(("open /var/lib/docker/tmp/x/l1/layer.tar: no such file or directory\n", 1),
                    ("Loaded image: bluegreen-shop:abc\n", 0))
    session = FakeSession(host)
    session.run = lambda script: step({"driver": "overlay2"},
                                      {"images": json.dumps({"id": "sha256:1", "tags": [],
                                                             "layers": [A]}),
                                       "driver_status": "[]"})
    shipped = ship.ship(session, archive, "bluegreen-shop:abc", [A, B], "sha256:cfg")
    assert host.commands == ["docker load", "docker load"]
    assert (shipped.layers_sent, shipped.layers_skipped) == (2, 0)
