"""Settings parsing: defaults, types, and start-up errors that name the key and the allowed values."""

import re
from pathlib import Path

import pytest

from embedding_app.config.env_file import read_env_file
from embedding_app.config.models import DEFAULT_MODEL_ID, ModelSpec
from embedding_app.config.settings import (
    Settings,
    SettingsError,
    exposure_warnings,
    load_settings,
    settings_from_env,
)

ROOT = Path(__file__).resolve().parent.parent


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
    ({"MODEL_PROMPTS": "[" * 100_000 + "]" * 100_000}, ["MODEL_PROMPTS", "nested too deeply"]),
    ({"MODEL_PROMPTS": '{"a": ' * 100_000 + "1" + "}" * 100_000}, ["MODEL_PROMPTS", "nested too deeply"]),
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


@pytest.mark.parametrize("key", ["API_KEY", "API_KEY_FILE"])
@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_api_key_set_to_no_key_is_an_error_not_open_access(key, value):
    # In compose, API_KEY=${UNSET} in .env reaches the server as an empty API_KEY.
    with pytest.raises(SettingsError) as error:
        settings_from_env({key: value})
    assert f"{key} is set but holds no key" in str(error.value) and f"unset {key}" in str(error.value)


def test_absent_api_key_means_no_authentication():
    assert settings_from_env({}).api_keys == ()


def test_env_file_line_that_does_not_parse_is_named_without_its_value(tmp_path):
    path = tmp_path / ".env"
    path.write_text('# settings\nLOG_LEVEL=info\n\n\nAPI_KEY="sk-unterminated\nCORS_ALLOW_ORIGINS=\n')
    with pytest.raises(SettingsError) as error:
        read_env_file(str(path), {})
    assert f"{path}, line 5: not understood" in str(error.value)
    assert "sk-unterminated" not in str(error.value)


SHIPPED_ENV = (ROOT / ".env").read_text()
# .env files that would have served without a key although one was meant, or silently lost a setting.
REFUSED_ENV_FILES = {
    "key-then-shipped-file": ("API_KEY=sk-secret\n" + SHIPPED_ENV.replace("#API_KEY=", "API_KEY="),
                              ["line", "API_KEY is set a second time (first on line 1)"]),
    "key-then-bare-key": ("API_KEY=sk-secret\nLOG_LEVEL=info\nAPI_KEY\n", ["line 3", "API_KEY", "second time"]),
    "bare-key": ("LOG_LEVEL=info\nAPI_KEY\n", ["line 2", "API_KEY has no '='"]),
    "unresolved-variable": ("API_KEY=${UNDEFINED_SECRET}\n", ["line 1", "API_KEY", "${UNDEFINED_SECRET}",
                                                               "${UNDEFINED_SECRET:-value}"]),
    "unresolved-in-double-quotes": ('API_KEY="sk-${UNDEFINED_SECRET}"\n', ["${UNDEFINED_SECRET}"]),
    "empty-key": ("API_KEY=\n", ["line 1", "API_KEY is empty", "remove the line"]),
    "blank-key": ("API_KEY= \n", ["API_KEY is empty"]),
    "empty-key-file": ("API_KEY_FILE=\n", ["API_KEY_FILE is empty"]),
    "lower-case-key": ("api_key=sk-secret\n", ["line 1", "api_key is not a setting: did you mean API_KEY?"]),
    "plural-key": ("API_KEYS=sk-secret\n", ["API_KEYS is not a setting: did you mean API_KEY?"]),
    "british-quantise": ("QUANTISE=int8\n", ["QUANTISE", "did you mean QUANTIZE?"]),
    "misspelt-workers": ("EMBEDING_SERVER_WORKERS=4\n", ["did you mean EMBEDDING_SERVER_WORKERS?"]),
    "dollar-for-compose": ("API_KEY=Xq7$kP9zL2\n", ["line 1", "API_KEY", "'$'", "single quotes"]),
    "double-dollar": ('API_KEY="Xq7$$kP9zL2"\n', ["API_KEY", "single quotes"]),
    "same-setting-twice": ("MODEL_NAME=\nQUANTIZE=bf16\nMODEL_NAME=BAAI/bge-small-en-v1.5\n",
                           ["line 3", "MODEL_NAME is set a second time (first on line 1)"]),
}


