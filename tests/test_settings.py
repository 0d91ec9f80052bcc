"""Settings parsing: defaults, types, and start-up errors that name the key and the allowed values."""

import pytest

from embedding_app.model_source import DEFAULT_MODEL_ID, ModelSpec
from embedding_app.settings import Settings, SettingsError, settings_from_env


def test_defaults_when_environment_is_empty():
    settings = settings_from_env({})
    assert settings == Settings()
    assert (settings.port, settings.quantize, settings.normalize) == (7860, "true", True)


def test_values_are_parsed_into_types():
    settings = settings_from_env({"EMBEDDING_SERVER_PORT": "8000", "EMBEDDING_SERVER_WORKERS": "3",
                                  "QUANTIZE": "False", "POOL_TYPE": "MAX", "API_KEY": "a, b,", "NORMALIZE": "off"})
    assert (settings.port, settings.workers, settings.quantize, settings.pool_type) == (8000, 3, "false", "max")
    assert settings.api_keys == ("a", "b")
    assert settings.normalize is False


@pytest.mark.parametrize("env, words", [
    ({"QUANTIZE": "maybe"}, ["QUANTIZE", "maybe", "true", "false", "bf16"]),
    ({"POOL_TYPE": "cls"}, ["POOL_TYPE", "mean", "max", "bos", "eos"]),
    ({"EMBEDDING_SERVER_PORT": "http"}, ["EMBEDDING_SERVER_PORT", "not an integer"]),
    ({"EMBEDDING_SERVER_WORKERS": "0"}, ["EMBEDDING_SERVER_WORKERS", "1.."]),
    ({"EMBEDDING_SERVER_THREADS_PER_WORKER": "many"}, ["EMBEDDING_SERVER_THREADS_PER_WORKER", "integer", "auto"]),
    ({"EMBEDDING_SERVER_THREADS_PER_WORKER": "0"}, ["EMBEDDING_SERVER_THREADS_PER_WORKER", "1..256", "auto"]),
    ({"TRUNCATE": "sometimes"}, ["TRUNCATE", "true", "false"]),
    ({"MODEL_NAME": "a=x,a=y"}, ["MODEL_NAME", "two models as 'a'"]),
    ({"MODEL_NAME": "default,default"}, ["MODEL_NAME", "two models as 'all-MiniLM-L6-v2'"]),
    ({"MODEL_NAME": "x,,y"}, ["MODEL_NAME", "served-name=source"]),
    ({"MODEL_NAME": "=x"}, ["MODEL_NAME", "served-name=source"]),
    ({"MODEL_NAME": "a=x,y", "SERVED_MODEL_NAME": "z"}, ["SERVED_MODEL_NAME", "MODEL_NAME", "served-name=source"]),
    ({"MODEL_ALIASES": "gpt=nope"}, ["MODEL_ALIASES", "nope", "all-MiniLM-L6-v2"]),
    ({"MODEL_ALIASES": "gpt"}, ["MODEL_ALIASES", "alias=served-name"]),
    ({"MODEL_ALIASES": "all-MiniLM-L6-v2=default"}, ["MODEL_ALIASES", "already names a model"]),
    ({"MODEL_ALIASES": "a=default,a=default"}, ["MODEL_ALIASES", "already names a model"]),
    ({"MODEL_PROMPTS": "query=x"}, ["MODEL_PROMPTS", "JSON"]),
    ({"MODEL_PROMPTS": '["x"]'}, ["MODEL_PROMPTS", "object"]),
    ({"MODEL_PROMPTS": '{"bge": {}}'}, ["MODEL_PROMPTS", "bge", "all-MiniLM-L6-v2"]),
    ({"MODEL_PROMPTS": '{"all-MiniLM-L6-v2": {"query": "q: "}}'}, ["MODEL_PROMPTS", "prompts"]),
    ({"MODEL_PROMPTS": '{"all-MiniLM-L6-v2": {"prompts": {"query": 1}}}'}, ["MODEL_PROMPTS", "strings"]),
    ({"MODEL_PROMPTS": '{"all-MiniLM-L6-v2": {"default_prompt_name": 3}}'}, ["MODEL_PROMPTS", "null"]),
])
def test_bad_values_name_the_key_and_allowed_values(env, words):
    with pytest.raises(SettingsError) as error:
        settings_from_env(env)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("value, threads", [("auto", None), (" Auto ", None), ("3", 3)])
