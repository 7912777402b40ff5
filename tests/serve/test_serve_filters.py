"""The service's filters and facets, on an index with catalogue columns, on both back-ends: a
``where`` in every search request keeps exactly the matching items (ranked as without it), a bad
one is a 422 and never an unfiltered answer, and /api/facets lists the declared columns."""

from __future__ import annotations

import json

import pytest
from serve_support import QUERY_TEXT, client_for, library, make_app, tiny_model  # noqa: F401

pytest.importorskip("fastapi")

CATALOGUE = {
    "scores/bach_bwv66_6.mxl": {"composer": "Bach", "year": 1724, "tags": ["chorale"]},
    "midi/m21_k525short.mid": {"composer": "Mozart", "year": 1787, "tags": ["serenade"]},
    "texts/waltz.txt": {"composer": "Chopin", "year": 1847},
    "texts/lied.txt": {"composer": "Händel", "year": 1740, "tags": ["lied", "chorale"]},
}


@pytest.fixture(scope="module", params=["faiss", pytest.param("milvus", marks=pytest.mark.milvus)])
def client(request, library, tiny_model, tmp_path_factory):  # noqa: F811
    from clamp3.index import build_index

    root = tmp_path_factory.mktemp(f"filters_{request.param}")
    lib = library.copy(root)
    catalogue = root / "catalogue.jsonl"
    catalogue.write_text("".join(json.dumps({"path": p, **c}) + "\n" for p, c in CATALOGUE.items()))
    milvus = {"uri": str(root / "lib.db")} if request.param == "milvus" else None
    build_index(
        lib.emb,
        lib.idx,
        overwrite=True,
        backend=request.param,
        milvus=milvus,
        catalogue=catalogue,
        progress=False,
    )
    with client_for(make_app(lib, tiny_model)) as c:
        yield c


def test_health_names_the_backend(client, request):
    assert client.get("/api/health").json()["index_backend"] in ("faiss", "milvus")


def test_facets_list_declared_columns(client):
    columns = client.get("/api/facets").json()["columns"]
    assert set(columns) == {"modality", "composer", "year", "tags"}
    assert columns["year"] == {"type": "int", "values": [], "more": False, "min": 1724, "max": 1847}
    assert {"value": "chorale", "count": 2} in columns["tags"]["values"]
    assert sum(v["count"] for v in columns["modality"]["values"]) == 10  # hidden rows not counted


@pytest.mark.parametrize(
    "where,paths",
    [
        ("year >= 1740", {"midi/m21_k525short.mid", "texts/waltz.txt", "texts/lied.txt"}),
        (
            'composer in ["Bach", "Händel"] and tags contains "chorale"',
            {"scores/bach_bwv66_6.mxl", "texts/lied.txt"},
        ),
        (
            'not (composer == "Chopin")',
            {"scores/bach_bwv66_6.mxl", "midi/m21_k525short.mid", "texts/lied.txt"},
        ),
    ],
)
def test_where_keeps_exactly_the_matching_items_in_rank_order(client, where, paths):
    everything = client.get("/api/search", params={"q": QUERY_TEXT, "k": 100}).json()["results"]
    body = client.get("/api/search", params={"q": QUERY_TEXT, "k": 100, "where": where}).json()
    assert body["total"] == len(paths) and body["query"]["where"] == where
    assert [r["path"] for r in body["results"]] == [r["path"] for r in everything if r["path"] in paths]
    posted = client.post("/api/search", json={"q": QUERY_TEXT, "k": 100, "where": where}).json()
    assert posted["results"] == body["results"]
    # More like this, with the same filter: the source item never counts.
    source = everything[0]["id"]
    similar = client.get(f"/api/items/{source}/similar", params={"k": 100, "where": where}).json()
    assert {r["path"] for r in similar["results"]} == paths - {everything[0]["path"]}
    assert similar["total"] == len(similar["results"])


def test_where_and_modality_combine(client):
    body = client.get(
        "/api/search", params={"q": QUERY_TEXT, "k": 10, "modality": "text", "where": "year < 1800"}
    ).json()
    assert [r["path"] for r in body["results"]] == ["texts/lied.txt"]


@pytest.mark.parametrize("where", ["year >= ", 'titel == "x"', "year >= 'old'", "1 == 1 or year > 0"])
def test_a_bad_filter_is_a_422_never_an_unfiltered_answer(client, where):
    for response in (
        client.get("/api/search", params={"q": QUERY_TEXT, "where": where}),
        client.post("/api/search", json={"q": QUERY_TEXT, "where": where}),
    ):
        assert response.status_code == 422
        body = response.json()
        assert "results" not in body and body["message"].startswith("where: ")


def test_items_carry_their_catalogue_values(client):
    results = client.get("/api/search", params={"q": QUERY_TEXT, "k": 100}).json()["results"]
    by_path = {r["path"]: r["id"] for r in results}
    item = client.get(f"/api/items/{by_path['texts/lied.txt']}").json()
    assert item["metadata"] == {"composer": "Händel", "year": 1740, "tags": ["lied", "chorale"]}
    other = client.get(f"/api/items/{by_path['audio/sines_16k_mono_3s7.wav']}").json()
    assert other["metadata"] == {"composer": None, "year": None, "tags": None}
