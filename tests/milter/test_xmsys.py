"""X-MSYS-API parsing: Momentum's unfolding, RFC 2047, escapes, and the exact 550 replies."""
import pytest

from engage_milter import xmsys


def reply_of(value: str) -> str:
    with pytest.raises(xmsys.MsysError) as info:
        xmsys.parse(value)
    return str(info.value.reply)


def test_folded_value_unfolds_as_momentum_documents():
    value = '{"options" : {"open_tracking" : false }, "campaign_id" : "my_awes\r\n   ome_campaign" }'
    api = xmsys.parse(value)
    assert api.campaign_id == "my_awes ome_campaign"
    assert api.open_tracking is False and api.click_tracking is None


def test_folded_with_bare_lf_and_tab():
    api = xmsys.parse('{"campaign_id":\n\t"c1", "tags": ["a",\n "b"]}')
    assert api.campaign_id == "c1" and api.tags == ("a", "b")


def test_rfc2047_encoded_value():
    api = xmsys.parse('=?utf-8?B?eyJjYW1wYWlnbl9pZCI6ICJjYWbDqSJ9?=')
    assert api.campaign_id == "café"


def test_unicode_escapes():
    api = xmsys.parse('{"metadata": {"my_utf8": "\\u00e7\\u00a7"}}')
    assert api.metadata == {"my_utf8": "\u00e7\u00a7"}


def test_tags_beyond_ten_are_ignored():
    api = xmsys.parse('{"tags": [%s]}' % ",".join(f'"t{i}"' for i in range(13)))
    assert api.tags == tuple(f"t{i}" for i in range(10))
    assert "tags[10:]" in api.ignored


def test_unknown_keys_and_options_are_accepted_and_reported():
    api = xmsys.parse('{"ip_pool": "x", "options": {"transactional": true, "click_tracking": false}}')
    assert api.click_tracking is False
    assert set(api.ignored) == {"ip_pool", "options.transactional"}


def test_metadata_over_the_cap_is_trimmed_not_rejected():
    api = xmsys.parse('{"metadata": {"a": "%s", "b": "%s", "c": 1}}' % ("x" * 40, "y" * 40), max_metadata_bytes=60)
    assert api.metadata == {"a": "x" * 40, "c": 1}
    assert "metadata.b" in api.ignored


@pytest.mark.parametrize("value, reply", [
    ('{"campaign_id": "x",}', "550 5.6.0 JSON parsing error in X-MSYS-API: "),
    ('not json', "550 5.6.0 JSON parsing error in X-MSYS-API: "),
    ('{"a": NaN}', "550 5.6.0 JSON parsing error in X-MSYS-API: "),
    ('{"metadata": [1]}', "550 5.6.0 X-MSYS-API 'metadata' must be of type 'json object'"),
    ('{"metadata": "x"}', "550 5.6.0 X-MSYS-API 'metadata' must be of type 'json object'"),
    ('{"campaign_id": "%s"}' % ("c" * 65), "550 5.6.0 smtpapi_campaign_id context is limited to 64 bytes"),
    ('{"campaign_id": "%s"}' % ("é" * 33), "550 5.6.0 smtpapi_campaign_id context is limited to 64 bytes"),
    ('{"campaign_id": 5}', "550 5.6.0 X-MSYS-API 'campaign_id' must be of type 'string'"),
    ('{"tags": "a"}', "550 5.6.0 X-MSYS-API 'tags' must be of type 'json array'"),
    ('{"tags": [1]}', "550 5.6.0 X-MSYS-API 'tags' must be of type 'json array of strings'"),
    ('{"options": []}', "550 5.6.0 X-MSYS-API 'options' must be of type 'json object'"),
    ('{"options": {"open_tracking": "no"}}', "550 5.6.0 X-MSYS-API 'options.open_tracking' must be of type 'boolean'"),
    ('["a"]', "550 5.6.0 X-MSYS-API must be of type 'json object'"),
])
def test_invalid_headers_get_the_documented_replies(value, reply):
    assert reply_of(value).startswith(reply)


def test_campaign_id_of_exactly_64_bytes_is_fine():
    assert xmsys.parse('{"campaign_id": "%s"}' % ("c" * 64)).campaign_id == "c" * 64


def test_json_error_detail_names_the_position():
    assert reply_of('{"campaign_id" "x"}').endswith("Expecting ':' delimiter at character 15")


@pytest.mark.parametrize("value, detail", [
    ('{"metadata": {"n": 1e999}}', "number 1e999 is out of range"),
    ('{"metadata": {"n": -1E400}}', "number -1E400 is out of range"),
    ('{"metadata": {"n": NaN}}', "invalid JSON value NaN"),
    ('{"metadata": {"n": Infinity}}', "invalid JSON value Infinity"),
    ('{"metadata": {"n": ' + "1" * 5000 + '}}', "integer of 5000 digits is out of range"),
    ('{"metadata": ' + '{"a":' * 3000 + "1" + "}" * 3000 + "}", "nested deeper than 64 levels"),
    ('{"metadata": {"a": ' + "[" * 63 + "]" * 63 + "}}", "nested deeper than 64 levels"),
    ('{"campaign_id": "\\ud800"}', "a string holds a lone surrogate"),
    ('{"metadata": {"\\udc80": 1}}', "a string holds a lone surrogate"),
    ('{"tags": ["ok", "\\udfff"]}', "a string holds a lone surrogate"),
    ('=?x-no-such-charset?B?eyJjYW1wYWlnbl9pZCI6ICJjIn0=?=', "unknown charset in an encoded-word"),
    ('=?base64?B?eyJjYW1wYWlnbl9pZCI6ICJjIn0=?=', "unknown charset in an encoded-word"),
])
def test_what_is_not_storable_json_gets_the_documented_550(value, detail):
    reply = reply_of(value)
    assert reply.startswith("550 5.6.0 JSON parsing error in X-MSYS-API: " + detail), reply


def test_nesting_up_to_the_limit_and_surrogate_pairs_are_accepted():
    """64 levels in all: the header's object, metadata, and 62 arrays."""
    api = xmsys.parse('{"metadata": {"a": ' + "[" * 62 + "]" * 62 + '}, "campaign_id": "\\ud83d\\ude00"}')
    nested: list = []
    for _ in range(61):
        nested = [nested]
    assert api.campaign_id == "\U0001f600" and api.metadata == {"a": nested}
