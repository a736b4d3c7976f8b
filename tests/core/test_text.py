from bullet_py.core.text import exceeds, utf16_units, xhr_body


def test_units_count_astral_as_two():
    assert utf16_units("abc") == 3
    assert utf16_units("Zoë 😀") == 6
    assert utf16_units("😀😀") == 4


def test_exceeds_at_the_limit():
    assert not exceeds("é" * 10, 10)
    assert exceeds("é" * 11, 10)
    assert not exceeds("😀" * 5, 10)
    assert exceeds("😀" * 5 + "a", 10)


def test_xhr_body_adds_a_bom_only_when_one_leads():
    assert xhr_body("x\ufeff") == "x\ufeff".encode()
    assert xhr_body("\ufeffx") == "\ufeff\ufeffx".encode()
