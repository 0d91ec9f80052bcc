"""The OpenAPI document and the Swagger UI page, through Flask's test client on the tiny model."""

import json
import re

import pytest

from embedding_app.api.error_catalogue import CATALOGUE
from embedding_app.api.parsing import parse_request
from embedding_app.api.schemas import EmbeddingRequest

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def statuses(document) -> dict:
    return {path: {method: set(op["responses"]) for method, op in item.items()} for path, item in document["paths"].items()}


def test_every_route_is_documented_with_its_statuses(make_client, tiny_source, tiny_embedder, tiny_reranker):
    from embedding_app.runtime.registry import ServedModel

    models = [ServedModel(tiny_source, tiny_embedder), tiny_reranker]
    document = make_client(models=models, api_keys=("secret",)).get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert statuses(document) == {
        "/v1/embeddings": {"post": {"200", "400", "401", "404", "413", "415", "500", "503"}},
        "/v1/models": {"get": {"200", "401"}},
        "/v1/models/{model_id}": {"get": {"200", "401", "404"}},
        **{path: {"post": {"200", "400", "401", "404", "413", "415", "500", "503"}} for path in (
            "/v1/rerank", "/v2/rerank", "/rerank", "/v1/embed", "/v2/embed", "/embed", "/tokenize", "/detokenize")},
        "/health": {"get": {"200"}},
        "/": {"get": {"200"}},
        "/metrics": {"get": {"200"}},
    }


def test_every_error_status_uses_the_error_schema(document):
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == ERROR_REF


def test_documented_error_codes_are_the_catalogue_codes_of_each_status(document):
    code = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert code["anyOf"][0]["enum"] == list(CATALOGUE)
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status != "200":
                    examples = response["content"]["application/json"]["examples"]
                    assert set(examples) == {code for code, fault in CATALOGUE.items() if fault.status == int(status)}
                    for code, example in examples.items():
                        assert example["value"]["error"]["code"] == code and f"`{code}`" in response["description"]


def test_request_schema_is_the_pydantic_model_bounded_by_the_loaded_model(document, tiny_embedder):
    schema = document["components"]["schemas"]["EmbeddingRequest"]
    assert schema["additionalProperties"] is False and schema["required"] == ["input"]
    assert set(schema["properties"]) == set(EmbeddingRequest.model_fields)
    text, texts, ids, id_lists = schema["properties"]["input"]["anyOf"]
    assert text == {"type": "string", "minLength": 1}
    assert texts["minItems"] == id_lists["minItems"] == 1 and texts["maxItems"] == 2048
    assert ids["items"] == {"type": "integer", "minimum": 0, "maximum": tiny_embedder.info.vocab_size - 1}
    dimensions = schema["properties"]["dimensions"]["anyOf"][0]
    assert (dimensions["minimum"], dimensions["maximum"]) == (1, tiny_embedder.info.dimensions)


def test_request_examples_pass_the_validator_and_embed(document, client):
    examples = document["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"single", "array", "token_ids", "base64"}
    for example in examples.values():
        parse_request(json.dumps(example["value"]).encode())
        assert client.post("/v1/embeddings", json=example["value"]).status_code == 200


def test_bearer_key_is_required_with_api_key(make_client):
    document = make_client(api_keys=("secret",)).get("/openapi.json").get_json()
    assert document["paths"]["/v1/embeddings"]["post"]["security"] == [{"bearerAuth": []}]
    assert "bearerAuth" in document["components"]["securitySchemes"]


def test_without_api_key_docs_show_no_authorize_button_padlocks_or_401(document):
    # Swagger UI draws "Authorize" from securitySchemes and a padlock for each operation with security.
    assert "securitySchemes" not in document["components"]
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert not any("security" in op or "401" in op["responses"] for op in operations)
    assert statuses(document)["/v1/embeddings"]["post"] == {"200", "400", "404", "413", "415", "500", "503"}


def test_docs_page_loads_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "validatorUrl: null" in html and "/openapi.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3 and all(asset.startswith("/docs/static/") for asset in assets)
    assert not re.search(r"https?://|//cdn|unpkg|jsdelivr", html)
    for asset in assets:
        assert client.get(asset).status_code == 200


def test_index_points_to_the_docs(client):
    assert client.get("/").get_json()["docs"] == "/docs"


def test_several_models_are_described_with_their_names_and_a_working_prompt_example(make_client, two_models):
    prompted_first = list(reversed(two_models))
    client = make_client(models=prompted_first)
    document = client.get("/openapi.json").get_json()
    request = document["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert request["model"]["examples"] == ["tiny-prompted", "small-alias", two_models[0].id]
    assert request["prompt_name"]["anyOf"] == [{"type": "string", "enum": ["passage", "query"]}, {"type": "null"}]
    assert "`tiny-prompted`" in document["info"]["description"] and f"`{two_models[0].id}`" in document["info"]["description"]
    examples = document["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    response = client.post("/v1/embeddings", json=examples["prompt"]["value"])
    assert response.status_code == 200 and response.get_json()["model"] == "tiny-prompted"


def test_without_prompts_prompt_name_is_documented_as_null_only(document):
    assert document["components"]["schemas"]["EmbeddingRequest"]["properties"]["prompt_name"]["anyOf"] == [
        {"type": "null"}]


def test_routes_no_served_model_can_answer_are_left_out(document, make_client, tiny_reranker):
    assert not {"/v1/rerank", "/v2/rerank", "/rerank"} & set(document["paths"])
    only_reranker = make_client(models=[tiny_reranker]).get("/openapi.json").get_json()
    assert not {"/v1/embed", "/v2/embed", "/embed"} & set(only_reranker["paths"])
    assert {"/v1/rerank", "/tokenize"} <= set(only_reranker["paths"])
