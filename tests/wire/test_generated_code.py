"""The generated protobuf modules are fresh, importable side by side, and wire-correct."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_proto.py"
VERSIONS = ("v1", "v2")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", GEN_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pb(version: str) -> ModuleType:
    return importlib.import_module(f"sozu_operator.wire._pb.{version}.command_pb2")


def test_generated_code_is_up_to_date() -> None:
    problems = _load_generator().find_stale(REPO_ROOT)
    assert not problems, (
        "generated protobuf code is stale, run `python scripts/gen_proto.py`:\n"
        + "\n".join(problems)
    )


def test_generator_check_mode_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_generator().main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_both_versions_import_in_one_process() -> None:
    v1, v2 = _pb("v1"), _pb("v2")
    assert v1.DESCRIPTOR.package == "sozu.v1"
    assert v2.DESCRIPTOR.package == "sozu.v2"
    assert v1.DESCRIPTOR.name == "sozu/v1/command.proto"
    assert v2.DESCRIPTOR.name == "sozu/v2/command.proto"
    assert v1.Request is not v2.Request
    assert v1.Request.DESCRIPTOR.full_name == "sozu.v1.Request"
    assert v2.Request.DESCRIPTOR.full_name == "sozu.v2.Request"
    assert v1.Request.__module__ == "sozu_operator.wire._pb.v1.command_pb2"
    assert v2.Request.__module__ == "sozu_operator.wire._pb.v2.command_pb2"


@pytest.mark.parametrize("version", VERSIONS)
def test_remove_cluster_encoding(version: str) -> None:
    pb = _pb(version)
    assert pb.Request(remove_cluster="a").SerializeToString() == bytes.fromhex("720161")


@pytest.mark.parametrize("version", VERSIONS)
def test_add_cluster_encoding(version: str) -> None:
    pb = _pb(version)
    request = pb.Request(
        add_cluster=pb.Cluster(
            cluster_id="a",
            sticky_session=False,
            https_redirect=False,
            load_balancing=pb.ROUND_ROBIN,
        )
    )
    assert request.SerializeToString() == bytes.fromhex("6A090A0161100018002800")


@pytest.mark.parametrize("version", VERSIONS)
def test_socket_address_and_response_encoding(version: str) -> None:
    pb = _pb(version)
    v4 = pb.SocketAddress(ip=pb.IpAddress(v4=0x7F000001), port=8080)
    assert v4.SerializeToString() == bytes.fromhex("0A050D0100007F10903F")
    v6 = pb.SocketAddress(ip=pb.IpAddress(v6=pb.Uint128(low=1, high=0)), port=443)
    assert v6.SerializeToString() == bytes.fromhex("0A0612040801100010BB03")
    assert pb.Response(status=pb.OK, message="").SerializeToString() == bytes.fromhex("08001200")


@pytest.mark.parametrize("version", VERSIONS)
def test_logging_member_keeps_upstream_name(version: str) -> None:
    field = _pb(version).Request.DESCRIPTOR.fields_by_name["Logging"]
    assert field.number == 42
    assert field.json_name == "Logging"


def test_update_http_listener_only_in_v2() -> None:
    v1, v2 = _pb("v1"), _pb("v2")
    v2_fields = v2.Request.DESCRIPTOR.fields_by_name
    assert v2_fields["update_http_listener"].number == 47
    assert v2_fields["update_http_listener"].containing_oneof.name == "request_type"
    assert "update_http_listener" not in v1.Request.DESCRIPTOR.fields_by_name
    assert 47 not in v1.Request.DESCRIPTOR.fields_by_number
    assert max(v1.Request.DESCRIPTOR.fields_by_number) == 46
    assert max(v2.Request.DESCRIPTOR.fields_by_number) == 59

    # A 2.x-only verb decodes as an empty Request with the 1.0.0 schema.
    payload = v2.Request(
        update_http_listener=v2.UpdateHttpListenerConfig(
            address=v2.SocketAddress(ip=v2.IpAddress(v4=0), port=80)
        )
    ).SerializeToString()
    assert v1.Request.FromString(payload).WhichOneof("request_type") is None