def test_threads_per_worker_is_a_count_or_auto(value, threads):
    assert settings_from_env({"EMBEDDING_SERVER_THREADS_PER_WORKER": value}).threads_per_worker == threads


def test_secrets_are_not_in_repr():
    settings = settings_from_env({"HF_TOKEN": "hf_secret", "API_KEY": "sk-secret"})
    assert "secret" not in repr(settings)
    assert settings.hf_token == "hf_secret"


def test_limits_and_security_settings_are_parsed():
    settings = settings_from_env({"MAX_TOKENS_PER_INPUT": "128", "MAX_REQUEST_BYTES": "4096", "TRUNCATE": "no",
                                  "CORS_ALLOW_ORIGINS": "https://a.example, https://b.example",
                                  "TRUST_REMOTE_CODE": "yes"})
    assert (settings.max_tokens_per_input, settings.max_request_bytes, settings.truncate) == (128, 4096, False)
    assert settings.cors_allow_origins == ("https://a.example", "https://b.example")
    assert settings.trust_remote_code is True
    defaults = Settings()
    assert (defaults.max_tokens_per_input, defaults.max_request_bytes) == (0, 8 * 1024 * 1024)
    assert defaults.api_keys == () and defaults.cors_allow_origins == () and defaults.trust_remote_code is False


def test_model_name_is_a_list_of_sources_with_optional_served_names():
    settings = settings_from_env({"MODEL_NAME": "default, bge=/models/bge-small ,org/model"})
    assert settings.models == (ModelSpec(DEFAULT_MODEL_ID, ""), ModelSpec("bge", "/models/bge-small"),
                               ModelSpec("org/model", "org/model"))


@pytest.mark.parametrize("value", ["", "default", " default "])
def test_empty_or_default_model_name_means_the_packaged_model(value):
    assert settings_from_env({"MODEL_NAME": value}).models == (ModelSpec(DEFAULT_MODEL_ID, ""),)


def test_served_model_name_still_names_a_single_model(tmp_path):
    settings = settings_from_env({"MODEL_NAME": str(tmp_path), "SERVED_MODEL_NAME": "mine"})
    assert settings.models == (ModelSpec("mine", str(tmp_path)),)


def test_a_directory_is_served_by_its_name(tmp_path):
    assert settings_from_env({"MODEL_NAME": str(tmp_path) + "/"}).models[0].name == tmp_path.name


def test_model_aliases_attach_to_their_model_and_default_means_the_packaged_one():
    settings = settings_from_env({"MODEL_NAME": "bge=/m/bge,default",
                                  "MODEL_ALIASES": "text-embedding-3-small=default, ada=default, b=bge"})
    assert [spec.aliases for spec in settings.models] == [("b",), ("text-embedding-3-small", "ada")]


def test_model_prompts_are_parsed_per_model_and_null_clears_the_default():
    settings = settings_from_env({"MODEL_NAME": "a=/m/a,b=/m/b", "MODEL_PROMPTS": (
        '{"a": {"prompts": {"query": "q: "}, "default_prompt_name": "query"}, "b": {"default_prompt_name": null}}')})
    a, b = settings.models
    assert (a.prompts, a.default_prompt_name) == ((("query", "q: "),), "query")
    assert (b.prompts, b.default_prompt_name) == ((), "")


@pytest.mark.parametrize("value", ['" "', "' , '", '","'])
def test_api_key_set_to_no_key_is_an_error_not_open_access(value):
    with pytest.raises(SettingsError) as error:
        settings_from_env({"API_KEY": value.strip("'\"")})
    assert "API_KEY" in str(error.value) and "API_KEY=" in str(error.value)


def test_empty_api_key_means_no_authentication():
    assert settings_from_env({"API_KEY": ""}).api_keys == ()


def test_env_file_line_that_does_not_parse_is_named_without_its_value(tmp_path):
    from embedding_app.settings import check_env_file

    path = tmp_path / ".env"
    path.write_text('# settings\nLOG_LEVEL=info\n\n\nAPI_KEY="sk-unterminated\nCORS_ALLOW_ORIGINS=\n')
    with pytest.raises(SettingsError) as error:
        check_env_file(str(path))
    assert f"{path}, line 5: not understood" in str(error.value)
    assert "sk-unterminated" not in str(error.value)