@pytest.mark.parametrize("text, words", REFUSED_ENV_FILES.values(), ids=REFUSED_ENV_FILES.keys())
def test_env_file_that_could_drop_a_setting_is_refused_naming_the_line(tmp_path, text, words):
    path = tmp_path / ".env"
    path.write_text(text)
    with pytest.raises(SettingsError) as error:
        load_settings({}, str(path))
    message = str(error.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message
    for secret in ("sk-secret", "kP9zL2"):
        assert secret not in message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1"])
def test_env_file_not_in_utf8_is_refused_naming_the_file(tmp_path, encoding):
    path = tmp_path / ".env"
    path.write_bytes("# réglages\nLOG_LEVEL=info\n".encode(encoding))
    with pytest.raises(SettingsError) as error:
        load_settings({}, str(path))
    assert str(path) in str(error.value) and "UTF-8" in str(error.value)


def test_env_file_with_a_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes("LOG_LEVEL=debug\n".encode("utf-8-sig"))
    assert load_settings({}, str(path)).settings.log_level == "debug"


@pytest.mark.parametrize("line, environ, keys", [
    ("API_KEY='Xq7$kP9zL2'", {}, ("Xq7$kP9zL2",)),  # single quotes: literal, for compose and here alike
    ("API_KEY='${NOT_A_VARIABLE}'", {}, ("${NOT_A_VARIABLE}",)),
    ("API_KEY=${SECRET}", {"SECRET": "sk-from-env"}, ("sk-from-env",)),
    ("API_KEY=${SECRET:-sk-default}", {}, ("sk-default",)),
    ("API_KEY=sk-a,sk-b", {"API_KEY": "sk-env"}, ("sk-env",)),  # the environment wins
])
def test_env_file_values_resolve_like_compose(tmp_path, line, environ, keys):
    path = tmp_path / ".env"
    path.write_text(line + "\n")
    assert load_settings(environ, str(path)).settings.api_keys == keys


def test_env_file_variables_need_resolving_only_where_the_environment_does_not_set_the_key(tmp_path):
    # In the compose stack the server reads the same .env, but compose has resolved ${NAME} from the shell already.
    path = tmp_path / ".env"
    path.write_text("HF_TOKEN=${MY_HF_TOKEN}\nAPI_KEY=${MY_API_KEY}\n")
    loaded = load_settings({"HF_TOKEN": "hf_resolved", "API_KEY": "sk-resolved"}, str(path))
    assert (loaded.settings.hf_token, loaded.settings.api_keys) == ("hf_resolved", ("sk-resolved",))
    with pytest.raises(SettingsError, match="API_KEY is set but holds no key"):  # compose made an unset one ""
        load_settings({"HF_TOKEN": "hf_resolved", "API_KEY": ""}, str(path))
    with pytest.raises(SettingsError, match="line 2: API_KEY refers to"):
        load_settings({"HF_TOKEN": "hf_resolved"}, str(path))


@pytest.mark.parametrize("blank", ["", " "])
def test_empty_environment_value_does_not_blank_the_env_file_key(tmp_path, blank):
    path = tmp_path / ".env"
    path.write_text("API_KEY=sk-secret\n")
    with pytest.raises(SettingsError) as error:
        load_settings({"API_KEY": blank}, str(path))
    assert "API_KEY is empty in the environment" in str(error.value) and "sk-secret" not in str(error.value)


@pytest.mark.parametrize("name", ["api_key", "API_KEYS", "Api_Key", "APIKEY", "API_KEY_FILES"])
def test_misspelt_api_key_in_the_environment_stops_the_start_up(name):
    with pytest.raises(SettingsError) as error:
        load_settings({name: "sk-secret"}, "")
    assert f"sets {name}, not API_KEY" in str(error.value) and "sk-secret" not in str(error.value)


def test_misspelt_key_in_the_environment_is_a_warning_naming_the_known_key():
    loaded = load_settings({"QUANTISE": "int8", "API_KEYS": "x", "API_KEY": "sk-a", "HOME": "/root",
                            "OPENAI_API_KEY": "sk-b", "HF_API_KEY": "x"}, "")
    assert loaded.settings.quantize == "true" and loaded.settings.api_keys == ("sk-a",)
    assert loaded.warnings == ("the environment variable QUANTISE is not a setting: did you mean QUANTIZE? (ignored)",
                               "the environment variable API_KEYS is not a setting: did you mean API_KEY? (ignored)")


def test_unknown_env_file_key_is_a_warning_and_stack_keys_are_welcome(tmp_path):
    path = tmp_path / ".env"
    path.write_text("EMBEDDING_PUBLISH=127.0.0.1:7861\nPROXY_MAX_IN_FLIGHT=8\nHF_HOME=/tmp/hf\nCOLOR=blue\n")
    assert load_settings({}, str(path)).warnings == (
        f"{path}, line 4: COLOR is not a setting of this server or its compose stack: ignored",)


def test_shipped_env_file_loads_without_a_word_and_without_a_key():
    loaded = load_settings({}, str(ROOT / ".env"))
    assert loaded.warnings == () and loaded.settings.api_keys == ()
    assert loaded.settings.host == "127.0.0.1" and Settings().host == "127.0.0.1"
    assert not re.search(r"^\s*API_KEY\s*=", SHIPPED_ENV, re.MULTILINE)


def test_a_key_added_at_the_top_of_the_shipped_env_file_is_required(tmp_path):
    path = tmp_path / ".env"
    path.write_text("API_KEY=sk-secret\n" + SHIPPED_ENV)
    assert load_settings({}, str(path)).settings.api_keys == ("sk-secret",)


def test_known_keys_lists_every_key_settings_reads():
    from embedding_app.config.settings import known_keys

    source = "".join(path.read_text() for path in (ROOT / "embedding_app" / "config").glob("*.py"))
    read = set(re.findall(r'\benv(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert {"API_KEY", "API_KEY_FILE", "SERVED_MODEL_NAME", "MODEL_PROMPTS"} <= read == set(known_keys())


def test_open_api_on_a_network_address_is_warned_about():
    assert "anyone who reaches port 7860" in exposure_warnings(Settings(host="0.0.0.0"))[0]
    assert exposure_warnings(Settings(host="0.0.0.0", api_keys=("k",))) == []
    for host in ("127.0.0.1", "::1", "localhost"):
        assert exposure_warnings(Settings(host=host)) == []


def test_api_key_file_holds_one_key_a_line(tmp_path):
    path = tmp_path / "api_key"
    path.write_text("sk-first\n\nsk-second, sk-third\n")
    assert settings_from_env({"API_KEY_FILE": str(path)}).api_keys == ("sk-first", "sk-second", "sk-third")


@pytest.mark.parametrize("content, env, words", [
    (None, {}, ["API_KEY_FILE=", "cannot be read", "No such file"]),
    ("\n \n", {}, ["API_KEY_FILE=", "holds no key"]),
    ("sk-file", {"API_KEY": "sk-env"}, ["API_KEY and API_KEY_FILE are both set"]),
])
def test_api_key_file_that_holds_no_key_stops_the_start_up(tmp_path, content, env, words):
    path = tmp_path / "api_key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as error:
        settings_from_env({"API_KEY_FILE": str(path), **env})
    for word in words:
        assert word in str(error.value)


def test_the_proxy_defaults_the_settings_it_shares_with_the_server_to_the_server_defaults():
    script = (ROOT / "deploy" / "nginx" / "start.sh").read_text()
    defaults = {name: int(value) for name, value in re.findall(r'integer (\w+) "\$\{\1:-\}" (\d+) ', script)}
    server = settings_from_env({})
    shared = {"MAX_REQUEST_BYTES": server.max_request_bytes, "EMBEDDING_SERVER_TIMEOUT": server.timeout,
              "EMBEDDING_SERVER_WORKERS": server.workers}
    assert {name: defaults.get(name) for name in shared} == shared


def test_the_shipped_env_file_restates_no_default():
    values, _ = read_env_file(str(ROOT / ".env"), {})
    assert {key: value for key, value in values.items() if value} == {}  # the defaults live in the code only
