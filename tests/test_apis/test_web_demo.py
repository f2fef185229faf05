# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""tools/demo/web_demo.py over HTTP (no browser): the page, a chat turn with a box prompt, a
second turn with the returned history, and clear errors for bad requests."""

import base64
import http.client
import importlib.util
import io
import json
import os.path as osp
import threading

import numpy as np
import pytest
from PIL import Image

from mmrefvlm.testing.tool_helpers import script_generation

from .conftest import ROOT, SCRIPTED, make_image


def load_web_demo():
    path = osp.join(ROOT, 'tools', 'demo', 'web_demo.py')
    spec = importlib.util.spec_from_file_location('mmrefvlm_tools_web_demo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def server(tiny_inferencer):
    srv = load_web_demo().serve(tiny_inferencer, port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def data_url(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def chat(server, **req):
    status, data = request(server, 'POST', '/api/chat', json.dumps(req).encode())
    return status, json.loads(data)


def test_page_and_info_on_loopback(server, tiny_inferencer):
    assert server.server_address[0] == '127.0.0.1'
    status, page = request(server, 'GET', '/')
    assert status == 200
    for element in ('id="image"', 'id="canvas"', 'id="question"', 'id="ask"', 'id="clear-chat"'):
        assert element.encode() in page
    assert b'http' not in page.split(b'<script>')[1]  # nothing is loaded from elsewhere
    status, info = request(server, 'GET', '/api/info')
    info = json.loads(info)
    assert info['config'] == 'demo_stage2.py' and info['units'] == tiny_inferencer.units
    assert info['tasks'][0] == 'auto' and 'res' in info['tasks']


def test_chat_turns_keep_history_and_prompts(server, monkeypatch):
    script_generation(monkeypatch, SCRIPTED)
    img = make_image(40, 56)
    box = {'type': 'box', 'box': [4, 6, 20, 30]}
    status, out = chat(server, image=data_url(img), question='What is <region>?', prompt=box)
    assert status == 200, out
    assert out['question'] == 'What is [VPT]?' and out['task'] == 'ig_box'
    assert out['answer'] == 'the red circle is left of the blue square.'
    colored = [(s['text'], s['color']) for s in out['segments'] if s['color']]
    assert colored == [('the red circle', '#e6194b'), ('the blue square', '#3cb44b')]
    overlay = Image.open(io.BytesIO(base64.b64decode(out['overlay'].split(',', 1)[1])))
    assert overlay.format == 'PNG' and overlay.size[0] >= 56
    assert out['prompts'] == [box] and [t['role'] for t in out['history']] == ['user', 'assistant']
    # the next turn sends back the history and the earlier prompts; no new prompt
    status, out2 = chat(
        server,
        image=data_url(img),
        question='And the blue one?',
        prompts=out['prompts'],
        history=out['history'],
        task='res',
    )
    assert status == 200, out2
    assert out2['task'] == 'res' and len(out2['history']) == 4 and out2['prompts'] == [box]


def test_bad_requests_get_clear_errors(server):
    img = data_url(make_image(40, 56))
    status, out = chat(server, image='data:image/png;base64,AAAA', question='Where?')
    assert status == 400 and 'not a readable image' in out['error']
    outside = {'type': 'point', 'point': [80, 10]}
    status, out = chat(server, image=img, question='What is it?', prompt=outside)
    assert status == 400
    assert out['error'] == 'visual prompt 0: point [80, 10] is outside the image (56x40)'
    status, out = chat(server, image=img, question='   ')
    assert status == 400 and 'non-empty' in out['error']
    big = load_web_demo().MAX_BODY + 1
    status, data = request(server, 'POST', '/api/chat', b'', {'Content-Length': str(big)})
    assert status == 413 and b'limit' in data
    for bad in ('-1', 'many'):  # never an unbounded read, never an unhandled error
        status, data = request(server, 'POST', '/api/chat', b'', {'Content-Length': bad})
        assert status == 400 and b'non-negative integer' in data
    status, _ = request(server, 'GET', '/etc/passwd')
    assert status == 404


def test_internal_errors_are_reported_not_dropped(server, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('boom')

    monkeypatch.setattr(server.RequestHandlerClass.chat_backend, 'chat', broken)
    status, data = request(server, 'POST', '/api/chat', b'{}', {'Content-Length': '2'})
    assert status == 500 and json.loads(data)['error'] == 'internal error (RuntimeError: boom)'


def test_overlay_is_the_inferencers(server, tiny_inferencer, monkeypatch):
    script_generation(monkeypatch, SCRIPTED)
    img = make_image(40, 56)
    _, out = chat(server, image=data_url(img), question='Where is the red circle?')
    sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(out['overlay'].split(',', 1)[1]))))
    direct = tiny_inferencer(img, 'Where is the red circle?', return_vis=True)[0]['vis']
    assert np.array_equal(sent, direct)
