"""The page at GET / in headless Chromium (Debian's chromium and chromium-driver, Selenium)."""

import shutil

import pytest

from tests.serving.test_server import server  # noqa: F401  (the running server fixture)
from translator.inference.translator import Translator

pytestmark = pytest.mark.slow

SENTENCE = "Zwei junge Männer spielen Fußball."


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    assert driver_path, "make test installs Debian's chromium-driver"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking"):  # fmt: skip
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_typing_a_sentence_shows_its_translation_and_heat_map(server, browser, trained_run):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = Translator.from_run_dir(trained_run[0].run_dir).translate([SENTENCE])[0]
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status") == "idle")
    browser.find_element(By.ID, "source").send_keys(SENTENCE)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status")
               == "translated")  # fmt: skip
    assert browser.find_element(By.ID, "translation").text == expected

    rows = browser.find_elements(By.CSS_SELECTOR, "#heat tbody tr")
    columns = browser.find_elements(By.CSS_SELECTOR, "#heat thead th")
    cells = browser.find_elements(By.CSS_SELECTOR, "#heat tbody td")
    assert len(rows) >= 2 and len(columns) >= 3  # output pieces x (corner + source pieces)
    assert len(cells) == len(rows) * (len(columns) - 1)
    shades = {c.get_attribute("style") for c in cells}
    assert len(shades) > 2  # really shaded by weight
    labels = [th.get_attribute("textContent") for th in browser.find_elements(By.CSS_SELECTOR,
              "#heat thead th, #heat tbody th")][1:]  # fmt: skip
    assert "junge" in labels and all(labels)  # "▁junge" shown without its word mark
    assert not [label for label in labels if "\u2581" in label]  # no SentencePiece word mark

    browser.find_element(By.ID, "want-nbest").click()  # alternatives on request
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#nbest li")) == 3)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_a_pasted_paragraph_keeps_its_lines_and_the_heat_map_picks_a_sentence(
    server,  # noqa: F811
    browser,
    trained_run,
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from translator.data import load_corpus

    first, second, third = load_corpus(trained_run[0].data, "train").source[:3]
    expected = Translator.from_run_dir(trained_run[0].run_dir).translate([first, second, third])
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    status = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status")  # noqa: E731
    wait.until(lambda d: status(d) == "idle")
    browser.execute_script(  # pasted at once, as a paste does
        "const s = document.getElementById('source'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));",
        f"{first} {second}\n\n{third}",
    )
    wait.until(lambda d: status(d) == "translated")
    shown = browser.find_element(By.ID, "translation").get_attribute("textContent")
    assert shown == f"{expected[0]} {expected[1]}\n\n{expected[2]}"  # line breaks kept

    picker = Select(browser.find_element(By.ID, "sentence"))
    assert browser.find_element(By.ID, "sentence-label").is_displayed()
    assert [o.text[:3] for o in picker.options] == ["1: ", "2: ", "3: "]

    def heat_columns():
        return [th.get_attribute("textContent")
                for th in browser.find_elements(By.CSS_SELECTOR, "#heat thead th")][1:]  # fmt: skip

    columns = {}
    for index in range(3):
        picker.select_by_index(index)
        columns[index] = heat_columns()
    assert len({tuple(c) for c in columns.values()}) == 3  # each sentence's own source pieces
    assert "Mädchen" in "".join(columns[2]) and "Mädchen" not in "".join(columns[0])
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_pointing_at_a_word_highlights_its_aligned_words_and_terminology_is_kept(
    server,  # noqa: F811
    browser,
    trained_run,
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    translator = Translator.from_run_dir(trained_run[0].run_dir)
    expected = translator.translate_detailed([SENTENCE], alignment=-1)[0]
    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    status = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status")  # noqa: E731
    wait.until(lambda d: status(d) == "idle")
    browser.find_element(By.ID, "source").send_keys(SENTENCE)
    wait.until(lambda d: status(d) == "translated")
    targets = browser.find_elements(By.CSS_SELECTOR, "#target-words span")
    assert [t.text for t in targets] == expected.text.split()
    for j, word in enumerate(targets):
        ActionChains(browser).move_to_element(word).perform()
        linked = browser.find_elements(By.CSS_SELECTOR, "#source-words span.linked")
        assert sorted(int(s.get_attribute("data-index")) for s in linked) == \
            sorted(i for i, k in expected.alignment if k == j)  # fmt: skip
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "status")).perform()
    assert not browser.find_elements(By.CSS_SELECTOR, "#words span.linked")

    browser.find_element(By.TAG_NAME, "summary").click()  # the terminology box
    browser.find_element(By.ID, "terms").send_keys("dog")
    wait.until(lambda d: status(d) == "translated"
               and "dog" in d.find_element(By.ID, "translation").text)  # fmt: skip
    constrained = translator.translate_detailed([SENTENCE], constraints=[["dog"]])[0]
    assert browser.find_element(By.ID, "translation").text == constrained.text
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
