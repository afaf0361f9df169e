"""Issue 13: redaction by what a value is (``redact``), and a run's claim on its output
directory (``claim_output``, ``clear_earlier_run``)."""

from __future__ import annotations

import json
import os

import fsspec
import pytest

from rhcloud.storage.paths import (
    OUTPUT_MARKER,
    REDACTED,
    OutputError,
    claim_output,
    clear_earlier_run,
    redact,
    redact_text,
)

# one credential in each place a user may put one; every value is unique and greppable
PLANTED = {
    "s3_key": "AKIAPLANTEDKEY000001",
    "s3_secret": "planted-s3-secret-x1",
    "gcs_token_dict": "planted-gcs-private-key-x2",
    "gcs_token_path": "/home/me/planted-sa-file-x3.json",
    "account_key": "planted-account-key-x4",
    "connection_string": "planted-connstr-key-x5",
    "sas_token": "planted-sas-sig-x6",
    "client_kwargs": "planted-client-kwargs-x7",
    "cookies": "planted-cookie-x8",
    "userinfo": "planted-url-pass-x9",
    "unknown_option": "planted-unknown-opt-x10",
    "output_key": "planted-output-key-x11",
    "query_sig": "planted-query-sig-x12",
}


def planted_config() -> dict:
    """A config mapping carrying every planted credential."""
    p = PLANTED
    return {
        "storage_options": {
            "key": p["s3_key"], "secret": p["s3_secret"],
            "token": {"type": "service_account", "private_key": p["gcs_token_dict"]},
            "account_key": p["account_key"],
            "connection_string": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey="
                                 f"{p['connection_string']};EndpointSuffix=core.windows.net",
            "sas_token": p["sas_token"],
            "client_kwargs": {"headers": {"Authorization": p["client_kwargs"]}},
            "cookies": {"session": p["cookies"]},
            "endpoint_url": f"http://user:{p['userinfo']}@127.0.0.1:9/",
            "mystery_backend_option": p["unknown_option"],
        },
        "output_storage_options": {"key": p["output_key"], "token": p["gcs_token_path"]},
        "catalog": f"https://example.org/cat.json?sv=2020&sig={p['query_sig']}",
    }


def _leaks(text: str) -> list[str]:
    return [name for name, value in PLANTED.items() if value in text]


def test_every_planted_credential_redacted():
    out = redact(planted_config())
    assert _leaks(json.dumps(out)) == []
    so = out["storage_options"]
    assert so["key"] == so["secret"] == so["token"] == so["account_key"] == REDACTED
    assert so["client_kwargs"] == so["cookies"] == so["mystery_backend_option"] == REDACTED
    assert so["endpoint_url"] == f"http://{REDACTED}@127.0.0.1:9/"  # the host stays
    assert out["output_storage_options"] == {"key": REDACTED, "token": REDACTED}
    assert out["catalog"] == f"https://example.org/cat.json?sv=2020&sig={REDACTED}"


def test_harmless_options_and_public_tokens_kept():
    cfg = {"storage_options": {"token": "anon", "endpoint_url": "http://127.0.0.1:9",
                               "requester_pays": True, "project": "p"},
           "output_storage_options": {"anon": True}, "models": ["CanESM5"],
           "cluster": {"kind": "local", "auth": None}}
    assert redact(cfg) == cfg


def test_credentials_recognised_by_form_in_any_text():
    msg = ("cannot open gs://cmip6/x via http://me:pw-x1@host:1/o?alt=media&"
           "X-Amz-Signature=abc-x2 with AKIAABCDEFGHIJKLMNOP and "
           "AccountKey=k-x3;EndpointSuffix=core -----BEGIN PRIVATE KEY-----\nMIIx-x4\n"
           "-----END PRIVATE KEY-----")
    out = redact_text(msg)
    for secret in ("pw-x1", "abc-x2", "AKIAABCDEFGHIJKLMNOP", "k-x3", "MIIx-x4"):
        assert secret not in out
    assert "gs://cmip6/x" in out and "host:1/o?alt=media" in out
    assert "EndpointSuffix=core" in out


def test_nested_secret_keys_outside_storage_options():
    out = redact({"cluster": {"auth": {"password": "pw-x5"}, "api_key": "k-x6"},
                  "drivers": {"nugget": True}})
    assert "pw-x5" not in json.dumps(out) and "k-x6" not in json.dumps(out)
    assert out["drivers"] == {"nugget": True}


# ---------------------------------------------------------------------------- outputs


def test_existing_file_as_output_refused(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    with pytest.raises(OutputError, match="is an existing file, not a directory"):
        claim_output(str(f))
    with pytest.raises(OutputError, match="not writable"):
        claim_output(str(f / "sub"))  # a directory cannot be made inside a file
    assert f.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_unwritable_directory_refused(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            claim_output(str(d))
    finally:
        d.chmod(0o755)


def test_foreign_directory_refused_and_left_alone(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputError, match=r"holds files no rhcloud run wrote \(thesis.tex\)"):
        claim_output(str(tmp_path))
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
    assert not (tmp_path / OUTPUT_MARKER).exists()


def test_earlier_run_cleared_but_its_cache(tmp_path):
    out = tmp_path / "out"
    for rel in ("tables/gls_aic.csv", "tables/gamm_terms.csv", "figures/old.png",
                "report.html", "cache/abc.json", "cache/fits/f.json"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("old")
    claim_output(str(out))  # an earlier run's: taken
    assert (out / OUTPUT_MARKER).exists()
    assert sorted(clear_earlier_run(str(out))) == ["figures", "report.html", "tables"]
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [OUTPUT_MARKER, "cache/abc.json", "cache/fits/f.json"]


def test_object_storage_output_checked(tmp_path):
    """The same claim through fsspec's in-memory object store: a file refused, a directory
    written to (the marker), an earlier run's objects cleared but the cache."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/afile", b"x")
    with pytest.raises(OutputError, match="existing file"):
        claim_output("memory://bucket/afile")
    fs.pipe("/bucket/run/tables/gls_aic.csv", b"old")
    fs.pipe("/bucket/run/cache/k.json", b"{}")
    claim_output("memory://bucket/run")
    assert fs.exists(f"/bucket/run/{OUTPUT_MARKER}")
    assert clear_earlier_run("memory://bucket/run") == ["tables"]
    assert fs.exists("/bucket/run/cache/k.json")
    fs.rm("/bucket", recursive=True)
