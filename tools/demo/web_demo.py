# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A web page to chat with a RefVLM about an image: ``python tools/demo/web_demo.py CONFIG
CHECKPOINT [--port 7860] [--host 127.0.0.1] [--device cpu]``.

Upload an image, optionally click a point or drag a box on it as the visual prompt, pick a task,
ask; the answer comes back with its phrases colour-coded like the overlay (boxes, masks,
keypoints, depth maps). The chat keeps its history until "Clear chat" or a new image.

Python's own ``http.server`` serves one static page (``web_demo.html``, plain JavaScript) and one
JSON endpoint, so the demo needs nothing beyond mmrefvlm's requirements and works offline; see
docs/inference.md for why it is not gradio.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os.path as osp
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

PAGE = osp.join(osp.dirname(osp.abspath(__file__)), 'web_demo.html')
MAX_BODY = 32 * 1024 * 1024  # bytes of one request (the image travels as a data URL)
TASKS = ('rec', 'res', 'gres', 'ig_box', 'ig_mask', 'ig_keypoint', 'reg', 'vqa', 'caption')
TASKS += ('gcg_box', 'gcg_mask', 'ovd', 'ovs', 'keypoint', 'depth')


class DemoError(ValueError):
    """A bad request; its message goes back to the page."""


def decode_image(data_url: Any):
    """``data:image/...;base64,...`` -> (H, W, 3) uint8 RGB array."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data_url, str) or ',' not in data_url:
        raise DemoError('upload an image first')
    try:
        raw = base64.b64decode(data_url.split(',', 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert('RGB'))
    except (ValueError, UnidentifiedImageError, OSError) as err:
        raise DemoError(f'the uploaded file is not a readable image ({err})') from err


def encode_png(rgb) -> str:
    """(H, W, 3) uint8 RGB -> PNG data URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='PNG')
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


class ChatBackend:
    """Answers the page's requests with a ``RefVLMInferencer`` (one request at a time).

    Args:
        inferencer (RefVLMInferencer): The model.
    """

    def __init__(self, inferencer: Any) -> None:
        self.inferencer = inferencer
        self.lock = threading.Lock()

    def info(self) -> dict:
        """What the page shows in its header and task list."""
        cfg = self.inferencer.cfg
        return {'config': osp.basename(cfg.filename or ''), 'units': self.inferencer.units,
                'tasks': ['auto', *TASKS]}  # fmt: skip

    def chat(self, req: dict) -> dict:
        """One turn: ``image`` (data URL), ``question``, ``prompt`` (new visual prompt or null),
        ``prompts`` (those of earlier turns), ``history``, ``task`` ('auto' or a task name).

        Returns:
            dict: ``text``, ``answer``, ``segments`` ([{text, color}]), ``instances`` (depth maps
            as their shape), ``warnings``, ``overlay`` (PNG data URL), and the ``history`` and
            ``prompts`` to send with the next turn.
        """
        from mmrefvlm.apis import InferenceInputError
        from mmrefvlm.visualization import answer_segments, color_hex, phrase_colors

        img = decode_image(req.get('image'))
        prompts = list(req.get('prompts') or [])
        if req.get('prompt'):
            prompts.append(req['prompt'])
        history = list(req.get('history') or [])
        task = req.get('task') or 'auto'
        try:
            with self.lock:
                result = self.inferencer(
                    img,
                    str(req.get('question') or ''),
                    visual_prompts=prompts,
                    history=history,
                    task=None if task == 'auto' else task,
                    return_vis=True,
                )[0]
        except InferenceInputError as err:
            raise DemoError(str(err).replace('image_0: ', '', 1)) from err
        segments = answer_segments(result['text'])
        colors = phrase_colors(segments, [i['phrase'] for i in result['instances']])
        instances = [
            {k: (list(v.shape) if k == 'depth' else v) for k, v in inst.items()}
            for inst in result['instances']
        ]
        history += [
            {'role': 'user', 'content': result['question']},
            {'role': 'assistant', 'text': result['text']},
        ]
        return {
            'question': result['question'],
            'task': result['task'],
            'text': result['text'],
            'answer': result['answer'],
            'segments': [
                {'text': t, 'color': None if p is None else color_hex(colors[p])}
                for t, p in segments
            ],
            'instances': instances,
            'warnings': result['warnings'],
            'overlay': encode_png(result['vis']),
            'history': history,
            'prompts': prompts,
        }


def make_handler(backend: ChatBackend, page: str) -> type[BaseHTTPRequestHandler]:
    """The request handler class: ``GET /`` (the page), ``GET /api/info``, ``POST /api/chat``."""
    page_bytes = page.encode('utf-8')

    class Handler(BaseHTTPRequestHandler):
        chat_backend = backend  # reachable from the server (tests)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # one line per request would drown the console

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: dict) -> None:
            self._send(code, json.dumps(obj).encode('utf-8'), 'application/json')

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path in ('/', '/index.html'):
                self._send(200, page_bytes, 'text/html; charset=utf-8')
            elif self.path == '/api/info':
                self._json(200, self.chat_backend.info())
            else:
                self._json(404, {'error': f'no page {self.path}'})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            if self.path != '/api/chat':
                self._json(404, {'error': f'no endpoint {self.path}'})
                return
            try:
                size = int(self.headers.get('Content-Length') or 0)
            except ValueError:
                size = -1
            if size < 0:
                self._json(400, {'error': 'Content-Length must be a non-negative integer'})
                return
            if size > MAX_BODY:
                self._json(413, {'error': f'request of {size} bytes; the limit is {MAX_BODY}'})
                return
            try:
                req = json.loads(self.rfile.read(size) or b'{}')
                if not isinstance(req, dict):
                    raise DemoError('the request must be a JSON object')
                self._json(200, self.chat_backend.chat(req))
            except (DemoError, json.JSONDecodeError) as err:
                self._json(400, {'error': str(err)})
            except Exception as err:  # a bug, not the user's input: say so instead of hanging up
                traceback.print_exc()
                self._json(500, {'error': f'internal error ({err.__class__.__name__}: {err})'})

    return Handler


def serve(inferencer: Any, host: str = '127.0.0.1', port: int = 7860) -> ThreadingHTTPServer:
    """A started-to-be server (call ``serve_forever``); port 0 picks a free port."""
    with open(PAGE, encoding='utf-8') as f:
        page = f.read()
    server = ThreadingHTTPServer((host, port), make_handler(ChatBackend(inferencer), page))
    server.daemon_threads = True
    return server


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Chat with a RefVLM about an image in the browser')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint (.pth or .safetensors, loaded weights-only)')
    p.add_argument('--port', type=int, default=7860)
    p.add_argument('--host', default='127.0.0.1', help='bind address (default: loopback only)')
    p.add_argument('--device', help='cpu, cuda, cuda:1... (default: cuda when available)')
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmrefvlm.apis import RefVLMInferencer

    server = serve(
        RefVLMInferencer(args.config, args.checkpoint, args.device), args.host, args.port
    )
    host, port = server.server_address[:2]
    print(f'RefVLM web demo on http://{host}:{port}/ (Ctrl-C to stop)')  # noqa: T201 (CLI)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
