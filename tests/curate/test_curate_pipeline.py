"""The curation pipeline end to end against a scripted LLM on 127.0.0.1: faults are retried or
rejected with the right reason, the request budget stops a run that a rerun completes to the same
output, and the output loads with the training data loader."""

from __future__ import annotations

import json

import pytest
from curate_support import ChatServer, FakeCurator, Reply, write_demo_corpus

from clamp3.curate import ChatClient, CurateSettings, RequestBudget, RetryPolicy, curate, output_paths
from clamp3.curate.annotator import target_language
from clamp3.curate.quality import detect_language
from clamp3.curate.transport import LLMConfigError
from clamp3.utils.errors import InputError

SETTINGS = CurateSettings(languages=("de", "fr", "es"), max_attempts=3)
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=2.0)

PLAN = {
    "Song 1": {"annotate": ["malformed", "ok"]},
    "Song 2": {"annotate": ["malformed"]},
    "Song 3": {"annotate": ["invalid", "invalid", "ok"]},
    "Song 4": {"annotate": ["wrong_language"]},
    "Song 5": {"annotate": ["ungrounded"]},
    "Song 6": {"translate": ["wrong_language"]},
    "Song 7": {"translate": ["wrong_language", "ok"]},
    "Song 8": {"annotate": ["429", "ok"], "translate": ["500", "ok"]},
    "Song 9": {"annotate": ["slow", "ok"]},
    "Song 10": {"annotate": ["generic"]},
    "Song 11": {"annotate": ["generic"]},
    "Song 12": {"annotate": ["400"]},
    "Song 13": {"translate": ["invalid"]},
}
EXPECTED = {
    "item002": "invalid_annotation",
    "item004": "annotation_language",
    "item005": "ungrounded",
    "item006": "translation_language",
    "item011": "duplicate",
    "item012": "llm_refused",
    "item013": "invalid_translation",
}


def _corpus(tmp_path, n=16):
    catalogue, docs = write_demo_corpus(tmp_path, n)
    with open(catalogue, "a", encoding="utf-8") as handle:
        handle.write("bad,music/none.abc,Song X,Nobody,1999\n")
    return catalogue, docs


def _run(server, catalogue, docs, out, *, budget=None, timeout=5.0, settings=SETTINGS):
    with ChatClient(
        server.url, "fake", concurrency=3, timeout=timeout, retry=FAST, budget=RequestBudget(budget)
    ) as client:
        return curate(catalogue, docs, out, client, settings, show_progress=False)


def test_faults_are_retried_or_rejected_with_the_right_reason(tmp_path):
    from clamp3.train.data import load_records

    catalogue, docs = _corpus(tmp_path)
    out = tmp_path / "out" / "train.jsonl"
    with ChatServer(FakeCurator(PLAN, retry_after="0.05", slow_delay=1.5)) as server:
        report = _run(server, catalogue, docs, out, timeout=0.5)
        assert server.max_in_flight <= 3
    assert report["complete"] and report["pending"] == 0 and report["stopped"] is None
    expected_counts = {reason: 1 for reason in EXPECTED.values()} | {"catalogue_error": 1}
    assert report["rejected"] == expected_counts
    assert report["kept"] == 16 - len(EXPECTED)
    assert report["requests"]["http_429"] == 1 and report["requests"]["http_500"] == 1
    assert report["requests"]["timeout"] == 1
    assert "none.abc" in report["catalogue_errors"][0]
    assert json.loads(output_paths(out)["report"].read_text()) == report

    provenance = {
        p["id"]: p for p in map(json.loads, output_paths(out)["provenance"].read_text().splitlines())
    }
    assert {i: p["reason"] for i, p in provenance.items() if p["status"] == "rejected"} == EXPECTED
    assert "1787" in provenance["item005"]["grounding"]["unsupported"]
    assert provenance["item001"]["annotation"]["attempts"] == 2
    assert provenance["item003"]["annotation"]["attempts"] == 3
    assert provenance["item007"]["translation"]["attempts"] == 2
    assert "same texts as 'item010'" in provenance["item011"]["detail"]

    records = load_records(out)  # the training loader accepts the file as written
    kept = [f"item{i:03d}" for i in range(16) if f"item{i:03d}" not in EXPECTED]
    assert [r["id"] for r in records] == kept  # catalogue order, whatever order items finished in
    for record in records:
        index = int(record["id"][4:])
        assert (out.parent / record["filepaths"][0]).resolve() == (tmp_path / "music" / f"{record['id']}.abc")
        assert record["title"] == f"Song {index}" and record["artists"] == [f"Composer {index}"]
        language = record["translations"]["language"]
        assert language == target_language(record["id"], SETTINGS.languages)
        assert detect_language(record["translations"]["background"]) == language
        assert set(record["translations"]) == {"language", *SETTINGS.translate_fields}
        passages = provenance[record["id"]]["passages"]
        assert passages[0]["key"] == f"song{index:03d}.md#0" and passages[0]["used"] is (
            record["id"] != "item010"
        )


