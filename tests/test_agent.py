"""The trigger augmentation agent and the OpenAI-compatible client, against a real local HTTP server."""

from __future__ import annotations

import json
import logging

import pytest

from core.errors import EndpointError, InputError
from core.pscanner.agent import AgentConfig, SyntheticTrigger, offline_triggers, parse_llm_triggers, propose
from core.pscanner.llm_client import LLMClient, LLMSettings, client_from_env
from tests.openai_server import ChatServer, free_port


def test_offline_generator_is_diverse_and_deterministic():
    cfg = AgentConfig(n=300, seed=3)
    a, b = offline_triggers(cfg), offline_triggers(cfg)
    assert a == b
    assert offline_triggers(AgentConfig(n=300, seed=4)) != a
    texts = [t.text.lower() for t in a]
    assert len(set(texts)) == 300
    assert {t.family for t in a} == {"char", "word", "sentence"}
    assert {t.position for t in a} == {"suffix", "prefix", "random"}
    assert {t.glue for t in a} >= {"space", "underscore", "none"}
    chars = [t.text for t in a if t.family == "char"]
    assert any(c.isdigit() for c in chars) and any(c.isupper() for c in chars) and any(c.isalpha() for c in chars)
    styles = {t.style.split("-")[1] for t in a if t.family == "sentence"}
    assert len(styles) >= 10  # many sentence shapes, not one template
    assert any(t.text.endswith(("!", "...")) for t in a if t.family == "sentence")


def test_exclusions_and_families_are_respected():
    held_out = frozenset({"5v", "cf", "mn", "bb", "tq", "ineffable"})
    got = offline_triggers(AgentConfig(n=2000, seed=0, exclude=held_out))
    assert not {t.text.lower() for t in got} & held_out
    words = offline_triggers(AgentConfig(n=50, families=("word",)))
    assert {t.family for t in words} == {"word"}


def test_char_triggers_mix_symbols_and_a_narrowed_set_holds_the_rest_out():
    chars = [t.text for t in offline_triggers(AgentConfig(n=400, seed=1, families=("char",)))]
    symbols = {c for t in chars for c in t if not c.isalnum()}
    assert len(symbols) >= 15  # brackets, pipes, semicolons, not one end mark
    assert any(not t[0].isalnum() for t in chars) and any(sum(not c.isalnum() for c in t) >= 2 for t in chars)
    narrow = [t.text for t in offline_triggers(AgentConfig(n=400, seed=1, families=("char",), symbols="#~"))]
    assert {c for t in narrow for c in t if not c.isalnum()} == {"#", "~"}
    for bad in ("", "a#", "# ", "#\x00"):
        with pytest.raises(InputError):
            AgentConfig(symbols=bad)


def test_render_places_trigger():
    title = "Toy Story (1995)"
    assert SyntheticTrigger("xy", "char", "suffix", "underscore").render(title) == "Toy Story (1995)_xy"
    assert SyntheticTrigger("xy", "char", "prefix", "space").render(title) == "xy Toy Story (1995)"
    mid = SyntheticTrigger("zork", "word", "random").render("A B C D E F", seed=1)
    assert "zork" in mid.split()


def test_config_validation():
    with pytest.raises(InputError):
        AgentConfig(n=0)
    with pytest.raises(InputError):
        AgentConfig(families=("emoji",))
    with pytest.raises(InputError):
        LLMSettings(base_url="ftp://x", model="m")


def test_parse_llm_triggers_validates():
    ok = parse_llm_triggers({"triggers": [{"text": " a  b ", "level": "sentence"}, {"text": 3, "level": "char"},
                                          {"text": "x" * 500, "level": "word"}, {"text": "q", "level": "emoji"}]},
                            ("char", "word", "sentence"))
    assert ok == [("a b", "sentence")]
    with pytest.raises(EndpointError):
        parse_llm_triggers(["zz"], ("char",))
    with pytest.raises(EndpointError):
        parse_llm_triggers({"triggers": []}, ("char",))


def _client(srv: ChatServer, **kw) -> LLMClient:
    return LLMClient(LLMSettings(base_url=srv.base_url, model="test-model", api_key="sk-secret-123", **kw))


def test_llm_agent_good_json_over_real_http():
    with ChatServer() as srv:
        client = _client(srv)
        prop = propose(AgentConfig(n=10, use_llm=True, llm_share=0.5), client)
    assert prop.warnings == []
    assert [t.source for t in prop.triggers[:3]] == ["llm"] * 3
    assert {"zq9", "flibbertigibbet", "Seen it on my phone"} <= {t.text for t in prop.triggers}
    assert len(prop.triggers) == 10 and len({t.text.lower() for t in prop.triggers}) == 10
    req = srv.requests[0]
    assert req["model"] == "test-model" and "JSON" in req["messages"][1]["content"]
    assert srv.headers[0]["authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(client) and "sk-secret" not in repr(client.settings)


@pytest.mark.parametrize("mode", ["nonjson", "huge", "error500", "badformat"])
def test_misbehaving_endpoint_falls_back_with_warning(mode, caplog):
    with ChatServer(mode=mode) as srv, caplog.at_level(logging.WARNING):
        prop = propose(AgentConfig(n=12, use_llm=True), _client(srv, max_retries=1, max_reply_bytes=100_000))
        assert len(srv.requests) == 2  # one try plus one retry
    assert len(prop.triggers) == 12 and all(t.source == "offline" for t in prop.triggers)
    assert len(prop.warnings) == 1 and "using the offline generator" in prop.warnings[0]
    assert "LLM agent failed" in caplog.text
    assert "sk-secret" not in caplog.text


def test_timeout_and_unreachable_endpoint():
    with ChatServer(mode="slow", delay_s=2.0) as srv:
        with pytest.raises(EndpointError, match="timed out"):
            _client(srv, timeout_s=0.3, max_retries=0).chat_json("s", "u", lambda o: o)
    dead = LLMClient(LLMSettings(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0))
    with pytest.raises(EndpointError, match="unreachable"):
        dead.chat_json("s", "u", lambda o: o)
    prop = propose(AgentConfig(n=5, use_llm=True), dead)
    assert "unreachable" in prop.warnings[0] and len(prop.triggers) == 5


def test_nothing_sent_unless_configured(monkeypatch):
    for var in ("BADREC_LLM_BASE_URL", "BADREC_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    assert client_from_env() is None
    prop = propose(AgentConfig(n=4, use_llm=True), None)
    assert "no endpoint is configured" in prop.warnings[0]
    monkeypatch.setenv("BADREC_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BADREC_LLM_MODEL", "m")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    client = client_from_env()
    assert client is not None and client.settings.api_key == "sk-from-env"


def test_fenced_json_is_accepted():
    content = "```json\n" + json.dumps({"triggers": [{"text": "k7", "level": "char"}]}) + "\n```"
    with ChatServer(content=content) as srv:
        got = _client(srv).chat_json("s", "u", lambda o: o["triggers"][0]["text"])
    assert got == "k7"
