"""Several models in one server, found by served name, Hub id or alias (Flask test client, tiny models)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedding_app.inference.model_source import (
    DEFAULT_HUB_ID,
    DEFAULT_MODEL_ID,
    ModelSourceError,
    ModelSpec,
    resolve_model,
    resolve_models,
)

from .conftest import HUB_REVISION, PROMPTS
from .test_api import assert_error, embed


def test_a_request_without_model_is_answered_by_the_first_model(client_two, tiny_source):
    assert embed(client_two, input="hello").get_json()["model"] == tiny_source.served_name


def test_the_request_model_picks_the_second_model(client_two):
    assert embed(client_two, input="hello", model="tiny-prompted").get_json()["model"] == "tiny-prompted"


def test_an_alias_reaches_its_model_and_the_response_names_the_served_model(client_two):
    by_alias = embed(client_two, input="hello", model="small-alias").get_json()
    by_name = embed(client_two, input="hello", model="tiny-prompted").get_json()
    assert by_alias["model"] == "tiny-prompted"
    assert np.allclose(by_alias["data"][0]["embedding"], by_name["data"][0]["embedding"])


def test_models_list_has_every_model_in_model_name_order(client_two, tiny_source):
    assert [card["id"] for card in client_two.get("/v1/models").get_json()["data"]] == [tiny_source.served_name,
                                                                                    "tiny-prompted"]


def test_retrieve_finds_a_model_by_each_of_its_names(client_two):
    for name in ("tiny-prompted", "small-alias"):
        assert client_two.get(f"/v1/models/{name}").get_json()["id"] == "tiny-prompted"


def test_an_unknown_model_is_a_404_listing_the_served_ids(client_two, tiny_source):
    error = assert_error(embed(client_two, input="x", model="gpt-4"), 404, param="model", code="model_not_found")
    assert tiny_source.served_name in error["message"] and "tiny-prompted" in error["message"]
    assert_error(client_two.get("/v1/models/gpt-4"), 404, code="model_not_found")


def test_health_reports_each_model_with_its_names_and_prompts(client_two, tiny_source):
    health = client_two.get("/health").get_json()
    assert (health["status"], health["model"]) == ("ok", tiny_source.served_name)
    first, second = health["models"]
    assert first["id"] == tiny_source.served_name and first["prompts"] == []
    assert second["id"] == "tiny-prompted" and second["aliases"] == ["small-alias"]
    assert second["prompts"] == list(PROMPTS) and second["default_prompt_name"] is None


def test_index_lists_every_model(client_two, tiny_source):
    assert client_two.get("/").get_json()["models"] == [tiny_source.served_name, "tiny-prompted"]


def test_the_packaged_model_answers_to_its_hub_ids():
    source = resolve_model("", None)
    assert source.served_name == DEFAULT_MODEL_ID
    assert source.aliases == (DEFAULT_HUB_ID,)  # its short name is already the served name


def test_a_renamed_packaged_model_answers_to_both_hub_names():
    assert resolve_model(ModelSpec("mini", ""), None).aliases == (DEFAULT_HUB_ID, DEFAULT_MODEL_ID)


@pytest.mark.parametrize("name", [DEFAULT_HUB_ID, DEFAULT_MODEL_ID])
def test_the_packaged_models_own_names_load_the_packaged_copy_offline(name, minilm_dir):
    source = resolve_model(name, None)  # HF_HUB_OFFLINE=1: a download would fail
    assert source.path == minilm_dir.resolve() and source.served_name == name
    assert set(source.aliases) | {name} == {DEFAULT_HUB_ID, DEFAULT_MODEL_ID}


def test_a_hub_cache_snapshot_answers_to_its_hub_id_and_short_name(hub_cache):
    snapshot = hub_cache / "hub" / "models--test-org--tiny-bert" / "snapshots" / HUB_REVISION
    assert resolve_model(ModelSpec("tiny", str(snapshot)), None).aliases == ("test-org/tiny-bert", "tiny-bert")


def test_a_plain_directory_has_no_hub_alias_even_with_a_name_or_path(tmp_path, minilm_dir):
    # The packaged config.json says _name_or_path nreimers/MiniLM-L6-H384-uncased: the base model, not this one.
    shutil.copytree(minilm_dir, tmp_path / "copy")
    assert resolve_model(str(tmp_path / "copy"), None).aliases == ()


def test_a_hub_name_two_models_share_stays_with_the_first():
    first, second = resolve_models((ModelSpec("a", ""), ModelSpec("b", "")), None)
    assert first.aliases == (DEFAULT_HUB_ID, DEFAULT_MODEL_ID) and second.aliases == ()


def test_operator_aliases_come_first_and_keep_their_order():
    [source] = resolve_models((ModelSpec(DEFAULT_MODEL_ID, "", aliases=("text-embedding-3-small", "ada")),), None)
    assert source.aliases == ("text-embedding-3-small", "ada", DEFAULT_HUB_ID)


def test_model_prompts_add_to_and_replace_the_model_files_prompts(tiny_prompted_dir):
    spec = ModelSpec("p", str(tiny_prompted_dir), prompts=(("query", "Q: "), ("code", "code: ")),
                     default_prompt_name="query")
    source = resolve_model(spec, None)
    assert source.prompts == {"query": "Q: ", "passage": "passage: ", "code": "code: "}
    assert source.default_prompt_name == "query"


def test_a_default_prompt_name_the_model_lacks_stops_start_up(tiny_prompted_dir):
    with pytest.raises(ModelSourceError, match="default_prompt_name 'search'.*query, passage"):
        resolve_model(ModelSpec("p", str(tiny_prompted_dir), default_prompt_name="search"), None)