def test_budget_stops_the_run_and_reruns_finish_with_the_same_output(tmp_path):
    catalogue, docs = _corpus(tmp_path)
    full = tmp_path / "full" / "train.jsonl"
    with ChatServer(FakeCurator(PLAN, retry_after="0.05")) as server:
        _run(server, catalogue, docs, full)

    parts = tmp_path / "parts" / "train.jsonl"
    reports = []
    with ChatServer(FakeCurator(PLAN, retry_after="0.05")) as server:
        while not reports or not reports[-1]["complete"]:
            reports.append(_run(server, catalogue, docs, parts, budget=7))
            assert reports[-1]["requests"]["used"] <= 7
            assert len(reports) < 20, "the runs make no progress"
    first = reports[0]
    assert not first["complete"] and "budget of 7 spent" in first["stopped"] and first["pending"] > 0
    assert len(reports) >= 3
    # Each partial output already holds the finished items, in catalogue order.
    pendings = [r["pending"] for r in reports]
    assert pendings == sorted(pendings, reverse=True) and pendings[-1] == 0
    assert parts.read_bytes() == full.read_bytes()
    state_ids = [json.loads(line)["id"] for line in (output_paths(parts)["state"] / "state.jsonl").open()]
    assert len(state_ids) == len(set(state_ids)) == 16  # every item once: nothing lost or duplicated
    statuses = [
        (p["id"], p["status"], p["reason"])
        for path in (full, parts)
        for p in map(json.loads, output_paths(path)["provenance"].read_text().splitlines())
    ]
    assert statuses[:16] == statuses[16:]


def test_rerun_after_completion_sends_nothing_and_changed_settings_are_refused(tmp_path):
    catalogue, docs = _corpus(tmp_path, n=3)
    out = tmp_path / "out" / "train.jsonl"
    with ChatServer(FakeCurator()) as server:
        _run(server, catalogue, docs, out)
        before = out.read_bytes()
        again = _run(server, catalogue, docs, out)
        assert again["requests"]["used"] == 0 and out.read_bytes() == before
        with pytest.raises(InputError, match="languages"):
            _run(server, catalogue, docs, out, settings=CurateSettings(languages=("it",)))
        with pytest.raises(InputError, match="not supported"):
            _run(server, catalogue, docs, tmp_path / "x.jsonl", settings=CurateSettings(languages=("xx",)))


def test_source_language_share_stays_untranslated(tmp_path):
    catalogue, docs = _corpus(tmp_path, n=8)
    out = tmp_path / "out" / "train.jsonl"
    settings = CurateSettings(languages=("en", "de"))
    with ChatServer(FakeCurator()) as server:
        _run(server, catalogue, docs, out, settings=settings)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    chosen = {r["id"]: target_language(r["id"], settings.languages) for r in records}
    assert set(chosen.values()) == {"en", "de"}
    for record in records:
        if chosen[record["id"]] == "en":
            assert record["translations"] == {}
        else:
            assert record["translations"]["language"] == "de"


def test_wrong_endpoint_stops_the_run_and_server_outage_leaves_items_pending(tmp_path):
    catalogue, docs = _corpus(tmp_path, n=12)
    with ChatServer(lambda request: Reply(status=401)) as server, pytest.raises(LLMConfigError):
        _run(server, catalogue, docs, tmp_path / "a" / "train.jsonl")
    report = json.loads(output_paths(tmp_path / "a" / "train.jsonl")["report"].read_text())
    assert report["pending"] == 12 and "refused" in report["stopped"]

    with ChatServer(lambda request: Reply(status=503)) as server:
        report = _run(server, catalogue, docs, tmp_path / "b" / "train.jsonl")
    assert not report["complete"] and report["pending"] == 12 and "in a row failed" in report["stopped"]
    assert len(report["failures"]) >= 8 and all("HTTP 503" in m for m in report["failures"].values())


def test_cli_exit_codes(tmp_path, capsys):
    from clamp3.cli.main import main

    catalogue, docs = _corpus(tmp_path, n=2)
    out = tmp_path / "out" / "train.jsonl"
    with ChatServer(FakeCurator()) as server:
        common = ["--llm-url", server.url, "--llm-model", "fake", "--languages", "de", "--no-progress"]
        assert main(["curate", str(tmp_path / "none.csv"), str(docs), str(out), *common]) == 2
        assert "none.csv: catalogue file not found" in capsys.readouterr().err
        assert main(["curate", str(catalogue), str(docs), str(out), *common, "--max-requests", "1"]) == 3
        # Finished, but one catalogue row could not be used: named, left out, exit 1 as embed.
        assert main(["curate", str(catalogue), str(docs), str(out), *common]) == 1
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["kept"] == 2 and summary["pending"] == 0
        assert summary["rejected"] == {"catalogue_error": 1}
        lines = catalogue.read_text(encoding="utf-8").splitlines()
        good = catalogue.with_name("good.csv")
        good.write_text("\n".join(line for line in lines if "none.abc" not in line) + "\n", encoding="utf-8")
        assert main(["curate", str(good), str(docs), str(tmp_path / "good" / "train.jsonl"), *common]) == 0
        capsys.readouterr()
        bad = catalogue.with_name("bad.csv")
        rows = [lines[0], *(line for line in lines if "none.abc" in line)]
        bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
        assert main(["curate", str(bad), str(docs), str(tmp_path / "bad" / "train.jsonl"), *common]) == 2
        assert f"error: {bad}: no catalogue row can be used (1 rejected" in capsys.readouterr().err
